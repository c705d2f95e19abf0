// Reduction front-ends (sum, mean, max over any axes, with keepDim; argmax along one axis or the
// flattened tensor), their Tensor methods and backward rules, registered with the tape when this module loads. The kernels and sumToShape are
// in ./raw/reduce.ts.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { isGradEnabled } from "../scope.ts";
import { gpu } from "../gpu/context.ts";
import { defineTensorMethods, Tensor } from "../tensor.ts";
import { argmaxRowsKernel } from "../../shaders/reduce.wgsl.ts";
import { expandRaw, permuteRaw } from "./raw/copy.ts";
import { mapOp } from "./raw/map.ts";
import { keptShape, reduceRaw } from "./raw/reduce.ts";
import { ShapeError, fmtShape } from "../errors.ts";
import { checkFloat, checkLive, fdt, normAxes, numel, rowGrid } from "./util.ts";

declare module "../autograd/ops.ts" {
  interface OpSaved {
    /** The input and its keepDim maximum. */
    max: { x: Tensor; m: Tensor };
  }
}

function reduceOp(op: "sum" | "mean" | "max", x: Tensor, axesArg: number | number[] | undefined, keepDim: boolean): Tensor {
  checkLive(op, x);
  checkFloat(op, x);
  const named = normAxes(op, axesArg, x.ndim);
  const axes = x.ndim === 0 ? [] : named; // a scalar's axis 0 (or -1) reduces nothing, as in torch
  if (op === "max" && axes.some((a) => x.shape[a] === 0) && numel(x.shape.filter((_, i) => !axes.includes(i))) > 0) {
    throw new ShapeError(op, `max over an empty axis of ${fmtShape(x.shape)} has no value (there is no identity for max); ` +
      "reduce over non-empty axes, or check the size first");
  }
  if (typeof keepDim !== "boolean") throw new ShapeError(op, `keepDim must be true or false, got ${String(keepDim)}`);
  const full = reduceRaw(op, x, axes, op === "max" ? "max" : "sum", op === "mean");
  const out = keepDim ? full : reshapeAlias(full, keptShape(x.shape, axes, false));
  if (isGradEnabled()) {
    if (op === "max") record(op, [x], out, { axes, keepDim }, { x, m: full });
    else record(op, [x], out, { axes, keepDim });
  }
  if (out !== full) full.dispose();
  return out;
}

function reshapeAlias(t: Tensor, shape: number[]): Tensor {
  return t.alias(shape);
}

/** Sum over `axes` (all if omitted). */
export const sum = (x: Tensor, axes?: number | number[], keepDim = false) => reduceOp("sum", x, axes, keepDim);
/** Mean over `axes` (all if omitted). */
export const mean = (x: Tensor, axes?: number | number[], keepDim = false) => reduceOp("mean", x, axes, keepDim);
/** Max over `axes` (all if omitted); its gradient is shared equally among tied maxima (torch.amax). */
export const max = (x: Tensor, axes?: number | number[], keepDim = false) => reduceOp("max", x, axes, keepDim);

/**
 * Indices (i32) of the maximum along `axis` (torch.argmax): the first one among ties; with no axis,
 * the index into the flattened tensor. Not differentiable. One workgroup per row (axis moved last).
 */
export function argmax(x: Tensor, axis?: number, keepDim = false): Tensor {
  const op = "argmax";
  checkLive(op, x);
  checkFloat(op, x);
  if (typeof keepDim !== "boolean") throw new ShapeError(op, `keepDim must be true or false, got ${String(keepDim)}`);
  if (axis !== undefined && (!Number.isInteger(axis) || x.ndim === 0)) {
    throw new ShapeError(op, `axis must be an integer axis of ${fmtShape(x.shape)}, got ${String(axis)}; leave it out for the flattened index`);
  }
  const a = axis === undefined ? -1 : normAxes(op, axis, x.ndim)[0]!;
  const C = axis === undefined ? x.size : x.shape[a]!;
  if (C === 0) throw new ShapeError(op, `argmax over an empty axis of ${fmtShape(x.shape)} has no answer; check the size first`);
  const outShape = axis === undefined ? (keepDim ? x.shape.map(() => 1) : []) : keptShape(x.shape, [a], keepDim);
  const last = axis === undefined || a === x.ndim - 1;
  const src = last ? x : permuteRaw(op, x, [...[...Array(x.ndim).keys()].filter((i) => i !== a), a]);
  const rows = x.size / C;
  const out = Tensor.empty(outShape, "i32", op);
  gpu().launcher.dispatch(argmaxRowsKernel(fdt(x)), [src.buffer(op), out.buffer(op)], rowGrid(rows), [rows, C]);
  if (src !== x) src.dispose();
  return out;
}

type RedOp = "sum" | "mean" | "max";

/** g (of the output shape) broadcast back over the input shape. */
function spread(g: Tensor, inShape: readonly number[], axes: number[]): Tensor {
  const kd = g.alias(keptShape(inShape, axes, true));
  const out = expandRaw("reduceBackward", kd, inShape);
  kd.dispose();
  return out;
}

export const reduceRules: Rules<RedOp> = {
  sum: (g, c) => [spread(g, c.inputShapes[0]!, c.attrs.axes)],
  mean: (g, c) => {
    const inShape = c.inputShapes[0]!;
    const R = numel(c.attrs.axes.map((a) => inShape[a]!));
    const s = spread(g, inShape, c.attrs.axes);
    const out = mapOp("mean", "a * s", [s], s.dtype, 1 / R);
    s.dispose();
    return [out];
  },
  max: (g, c) => {
    const { x, m } = c.saved;
    const axes = c.attrs.axes;
    const mask = mapOp("max", "select(0.0, 1.0, a == b)", [x, m], x.dtype);
    const count = reduceRaw("max", mask, axes, "sum", false);
    const gk = g.alias(m.shape);
    const out = mapOp("max", "a * b / c", [mask, gk, count], x.dtype);
    mask.dispose(); count.dispose(); gk.dispose();
    return [out];
  },
};

registerRules(reduceRules);

declare module "../tensor.ts" {
  interface Tensor {
    sum(axes?: number | number[], keepDim?: boolean): Tensor;
    mean(axes?: number | number[], keepDim?: boolean): Tensor;
    max(axes?: number | number[], keepDim?: boolean): Tensor;
    argmax(axis?: number, keepDim?: boolean): Tensor;
  }
}

defineTensorMethods({
  sum(axes, keepDim = false) { return sum(this, axes, keepDim); },
  mean(axes, keepDim = false) { return mean(this, axes, keepDim); },
  max(axes, keepDim = false) { return max(this, axes, keepDim); },
  argmax(axis, keepDim = false) { return argmax(this, axis, keepDim); },
});
