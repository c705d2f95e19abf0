// Tensor creation: from JS data (tensor), constants (zeros, ones, full), ranges (arange) and
// seeded random numbers (randn, rand) generated on the GPU from the global generator's keys.
import { type DType, toHalfBits } from "../dtype.ts";
import { DTypeError, ShapeError, ValueError, fmtShape } from "../errors.ts";
import { checkDType, checkI32, checkNumber, checkOptional, checkShape } from "../validate.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { endOp } from "../gpu/profiler.ts";
import { generatorFor } from "../random.ts";
import { Tensor } from "../tensor.ts";
import { FILL_WORKGROUP, fillKernel, randomKernel } from "../../shaders/fill.wgsl.ts";
import { fill } from "./raw/map.ts";
import { grid1d, numel } from "./util.ts";

export interface CreateOptions {
  dtype?: DType;
  requiresGrad?: boolean;
}

export interface RandomOptions extends CreateOptions {
  /** A fixed seed for this tensor alone; without it the global generator (manualSeed) is used. */
  seed?: number;
}

type Nested = number | Nested[];

function flatten(data: Nested | ArrayLike<number>, shape: number[], out: number[], depth = 0): void {
  if (typeof data === "number") {
    if (depth < shape.length) throw new ShapeError("tensor", `ragged nested array: a number where axis ${depth} expects a list of ${shape[depth]}`);
    out.push(data); return;
  }
  const isList = Array.isArray(data) || ArrayBuffer.isView(data);
  if (!isList) {
    throw new ValueError("tensor", `data must be numbers, nested arrays of numbers or a typed array; found ${typeof data === "string" ? JSON.stringify(data) : typeof data} at depth ${depth}`);
  }
  if (depth >= 32) throw new ShapeError("tensor", "nested array is deeper than 32 axes");
  const len = (data as ArrayLike<number>).length;
  if (shape.length <= depth) {
    if (out.length > 0) throw new ShapeError("tensor", `ragged nested array: a list where axis ${depth - 1} held numbers before`);
    shape.push(len);
  }
  else if (shape[depth] !== len) throw new ShapeError("tensor", `ragged nested array: axis ${depth} has lengths ${shape[depth]} and ${len}`);
  for (let i = 0; i < len; i++) flatten((data as ArrayLike<Nested>)[i] as Nested, shape, out, depth + 1);
}

/** The dtype an option names (default f32), checked against the closed set and the adapter. */
function dtypeOf(op: string, d: unknown, fallback: DType = "f32"): DType {
  const dtype = d === undefined ? fallback : checkDType(op, d);
  if (dtype === "f16" && !gpu().hasF16()) throw new DTypeError(op, "f16 needs the adapter feature shader-f16, which this adapter lacks; use f32");
  return dtype;
}

/** Values an i32 tensor holds exactly: integers in [−2³¹, 2³¹). */
function checkI32Values(op: string, flat: ArrayLike<number>): void {
  if (flat instanceof Int32Array) return;
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i]!;
    if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
      throw new ValueError(op, `value ${v} at flat index ${i} is not an integer in [−2³¹, 2³¹) and cannot be stored as i32; round it, or use dtype "f32"`);
    }
  }
}

function finish(t: Tensor, opts: CreateOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

/**
 * A tensor from nested arrays or a flat typed array plus `shape`. Int32Array data defaults to
 * i32, anything else to f32.
 */
export function tensor(data: Nested | ArrayLike<number>, shapeOrOpts?: number[] | CreateOptions, maybeOpts: CreateOptions = {}): Tensor {
  const opts = Array.isArray(shapeOrOpts) ? maybeOpts : (shapeOrOpts ?? {});
  const dtype = dtypeOf("tensor", opts.dtype, data instanceof Int32Array ? "i32" : "f32");
  let shape: number[];
  let flat: ArrayLike<number>;
  if (Array.isArray(shapeOrOpts)) {
    checkShape("tensor", shapeOrOpts);
    shape = [...shapeOrOpts];
    flat = data as ArrayLike<number>;
    if (typeof data !== "number" && !Array.isArray(data) && !ArrayBuffer.isView(data)) {
      throw new ValueError("tensor", `flat data must be an array or a typed array, got ${typeof data}`);
    }
    if (Array.isArray(data) && data.some((v) => typeof v !== "number")) {
      throw new ValueError("tensor", "flat data with a shape must be a list of numbers (pass nested arrays without a shape)");
    }
    if (typeof data === "number" || flat.length !== numel(shape)) {
      throw new ShapeError("tensor", `data has ${typeof data === "number" ? 1 : flat.length} values, shape ${fmtShape(shape)} needs ${numel(shape)}`);
    }
  } else {
    shape = [];
    const out: number[] = [];
    flatten(data as Nested, shape, out);
    if (out.length !== numel(shape)) throw new ShapeError("tensor", `ragged nested array: ${out.length} numbers do not fill the shape ${fmtShape(shape)}`);
    flat = out;
  }
  if (dtype === "i32") checkI32Values("tensor", flat);
  const t = Tensor.empty(shape, dtype, "tensor");
  const n = numel(shape);
  let bytes: ArrayBufferView;
  if (dtype === "i32") bytes = flat instanceof Int32Array ? flat : Int32Array.from(flat);
  else if (dtype === "f16") { const h = new Uint16Array(n + (n % 2)); for (let i = 0; i < n; i++) h[i] = toHalfBits(flat[i]!); bytes = h; }
  else bytes = flat instanceof Float32Array ? flat : Float32Array.from(flat);
  gpu().launcher.upload(t.buffer("tensor"), bytes);
  return finish(t, opts);
}

export function full(shape: number[], value: number, opts: CreateOptions = {}, op = "full"): Tensor {
  checkShape(op, shape);
  const dtype = dtypeOf(op, opts.dtype);
  if (typeof value !== "number") throw new ValueError(op, `value must be a number, got ${typeof value}`);
  if (dtype === "i32") checkI32(op, "value", value);
  return finish(fill(shape, value, dtype, op), opts);
}
export const zeros = (shape: number[], opts: CreateOptions = {}) => full(shape, 0, opts, "zeros");
export const ones = (shape: number[], opts: CreateOptions = {}) => full(shape, 1, opts, "ones");
export const zerosLike = (t: Tensor, opts: CreateOptions = {}) => full([...t.shape], 0, { dtype: t.dtype, ...opts });
export const onesLike = (t: Tensor, opts: CreateOptions = {}) => full([...t.shape], 1, { dtype: t.dtype, ...opts });

/** [start, end) in steps of `step` (torch.arange); f32 unless dtype says i32. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) { end = start; start = 0; }
  const dtype = dtypeOf("arange", opts.dtype);
  const r = dtype === "i32" ? { integer: true, min: -(2 ** 31), max: 2 ** 31 - 1 } : {};
  checkNumber("arange", "start", start, r);
  checkNumber("arange", "end", end, r);
  checkNumber("arange", "step", step, r);
  if (step === 0) throw new ValueError("arange", "step must not be 0");
  const n = Math.max(0, Math.ceil((end - start) / step));
  if (dtype === "i32" && n > 0) checkI32("arange", "the last value", start + (n - 1) * step);
  const t = Tensor.empty([n], dtype, "arange");
  const bits = (x: number) => (dtype === "i32" ? (x | 0) >>> 0 : f32bits(x));
  gpu().launcher.dispatch(fillKernel(dtype, true), [t.buffer("arange")], grid1d(n, FILL_WORKGROUP), [n, bits(start), bits(step)]);
  endOp("arange");
  return finish(t, opts);
}

function random(op: string, shape: number[], normal: boolean, a: number, b: number, opts: RandomOptions): Tensor {
  checkShape(op, shape);
  const dtype = dtypeOf(op, opts.dtype);
  if (dtype === "i32") throw new DTypeError(op, "random tensors are floating point (f32 or f16)");
  checkOptional(op, "seed", opts.seed, { integer: true });
  checkNumber(op, normal ? "mean" : "low", a);
  checkNumber(op, normal ? "std" : "high", b, normal ? { min: 0 } : { min: a });
  const t = Tensor.empty(shape, dtype, op);
  const [k0, k1] = generatorFor(opts.seed).nextKey();
  gpu().launcher.dispatch(randomKernel(dtype, normal), [t.buffer(op)], grid1d(t.size, FILL_WORKGROUP), [t.size, k0, k1, f32bits(a), f32bits(b)]);
  endOp(op);
  return finish(t, opts);
}

/** Normal(mean, std) samples (default N(0, 1)), seeded. */
export function randn(shape: number[], opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  return random("randn", shape, true, opts.mean ?? 0, opts.std ?? 1, opts);
}

/** Uniform [low, high) samples (default [0, 1)), seeded. */
export function rand(shape: number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  return random("rand", shape, false, opts.low ?? 0, opts.high ?? 1, opts);
}

