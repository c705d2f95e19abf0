// The chunked recompute backward of attention (scaledDotProductAttention and qkvAttention): for a
// chunk of c heads at a time it recomputes the scores with the batched GEMM and does all five
// products there, so the backward runs at matmul speed instead of the fused flash kernels'
// one-row-per-invocation speed (on an H200 under Dawn: ~3 TFLOP/s fused, 34–36 TFLOP/s GEMM).
// Per chunk and row panel of queries [i0, i1) (keys [0, i1) when causal, else all), with the
// forward's logsumexp L and Δ = rowsum(dO ∘ O):
//   S = Q·Kᵀ → P = exp(scale·S − L) [causal mask] (in place; Pd = dropout(P) beside it)
//   dV += Pdᵀ·dO,  dP = dO·Vᵀ → dS = P ∘ (dropout(dP) − Δ)·scale (in place),  dQ = dS·K,  dK += dSᵀ·Q
// The panels (causal only, PANEL_ROWS-ish rows each) skip the key blocks above the diagonal: at
// four panels the products do 5/8 of the full T×T work. Panels run from the last (which sees
// every key, so it assigns dK and dV) to the first (which adds). The panel's q and dO rows and its
// k and v prefix are gathered into contiguous f32 scratch (either layout, any dtype), dQ scattered
// back per panel and dK, dV per chunk (shaders/attention-chunked.wgsl.ts). Nothing of size T×T
// outlives a panel: the transient of a head is chunkBytesPerHead, and c is the most heads whose
// transient fits the byte budget (setAttentionChunkBytes, default 128 MiB). The products go through
// matmulRaw, so setFloat32MatmulPrecision("medium") puts them on the matrix units.
// dQ, dK and dV are small outputs (c·rows×D) with a long reduction: at T = 1024 a panel's dQ is
// 4·c workgroups of the 64×64 tile reducing over up to 1024 keys, too few for a big GPU. So the
// keys are cut into `pieces` as extra batch entries: S, P, dP and dS are [c, pieces, rows,
// keys/pieces] (the k and v prefix is [c·pieces, keys/pieces, D] in place; the panel's q and dO
// rows are gathered once per piece), dQ comes out as per-piece partial sums (added by its
// scatter), and dK, dV come out whole, [c, keys, D].
import type { AttentionAttrs } from "../autograd/ops.ts";
import { ResourceLimitError, ValueError } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { Tensor } from "../tensor.ts";
import {
  CHUNK_WORKGROUP, attentionChunkAccumulateKernel, attentionChunkDScoresKernel, attentionChunkGatherKernel, attentionChunkProbsKernel,
  attentionChunkScatterKernel,
} from "../../shaders/attention-chunked.wgsl.ts";
import { matmulRaw } from "./matmul.ts";
import { fdt, grid1d } from "./util.ts";

/**
 * The default transient budget of one chunk: 128 MiB. Measured on the H200 (mixed-f16 steps,
 * bench/results/2026-12-02/g-train-dawn-chunks-*.json): against 64 MiB, small 32.9 against 38.6 ms
 * and gpt2 143 against 170 ms, with the same peak (the forward's activations stay the peak at these
 * shapes); 256 MiB was 34.2 and 135 ms.
 */
export const DEFAULT_ATTENTION_CHUNK_BYTES = 128 * 2 ** 20;
let chunkBytes = DEFAULT_ATTENTION_CHUNK_BYTES;

/**
 * Sets the byte budget of one chunk of the chunked attention backward (how many heads' scores and
 * probabilities are live at once); null restores the default 128 MiB. Larger chunks fill a big GPU
 * better (the dQ/dK/dV products are c·T×D outputs) at the cost of peak memory.
 */
export function setAttentionChunkBytes(bytes: number | null): void {
  if (bytes !== null && !(Number.isFinite(bytes) && bytes > 0)) {
    throw new ValueError("setAttentionChunkBytes", `the budget must be a positive number of bytes or null, got ${String(bytes)}`);
  }
  chunkBytes = bytes ?? DEFAULT_ATTENTION_CHUNK_BYTES;
}

export function getAttentionChunkBytes(): number {
  return chunkBytes;
}

/** The most pieces the keys of a panel are cut into. */
const MAX_PIECES = 8;
/** Workgroups a panel's dQ product aims for (a 64×64 tile each): a few per SM of a large GPU. */
const PIECE_TARGET_GROUPS = 512;
/** Causal panels are about this many query rows (at most MAX_PANELS of them). */
const PANEL_ROWS = 256;
const MAX_PANELS = 4;

let piecesOverride: number | null = null;
let panelOverride: number | null = null;

/** Internal (tests, benchmarks): forces the key pieces (used where they divide a panel's keys); null: automatic. */
export function setAttentionPiecesOverride(s: number | null): void {
  piecesOverride = s;
}

/** Internal (tests, benchmarks): forces the rows of a causal panel; null: automatic. */
export function setAttentionPanelOverride(rows: number | null): void {
  panelOverride = rows;
}

/** Query rows per panel: all T unless causal; then ~T/4 rows (a multiple of 64) from T = 512 on. */
export function panelRows(T: number, causal: boolean): number {
  if (!causal) return T;
  if (panelOverride !== null) return Math.min(T, Math.max(1, panelOverride));
  const np = Math.min(MAX_PANELS, Math.floor(T / PANEL_ROWS));
  return np <= 1 ? T : Math.ceil(T / np / 64) * 64;
}

/**
 * Pieces the keys of a panel (rows × keys, c heads) are cut into: the fewest of 1, 2, 4, 8 giving
 * PIECE_TARGET_GROUPS 64×64 workgroups for dQ, each piece at least 64 keys and the keys divisible
 * by the count.
 */
export function keyPieces(rows: number, keys: number, c: number): number {
  if (piecesOverride !== null) return keys % piecesOverride === 0 ? piecesOverride : 1;
  let s = 1;
  while (s < MAX_PIECES && c * Math.ceil(rows / 64) * s < PIECE_TARGET_GROUPS && keys % (2 * s) === 0 && keys / (2 * s) >= 64) s *= 2;
  return s;
}

/** The most key pieces any panel of a length-T sequence can get (pieces keep ≥ 64 keys). */
function maxPieces(T: number): number {
  let s = 1;
  while (s < MAX_PIECES && T / (2 * s) >= 64) s *= 2;
  return Math.max(s, piecesOverride ?? 1);
}

/**
 * Transient bytes of one head with panels of R query rows: S and dP (R × T each), the panel's q
 * and dO rows once per key piece and dQ's partial sums (3·pieces·R·D, at the most pieces), k and
 * v (2·T·D), the panel's dK and dV (2·T·D) and the chunk's sums of them (2·T·D), all counted as
 * live at once.
 */
export const chunkBytesPerHead = (T: number, D: number, R = T): number => 4 * (2 * R * T + 3 * maxPieces(T) * R * D + 6 * T * D);

/** Heads per chunk under the budget and the adapter's binding size (at most BH); 0 when not even one head fits. */
export function chunkHeads(T: number, D: number, BH: number, causal: boolean): number {
  const lim = gpu().limits;
  const R = panelRows(T, causal);
  const perBinding = Math.floor(Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize) / Math.max(4, 4 * R * T));
  return Math.min(BH, Math.floor(chunkBytes / chunkBytesPerHead(T, D, R)), perBinding);
}

/** Throws unless one head's panel scores fit a storage binding and a buffer on this adapter. */
export function checkChunkFits(op: string, T: number, causal: boolean): void {
  const lim = gpu().limits;
  const R = panelRows(T, causal);
  const bytes = 4 * R * T;
  const max = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  if (bytes > max || R * T >= 2 ** 31) {
    throw new ResourceLimitError(op, `the chunked backward needs one head's ${R}×${T} scores (${bytes} bytes), over the adapter's ${max}; use backward: "fused"`);
  }
}

/**
 * dQ, dK, dV of every head, `heads` at a time. `p` is the fused kernels' params block, `delta`
 * Δ [B·H, T]. `dq`, `dk`, `dv` may be one tensor (packed).
 */
export function chunkedBackwardRaw(op: string, q: Tensor, k: Tensor, v: Tensor, lse: Tensor, gO: Tensor, delta: Tensor,
  dq: Tensor, dk: Tensor, dv: Tensor, a: AttentionAttrs, p: readonly number[], heads: number): void {
  const { BH, T, D } = a.geo;
  const l = gpu().launcher;
  const dt = fdt(q), drop = a.p > 0;
  const c = Math.max(1, Math.min(heads, BH));
  const R = panelRows(T, a.causal), np = Math.ceil(T / R);
  const probs = attentionChunkProbsKernel(a.causal, drop);
  const dscores = attentionChunkDScoresKernel(drop);
  const run = (kernel: Parameters<typeof l.dispatch>[0], ts: Tensor[], count: number, words: number[]) =>
    l.dispatch(kernel, ts.map((t) => t.buffer(op)), grid1d(count, CHUNK_WORKGROUP), [...p, ...words]);
  for (let h0 = 0; h0 < BH; h0 += c) {
    const n = Math.min(c, BH - h0);
    // the chunk's dK and dV sums over panels (one panel: scattered straight from its products)
    const dkAcc = np > 1 ? Tensor.empty([n, T, D], "f32", op) : null, dvAcc = np > 1 ? Tensor.empty([n, T, D], "f32", op) : null;
    for (let pi = np - 1; pi >= 0; pi--) {
      const i0 = pi * R, rows = Math.min(T, i0 + R) - i0, keys = a.causal ? i0 + rows : T;
      const ps = keyPieces(rows, keys, n), kp = keys / ps, nb = n * ps;
      const words = (count: number, row0: number, rs: number) => [h0, count, D, row0, rs, kp, ps];
      const qc = Tensor.empty([nb, rows, D], "f32", op), gc = Tensor.empty([nb, rows, D], "f32", op);
      const kc = Tensor.empty([nb, kp, D], "f32", op), vc = Tensor.empty([nb, kp, D], "f32", op);
      run(attentionChunkGatherKernel(dt, true, ps), [q, gO, qc, gc], n * rows * D, words(n * rows * D, i0, rows));
      run(attentionChunkGatherKernel(dt, false, 1), [k, v, kc, vc], n * keys * D, words(n * keys * D, 0, keys));
      const scores = words(nb * rows * kp, i0, rows);
      const [s] = matmulRaw(qc, kc, false, true);
      const pd = drop ? Tensor.empty([nb, rows, kp], "f32", op) : null;
      run(probs, pd ? [s, lse, pd] : [s, lse], nb * rows * kp, scores);
      const [dvp] = matmulRaw(pd ?? s, gc, true, false);
      pd?.dispose();
      const [dP] = matmulRaw(gc, vc, false, true);
      gc.dispose(); vc.dispose();
      run(dscores, [dP, s, delta], nb * rows * kp, scores);
      s.dispose();
      const [dqp] = matmulRaw(dP, kc, false, false);
      const [dkp] = matmulRaw(dP, qc, true, false);
      dP.dispose(); qc.dispose(); kc.dispose();
      run(attentionChunkScatterKernel(dt, 0, ps), [dqp, dq], n * rows * D, words(n * rows * D, i0, rows));
      dqp.dispose();
      for (const [part, acc, which, dst] of [[dkp, dkAcc, 1, dk], [dvp, dvAcc, 2, dv]] as const) {
        if (acc) run(attentionChunkAccumulateKernel(pi === np - 1), [acc, part], n * keys * D, words(n * keys * D, 0, keys));
        else run(attentionChunkScatterKernel(dt, which, 1), [part, dst], n * keys * D, words(n * keys * D, 0, keys));
        part.dispose();
      }
    }
    for (const [acc, which, dst] of [[dkAcc, 1, dk], [dvAcc, 2, dv]] as const) {
      if (!acc) continue;
      run(attentionChunkScatterKernel(dt, which, 1), [acc, dst], n * T * D, [h0, n * T * D, D, 0, T, T, 1]);
      acc.dispose();
    }
  }
}
