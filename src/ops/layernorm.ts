// Fused layer normalisation over the last axis (shaders/layernorm.wgsl.ts): one workgroup per row
// forward and for dX; the weight and bias gradients as chunked column sums. addLayerNorm folds
// the residual add before a norm into the same pass when no gradient is recorded (decoding).
// Registers its rule.
import { record } from "../autograd/graph.ts";
import type { OpSaved } from "../autograd/ops.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { isGradEnabled } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { rowWorkgroup } from "../../shaders/softmax.wgsl.ts";
import { LN_COLUMN_WORKGROUP, layerNormBackwardKernel, layerNormKernel, layerNormParamGradKernel } from "../../shaders/layernorm.wgsl.ts";
import { mapOp } from "./raw/map.ts";
import { reduceInto } from "./raw/reduce.ts";
import { add } from "./elementwise.ts";
import { type F, checkFloat, checkLive, fdt, grid1d, rowGrid, sameShape } from "./util.ts";

declare module "../autograd/ops.ts" {
  interface OpSaved {
    /** The input, its per-row mean and 1/std (f32), and the weight when there is one. */
    layerNorm: { x: Tensor; mean: Tensor; rstd: Tensor; weight?: Tensor };
  }
}

/**
 * Layer normalisation over the last axis: (x − mean)/sqrt(var + eps)·weight + bias, with the
 * biased variance (torch.nn.functional.layer_norm over normalized_shape = [C]).
 */
export function layerNorm(x: Tensor, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  const op = "layerNorm";
  checkArgs(op, x, weight, bias);
  const rows = rowsOf(x);
  const y = Tensor.empty(x.shape, x.dtype, op);
  const mean = Tensor.empty([rows], "f32", op), rstd = Tensor.empty([rows], "f32", op);
  const bufs = [x.buffer(op)];
  if (weight) bufs.push(weight.buffer(op));
  if (bias) bufs.push(bias.buffer(op));
  bufs.push(y.buffer(op), mean.buffer(op), rstd.buffer(op));
  if (rows > 0) {
    gpu().launcher.dispatch(layerNormKernel(fdt(x), !!weight, !!bias, rowWorkgroup(x.shape.at(-1)!), false), bufs, rowGrid(rows), [rows, x.shape.at(-1)!, f32bits(eps)]);
  }
  if (isGradEnabled()) {
    record(op, [x, weight, bias], y, { eps, hasWeight: !!weight, hasBias: !!bias }, { x, mean, rstd, weight: weight ?? undefined });
  }
  mean.dispose(); rstd.dispose();
  return y;
}

/**
 * [s, layerNorm(s)] with s = x + r (same shape): a residual add and the norm that follows it, in
 * one pass when nothing records gradients (decoding); with autograd on, the add and layerNorm
 * ops themselves, so the backward is theirs.
 */
export function addLayerNorm(x: Tensor, r: Tensor, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): [Tensor, Tensor] {
  const op = "addLayerNorm";
  checkArgs(op, x, weight, bias);
  checkLive(op, r);
  if (!sameShape(x.shape, r.shape) || r.dtype !== x.dtype) {
    throw new ShapeError(op, `x ${x.dtype} ${fmtShape(x.shape)} and the residual ${r.dtype} ${fmtShape(r.shape)} must match in shape and dtype`);
  }
  if (isGradEnabled() && [x, r, weight, bias].some((t) => t?.requiresGrad)) {
    const s = add(x, r);
    return [s, layerNorm(s, weight, bias, eps)];
  }
  const rows = rowsOf(x), C = x.shape.at(-1)!;
  const s = Tensor.empty(x.shape, x.dtype, op), y = Tensor.empty(x.shape, x.dtype, op);
  const mean = Tensor.empty([rows], "f32", op), rstd = Tensor.empty([rows], "f32", op);
  const bufs = [x.buffer(op), r.buffer(op)];
  if (weight) bufs.push(weight.buffer(op));
  if (bias) bufs.push(bias.buffer(op));
  bufs.push(y.buffer(op), mean.buffer(op), rstd.buffer(op), s.buffer(op));
  if (rows > 0) gpu().launcher.dispatch(layerNormKernel(fdt(x), !!weight, !!bias, rowWorkgroup(C), true), bufs, rowGrid(rows), [rows, C, f32bits(eps)]);
  mean.dispose(); rstd.dispose();
  return [s, y];
}

function rowsOf(x: Tensor): number {
  const C = x.shape[x.ndim - 1]!;
  return C === 0 ? 0 : x.size / C;
}

function checkArgs(op: string, x: Tensor, weight: Tensor | null, bias: Tensor | null): void {
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
}

/** Most rows one invocation of the parameter-gradient kernel sums (its loop bound). */
const LN_MAX_CHUNK_ROWS = 1024;

/**
 * Sums the [2, chunks, C] f32 partials over their chunks in one reduction and splits the [2, C]
 * result into dweight and dbias of `dtype` (two buffer copies); disposes the partials.
 */
function finishParamGrads(op: string, part: Tensor, chunks: number, C: number, dtype: F): [Tensor, Tensor] {
  // A copy needs 4-byte offsets: an odd C in f16 is summed in f32 and cast.
  const direct = dtype === "f32" || C % 2 === 0;
  const sumDt = direct ? dtype : "f32";
  const both = Tensor.empty([2, C], sumDt, op);
  reduceInto(op, part, 2, chunks, C, "sum", 1, both);
  part.dispose();
  const bytes = C * (sumDt === "f16" ? 2 : 4);
  const [w, b] = [0, 1].map((k) => {
    const t = Tensor.empty([C], sumDt, op);
    gpu().launcher.copy(both.buffer(op), k * bytes, t.buffer(op), 0, Math.ceil(bytes / 4) * 4);
    if (direct) return t;
    const cast = mapOp(op, "a", [t], dtype);
    t.dispose();
    return cast;
  }) as [Tensor, Tensor];
  both.dispose();
  return [w, b];
}

function layerNormBackward(g: Tensor, saved: OpSaved["layerNorm"], needsGrad: readonly boolean[]): (Tensor | null)[] {
  const op = "layerNorm";
  const { x, mean, rstd, weight: w } = saved;
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
    // Rows split into ≤ 256 chunks when the loop bound allows (so one more pass finishes them):
    // partial column sums of both gradients in parallel, then one reduction over the chunks.
    const chunkRows = Math.min(LN_MAX_CHUNK_ROWS, Math.max(16, Math.ceil(rows / 256)));
    const chunks = Math.max(1, Math.ceil(rows / chunkRows));
    const part = Tensor.empty([2, chunks, C], "f32", op);
    gpu().launcher.dispatch(layerNormParamGradKernel(dt),
      [g.buffer(op), x.buffer(op), mean.buffer(op), rstd.buffer(op), part.buffer(op)],
      grid1d(chunks * C, LN_COLUMN_WORKGROUP), [rows, C, chunkRows, chunks]);
    [dw, db] = finishParamGrads(op, part, chunks, C, dt);
    if (!needsGrad[1]) { dw.dispose(); dw = null; }
    if (!needsGrad[2]) { db.dispose(); db = null; }
  }
  return [dx, dw, db];
}

export const layerNormRules: Rules<"layerNorm"> = {
  layerNorm: (g, c) => layerNormBackward(g, c.saved, c.needsGrad),
};

registerRules(layerNormRules);
