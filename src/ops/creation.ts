// Tensor creation: from JS data (tensor), constants (zeros, ones, full), ranges (arange) and
// seeded random numbers (randn, rand) generated on the GPU from the global generator's keys.
import { type DType, toHalfBits } from "../dtype.ts";
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
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
  if (typeof data === "number") { out.push(data); return; }
  const len = (data as ArrayLike<number>).length;
  if (shape.length <= depth) shape.push(len);
  else if (shape[depth] !== len) throw new ShapeError("tensor", `ragged nested array: axis ${depth} has lengths ${shape[depth]} and ${len}`);
  for (let i = 0; i < len; i++) flatten((data as ArrayLike<Nested>)[i] as Nested, shape, out, depth + 1);
}

function checkShape(op: string, shape: readonly number[]): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ShapeError(op, `shape ${JSON.stringify(shape)} must be a list of non-negative integers`);
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
  const dtype = opts.dtype ?? (data instanceof Int32Array ? "i32" : "f32");
  let shape: number[];
  let flat: ArrayLike<number>;
  if (Array.isArray(shapeOrOpts)) {
    checkShape("tensor", shapeOrOpts);
    shape = [...shapeOrOpts];
    flat = data as ArrayLike<number>;
    if (typeof data === "number" || flat.length !== numel(shape)) {
      throw new ShapeError("tensor", `data has ${typeof data === "number" ? 1 : flat.length} values, shape ${fmtShape(shape)} needs ${numel(shape)}`);
    }
  } else {
    shape = [];
    const out: number[] = [];
    flatten(data as Nested, shape, out);
    flat = out;
  }
  if (dtype === "f16" && !gpu().hasF16()) throw new DTypeError("tensor", "f16 needs the adapter feature shader-f16, which this adapter lacks; use f32");
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
  return finish(fill(shape, value, opts.dtype ?? "f32", op), opts);
}
export const zeros = (shape: number[], opts: CreateOptions = {}) => full(shape, 0, opts, "zeros");
export const ones = (shape: number[], opts: CreateOptions = {}) => full(shape, 1, opts, "ones");
export const zerosLike = (t: Tensor, opts: CreateOptions = {}) => full([...t.shape], 0, { dtype: t.dtype, ...opts });
export const onesLike = (t: Tensor, opts: CreateOptions = {}) => full([...t.shape], 1, { dtype: t.dtype, ...opts });

/** [start, end) in steps of `step` (torch.arange); f32 unless dtype says i32. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) { end = start; start = 0; }
  if (step === 0) throw new ShapeError("arange", "step must not be 0");
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts.dtype ?? "f32";
  const t = Tensor.empty([n], dtype, "arange");
  const bits = (x: number) => (dtype === "i32" ? (x | 0) >>> 0 : f32bits(x));
  gpu().launcher.dispatch(fillKernel(dtype, true), [t.buffer("arange")], grid1d(n, FILL_WORKGROUP), [n, bits(start), bits(step)]);
  endOp("arange");
  return finish(t, opts);
}

function random(op: string, shape: number[], normal: boolean, a: number, b: number, opts: RandomOptions): Tensor {
  checkShape(op, shape);
  const dtype = opts.dtype ?? "f32";
  if (dtype === "i32") throw new DTypeError(op, "random tensors are floating point (f32 or f16)");
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

