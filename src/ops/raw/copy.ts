// The strided-copy kernel without autograd, and the copies built on it (permute, expand into a new
// tensor; a same-shape copy into an existing one). Layout front-ends, reductions and backward
// rules launch these; they sit below every front-end so src/ops/ has no cycle.
import { ShapeError, fmtShape } from "../../errors.ts";
import { gpu } from "../../gpu/context.ts";
import { Tensor } from "../../tensor.ts";
import { COPY_MAX_RANK, COPY_WORKGROUP, stridedCopyKernel } from "../../../shaders/layout.wgsl.ts";
import { broadcastStrides, grid1d, numel, stridesOf } from "../util.ts";

/** Copies the index space `shape` from src (strided) into dst (strided). No autograd. */
export function stridedCopy(
  op: string, src: Tensor, dst: Tensor, shape: readonly number[],
  srcStrides: readonly number[], dstStrides: readonly number[], srcOffset = 0, dstOffset = 0,
): void {
  if (shape.length > COPY_MAX_RANK) throw new ShapeError(op, `rank ${shape.length} is over the supported ${COPY_MAX_RANK}`);
  const n = numel(shape);
  if (n === 0) return;
  const p = new Array<number>(22).fill(0);
  p[0] = n; p[1] = shape.length; p[2] = srcOffset; p[3] = dstOffset;
  shape.forEach((d, i) => { p[4 + i] = d; p[10 + i] = srcStrides[i]!; p[16 + i] = dstStrides[i]!; });
  gpu().launcher.dispatch(stridedCopyKernel(src.dtype), [src.buffer(op), dst.buffer(op)], grid1d(n, COPY_WORKGROUP), p);
}

export function permuteRaw(op: string, x: Tensor, perm: readonly number[]): Tensor {
  const outShape = perm.map((p) => x.shape[p]!);
  const out = Tensor.empty(outShape, x.dtype, op);
  const st = stridesOf(x.shape);
  stridedCopy(op, x, out, outShape, perm.map((p) => st[p]!), stridesOf(outShape));
  return out;
}

export function expandRaw(op: string, x: Tensor, shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape, x.dtype, op);
  stridedCopy(op, x, out, shape, broadcastStrides(x.shape, shape), stridesOf(shape));
  return out;
}

/** dst := src in place (same shape and dtype), recorded in encoder order; no autograd. */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.shape.join() !== src.shape.join() || dst.dtype !== src.dtype) {
    throw new ShapeError("copyInto", `destination ${fmtShape(dst.shape)} ${dst.dtype} and source ${fmtShape(src.shape)} ${src.dtype} differ`);
  }
  if (src.buffer("copyInto") === dst.buffer("copyInto")) return;
  const bytes = Math.ceil((src.size * (src.dtype === "f16" ? 2 : 4)) / 4) * 4;
  gpu().launcher.copy(src.buffer("copyInto"), 0, dst.buffer("copyInto"), 0, bytes);
}
