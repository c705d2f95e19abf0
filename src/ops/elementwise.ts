// Elementwise op front-ends (arithmetic with broadcasting and scalars, unary math, where,
// maskedFill, cast, comparisons) and their backward rules, declared next to what they save.
import type { Rule } from "../autograd/graph.ts";
import { record } from "../autograd/graph.ts";
import type { DType } from "../dtype.ts";
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { isGradEnabled, noGrad } from "../scope.ts";
import { Tensor, type TensorLike } from "../tensor.ts";
import { EW_MAX_RANK, EW_SHAPE, EW_STRIDES, EW_WORKGROUP, mapKernel } from "../../shaders/elementwise.wgsl.ts";
import { fillKernel, FILL_WORKGROUP } from "../../shaders/fill.wgsl.ts";
import { sumToShape } from "./reduce.ts";
import { broadcastShapes, broadcastStrides, checkFloat, checkLive, grid1d, sameShape } from "./util.ts";

function scalarBits(x: number, dtype: DType): number {
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

export function fullLike(t: Tensor, value: number): Tensor {
  return fill(t.shape, value, t.dtype, "fullLike");
}

// ---- front-ends ------------------------------------------------------------------------------

function binaryTensor(op: "add" | "sub" | "mul" | "div", expr: string, a: Tensor, b: Tensor): Tensor {
  checkLive(op, a, b);
  if (a.dtype !== b.dtype) {
    throw new DTypeError(op, `operands have different dtypes: ${a.dtype} ${fmtShape(a.shape)} and ${b.dtype} ${fmtShape(b.shape)}; convert one with .to("${a.dtype}")`);
  }
  const out = mapOp(op, expr, [a, b], a.dtype);
  if (isGradEnabled()) record(op, [a, b], out, {}, op === "mul" ? [a, b] : op === "div" ? [a, b] : []);
  return out;
}

function scalarOp(op: "addScalar" | "mulScalar" | "rdivScalar", expr: string, t: Tensor, s: number): Tensor {
  checkLive(op, t);
  const out = mapOp(op, expr, [t], t.dtype, s);
  if (isGradEnabled()) record(op, [t], out, { s }, op === "rdivScalar" ? [out] : []);
  return out;
}

function asPair(op: string, a: TensorLike, b: TensorLike): [Tensor | number, Tensor | number] {
  if (typeof a === "number" && typeof b === "number") throw new ShapeError(op, "at least one operand must be a Tensor");
  return [a, b];
}

export function add(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = asPair("add", a, b);
  if (typeof y === "number") return scalarOp("addScalar", "a + s", x as Tensor, y);
  if (typeof x === "number") return scalarOp("addScalar", "a + s", y, x);
  return binaryTensor("add", "a + b", x, y);
}

export function sub(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = asPair("sub", a, b);
  if (typeof y === "number") return scalarOp("addScalar", "a + s", x as Tensor, -y);
  if (typeof x === "number") { const n = neg(y); const r = scalarOp("addScalar", "a + s", n, x); n.dispose(); return r; }
  return binaryTensor("sub", "a - b", x, y);
}

export function mul(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = asPair("mul", a, b);
  if (typeof y === "number") return scalarOp("mulScalar", "a * s", x as Tensor, y);
  if (typeof x === "number") return scalarOp("mulScalar", "a * s", y, x);
  return binaryTensor("mul", "a * b", x, y);
}

export function div(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = asPair("div", a, b);
  if (typeof y === "number") {
    if ((x as Tensor).dtype === "i32") return binaryScalarI32Div(x as Tensor, y);
    return scalarOp("mulScalar", "a * s", x as Tensor, 1 / y);
  }
  if (typeof x === "number") return scalarOp("rdivScalar", "s / a", y, x);
  return binaryTensor("div", "a / b", x, y);
}

function binaryScalarI32Div(t: Tensor, s: number): Tensor {
  if (s === 0) throw new ShapeError("div", "integer division by zero");
  return mapOp("div", "a / s", [t], "i32", s);
}

type UnaryName = "neg" | "exp" | "log" | "sqrt" | "rsqrt" | "tanh" | "relu" | "gelu";
const UNARY: Record<UnaryName, { expr: string; save: "x" | "y" | "none"; float: boolean }> = {
  neg: { expr: "-a", save: "none", float: false },
  exp: { expr: "exp(a)", save: "y", float: true },
  log: { expr: "log(a)", save: "x", float: true },
  sqrt: { expr: "sqrt(a)", save: "y", float: true },
  rsqrt: { expr: "inverseSqrt(a)", save: "y", float: true },
  tanh: { expr: "safe_tanh(a)", save: "y", float: true },
  relu: { expr: "max(a, 0.0)", save: "x", float: true },
  gelu: { expr: "gelu_tanh(a)", save: "x", float: true },
};

function unary(op: UnaryName, x: Tensor): Tensor {
  checkLive(op, x);
  const spec = UNARY[op];
  if (spec.float) checkFloat(op, x);
  const out = mapOp(op, x.dtype === "i32" && op === "neg" ? "-a" : spec.expr, [x], x.dtype);
  if (isGradEnabled()) record(op, [x], out, {}, spec.save === "x" ? [x] : spec.save === "y" ? [out] : []);
  return out;
}

export const neg = (x: Tensor) => unary("neg", x);
export const exp = (x: Tensor) => unary("exp", x);
export const log = (x: Tensor) => unary("log", x);
export const sqrt = (x: Tensor) => unary("sqrt", x);
export const rsqrt = (x: Tensor) => unary("rsqrt", x);
export const tanh = (x: Tensor) => unary("tanh", x);
export const relu = (x: Tensor) => unary("relu", x);
/** GELU, the tanh approximation GPT-2 uses. */
export const gelu = (x: Tensor) => unary("gelu", x);

/** x ** p for a scalar p (negative bases with integer p keep their sign rules). */
export function pow(x: Tensor, p: number): Tensor {
  checkLive("pow", x);
  checkFloat("pow", x);
  const out = mapOp("pow", "spow(a, s)", [x], x.dtype, p);
  if (isGradEnabled()) record("pow", [x], out, { p }, [x]);
  return out;
}

/** cond ? a : b elementwise, with broadcasting; cond is nonzero = true (any dtype). */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const ta = typeof a === "number" ? fill([], a, typeof b === "number" ? "f32" : b.dtype, "where") : a;
  const tb = typeof b === "number" ? fill([], b, ta.dtype, "where") : b;
  checkLive("where", cond, ta, tb);
  if (ta.dtype !== tb.dtype) throw new DTypeError("where", `a is ${ta.dtype}, b is ${tb.dtype}; they must match`);
  const condExpr = cond.dtype === "i32" ? "a != 0" : "a != 0.0";
  const out = mapOp("where", `select(c, b, ${condExpr})`, [cond, ta, tb], ta.dtype);
  if (isGradEnabled()) record("where", [null, ta, tb], out, {}, [cond]);
  if (ta !== a) ta.dispose();
  if (tb !== b) tb.dispose();
  return out;
}

/** x with `value` where mask is nonzero (torch masked_fill). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  checkLive("maskedFill", x, mask);
  const shape = broadcastShapes("maskedFill", x.shape, mask.shape);
  if (!sameShape(shape, x.shape)) {
    throw new ShapeError("maskedFill", `mask ${fmtShape(mask.shape)} must broadcast to the input ${fmtShape(x.shape)}`);
  }
  const test = mask.dtype === "i32" ? "f32(b) != 0.0" : "b != 0.0";
  const out = mapOp("maskedFill", `select(a, s, ${test})`, [x, mask], x.dtype, value);
  if (isGradEnabled()) record("maskedFill", [x, null], out, { value }, [mask]);
  return out;
}

/** Converts to another dtype (f32 ↔ f16 ↔ i32; f32 → i32 truncates toward zero). */
export function cast(x: Tensor, dtype: DType): Tensor {
  checkLive("cast", x);
  if (dtype === "f16" || x.dtype === "f16") {
    if (!gpu().hasF16()) throw new DTypeError("cast", "f16 needs the adapter feature shader-f16, which this adapter lacks");
  }
  if (dtype === x.dtype) return x.alias();
  const out = mapOp("cast", "a", [x], dtype);
  if (isGradEnabled() && dtype !== "i32") record("cast", [x], out, { from: x.dtype });
  return out;
}

/** 1.0 where the comparison holds, else 0.0 (f32; no gradient). */
export function compare(kind: "eq" | "gt" | "lt", a: Tensor, b: TensorLike): Tensor {
  const sym = kind === "eq" ? "==" : kind === "gt" ? ">" : "<";
  if (typeof b === "number") return mapOp(kind, `select(0.0, 1.0, a ${sym} s)`, [a], "f32", b);
  if (a.dtype !== b.dtype) throw new DTypeError(kind, `operands have different dtypes: ${a.dtype} and ${b.dtype}`);
  return mapOp(kind, `select(0.0, 1.0, a ${sym} b)`, [a, b], "f32");
}

// ---- backward rules --------------------------------------------------------------------------

type EwOp = "add" | "sub" | "mul" | "div" | "addScalar" | "mulScalar" | "rdivScalar" | "pow" | UnaryName | "where" | "maskedFill" | "cast";

const reduceTo = (g: Tensor, shape: readonly number[]) => sumToShape(g, shape);

export const elementwiseRules: { [K in EwOp]: Rule<K> } = {
  add: (g, c) => [c.needsGrad[0] ? reduceTo(g, c.inputShapes[0]!) : null, c.needsGrad[1] ? reduceTo(g, c.inputShapes[1]!) : null],
  sub: (g, c) => {
    let gb: Tensor | null = null;
    if (c.needsGrad[1]) { const r = reduceTo(g, c.inputShapes[1]!); gb = mapOp("sub", "-a", [r], r.dtype); r.dispose(); }
    return [c.needsGrad[0] ? reduceTo(g, c.inputShapes[0]!) : null, gb];
  },
  mul: (g, c) => {
    const [a, b] = c.saved as [Tensor, Tensor];
    const ga = c.needsGrad[0] ? withReduce(mapOp("mul", "a * b", [g, b], g.dtype), c.inputShapes[0]!) : null;
    const gb = c.needsGrad[1] ? withReduce(mapOp("mul", "a * b", [g, a], g.dtype), c.inputShapes[1]!) : null;
    return [ga, gb];
  },
  div: (g, c) => {
    const [a, b] = c.saved as [Tensor, Tensor];
    const ga = c.needsGrad[0] ? withReduce(mapOp("div", "a / b", [g, b], g.dtype), c.inputShapes[0]!) : null;
    const gb = c.needsGrad[1] ? withReduce(mapOp("div", "-a * b / (c * c)", [g, a, b], g.dtype), c.inputShapes[1]!) : null;
    return [ga, gb];
  },
  addScalar: (g) => [g],
  mulScalar: (g, c) => [mapOp("mulScalar", "a * s", [g], g.dtype, c.attrs.s)],
  rdivScalar: (g, c) => [mapOp("rdivScalar", "-a * b * b / s", [g, c.saved[0]!], g.dtype, c.attrs.s)],
  pow: (g, c) => [mapOp("pow", "a * s * spow(b, s - 1.0)", [g, c.saved[0]!], g.dtype, c.attrs.p)],
  neg: (g) => [mapOp("neg", "-a", [g], g.dtype)],
  exp: (g, c) => [mapOp("exp", "a * b", [g, c.saved[0]!], g.dtype)],
  log: (g, c) => [mapOp("log", "a / b", [g, c.saved[0]!], g.dtype)],
  sqrt: (g, c) => [mapOp("sqrt", "a * 0.5 / b", [g, c.saved[0]!], g.dtype)],
  rsqrt: (g, c) => [mapOp("rsqrt", "a * -0.5 * b * b * b", [g, c.saved[0]!], g.dtype)],
  tanh: (g, c) => [mapOp("tanh", "a * (1.0 - b * b)", [g, c.saved[0]!], g.dtype)],
  relu: (g, c) => [mapOp("relu", "select(0.0, a, b > 0.0)", [g, c.saved[0]!], g.dtype)],
  gelu: (g, c) => [mapOp("gelu", "a * gelu_tanh_grad(b)", [g, c.saved[0]!], g.dtype)],
  where: (g, c) => {
    const cond = c.saved[0]!;
    const test = cond.dtype === "i32" ? "b != 0" : "b != 0.0";
    const ga = c.needsGrad[1] ? withReduce(mapOp("where", `select(0.0, a, ${test})`, [g, cond], g.dtype), c.inputShapes[1]!) : null;
    const gb = c.needsGrad[2] ? withReduce(mapOp("where", `select(a, 0.0, ${test})`, [g, cond], g.dtype), c.inputShapes[2]!) : null;
    return [null, ga, gb];
  },
  maskedFill: (g, c) => {
    const mask = c.saved[0]!;
    const test = mask.dtype === "i32" ? "f32(b) != 0.0" : "b != 0.0";
    return [mapOp("maskedFill", `select(a, 0.0, ${test})`, [g, mask], g.dtype), null];
  },
  cast: (g, c) => [noGrad(() => cast(g, c.attrs.from))],
};

/** Reduces a full-shape gradient to an input's (broadcast) shape, disposing the full one. */
function withReduce(full: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(full.shape, shape)) return full;
  const r = sumToShape(full, shape);
  full.dispose();
  return r;
}
