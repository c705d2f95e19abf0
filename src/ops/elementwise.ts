// Elementwise op front-ends (arithmetic with broadcasting and scalars, unary math, where,
// maskedFill, cast, comparisons), the Tensor methods that forward to them, and their backward
// rules, registered with the tape when this module loads. What each op saves for its backward is
// declared next to its forward. The kernels themselves are launched through ./raw/map.ts.
import { record } from "../autograd/graph.ts";
import { registerRules, registerTapeKernels, type Rules } from "../autograd/rules.ts";
import type { DType } from "../dtype.ts";
import { DTypeError, ShapeError, ValueError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { checkDType } from "../validate.ts";
import { isGradEnabled, noGrad } from "../scope.ts";
import { defineTensorMethods, Tensor, type TensorLike } from "../tensor.ts";
import { ACTIVATION_MAP, addInPlace, fill, mapOp } from "./raw/map.ts";
import { sumToShape } from "./raw/reduce.ts";
import { broadcastShapes, checkFloat, checkLive, sameShape } from "./util.ts";

// ---- front-ends ------------------------------------------------------------------------------

declare module "../autograd/ops.ts" {
  interface OpSaved {
    mul: { a: Tensor; b: Tensor };
    div: { a: Tensor; b: Tensor };
    rdivScalar: { y: Tensor };
  }
}

function binaryTensor(op: "add" | "sub" | "mul" | "div", expr: string, a: Tensor, b: Tensor): Tensor {
  checkLive(op, a, b);
  if (a.dtype !== b.dtype) {
    throw new DTypeError(op, `operands have different dtypes: ${a.dtype} ${fmtShape(a.shape)} and ${b.dtype} ${fmtShape(b.shape)}; convert one with .to("${a.dtype}")`);
  }
  const out = mapOp(op, expr, [a, b], a.dtype);
  if (isGradEnabled()) {
    if (op === "mul" || op === "div") record(op, [a, b], out, {}, { a, b });
    else record(op, [a, b], out, {});
  }
  return out;
}

function scalarOp(op: "addScalar" | "mulScalar" | "rdivScalar", expr: string, t: Tensor, s: number): Tensor {
  checkLive(op, t);
  const out = mapOp(op, expr, [t], t.dtype, s);
  if (isGradEnabled()) {
    if (op === "rdivScalar") record(op, [t], out, { s }, { y: out });
    else record(op, [t], out, { s });
  }
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
const UNARY: Record<UnaryName, { expr: string; float: boolean }> = {
  neg: { expr: "-a", float: false },
  exp: { expr: "exp(a)", float: true },
  log: { expr: "log(a)", float: true },
  sqrt: { expr: "sqrt(a)", float: true },
  rsqrt: { expr: "inverseSqrt(a)", float: true },
  tanh: { expr: "safe_tanh(a)", float: true },
  relu: { expr: ACTIVATION_MAP.relu.forward, float: true },
  gelu: { expr: ACTIVATION_MAP.gelu.forward, float: true },
};

declare module "../autograd/ops.ts" {
  interface OpSaved {
    exp: { y: Tensor };
    log: { x: Tensor };
    sqrt: { y: Tensor };
    rsqrt: { y: Tensor };
    tanh: { y: Tensor };
    relu: { x: Tensor };
    gelu: { x: Tensor };
  }
}

function unary(op: UnaryName, x: Tensor): Tensor {
  checkLive(op, x);
  const spec = UNARY[op];
  if (spec.float) checkFloat(op, x);
  const out = mapOp(op, x.dtype === "i32" && op === "neg" ? "-a" : spec.expr, [x], x.dtype);
  if (isGradEnabled()) {
    if (op === "neg") record(op, [x], out, {});
    else if (op === "log" || op === "relu" || op === "gelu") record(op, [x], out, {}, { x });
    else record(op, [x], out, {}, { y: out });
  }
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

declare module "../autograd/ops.ts" {
  interface OpSaved {
    pow: { x: Tensor };
    where: { cond: Tensor };
    maskedFill: { mask: Tensor };
  }
}

/** x ** p for a scalar p (negative bases with integer p keep their sign rules). */
export function pow(x: Tensor, p: number): Tensor {
  checkLive("pow", x);
  checkFloat("pow", x);
  if (typeof p !== "number") throw new ValueError("pow", `the exponent must be a number, got ${typeof p}`);
  const out = mapOp("pow", "spow(a, s)", [x], x.dtype, p);
  if (isGradEnabled()) record("pow", [x], out, { p }, { x });
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
  if (isGradEnabled()) record("where", [null, ta, tb], out, {}, { cond });
  if (ta !== a) ta.dispose();
  if (tb !== b) tb.dispose();
  return out;
}

/** x with `value` where mask is nonzero (torch masked_fill). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  checkLive("maskedFill", x, mask);
  if (typeof value !== "number") throw new ValueError("maskedFill", `value must be a number, got ${typeof value}`);
  const shape = broadcastShapes("maskedFill", x.shape, mask.shape);
  if (!sameShape(shape, x.shape)) {
    throw new ShapeError("maskedFill", `mask ${fmtShape(mask.shape)} must broadcast to the input ${fmtShape(x.shape)}`);
  }
  const test = mask.dtype === "i32" ? "f32(b) != 0.0" : "b != 0.0";
  const out = mapOp("maskedFill", `select(a, s, ${test})`, [x, mask], x.dtype, value);
  if (isGradEnabled()) record("maskedFill", [x, null], out, { value }, { mask });
  return out;
}

/** Converts to another dtype (f32 ↔ f16 ↔ i32; f32 → i32 truncates toward zero). */
export function cast(x: Tensor, dtype: DType): Tensor {
  checkLive("cast", x);
  checkDType("cast", dtype);
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

export const elementwiseRules: Rules<EwOp> = {
  add: (g, c) => [c.needsGrad[0] ? reduceTo(g, c.inputShapes[0]!) : null, c.needsGrad[1] ? reduceTo(g, c.inputShapes[1]!) : null],
  sub: (g, c) => {
    let gb: Tensor | null = null;
    if (c.needsGrad[1]) { const r = reduceTo(g, c.inputShapes[1]!); gb = mapOp("sub", "-a", [r], r.dtype); r.dispose(); }
    return [c.needsGrad[0] ? reduceTo(g, c.inputShapes[0]!) : null, gb];
  },
  mul: (g, c) => {
    const { a, b } = c.saved;
    const ga = c.needsGrad[0] ? withReduce(mapOp("mul", "a * b", [g, b], g.dtype), c.inputShapes[0]!) : null;
    const gb = c.needsGrad[1] ? withReduce(mapOp("mul", "a * b", [g, a], g.dtype), c.inputShapes[1]!) : null;
    return [ga, gb];
  },
  div: (g, c) => {
    const { a, b } = c.saved;
    const ga = c.needsGrad[0] ? withReduce(mapOp("div", "a / b", [g, b], g.dtype), c.inputShapes[0]!) : null;
    const gb = c.needsGrad[1] ? withReduce(mapOp("div", "-a * b / (c * c)", [g, a, b], g.dtype), c.inputShapes[1]!) : null;
    return [ga, gb];
  },
  addScalar: (g) => [g],
  mulScalar: (g, c) => [mapOp("mulScalar", "a * s", [g], g.dtype, c.attrs.s)],
  rdivScalar: (g, c) => [mapOp("rdivScalar", "-a * b * b / s", [g, c.saved.y], g.dtype, c.attrs.s)],
  pow: (g, c) => [mapOp("pow", "a * s * spow(b, s - 1.0)", [g, c.saved.x], g.dtype, c.attrs.p)],
  neg: (g) => [mapOp("neg", "-a", [g], g.dtype)],
  exp: (g, c) => [mapOp("exp", "a * b", [g, c.saved.y], g.dtype)],
  log: (g, c) => [mapOp("log", "a / b", [g, c.saved.x], g.dtype)],
  sqrt: (g, c) => [mapOp("sqrt", "a * 0.5 / b", [g, c.saved.y], g.dtype)],
  rsqrt: (g, c) => [mapOp("rsqrt", "a * -0.5 * b * b * b", [g, c.saved.y], g.dtype)],
  tanh: (g, c) => [mapOp("tanh", "a * (1.0 - b * b)", [g, c.saved.y], g.dtype)],
  relu: (g, c) => [mapOp("relu", ACTIVATION_MAP.relu.grad, [g, c.saved.x], g.dtype)],
  gelu: (g, c) => [mapOp("gelu", ACTIVATION_MAP.gelu.grad, [g, c.saved.x], g.dtype)],
  where: (g, c) => {
    const { cond } = c.saved;
    const test = cond.dtype === "i32" ? "b != 0" : "b != 0.0";
    const ga = c.needsGrad[1] ? withReduce(mapOp("where", `select(0.0, a, ${test})`, [g, cond], g.dtype), c.inputShapes[1]!) : null;
    const gb = c.needsGrad[2] ? withReduce(mapOp("where", `select(a, 0.0, ${test})`, [g, cond], g.dtype), c.inputShapes[2]!) : null;
    return [null, ga, gb];
  },
  maskedFill: (g, c) => {
    const { mask } = c.saved;
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

registerRules(elementwiseRules);
registerTapeKernels({
  fillLike: (t, value) => fill(t.shape, value, t.dtype, "backward"),
  add: (a, b) => mapOp("backward", "a + b", [a, b], a.dtype),
  addInPlace,
});

// ---- Tensor methods --------------------------------------------------------------------------

declare module "../tensor.ts" {
  interface Tensor {
    add(o: TensorLike): Tensor;
    sub(o: TensorLike): Tensor;
    mul(o: TensorLike): Tensor;
    div(o: TensorLike): Tensor;
    neg(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    rsqrt(): Tensor;
    tanh(): Tensor;
    relu(): Tensor;
    gelu(): Tensor;
    pow(p: number): Tensor;
    maskedFill(mask: Tensor, value: number): Tensor;
    /** Converts to another dtype (cast). */
    to(dtype: DType): Tensor;
    eq(o: TensorLike): Tensor;
    gt(o: TensorLike): Tensor;
    lt(o: TensorLike): Tensor;
  }
}

defineTensorMethods({
  add(o) { return add(this, o); },
  sub(o) { return sub(this, o); },
  mul(o) { return mul(this, o); },
  div(o) { return div(this, o); },
  neg() { return neg(this); },
  exp() { return exp(this); },
  log() { return log(this); },
  sqrt() { return sqrt(this); },
  rsqrt() { return rsqrt(this); },
  tanh() { return tanh(this); },
  relu() { return relu(this); },
  gelu() { return gelu(this); },
  pow(p) { return pow(this, p); },
  maskedFill(mask, value) { return maskedFill(this, mask, value); },
  to(dtype) { return cast(this, dtype); },
  eq(o) { return compare("eq", this, o); },
  gt(o) { return compare("gt", this, o); },
  lt(o) { return compare("lt", this, o); },
});
