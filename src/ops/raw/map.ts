// The map and fill kernels without autograd: out = expr(a, b, c) over broadcast inputs, the same
// in place, and constant fills. The elementwise front-ends (../elementwise.ts), the backward rules
// and the optimizers launch these; they sit below every front-end so src/ops/ has no cycle.
import type { DType } from "../../dtype.ts";
import { DTypeError, ShapeError } from "../../errors.ts";
import { gpu } from "../../gpu/context.ts";
import { f32bits } from "../../gpu/launcher.ts";
import { Tensor } from "../../tensor.ts";
import { EW_MAX_RANK, EW_SHAPE, EW_STRIDES, EW_WORKGROUP, mapKernel } from "../../../shaders/elementwise.wgsl.ts";
import { fillKernel, FILL_WORKGROUP } from "../../../shaders/fill.wgsl.ts";
import { broadcastShapes, broadcastStrides, grid1d, sameShape } from "../util.ts";

/**
 * The epilogue activations as map expressions, for every op that applies one or takes its
 * gradient (relu, gelu, matmul's and sparseLinear's fused activation): `forward` of a, and `grad`
 * = a·act'(b) with a the upstream gradient and b the pre-activation.
 */
export const ACTIVATION_MAP = {
  relu: { forward: "max(a, 0.0)", grad: "select(0.0, a, b > 0.0)" },
  gelu: { forward: "gelu_tanh(a)", grad: "a * gelu_tanh_grad(b)" },
} as const;

export function scalarBits(x: number, dtype: DType): number {
  return dtype === "i32" ? (Math.trunc(x) | 0) >>> 0 : f32bits(x);
}

/**
 * Launches a map kernel: out = expr(a, b, c) over the broadcast shape of the inputs. No autograd:
 * front-ends record, backward rules call this directly.
 */
export function mapOp(op: string, expr: string, inputs: Tensor[], outDtype: DType, s = 0, s2 = 0): Tensor {
  const g = gpu();
  const shape = inputs.length > 1 ? broadcastShapes(op, ...inputs.map((t) => t.shape)) : [...inputs[0]!.shape];
  if (shape.length > EW_MAX_RANK) throw new ShapeError(op, `rank ${shape.length} is over the supported ${EW_MAX_RANK}`);
  const bufs = inputs.map((t) => t.buffer(op));
  const out = Tensor.empty(shape, outDtype, op);
  const n = out.size;
  const broadcast = inputs.some((t) => !sameShape(t.shape, shape));
  const ct: DType = inputs.every((t) => t.dtype === "i32") ? "i32" : "f32";
  const params = new Array<number>(EW_STRIDES + 3 * EW_MAX_RANK).fill(0);
  params[0] = n; params[1] = shape.length; params[2] = scalarBits(s, ct); params[3] = scalarBits(s2, ct);
  if (broadcast) {
    shape.forEach((d, i) => { params[EW_SHAPE + i] = d; });
    inputs.forEach((t, k) => broadcastStrides(t.shape, shape).forEach((st, i) => { params[EW_STRIDES + k * EW_MAX_RANK + i] = st; }));
  }
  const kernel = mapKernel(expr, inputs.map((t) => t.dtype), outDtype, broadcast, false);
  g.launcher.dispatch(kernel, [out.buffer(op), ...bufs], grid1d(n, EW_WORKGROUP), params);
  return out;
}

/** dst = expr(dst, src) in place, src broadcast to dst's shape. Used for .grad accumulation and optimizers. */
export function mapInPlace(op: string, expr: string, dst: Tensor, srcs: Tensor[], s = 0, s2 = 0): void {
  const shape = dst.shape;
  const all = [dst, ...srcs];
  const broadcast = srcs.some((t) => !sameShape(t.shape, shape));
  if (broadcast) broadcastShapes(op, ...all.map((t) => t.shape));
  const ct: DType = all.every((t) => t.dtype === "i32") ? "i32" : "f32";
  const params = new Array<number>(EW_STRIDES + 3 * EW_MAX_RANK).fill(0);
  params[0] = dst.size; params[1] = shape.length; params[2] = scalarBits(s, ct); params[3] = scalarBits(s2, ct);
  if (broadcast) {
    shape.forEach((d, i) => { params[EW_SHAPE + i] = d; });
    all.forEach((t, k) => broadcastStrides(t.shape, shape).forEach((st, i) => { params[EW_STRIDES + k * EW_MAX_RANK + i] = st; }));
  }
  const kernel = mapKernel(expr, all.map((t) => t.dtype), dst.dtype, broadcast, true);
  gpu().launcher.dispatch(kernel, [dst.buffer(op), ...srcs.map((t) => t.buffer(op))], grid1d(dst.size, EW_WORKGROUP), params);
}

/** dst += src (same dtype; src broadcast to dst). */
export function addInPlace(dst: Tensor, src: Tensor): void {
  mapInPlace("addInPlace", "a + b", dst, [src]);
}

/** Fills a new tensor with a constant. */
export function fill(shape: readonly number[], value: number, dtype: DType = "f32", op = "full"): Tensor {
  const out = Tensor.empty(shape, dtype, op);
  if (dtype === "f16" && !gpu().hasF16()) throw new DTypeError(op, "f16 needs the adapter feature shader-f16, which this adapter lacks");
  gpu().launcher.dispatch(fillKernel(dtype, false), [out.buffer(op)], grid1d(out.size, FILL_WORKGROUP), [out.size, scalarBits(value, dtype === "i32" ? "i32" : "f32")]);
  return out;
}
