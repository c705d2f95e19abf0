// Layout ops: reshape (a view: shares storage), permute/transpose, slice/narrow, concat/split
// and expand (broadcastTo), all through one strided-copy kernel (./raw/copy.ts), with their Tensor
// methods and backward rules, registered with the tape when this module loads.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { ShapeError, fmtShape } from "../errors.ts";
import { isGradEnabled } from "../scope.ts";
import { defineTensorMethods, Tensor } from "../tensor.ts";
import { expandRaw, permuteRaw, stridedCopy } from "./raw/copy.ts";
import { fill } from "./raw/map.ts";
import { sumToShape } from "./raw/reduce.ts";
import { broadcastShapes, checkLive, normAxis, numel, sameShape, stridesOf } from "./util.ts";

/** A view with a new shape (one -1 is inferred). Shares storage: no copy. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  checkLive("reshape", x);
  if (!Array.isArray(shape)) throw new ShapeError("reshape", `shape must be a list of integers, got ${String(shape)}`);
  const s = [...shape];
  const inferred = s.indexOf(-1);
  if (inferred !== -1 && s.lastIndexOf(-1) !== inferred) throw new ShapeError("reshape", `only one -1 allowed in ${fmtShape(shape)}`);
  if (inferred !== -1) {
    const rest = numel(s.filter((_, i) => i !== inferred));
    if (rest === 0 || x.size % rest !== 0) throw new ShapeError("reshape", `cannot infer -1: ${fmtShape(x.shape)} into ${fmtShape(shape)}`);
    s[inferred] = x.size / rest;
  }
  if (s.some((d) => !Number.isInteger(d) || d < 0) || numel(s) !== x.size) {
    throw new ShapeError("reshape", `cannot reshape ${fmtShape(x.shape)} (${x.size} elements) into ${fmtShape(shape)} (${numel(s)} elements)`);
  }
  const out = x.alias(s);
  if (isGradEnabled()) record("reshape", [x], out, {});
  return out;
}

/** Reorders axes (torch permute); materialises the result. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  checkLive("permute", x);
  if (!Array.isArray(perm)) throw new ShapeError("permute", `perm must be a list of axes, got ${String(perm)}`);
  const p = perm.map((a) => normAxis("permute", a, x.ndim));
  if (p.length !== x.ndim || new Set(p).size !== p.length) {
    throw new ShapeError("permute", `${JSON.stringify(perm)} is not a permutation of the ${x.ndim} axes of ${fmtShape(x.shape)}`);
  }
  const out = permuteRaw("permute", x, p);
  if (isGradEnabled()) record("permute", [x], out, { perm: p });
  return out;
}

/** Swaps two axes (default: the last two). */
export function transpose(x: Tensor, d0 = -2, d1 = -1): Tensor {
  const a = normAxis("transpose", d0, x.ndim), b = normAxis("transpose", d1, x.ndim);
  const perm = [...Array(x.ndim).keys()];
  perm[a] = b; perm[b] = a;
  return permute(x, perm);
}

/** x[starts[0]:ends[0], ...] with step 1; missing trailing axes are taken whole; negatives count from the end. */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  checkLive("slice", x);
  if (!Array.isArray(starts) || !Array.isArray(ends) || [...starts, ...ends].some((v) => !Number.isSafeInteger(v))) {
    throw new ShapeError("slice", `starts ${JSON.stringify(starts)} and ends ${JSON.stringify(ends)} must be lists of integers (for ${fmtShape(x.shape)})`);
  }
  if (starts.length > x.ndim || ends.length > x.ndim) {
    throw new ShapeError("slice", `starts ${JSON.stringify(starts)} / ends ${JSON.stringify(ends)} have more entries than the rank of ${fmtShape(x.shape)}`);
  }
  const st = x.shape.map((d, i) => clampIndex(starts[i] ?? 0, d));
  const en = x.shape.map((d, i) => clampIndex(ends[i] ?? d, d));
  const shape = x.shape.map((_, i) => Math.max(0, en[i]! - st[i]!));
  const strides = stridesOf(x.shape);
  const offset = st.reduce((a, s, i) => a + s * strides[i]!, 0);
  const out = Tensor.empty(shape, x.dtype, "slice");
  stridedCopy("slice", x, out, shape, strides, stridesOf(shape), offset, 0);
  if (isGradEnabled()) record("slice", [x], out, { starts: st, ends: en });
  return out;
}

function clampIndex(i: number, d: number): number {
  const v = i < 0 ? i + d : i;
  return Math.min(Math.max(v, 0), d);
}

/** `length` entries of `axis` from `start` (torch narrow). */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normAxis("narrow", axis, x.ndim);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 || start + length > x.shape[a]!) {
    throw new ShapeError("narrow", `[${start}, ${start + length}) is outside axis ${axis} of size ${x.shape[a]} in ${fmtShape(x.shape)}`);
  }
  const starts = x.shape.map((_, i) => (i === a ? start : 0));
  const ends = x.shape.map((d, i) => (i === a ? start + length : d));
  return slice(x, starts, ends);
}

/** Joins tensors along `axis`; all other axes must match. */
export function concat(ts: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(ts as unknown) || ts.length === 0) throw new ShapeError("concat", "needs a non-empty list of tensors");
  checkLive("concat", ...ts);
  const first = ts[0]!;
  const a = normAxis("concat", axis, first.ndim);
  for (const t of ts) {
    if (t.dtype !== first.dtype || t.ndim !== first.ndim || t.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new ShapeError("concat", `shapes ${ts.map((u) => fmtShape(u.shape) + u.dtype).join(", ")} differ outside axis ${axis}`);
    }
  }
  const shape = [...first.shape];
  shape[a] = ts.reduce((s, t) => s + t.shape[a]!, 0);
  const out = Tensor.empty(shape, first.dtype, "concat");
  const outStrides = stridesOf(shape);
  let at = 0;
  for (const t of ts) {
    stridedCopy("concat", t, out, t.shape, stridesOf(t.shape), outStrides, 0, at * outStrides[a]!);
    at += t.shape[a]!;
  }
  if (isGradEnabled()) record("concat", ts, out, { axis: a });
  return out;
}

/** Splits along `axis` into pieces of `sizes` (or equal pieces of that size). */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const a = normAxis("split", axis, x.ndim);
  const d = x.shape[a]!;
  const okSize = (v: unknown, min: number) => typeof v === "number" && Number.isSafeInteger(v) && v >= min;
  if (typeof sizes === "number" ? !okSize(sizes, 1) : !Array.isArray(sizes) || !sizes.every((v) => okSize(v, 0))) {
    throw new ShapeError("split", `sizes ${JSON.stringify(sizes)} must be a positive integer (the piece size) or a list of non-negative integers ` +
      `(axis ${axis} of ${fmtShape(x.shape)} has ${d})`);
  }
  const list = typeof sizes === "number" ? Array.from({ length: Math.ceil(d / sizes) }, (_, i) => Math.min(sizes, d - i * sizes)) : [...sizes];
  if (list.reduce((s, v) => s + v, 0) !== d) {
    throw new ShapeError("split", `sizes ${JSON.stringify(sizes)} do not add up to axis ${axis} of ${fmtShape(x.shape)}`);
  }
  let at = 0;
  return list.map((n) => { const t = narrow(x, a, at, n); at += n; return t; });
}

/** Broadcasts to `shape` (torch expand / broadcast_to); materialises the result. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  checkLive("expand", x);
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < -1)) {
    throw new ShapeError("expand", `shape ${JSON.stringify(shape)} must be a list of non-negative integers (or -1 to keep an axis)`);
  }
  const s = shape.map((d, i) => (d === -1 ? x.shape[i - (shape.length - x.ndim)] ?? 1 : d));
  const b = broadcastShapes("expand", x.shape, s);
  if (!sameShape(b, s)) throw new ShapeError("expand", `cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  const out = expandRaw("expand", x, s);
  if (isGradEnabled()) record("expand", [x], out, {});
  return out;
}

type LayoutOp = "reshape" | "permute" | "slice" | "concat" | "expand";

export const layoutRules: Rules<LayoutOp> = {
  reshape: (g, c) => [g.alias(c.inputShapes[0]!)],
  permute: (g, c) => {
    const inv = new Array<number>(c.attrs.perm.length);
    c.attrs.perm.forEach((p, i) => { inv[p] = i; });
    return [permuteRaw("permute", g, inv)];
  },
  slice: (g, c) => {
    const shape = c.inputShapes[0]!;
    const out = fill(shape, 0, g.dtype, "slice");
    const strides = stridesOf(shape);
    const offset = c.attrs.starts.reduce((a, s, i) => a + s * strides[i]!, 0);
    stridedCopy("slice", g, out, g.shape, stridesOf(g.shape), strides, 0, offset);
    return [out];
  },
  concat: (g, c) => {
    let at = 0;
    const a = c.attrs.axis;
    return c.inputShapes.map((shape, i) => {
      const n = shape[a]!;
      const start = at;
      at += n;
      if (!c.needsGrad[i]) return null;
      const out = Tensor.empty(shape, g.dtype, "concat");
      const gs = stridesOf(g.shape);
      stridedCopy("concat", g, out, shape, gs, stridesOf(shape), start * gs[a]!, 0);
      return out;
    });
  },
  expand: (g, c) => [sumToShape(g, c.inputShapes[0]!)],
};

registerRules(layoutRules);

declare module "../tensor.ts" {
  interface Tensor {
    reshape(...shape: number[] | [number[]]): Tensor;
    view(...shape: number[] | [number[]]): Tensor;
    flatten(): Tensor;
    permute(...perm: number[] | [number[]]): Tensor;
    transpose(d0?: number, d1?: number): Tensor;
    /** The last two axes swapped. */
    readonly T: Tensor;
    slice(starts: number[], ends: number[]): Tensor;
    narrow(axis: number, start: number, length: number): Tensor;
    split(sizes: number | number[], axis?: number): Tensor[];
    expand(shape: number[]): Tensor;
  }
}

const listArg = (args: number[] | [number[]]): number[] => (Array.isArray(args[0]) ? args[0] : args) as number[];

defineTensorMethods({
  reshape(...shape) { return reshape(this, listArg(shape)); },
  view(...shape) { return reshape(this, listArg(shape)); },
  flatten() { return reshape(this, [this.size]); },
  permute(...perm) { return permute(this, listArg(perm)); },
  transpose(d0 = -2, d1 = -1) { return transpose(this, d0, d1); },
  slice(starts, ends) { return slice(this, starts, ends); },
  narrow(axis, start, length) { return narrow(this, axis, start, length); },
  split(sizes, axis = 0) { return split(this, sizes, axis); },
  expand(shape) { return expand(this, shape); },
}, {
  T() { return transpose(this, -2, -1); },
});
