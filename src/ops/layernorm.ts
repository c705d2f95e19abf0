// Fused layer normalisation over the last axis (shaders/layernorm.wgsl.ts): one workgroup per row
// forward and for dX; the weight and bias gradients as chunked column sums. Registers its rule.
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
import { reduceRaw } from "./raw/reduce.ts";
import { type F, checkFloat, checkLive, fdt, grid1d, rowGrid } from "./util.ts";

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
    record(op, [x, weight, bias], y, { eps, hasWeight: !!weight, hasBias: !!bias }, { x, mean, rstd, weight: weight ?? undefined });
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

export const layerNormRules: Rules<"layerNorm"> = {
  layerNorm: (g, c) => layerNormBackward(g, c.saved, c.needsGrad),
};

registerRules(layerNormRules);
