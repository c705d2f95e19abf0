// Fused scaled-dot-product attention (torch's F.scaled_dot_product_attention), forward and
// backward in the flash-attention manner (shaders/attention.wgsl.ts): no [T, T] tensor is ever
// allocated; the node keeps only the inputs, the output and the per-row logsumexp [B·H, T].
// Two entries share the kernels: `scaledDotProductAttention(q, k, v)` on contiguous
// [..., T, D] tensors, and `qkvAttention(qkv, nHead)`, which reads q, k, v in place from the
// qkv projection's [B, T, 3C] output and writes y as [B, T, C] (its gradient as [B, T, 3C]), so
// a transformer block needs no permute, split or copy around attention. Two backwards: the fused
// flash kernels (Δ, dK/dV, dQ) and the chunked recompute backward (./attention-chunked.ts: the
// five products on the batched GEMM, c heads and one row panel at a time under a byte budget;
// causal panels skip the keys above the diagonal). "auto" (the default) takes the chunked one on
// a GPU wherever one head's scores fit the budget: on an H200 under Dawn the fused kernels run
// at ~3 TFLOP/s and the GEMM at 34–36, so recomputing through the GEMM is several times faster
// even though it writes and reads the scores of each chunk. On a CPU
// rasterizer (lavapipe, SwiftShader) memory passes and dispatches cost more than arithmetic and
// the fused kernels win (tiny config, lavapipe: 2.0 vs 9.4 ms), so "auto" keeps them there.
// The forward runs on the matrix units (shaders/attention-subgroup.wgsl.ts: subgroup matrices,
// f16 operands, f32 softmax and accumulation) exactly when init found them and the attention
// kernel compiled there (gpu().matrixUnits.attention), the product may round to f16 (f16 inputs,
// or an f32 matmul precision below "highest", as the Trainer's "mixed-f16" sets) and the head dim
// is a multiple of 16 up to UNITS_MAX_HEAD_DIM; otherwise the f32 shader-core kernel. Both write
// the same O and logsumexp, so either backward follows either forward.
// Registers its rules.
import { record } from "../autograd/graph.ts";
import type { AttentionAttrs, AttentionGeometry as Geometry, OpSaved } from "../autograd/ops.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { DTypeError, ResourceLimitError, ShapeError, ValueError, WebslopeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { generatorFor } from "../random.ts";
import { isGradEnabled } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import {
  ATTENTION_TILES, ROWDOT_WORKGROUP, type AttentionTiles, attentionBackwardKVKernel, attentionBackwardQKernel,
  attentionForwardKernel, attentionRowDotKernel, attentionSharedBytes,
} from "../../shaders/attention.wgsl.ts";
import {
  ATTENTION_UNITS_TILES, type AttentionUnitsTile, UNITS_MAX_HEAD_DIM, attentionUnitsForwardKernel, attentionUnitsSharedBytes,
} from "../../shaders/attention-subgroup.wgsl.ts";
import type { Kernel } from "../../shaders/kernel.ts";
import { checkChunkFits, chunkHeads, chunkedBackwardRaw } from "./attention-chunked.ts";
import { getFloat32MatmulPrecision } from "./raw/precision.ts";
import { checkFloat, checkLive, numel, sameShape } from "./util.ts";

export interface AttentionOptions {
  /** Mask keys after the query (j > i). Default false (torch's is_causal). */
  causal?: boolean;
  /** Dropout on the attention probabilities; 0 (default) compiles it out. */
  dropoutP?: number;
  /** Multiplies q·kᵀ; default 1/sqrt(D). */
  scale?: number;
  /** A fixed seed for this call's dropout mask; without it the global generator (manualSeed) is used. */
  seed?: number;
  /**
   * The backward: "chunked" (recompute through the batched GEMM, c heads at a time, see
   * setAttentionChunkBytes), "fused" (the flash kernels, no T×T memory at all), or "auto" (the
   * default, see setAttentionBackward): chunked on a GPU when one head's scores fit the chunk
   * budget, fused on a CPU rasterizer (lavapipe, SwiftShader) or when they do not fit.
   */
  backward?: AttentionBackward;
}

export type AttentionBackward = "auto" | "fused" | "chunked";
const BACKWARDS: readonly AttentionBackward[] = ["auto", "fused", "chunked"];
let defaultBackward: AttentionBackward = "auto";

/** The backward used when a call does not say (`backward` option); "auto" restores the default. */
export function setAttentionBackward(b: AttentionBackward): void {
  if (!BACKWARDS.includes(b)) throw new ValueError("setAttentionBackward", `backward must be one of ${BACKWARDS.map((x) => `"${x}"`).join(", ")}, got ${JSON.stringify(b)}`);
  defaultBackward = b;
}

/** Largest head dim the kernels are built for (registers per row grow with D). */
export const MAX_HEAD_DIM = 256;

let tilesOverride: AttentionTiles | null = null;

/** Forces one tile set for every attention call (benchmarks); null restores the automatic choice. */
export function setAttentionTiles(t: AttentionTiles | null): void {
  tilesOverride = t;
}

/** The first tile set of ATTENTION_TILES (largest first) whose kernels fit the adapter's workgroup memory. */
function tilesFor(op: string, D: number): AttentionTiles {
  const max = gpu().limits.maxComputeWorkgroupStorageSize;
  if (tilesOverride) return tilesOverride;
  for (const t of ATTENTION_TILES) {
    const b = attentionSharedBytes(t, D);
    if (b.fwd <= max && b.dq <= max && b.dkv <= max) return t;
  }
  throw new ResourceLimitError(op, `head dim ${D} needs more workgroup memory than the adapter's ${max} bytes; use a smaller head dim`);
}

function params(a: AttentionAttrs): number[] {
  const g = a.geo;
  return [g.T, g.H, g.sB, g.sH, g.sT, ...g.bases, g.oSB, g.oSH, g.oST, f32bits(a.scale), a.key[0], a.key[1],
    f32bits(a.p), f32bits(a.p > 0 ? 1 / (1 - a.p) : 1), g.BH];
}

/** [blocks, y, z]: B·H folded over y and z past the per-dimension limit. */
function grid(op: string, blocks: number, BH: number): [number, number, number] {
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (blocks > max) throw new ResourceLimitError(op, `sequence length needs ${blocks} workgroups along one axis, over the adapter's ${max}`);
  const y = Math.min(BH, max);
  return [blocks, y, Math.ceil(BH / y)];
}

type F = "f32" | "f16";
const fdt = (t: Tensor): F => (t.dtype === "f16" ? "f16" : "f32");

/**
 * Off by default: measured on the H200 (bench/results/2026-12-02/k-attention-dawn-mu-fwd.json,
 * Dawn, mixed precision) the matrix-unit forward is slower than the shader-core one — small
 * (64×6 heads, T 256, D 64) 0.489 against 0.351 ms, gpt2 (8×12, T 1024) 1.365 against 1.032 ms —
 * and with it on by default the mixed-f16 step went from 30.8 to 32.3 ms (small) and 125.7 to
 * 128.8 ms (gpt2). Its softmax runs one row per invocation with half the workgroup idle and its
 * score reads have bank conflicts (shaders/attention-subgroup.wgsl.ts). bench/README.md "Failed
 * optimizations" keeps the figures.
 */
let unitsAllowed = false;
let unitsTileOverride: AttentionUnitsTile | null = null;

/**
 * true lets the attention forward run on the matrix units where they were found and the inputs or
 * the matmul precision allow it (opt-in: slower than the shader-core forward on the H200, see
 * above); false (the default) keeps it on the shader-core kernel.
 */
export function setAttentionMatrixUnits(on: boolean): void {
  unitsAllowed = on;
}

export function getAttentionMatrixUnits(): boolean {
  return unitsAllowed;
}

/** Forces one tile of the matrix-unit forward (ATTENTION_UNITS_TILES; benchmarks, tests); null restores the choice. */
export function setAttentionUnitsTile(t: AttentionUnitsTile | null): void {
  if (t && !([1, 2, 4, 8].includes(t.nsub) && [16, 32, 64].includes(t.keys))) {
    throw new ValueError("setAttentionUnitsTile", `tile ${JSON.stringify(t)} needs nsub in 1, 2, 4, 8 and keys in 16, 32, 64`);
  }
  unitsTileOverride = t;
}

/**
 * How tests run the matrix-unit forward on adapters without the feature: its kernel rewritten
 * (test/lib/sgmat-emulate.ts) for subgroups of `subgroupSize`, and its params extended.
 */
export interface AttentionUnitsEmulation {
  subgroupSize: number;
  kernel(k: Kernel): Kernel;
  params(p: number[]): number[];
}
let emulation: AttentionUnitsEmulation | null = null;

/** Tests only: where the adapter has no matrix units, route the matrix-unit forward through `e`; null ends it. */
export function emulateAttentionMatrixUnits(e: AttentionUnitsEmulation | null): void {
  emulation = e;
}

/** The matrix-unit forward's tile for this call, or null for the shader-core kernel (see the header). */
function unitsTileFor(op: string, D: number, dtype: F): AttentionUnitsTile | null {
  if (!unitsAllowed) return null;
  const g = gpu();
  if (!emulation && !g.matrixUnits.attention) return null;
  if (dtype === "f32" && getFloat32MatmulPrecision() === "highest") return null;
  if (D % 16 !== 0 || D > UNITS_MAX_HEAD_DIM) return null;
  const max = g.limits.maxComputeWorkgroupStorageSize;
  if (unitsTileOverride) {
    const b = attentionUnitsSharedBytes(unitsTileOverride, D);
    if (b > max) throw new ResourceLimitError(op, `matrix-unit attention tile ${JSON.stringify(unitsTileOverride)} needs ${b} bytes of workgroup memory at head dim ${D}, over the adapter's ${max}; use a smaller one`);
    return unitsTileOverride;
  }
  return ATTENTION_UNITS_TILES.find((t) => attentionUnitsSharedBytes(t, D) <= max) ?? null;
}

/** Runs the forward kernel: O (shape `outShape`) and the logsumexp [B·H, T]. */
function forwardRaw(op: string, q: Tensor, k: Tensor, v: Tensor, outShape: readonly number[], a: AttentionAttrs): [Tensor, Tensor] {
  const g = a.geo;
  const ut = g.BH * g.T === 0 ? null : unitsTileFor(op, g.D, fdt(q)); // before allocating: a refusal leaves nothing
  const out = Tensor.empty(outShape, q.dtype, op);
  const lse = Tensor.empty([g.BH, g.T], "f32", op);
  if (g.BH * g.T === 0) return [out, lse];
  if (ut) {
    const mu = gpu().matrixUnits;
    const variant = { ...ut, dtype: fdt(q), D: g.D, causal: a.causal, dropout: a.p > 0 };
    const kernel = emulation
      ? emulation.kernel(attentionUnitsForwardKernel({ ...variant, subgroupSize: emulation.subgroupSize, sgSyntax: "majorness" }))
      : attentionUnitsForwardKernel({ ...variant, subgroupSize: mu.subgroupSize, sgSyntax: mu.sgSyntax });
    gpu().launcher.dispatch(kernel, [q.buffer(op), k.buffer(op), v.buffer(op), out.buffer(op), lse.buffer(op)],
      grid(op, Math.ceil(g.T / (16 * ut.nsub)), g.BH), emulation ? emulation.params(params(a)) : params(a));
    return [out, lse];
  }
  const t = tilesFor(op, g.D);
  gpu().launcher.dispatch(attentionForwardKernel(fdt(q), g.D, t.fwdRows, t.fwdKeys, a.causal, a.p > 0),
    [q.buffer(op), k.buffer(op), v.buffer(op), out.buffer(op), lse.buffer(op)],
    grid(op, Math.ceil(g.T / t.fwdRows), g.BH), params(a));
  return [out, lse];
}

/**
 * The backward kernels: Δ = rowsum(dO∘O), then dK/dV (one pass over query tiles per key block)
 * and dQ (one pass over key blocks per query block). `dq`, `dk`, `dv` may be one tensor (packed).
 */
function backwardRaw(op: string, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, gO: Tensor,
  dq: Tensor, dk: Tensor, dv: Tensor, a: AttentionAttrs): void {
  const g = a.geo;
  if (g.BH * g.T === 0) return;
  const l = gpu().launcher;
  const dt = fdt(q), drop = a.p > 0, p = params(a);
  const delta = Tensor.empty([g.BH, g.T], "f32", op);
  l.dispatch(attentionRowDotKernel(dt, g.D), [o.buffer(op), gO.buffer(op), delta.buffer(op)], grid(op, Math.ceil(g.T / ROWDOT_WORKGROUP), g.BH), p);
  if (a.backward === "chunked") {
    chunkedBackwardRaw(op, q, k, v, lse, gO, delta, dq, dk, dv, a, p, a.chunkHeads);
    delta.dispose();
    return;
  }
  const t = tilesFor(op, g.D);
  const ins = [q.buffer(op), k.buffer(op), v.buffer(op), gO.buffer(op), lse.buffer(op), delta.buffer(op)];
  const kvOut = g.packed ? [dk.buffer(op)] : [dk.buffer(op), dv.buffer(op)];
  l.dispatch(attentionBackwardKVKernel(dt, g.D, t.dkvKeys, t.dkvRows, a.causal, drop, g.packed), [...ins, ...kvOut],
    grid(op, Math.ceil(g.T / t.dkvKeys), g.BH), p);
  l.dispatch(attentionBackwardQKernel(dt, g.D, t.dqRows, t.dqKeys, a.causal, drop), [...ins, dq.buffer(op)],
    grid(op, Math.ceil(g.T / t.dqRows), g.BH), p);
  delta.dispose();
}

/** A CPU rasterizer, where "auto" keeps the fused backward (see the header). */
const softwareAdapter = (): boolean => /llvmpipe|lavapipe|swiftshader/i.test(gpu().info.adapterName);

type Checked = Omit<AttentionAttrs, "geo">;

function checkOptions(op: string, opts: AttentionOptions, BH: number, T: number, D: number, shapes: string): Checked {
  const p = opts.dropoutP ?? 0;
  if (!(typeof p === "number" && p >= 0 && p < 1)) throw new WebslopeError(`${op}: dropoutP must be in [0, 1), got ${p} (${shapes})`);
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new WebslopeError(`${op}: scale must be a finite number, got ${scale} (${shapes})`);
  if (D > MAX_HEAD_DIM) throw new ShapeError(op, `head dim ${D} is over the supported ${MAX_HEAD_DIM} (${shapes})`);
  const want = opts.backward ?? defaultBackward;
  if (!BACKWARDS.includes(want)) throw new ValueError(op, `backward must be one of ${BACKWARDS.map((x) => `"${x}"`).join(", ")}, got ${JSON.stringify(want)} (${shapes})`);
  const heads = chunkHeads(T, D, BH, !!opts.causal);
  if (want === "chunked") checkChunkFits(op, T, !!opts.causal);
  const backward = want === "fused" || (want === "auto" && (heads === 0 || softwareAdapter())) ? "fused" : "chunked";
  const key: [number, number] = p > 0 ? generatorFor(opts.seed).nextKey() : [0, 0];
  return { causal: !!opts.causal, p, scale, key, backward, chunkHeads: Math.max(1, heads) };
}

declare module "../autograd/ops.ts" {
  interface OpSaved {
    /** The inputs, the output and the per-row logsumexp [B·H, T]. */
    scaledDotProductAttention: { q: Tensor; k: Tensor; v: Tensor; out: Tensor; lse: Tensor };
    qkvAttention: { qkv: Tensor; out: Tensor; lse: Tensor };
  }
}

/**
 * softmax(scale·q·kᵀ [masked causally]) [dropout] · v over the last two axes of contiguous
 * q, k, v [..., T, D] (one shape for all three; the leading axes are batch and heads) →
 * [..., T, D]. One autograd node; memory O(T·D) per head, never O(T²).
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const op = "scaledDotProductAttention";
  checkLive(op, q, k, v);
  const shapes = `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}`;
  for (const t of [q, k, v]) checkFloat(op, t);
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) {
    throw new DTypeError(op, `q, k, v must share a dtype, got ${q.dtype}, ${k.dtype}, ${v.dtype} (${shapes}); convert with .to("${q.dtype}")`);
  }
  if (q.ndim < 2 || !sameShape(q.shape, k.shape) || !sameShape(q.shape, v.shape)) {
    throw new ShapeError(op, `q, k and v must have one shape [..., T, D] (self-attention), got ${shapes}`);
  }
  const T = q.shape[q.ndim - 2]!, D = q.shape[q.ndim - 1]!;
  if (D === 0) throw new ShapeError(op, `head dim D must be at least 1 (${shapes})`);
  const BH = numel(q.shape.slice(0, -2));
  const o = checkOptions(op, opts, BH, T, D, shapes);
  const geo: Geometry = { BH, T, D, H: 1, sB: T * D, sH: 0, sT: D, bases: [0, 0, 0], oSB: T * D, oSH: 0, oST: D, packed: false };
  const attrs: AttentionAttrs = { geo, ...o };
  const [out, lse] = forwardRaw(op, q, k, v, q.shape, attrs);
  if (isGradEnabled()) record(op, [q, k, v], out, attrs, { q, k, v, out, lse });
  lse.dispose();
  return out;
}

/**
 * Multi-head attention read straight from a qkv projection's output [B, T, 3C] (q, k, v in that
 * order along the last axis, head h at columns h·D of each, D = C / nHead) → y [B, T, C], the
 * heads concatenated as a projection expects. Same math and options as scaledDotProductAttention
 * on the [B, H, T, D] views; the gradient comes back as one [B, T, 3C] tensor.
 */
export function qkvAttention(qkv: Tensor, nHead: number, opts: AttentionOptions = {}): Tensor {
  const op = "qkvAttention";
  checkLive(op, qkv);
  checkFloat(op, qkv);
  const shapes = `qkv ${fmtShape(qkv.shape)}, nHead ${nHead}`;
  if (qkv.ndim !== 3 || !Number.isInteger(nHead) || nHead < 1 || qkv.shape[2]! % (3 * nHead) !== 0) {
    throw new ShapeError(op, `qkv must be [B, T, 3C] with C divisible by nHead, got ${shapes}`);
  }
  const [B, T, C3] = qkv.shape as [number, number, number];
  const C = C3 / 3, D = C / nHead;
  if (D === 0) throw new ShapeError(op, `head dim must be at least 1 (${shapes})`);
  const o = checkOptions(op, opts, B * nHead, T, D, shapes);
  const geo: Geometry = {
    BH: B * nHead, T, D, H: nHead, sB: T * C3, sH: D, sT: C3, bases: [0, C, 2 * C], oSB: T * C, oSH: D, oST: C, packed: true,
  };
  const attrs: AttentionAttrs = { geo, ...o };
  const [out, lse] = forwardRaw(op, qkv, qkv, qkv, [B, T, C], attrs);
  if (isGradEnabled()) record(op, [qkv], out, attrs, { qkv, out, lse });
  lse.dispose();
  return out;
}

// ---- backward rules --------------------------------------------------------------------------

function sdpaBackward(g: Tensor, saved: OpSaved["scaledDotProductAttention"], a: AttentionAttrs, needsGrad: readonly boolean[]): (Tensor | null)[] {
  const op = "scaledDotProductAttention";
  const { q, k, v, out, lse } = saved;
  const dq = Tensor.empty(q.shape, q.dtype, op), dk = Tensor.empty(q.shape, q.dtype, op), dv = Tensor.empty(q.shape, q.dtype, op);
  backwardRaw(op, q, k, v, out, lse, g, dq, dk, dv, a);
  return [dq, dk, dv].map((t, i) => { if (needsGrad[i]) return t; t.dispose(); return null; });
}

function qkvBackward(g: Tensor, saved: OpSaved["qkvAttention"], a: AttentionAttrs): Tensor {
  const op = "qkvAttention";
  const { qkv, out, lse } = saved;
  const dqkv = Tensor.empty(qkv.shape, qkv.dtype, op);
  backwardRaw(op, qkv, qkv, qkv, out, lse, g, dqkv, dqkv, dqkv, a);
  return dqkv;
}

export const attentionRules: Rules<"scaledDotProductAttention" | "qkvAttention"> = {
  scaledDotProductAttention: (g, c) => sdpaBackward(g, c.saved, c.attrs, c.needsGrad),
  qkvAttention: (g, c) => [qkvBackward(g, c.saved, c.attrs)],
};

registerRules(attentionRules);
