// The reduction kernels without autograd: any axes of a tensor reduced (sum, max, sum of squares)
// as a short chain of partial passes (shaders/reduce.wgsl.ts), each spread over enough workgroups
// to fill the GPU, and sumToShape, the reduction every broadcasting op's backward uses. Reduced
// axes that are not one contiguous block are first moved last with one strided copy.
import { gpu } from "../../gpu/context.ts";
import { f32bits } from "../../gpu/launcher.ts";
import { Tensor } from "../../tensor.ts";
import {
  COLUMNS_MAX_ITERS, REDUCE_WORKGROUP, ROWS_MAX_ITERS, SMALL_R, type ReduceOp, columnStrip, reduceColumnsKernel, reduceRowsKernel,
  reduceSmallKernel,
} from "../../../shaders/reduce.wgsl.ts";
import { permuteRaw } from "./copy.ts";
import { mapOp } from "./map.ts";
import { grid1d, numel } from "../util.ts";

export function keptShape(shape: readonly number[], axes: number[], keepDim: boolean): number[] {
  return keepDim ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/** Workgroups a first pass aims for: enough to fill a large GPU, few enough to keep partials small. */
const TARGET_GROUPS = 1024;
/** Below this many (vector) elements a single column pass costs less than a second dispatch. */
const SMALL_PASS = 1 << 17;

/**
 * Reduces src seen as [outer, R, inner] over R into `out` (outer·inner elements of out's dtype),
 * chaining passes of f32 partials until one pass finishes it; `scale` multiplies sums (mean).
 */
export function reduceInto(op: string, src: Tensor, outer: number, R: number, inner: number, kind: ReduceOp, scale: number, out: Tensor): void {
  const l = gpu().launcher;
  const sdt = src.dtype === "f16" ? "f16" : "f32", odt = out.dtype === "f16" ? "f16" : "f32";
  const next: ReduceOp = kind === "sumsq" ? "sum" : kind;
  if (outer * inner === 0) return;
  if (R <= SMALL_R) {
    l.dispatch(reduceSmallKernel(kind, sdt, odt), [src.buffer(op), out.buffer(op)], grid1d(outer * inner, REDUCE_WORKGROUP),
      [outer, R, inner, f32bits(scale)]);
    return;
  }
  if (inner === 1) {
    const maxChunk = REDUCE_WORKGROUP * ROWS_MAX_ITERS;
    // Split a row only when the rows alone do not fill the GPU and the row is long.
    let chunks = R <= maxChunk && outer >= TARGET_GROUPS / 4 ? 1
      : Math.max(Math.ceil(R / maxChunk), Math.min(Math.ceil(TARGET_GROUPS / outer), Math.ceil(R / (4 * REDUCE_WORKGROUP))));
    const chunkLen = Math.ceil(R / chunks);
    chunks = Math.ceil(R / chunkLen);
    const dst = chunks === 1 ? out : Tensor.empty([outer * chunks], "f32", op);
    l.dispatch(reduceRowsKernel(kind, sdt, chunks === 1 ? odt : "f32"), [src.buffer(op), dst.buffer(op)], grid1d(outer * chunks, 1),
      [outer, R, f32bits(chunks === 1 ? scale : 1), chunkLen, chunks]);
    if (dst !== out) { reduceInto(op, dst, outer, chunks, 1, next, scale, out); dst.dispose(); }
    return;
  }
  const vec = inner % 4 === 0;
  const innerV = vec ? inner / 4 : inner;
  const strip = columnStrip(innerV), ry = REDUCE_WORKGROUP / strip;
  const strips = Math.ceil(innerV / strip);
  const maxRows = ry * COLUMNS_MAX_ITERS;
  let chunks = 1;
  // One pass when it can (R ≤ maxRows) and either fills the GPU or is too small to matter.
  if (R > maxRows || (outer * strips < TARGET_GROUPS / 4 && outer * R * innerV > SMALL_PASS)) {
    // At least 8 rows per invocation (less is all overhead), at most COLUMNS_MAX_ITERS; at most
    // maxRows chunks when that allows, so the partials finish in one more pass.
    const want = Math.min(Math.ceil(TARGET_GROUPS / (outer * strips)), Math.ceil(R / (8 * ry)), maxRows);
    chunks = Math.max(Math.ceil(R / maxRows), want);
  }
  const rowsPerChunk = Math.ceil(R / chunks);
  chunks = Math.ceil(R / rowsPerChunk);
  const dst = chunks === 1 ? out : Tensor.empty([outer * chunks * inner], "f32", op);
  const [gy, gz] = grid1d(outer * chunks, 1);
  l.dispatch(reduceColumnsKernel(kind, sdt, chunks === 1 ? odt : "f32", vec, strip), [src.buffer(op), dst.buffer(op)],
    [strips, gy, gz], [outer, R, innerV, f32bits(chunks === 1 ? scale : 1), rowsPerChunk, chunks]);
  if (dst !== out) { reduceInto(op, dst, outer, chunks, inner, next, scale, out); dst.dispose(); }
}

/** Reduces `axes` (sorted, unique) without autograd; the result has the keepDim shape. */
export function reduceRaw(op: string, x: Tensor, axes: number[], kind: ReduceOp, mean: boolean): Tensor {
  const shape = x.shape;
  const outShape = keptShape(shape, axes, true);
  if (axes.length === 0) return kind === "sumsq" ? mapOp(op, "a * a", [x], x.dtype) : x.alias();
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
  reduceInto(op, src, outer, R, inner, kind, mean ? 1 / R : 1, out);
  if (src !== x) src.dispose();
  return out;
}

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
