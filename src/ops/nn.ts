// Fused neural-network ops: softmax / logSoftmax (optionally causal), layerNorm, embedding,
// crossEntropy and dropout. Each front-end validates its inputs, launches its kernels
// (shaders/softmax, layernorm, embedding, crossentropy, dropout) and records one autograd node;
// the backward rules (nnRules) run fused backward kernels, never the composite graph.
import type { Rule } from "../autograd/graph.ts";
import { record } from "../autograd/graph.ts";
import { DTypeError, ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { generatorFor } from "../random.ts";
import { isGradEnabled } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { NEG_INF_BITS, rowWorkgroup, softmaxBackwardKernel, softmaxKernel } from "../../shaders/softmax.wgsl.ts";
import { LN_COLUMN_WORKGROUP, layerNormBackwardKernel, layerNormKernel, layerNormParamGradKernel } from "../../shaders/layernorm.wgsl.ts";
import {
  EMB_WORKGROUP, SORT_BLOCK, bitonicLocalKernel, bitonicStepKernel, embeddingGradKernel, embeddingKernel,
  runBoundsKernel, sortKeysKernel,
} from "../../shaders/embedding.wgsl.ts";
import {
  CE_GRAD_WORKGROUP, crossEntropyFinishKernel, crossEntropyGradKernel, crossEntropyRowKernel,
} from "../../shaders/crossentropy.wgsl.ts";
import { DROPOUT_WORKGROUP, dropoutKernel } from "../../shaders/dropout.wgsl.ts";
import { fill, mapOp } from "./elementwise.ts";
import { permuteRaw } from "./layout.ts";
import { reduceRaw } from "./reduce.ts";
import { checkFloat, checkLive, grid1d, normAxis, numel, sameShape } from "./util.ts";

type F = "f32" | "f16";
const fdt = (t: Tensor): F => (t.dtype === "f16" ? "f16" : "f32");
/** One workgroup per row, folded into 2-D past the per-dimension limit. */
const rowGrid = (rows: number) => grid1d(rows, 1);

// ---- softmax / logSoftmax --------------------------------------------------------------------

export interface SoftmaxOptions {
  /**
   * Mask positions j > i of the last two axes (attention scores [..., T, T]; needs the last axis
   * and a square pair): softmax gives exactly 0 there, logSoftmax -Infinity, and both gradients 0.
   */
  causal?: boolean;
}

/** Softmax (or log-softmax) over the last axis of a contiguous tensor. No autograd. */
function softmaxRaw(op: string, x: Tensor, log: boolean, causal: boolean): Tensor {
  const C = x.shape[x.ndim - 1] ?? 1;
  const rows = C === 0 ? 0 : x.size / C;
  const out = Tensor.empty(x.shape, x.dtype, op);
  if (rows === 0) return out;
  const wg = rowWorkgroup(C);
  const T = causal ? x.shape[x.ndim - 2]! : 0;
  gpu().launcher.dispatch(softmaxKernel(log, fdt(x), wg), [x.buffer(op), out.buffer(op)], rowGrid(rows), [rows, C, T, NEG_INF_BITS]);
  return out;
}

/** The permutation that moves `axis` last (null when it is last already). */
function lastAxisPerm(rank: number, axis: number): number[] | null {
  if (rank === 0 || axis === rank - 1) return null;
  return [...[...Array(rank).keys()].filter((i) => i !== axis), axis];
}

function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => { inv[p] = i; });
  return inv;
}

function softmaxOp(op: "softmax" | "logSoftmax", x: Tensor, axis: number, opts: SoftmaxOptions): Tensor {
  checkLive(op, x);
  checkFloat(op, x);
  const a = normAxis(op, axis, x.ndim);
  const causal = !!opts.causal;
  if (causal) {
    const T = x.shape[x.ndim - 2], Tk = x.shape[x.ndim - 1];
    if (x.ndim < 2 || a !== x.ndim - 1 || T !== Tk) {
      throw new ShapeError(op, `causal needs scores [..., T, T] normalised over the last axis; got ${fmtShape(x.shape)} with axis ${axis}`);
    }
  }
  const perm = lastAxisPerm(x.ndim, a);
  const xp = perm ? permuteRaw(op, x, perm) : x;
  const yp = softmaxRaw(op, xp, op === "logSoftmax", causal);
  const out = perm ? permuteRaw(op, yp, inversePerm(perm)) : yp;
  if (isGradEnabled()) record(op, [x], out, { axis: a, causal }, [yp]);
  if (perm) { xp.dispose(); yp.dispose(); }
  return out;
}

/** Softmax along `axis` (default the last), fused: one workgroup per row. */
export function softmax(x: Tensor, axis = -1, opts: SoftmaxOptions = {}): Tensor {
  return softmaxOp("softmax", x, axis, opts);
}

/** log(softmax(x)) along `axis`, computed as x − max − log Σ exp(x − max). */
export function logSoftmax(x: Tensor, axis = -1, opts: SoftmaxOptions = {}): Tensor {
  return softmaxOp("logSoftmax", x, axis, opts);
}

function softmaxBackward(op: "softmax" | "logSoftmax", g: Tensor, y: Tensor, axis: number, causal: boolean, rank: number): Tensor {
  const perm = lastAxisPerm(rank, axis);
  const gp = perm ? permuteRaw(op, g, perm) : g;
  const C = y.shape[y.ndim - 1] ?? 1;
  const rows = C === 0 ? 0 : y.size / C;
  const dxp = Tensor.empty(y.shape, y.dtype, op);
  if (rows > 0) {
    const T = causal ? y.shape[y.ndim - 2]! : 0;
    gpu().launcher.dispatch(softmaxBackwardKernel(op === "logSoftmax", fdt(y), rowWorkgroup(C)),
      [y.buffer(op), gp.buffer(op), dxp.buffer(op)], rowGrid(rows), [rows, C, T]);
  }
  if (!perm) return dxp;
  const dx = permuteRaw(op, dxp, inversePerm(perm));
  gp.dispose(); dxp.dispose();
  return dx;
}

// ---- layerNorm -------------------------------------------------------------------------------

/**
 * Layer normalisation over the last axis: (x − mean)/sqrt(var + eps)·weight + bias, with the
 * biased variance (torch.nn.functional.layer_norm over normalized_shape = [C]).
 */
export function layerNorm(x: Tensor, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  const op = "layerNorm";
  checkLive(op, x, weight, bias);
  checkFloat(op, x);
  if (x.ndim < 1) throw new ShapeError(op, `needs at least one axis to normalise, got a scalar ${fmtShape(x.shape)}`);
  const C = x.shape[x.ndim - 1]!;
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const) {
    if (!t) continue;
    if (t.ndim !== 1 || t.shape[0] !== C) {
      throw new ShapeError(op, `${name} has shape ${fmtShape(t.shape)}, expected [${C}] (the last axis of the input ${fmtShape(x.shape)})`);
    }
    if (t.dtype !== x.dtype) {
      throw new DTypeError(op, `${name} is ${t.dtype} ${fmtShape(t.shape)}, the input ${x.dtype} ${fmtShape(x.shape)}; convert one with .to("${x.dtype}")`);
    }
  }
  const rows = C === 0 ? 0 : x.size / C;
  const y = Tensor.empty(x.shape, x.dtype, op);
  const mean = Tensor.empty([rows], "f32", op), rstd = Tensor.empty([rows], "f32", op);
  const bufs = [x.buffer(op)];
  if (weight) bufs.push(weight.buffer(op));
  if (bias) bufs.push(bias.buffer(op));
  bufs.push(y.buffer(op), mean.buffer(op), rstd.buffer(op));
  if (rows > 0) {
    gpu().launcher.dispatch(layerNormKernel(fdt(x), !!weight, !!bias, rowWorkgroup(C)), bufs, rowGrid(rows), [rows, C, f32bits(eps)]);
  }
  if (isGradEnabled()) {
    record(op, [x, weight, bias], y, { eps, hasWeight: !!weight, hasBias: !!bias }, weight ? [x, mean, rstd, weight] : [x, mean, rstd]);
  }
  mean.dispose(); rstd.dispose();
  return y;
}

/** Sums a [chunks, C] f32 partial over its chunks into [C] of `dtype`, disposing the partial. */
function finishColumnSum(op: string, part: Tensor, C: number, dtype: F): Tensor {
  const summed = part.shape[0] === 1 ? part.alias([C]) : reduceRaw(op, part, [0], "sum", false);
  part.dispose();
  const flat = summed.alias([C]);
  summed.dispose();
  if (dtype === "f32") return flat;
  const cast = mapOp(op, "a", [flat], dtype);
  flat.dispose();
  return cast;
}

function layerNormBackward(g: Tensor, saved: readonly Tensor[], needsGrad: readonly boolean[]): (Tensor | null)[] {
  const op = "layerNorm";
  const [x, mean, rstd, w] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
  const C = x.shape[x.ndim - 1]!;
  const rows = C === 0 ? 0 : x.size / C;
  const dt = fdt(x);
  let dx: Tensor | null = null;
  if (needsGrad[0]) {
    dx = Tensor.empty(x.shape, x.dtype, op);
    const bufs = [g.buffer(op), x.buffer(op), mean.buffer(op), rstd.buffer(op)];
    if (w) bufs.push(w.buffer(op));
    bufs.push(dx.buffer(op));
    if (rows > 0) gpu().launcher.dispatch(layerNormBackwardKernel(dt, !!w, rowWorkgroup(C)), bufs, rowGrid(rows), [rows, C]);
  }
  let dw: Tensor | null = null, db: Tensor | null = null;
  if (needsGrad[1] || needsGrad[2]) {
    // Rows split into ~sqrt(rows) chunks: partial column sums in parallel, then a sum over chunks.
    const chunkRows = Math.max(32, Math.ceil(Math.sqrt(rows)));
    const chunks = Math.max(1, Math.ceil(rows / chunkRows));
    const pw = Tensor.empty([chunks, C], "f32", op), pb = Tensor.empty([chunks, C], "f32", op);
    gpu().launcher.dispatch(layerNormParamGradKernel(dt),
      [g.buffer(op), x.buffer(op), mean.buffer(op), rstd.buffer(op), pw.buffer(op), pb.buffer(op)],
      grid1d(chunks * C, LN_COLUMN_WORKGROUP), [rows, C, chunkRows, chunks]);
    if (needsGrad[1]) dw = finishColumnSum(op, pw, C, dt); else pw.dispose();
    if (needsGrad[2]) db = finishColumnSum(op, pb, C, dt); else pb.dispose();
  }
  return [dx, dw, db];
}

// ---- embedding -------------------------------------------------------------------------------

/**
 * Rows of `weight` [V, C] picked by i32 `indices` [...] → [..., C] (F.embedding(input, weight)).
 * An index outside [0, V) gives a zero row and no gradient (the GPU cannot raise without a
 * readback, and a clamped index would silently train the wrong row).
 */
export function embedding(indices: Tensor, weight: Tensor): Tensor {
  const op = "embedding";
  checkLive(op, indices, weight);
  if (indices.dtype !== "i32") {
    throw new DTypeError(op, `indices must be i32, got ${indices.dtype} of shape ${fmtShape(indices.shape)}; convert with .to("i32")`);
  }
  if (weight.ndim !== 2) {
    throw new ShapeError(op, `weight must be 2-D [V, C], got ${fmtShape(weight.shape)} (indices ${fmtShape(indices.shape)})`);
  }
  checkFloat(op, weight);
  const [V, C] = weight.shape as [number, number];
  const n = indices.size * C;
  const out = Tensor.empty([...indices.shape, C], weight.dtype, op);
  if (n > 0) {
    gpu().launcher.dispatch(embeddingKernel(fdt(weight)), [indices.buffer(op), weight.buffer(op), out.buffer(op)],
      grid1d(n, EMB_WORKGROUP), [n, C, V]);
  }
  if (isGradEnabled()) record(op, [null, weight], out, {}, [indices]);
  return out;
}

/** Sorts Npad (a power of two, >= SORT_BLOCK) (row, position) keys in place, ascending. */
function bitonicSort(op: string, keys: Tensor, npad: number): void {
  const l = gpu().launcher;
  const blocks = npad / SORT_BLOCK;
  const buf = [keys.buffer(op)];
  l.dispatch(bitonicLocalKernel(true), buf, grid1d(blocks, 1), [0, blocks]);
  for (let k = 2 * SORT_BLOCK; k <= npad; k *= 2) {
    for (let j = k / 2; j >= SORT_BLOCK; j /= 2) l.dispatch(bitonicStepKernel(), buf, grid1d(npad / 2, EMB_WORKGROUP), [npad / 2, k, j]);
    l.dispatch(bitonicLocalKernel(false), buf, grid1d(blocks, 1), [k, blocks]);
  }
}

/** dWeight [V, C]: dY rows summed per index, deterministically (see shaders/embedding.wgsl.ts). */
function embeddingBackward(g: Tensor, indices: Tensor, V: number, C: number): Tensor {
  const op = "embedding";
  const l = gpu().launcher;
  const N = indices.size;
  const dW = Tensor.empty([V, C], g.dtype, op);
  if (V * C === 0) return dW;
  const npad = Math.max(SORT_BLOCK, 2 ** Math.ceil(Math.log2(Math.max(N, 1))));
  const keys = Tensor.empty([npad * 2], "i32", op);
  const bounds = fill([2 * V], 0, "i32", op);
  if (N > 0) {
    l.dispatch(sortKeysKernel(), [indices.buffer(op), keys.buffer(op)], grid1d(npad, EMB_WORKGROUP), [N, npad, V]);
    bitonicSort(op, keys, npad);
    l.dispatch(runBoundsKernel(), [keys.buffer(op), bounds.buffer(op)], grid1d(N, EMB_WORKGROUP), [N, V]);
  }
  l.dispatch(embeddingGradKernel(fdt(g)), [keys.buffer(op), bounds.buffer(op), g.buffer(op), dW.buffer(op)],
    grid1d(V * C, EMB_WORKGROUP), [V * C, C]);
  keys.dispose(); bounds.dispose();
  return dW;
}

// ---- crossEntropy ----------------------------------------------------------------------------

export type Reduction = "mean" | "sum" | "none";

export interface CrossEntropyOptions {
  /** Target value whose rows count for nothing (loss 0, gradient 0, not in the mean). Default -100. */
  ignoreIndex?: number;
  /** "mean" over counted rows (0 when none count), "sum", or "none" (one loss per row). Default "mean". */
  reduction?: Reduction;
}

const REDUCTION_MODE: Record<Reduction, number> = { mean: 0, sum: 1, none: 2 };

/**
 * Cross-entropy of `logits` [..., C] (classes on the last axis, leading axes flattened to N rows)
 * against i32 class indices `targets` (shape [...] or [N]): log-softmax and NLL in one kernel.
 * A target outside [0, C) is treated like ignoreIndex (no readback can raise it). "none"
 * returns the targets' shape.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = "crossEntropy";
  checkLive(op, logits, targets);
  checkFloat(op, logits);
  if (targets.dtype !== "i32") {
    throw new DTypeError(op, `targets must be i32 class indices, got ${targets.dtype} of shape ${fmtShape(targets.shape)}; convert with .to("i32")`);
  }
  if (logits.ndim < 1) throw new ShapeError(op, `logits must have a class axis, got a scalar ${fmtShape(logits.shape)}`);
  const C = logits.shape[logits.ndim - 1]!;
  const lead = logits.shape.slice(0, -1);
  const N = numel(lead);
  if (!sameShape(targets.shape, lead) && !(targets.ndim === 1 && targets.shape[0] === N)) {
    throw new ShapeError(op, `targets ${fmtShape(targets.shape)} do not match logits ${fmtShape(logits.shape)}: ` +
      `expected ${fmtShape(lead)} or [${N}] (one class index per row)`);
  }
  const reduction = opts.reduction ?? "mean";
  if (!(reduction in REDUCTION_MODE)) throw new WebslopeError(`${op}: reduction must be "mean", "sum" or "none", got ${JSON.stringify(reduction)}`);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  if (!Number.isInteger(ignoreIndex)) throw new WebslopeError(`${op}: ignoreIndex must be an integer, got ${ignoreIndex}`);
  const l = gpu().launcher;
  const loss = Tensor.empty([N], "f32", op), lse = Tensor.empty([N], "f32", op);
  const ign = ignoreIndex >>> 0;
  if (N > 0) {
    l.dispatch(crossEntropyRowKernel(fdt(logits), rowWorkgroup(C)),
      [logits.buffer(op), targets.buffer(op), loss.buffer(op), lse.buffer(op)], rowGrid(N), [N, C, ign]);
  }
  let out: Tensor, count: Tensor | null = null;
  if (reduction === "none") {
    const shaped = loss.alias(targets.shape);
    out = logits.dtype === "f32" ? shaped : mapOp(op, "a", [shaped], logits.dtype);
    if (out !== shaped) shaped.dispose();
  } else {
    out = Tensor.empty([], logits.dtype, op);
    count = Tensor.empty([1], "f32", op);
    l.dispatch(crossEntropyFinishKernel(fdt(logits)), [loss.buffer(op), targets.buffer(op), out.buffer(op), count.buffer(op)],
      [1, 1, 1], [N, C, ign, reduction === "mean" ? 1 : 0]);
  }
  if (isGradEnabled()) {
    record(op, [logits, null], out, { ignoreIndex, reduction }, count ? [logits, targets, lse, count] : [logits, targets, lse]);
  }
  loss.dispose(); lse.dispose(); count?.dispose();
  return out;
}

function crossEntropyBackward(g: Tensor, saved: readonly Tensor[], ignoreIndex: number, reduction: Reduction): Tensor {
  const op = "crossEntropy";
  const [x, targets, lse, count] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
  const C = x.shape[x.ndim - 1]!;
  const dx = Tensor.empty(x.shape, x.dtype, op);
  const gd = g.dtype === x.dtype ? g : mapOp(op, "a", [g], x.dtype);
  if (x.size > 0) {
    gpu().launcher.dispatch(crossEntropyGradKernel(fdt(x)),
      [x.buffer(op), targets.buffer(op), lse.buffer(op), gd.buffer(op), (count ?? lse).buffer(op), dx.buffer(op)],
      grid1d(x.size, CE_GRAD_WORKGROUP), [x.size, C, ignoreIndex >>> 0, REDUCTION_MODE[reduction]]);
  }
  if (gd !== g) gd.dispose();
  return dx;
}

// ---- dropout ---------------------------------------------------------------------------------

export interface DropoutOptions {
  /** false (eval mode) returns the input unchanged. Default true. */
  training?: boolean;
  /** A fixed seed for this call's mask; without it the global generator (manualSeed) is used. */
  seed?: number;
}

function dropoutRaw(op: string, x: Tensor, p: number, key: readonly [number, number]): Tensor {
  const out = Tensor.empty(x.shape, x.dtype, op);
  if (x.size > 0) {
    gpu().launcher.dispatch(dropoutKernel(fdt(x)), [x.buffer(op), out.buffer(op)], grid1d(x.size, DROPOUT_WORKGROUP),
      [x.size, key[0], key[1], f32bits(p), f32bits(1 / (1 - p))]);
  }
  return out;
}

/**
 * Zeroes each element with probability p and scales the rest by 1/(1 − p). The mask comes from
 * a key drawn from the generator and is regenerated from that key in the backward (not stored).
 * p = 0 or training = false returns an alias of x (gradient passes through).
 */
export function dropout(x: Tensor, p: number, opts: DropoutOptions = {}): Tensor {
  const op = "dropout";
  checkLive(op, x);
  checkFloat(op, x);
  if (!(typeof p === "number" && p >= 0 && p < 1)) throw new WebslopeError(`${op}: p must be in [0, 1), got ${p} (input ${fmtShape(x.shape)})`);
  if (p === 0 || opts.training === false) {
    const out = x.alias();
    if (isGradEnabled()) record(op, [x], out, { p: 0, key: [0, 0] });
    return out;
  }
  const key = generatorFor(opts.seed).nextKey();
  const out = dropoutRaw(op, x, p, key);
  if (isGradEnabled()) record(op, [x], out, { p, key });
  return out;
}

// ---- backward rules --------------------------------------------------------------------------

type NnOp = "softmax" | "logSoftmax" | "layerNorm" | "embedding" | "crossEntropy" | "dropout";

export const nnRules: { [K in NnOp]: Rule<K> } = {
  softmax: (g, c) => [softmaxBackward("softmax", g, c.saved[0]!, c.attrs.axis, c.attrs.causal, c.inputShapes[0]!.length)],
  logSoftmax: (g, c) => [softmaxBackward("logSoftmax", g, c.saved[0]!, c.attrs.axis, c.attrs.causal, c.inputShapes[0]!.length)],
  layerNorm: (g, c) => layerNormBackward(g, c.saved, c.needsGrad),
  embedding: (g, c) => {
    const [V, C] = c.inputShapes[1] as [number, number];
    return [null, embeddingBackward(g, c.saved[0]!, V, C)];
  },
  crossEntropy: (g, c) => [crossEntropyBackward(g, c.saved, c.attrs.ignoreIndex, c.attrs.reduction), null],
  dropout: (g, c) => [c.attrs.p === 0 ? g : dropoutRaw("dropout", g, c.attrs.p, c.attrs.key)],
};
