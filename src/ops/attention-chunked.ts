// The chunked recompute backward of attention (scaledDotProductAttention and qkvAttention): for a
// chunk of c heads at a time it recomputes the scores with the batched GEMM and does all five
// products there, so the backward runs at matmul speed instead of the fused flash kernels'
// one-row-per-invocation speed (on an H200 under Dawn: ~3 TFLOP/s fused, 34–36 TFLOP/s GEMM).
// Per chunk, with the forward's logsumexp L and Δ = rowsum(dO ∘ O):
//   S = Q·Kᵀ → P = exp(scale·S − L) [causal mask] (in place; Pd = dropout(P) beside it)
//   dV = Pdᵀ·dO,  dP = dO·Vᵀ → dS = P ∘ (dropout(dP) − Δ)·scale (in place),  dQ = dS·K,  dK = dSᵀ·Q
// q, k, v and dO of the chunk are first gathered into contiguous f32 [c, T, D] scratch (either
// layout, any dtype) and dQ, dK, dV scattered back (shaders/attention-chunked.wgsl.ts). Nothing of
// size T×T outlives a chunk: the transient is about 2·c·T² + 12·c·T·D floats, and c is the most
// heads whose transient fits the byte budget (setAttentionChunkBytes, default 64 MiB). The products
// go through matmulRaw, so setFloat32MatmulPrecision("medium") puts them on the matrix units.
// dQ, dK and dV are small outputs (c·T×D) with a long reduction (T): 16·c workgroups of the 64×64
// tile at T = 1024, too few for a big GPU. dK and dV reduce over the queries, the slow axis of P
// and dS, so their products are split along it into `split` pieces as extra batch entries (a
// [c, T, T] tensor is a [c·split, T/split, T] one in place) and the scatter adds the partial
// sums; dQ reduces over the keys (the contiguous axis), which a batch stride cannot split.
import type { AttentionAttrs } from "../autograd/ops.ts";
import { ResourceLimitError, ValueError } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { Tensor } from "../tensor.ts";
import {
  CHUNK_WORKGROUP, attentionChunkDScoresKernel, attentionChunkGatherKernel, attentionChunkProbsKernel, attentionChunkScatterKernel,
} from "../../shaders/attention-chunked.wgsl.ts";
import { matmulRaw } from "./matmul.ts";
import { fdt, grid1d } from "./util.ts";

/** The default transient budget of one chunk: 64 MiB (5 heads of T = 1024, D = 64). */
export const DEFAULT_ATTENTION_CHUNK_BYTES = 64 * 2 ** 20;
let chunkBytes = DEFAULT_ATTENTION_CHUNK_BYTES;

/**
 * Sets the byte budget of one chunk of the chunked attention backward (how many heads' T×T scores
 * and probabilities are live at once); null restores the default 64 MiB. Larger chunks fill a big
 * GPU better (the dQ/dK/dV products are c·T×D outputs) at the cost of peak memory.
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

/**
 * Transient bytes of one head, at the larger of the loop's two high points: S, dP, the gathered
 * q, k, v, dO and dV's partial sums (2·T² + (4 + split)·T·D floats), and dP, q, k, dQ and the
 * partial sums of dK and dV (T² + (3 + 2·split)·T·D); counted at the largest split, 8.
 */
export const chunkBytesPerHead = (T: number, D: number): number => 4 * Math.max(2 * T * T + 12 * T * D, T * T + 19 * T * D);

/** Heads per chunk under the budget and the adapter's binding size (at most BH); 0 when not even one head fits. */
export function chunkHeads(T: number, D: number, BH: number): number {
  const lim = gpu().limits;
  const perBinding = Math.floor(Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize) / Math.max(4, 4 * T * T));
  return Math.min(BH, Math.floor(chunkBytes / chunkBytesPerHead(T, D)), perBinding);
}

/** Workgroups the split dK/dV products aim for (a 64×64 tile each): a few per SM of a large GPU. */
const SPLIT_TARGET_GROUPS = 512;
let splitOverride: number | null = null;

/** Internal (tests, benchmarks): forces the split of the dK/dV products (it must divide T); null: automatic. */
export function setAttentionSplitOverride(s: number | null): void {
  splitOverride = s;
}

/**
 * Pieces the dK/dV products are split into along the queries for a chunk of c heads: the fewest
 * of 1, 2, 4, 8 giving SPLIT_TARGET_GROUPS 64×64 workgroups, each piece at least 64 rows and T
 * divisible by the split.
 */
export function chunkSplit(T: number, c: number): number {
  if (splitOverride !== null) return T % splitOverride === 0 ? splitOverride : 1;
  let s = 1;
  while (s < 8 && c * Math.ceil(T / 64) * s < SPLIT_TARGET_GROUPS && T % (2 * s) === 0 && T / (2 * s) >= 64) s *= 2;
  return s;
}

/** Throws unless one head's T×T scores fit a storage binding and a buffer on this adapter. */
export function checkChunkFits(op: string, T: number): void {
  const lim = gpu().limits;
  const bytes = 4 * T * T;
  const max = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  if (bytes > max || T * T >= 2 ** 31) {
    throw new ResourceLimitError(op, `the chunked backward needs one head's ${T}×${T} scores (${bytes} bytes), over the adapter's ${max}; use backward: "fused"`);
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
  const gather = attentionChunkGatherKernel(dt);
  const probs = attentionChunkProbsKernel(a.causal, drop);
  const dscores = attentionChunkDScoresKernel(drop);
  const outs = a.geo.packed ? [dq.buffer(op)] : [dq.buffer(op), dk.buffer(op), dv.buffer(op)];
  for (let h0 = 0; h0 < BH; h0 += c) {
    const n = Math.min(c, BH - h0);
    const rows = [...p, h0, n * T * D, D], scores = [...p, h0, n * T * T, D];
    const [qc, kc, vc, gc] = [0, 1, 2, 3].map(() => Tensor.empty([n, T, D], "f32", op)) as [Tensor, Tensor, Tensor, Tensor];
    l.dispatch(gather, [q.buffer(op), k.buffer(op), v.buffer(op), gO.buffer(op), qc.buffer(op), kc.buffer(op), vc.buffer(op), gc.buffer(op)],
      grid1d(n * T * D, CHUNK_WORKGROUP), rows);
    const [s] = matmulRaw(qc, kc, false, true);
    const pd = drop ? Tensor.empty([n, T, T], "f32", op) : null;
    l.dispatch(probs, [s.buffer(op), lse.buffer(op), ...(pd ? [pd.buffer(op)] : [])], grid1d(n * T * T, CHUNK_WORKGROUP), scores);
    const sp = chunkSplit(T, n), rp = T / sp;
    const [dvc] = splitProduct(pd ?? s, gc, n, sp, rp, T, D);
    pd?.dispose();
    const [dp] = matmulRaw(gc, vc, false, true);
    gc.dispose(); vc.dispose();
    l.dispatch(dscores, [dp.buffer(op), s.buffer(op), delta.buffer(op)], grid1d(n * T * T, CHUNK_WORKGROUP), scores);
    s.dispose();
    const [dqc] = matmulRaw(dp, kc, false, false);
    const [dkc] = splitProduct(dp, qc, n, sp, rp, T, D);
    dp.dispose(); qc.dispose(); kc.dispose();
    l.dispatch(attentionChunkScatterKernel(dt, a.geo.packed, sp), [dqc.buffer(op), dkc.buffer(op), dvc.buffer(op), ...outs], grid1d(n * T * D, CHUNK_WORKGROUP), rows);
    dqc.dispose(); dkc.dispose(); dvc.dispose();
  }
}

/** Xᵀ·Y over the queries of each head, split into `sp` pieces of `rp` rows: [n·sp, T, D] partial sums. */
function splitProduct(x: Tensor, y: Tensor, n: number, sp: number, rp: number, T: number, D: number): [Tensor, Tensor | null] {
  if (sp === 1) return matmulRaw(x, y, true, false);
  const xs = x.alias([n * sp, rp, T]), ys = y.alias([n * sp, rp, D]);
  const r = matmulRaw(xs, ys, true, false);
  xs.dispose(); ys.dispose();
  return r;
}
