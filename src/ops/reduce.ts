// Reductions (sum, mean, max over any axes, with keepDim) and sumToShape, the reduction every
// broadcasting op's backward uses. Reduced axes that are not one contiguous block are first
// moved last with one strided copy, so any reduction is at most two dispatches.
import type { Rule } from "../autograd/graph.ts";
import { record } from "../autograd/graph.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { isGradEnabled } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { REDUCE_WORKGROUP, reduceKernel } from "../../shaders/reduce.wgsl.ts";
import { expandRaw, permuteRaw } from "./layout.ts";
import { mapOp } from "./elementwise.ts";
import { checkFloat, checkLive, grid1d, normAxes, numel } from "./util.ts";

function keptShape(shape: readonly number[], axes: number[], keepDim: boolean): number[] {
  return keepDim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Reduces `axes` (sorted, unique) without autograd; the result has the keepDim shape. */
export function reduceRaw(op: string, x: Tensor, axes: number[], kind: "sum" | "max", mean: boolean): Tensor {
  const shape = x.shape;
  const outShape = keptShape(shape, axes, true);
  if (axes.length === 0) return x.alias();
  const contiguousBlock = axes[axes.length - 1]! - axes[0]! + 1 === axes.length;
  let src = x;
  let outer: number, R: number, inner: number;
  if (contiguousBlock) {
    outer = numel(shape.slice(0, axes[0]));
    R = numel(axes.map((a) => shape[a]!));
    inner = numel(shape.slice(axes[axes.length - 1]! + 1));
  } else {
    const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
    src = permuteRaw(op, x, [...kept, ...axes]);
    outer = numel(kept.map((a) => shape[a]!));
    R = numel(axes.map((a) => shape[a]!));
    inner = 1;
  }
  const out = Tensor.empty(outShape, x.dtype, op);
  const contiguous = inner === 1;
  const kernel = reduceKernel(kind, x.dtype === "f16" ? "f16" : "f32", contiguous);
  const groups = contiguous ? grid1d(outer * REDUCE_WORKGROUP, REDUCE_WORKGROUP) : grid1d(outer * inner, REDUCE_WORKGROUP);
  gpu().launcher.dispatch(kernel, [src.buffer(op), out.buffer(op)], groups, [outer, R, inner, f32bits(mean ? 1 / R : 1)]);
  if (src !== x) src.dispose();
  return out;
}

function reduceOp(op: "sum" | "mean" | "max", x: Tensor, axesArg: number | number[] | undefined, keepDim: boolean): Tensor {
  checkLive(op, x);
  checkFloat(op, x);
  const axes = normAxes(op, axesArg, x.ndim);
  const full = reduceRaw(op, x, axes, op === "max" ? "max" : "sum", op === "mean");
  const out = keepDim ? full : reshapeAlias(full, keptShape(x.shape, axes, false));
  if (isGradEnabled()) record(op, [x], out, { axes, keepDim }, op === "max" ? [x, full] : []);
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

/** Sums a broadcast result back to `shape` (no autograd). Always returns a new tensor. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  const off = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) if (i < off || (shape[i - off] === 1 && g.shape[i] !== 1)) axes.push(i);
  if (axes.length === 0) return g.alias([...shape]);
  const r = reduceRaw("sumToShape", g, axes, "sum", false);
  const out = r.alias([...shape]);
  r.dispose();
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

export const reduceRules: { [K in RedOp]: Rule<K> } = {
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
    const [x, m] = c.saved as [Tensor, Tensor];
    const axes = c.attrs.axes;
    const mask = mapOp("max", "select(0.0, 1.0, a == b)", [x, m], x.dtype);
    const count = reduceRaw("max", mask, axes, "sum", false);
    const gk = g.alias(m.shape);
    const out = mapOp("max", "a * b / c", [mask, gk, count], x.dtype);
    mask.dispose(); count.dispose(); gk.dispose();
    return [out];
  },
};
