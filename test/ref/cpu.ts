// Float64 CPU reference implementations: the oracle every GPU op is checked against.
// Plain loops over row-major arrays, written for clarity, not speed.

export interface Arr {
  shape: number[];
  data: Float64Array;
}

export const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

export function arr(shape: number[], data?: ArrayLike<number>): Arr {
  const d = new Float64Array(numel(shape));
  if (data) d.set(Array.from(data));
  return { shape: [...shape], data: d };
}

/** Deterministic pseudo-random values in [lo, hi) (mulberry32). */
export function randArr(shape: number[], seed: number, lo = -1, hi = 1): Arr {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const a = arr(shape);
  for (let i = 0; i < a.data.length; i++) a.data[i] = lo + (hi - lo) * next();
  return a;
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]!; }
  return s;
}

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) { idx[d] = i % shape[d]!; i = Math.floor(i / shape[d]!); }
  return idx;
}

export function broadcastShape(...shapes: number[][]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  // The size that is not 1 (0 included: an empty axis broadcasts against 1 to empty).
  return Array.from({ length: rank }, (_, i) => shapes.map((s) => s[s.length - rank + i] ?? 1).find((d) => d !== 1) ?? 1);
}

/** Elementwise f over broadcast inputs. */
export function map(f: (...v: number[]) => number, ...xs: Arr[]): Arr {
  const shape = broadcastShape(...xs.map((x) => x.shape));
  const out = arr(shape);
  const strides = xs.map((x) => {
    const st = stridesOf(x.shape), off = shape.length - x.shape.length;
    return shape.map((_, i) => (i < off || x.shape[i - off] === 1 ? 0 : st[i - off]!));
  });
  for (let i = 0; i < out.data.length; i++) {
    const idx = unravel(i, shape);
    const vals = xs.map((x, k) => x.data[idx.reduce((a, v, d) => a + v * strides[k]![d]!, 0)]!);
    out.data[i] = f(...vals);
  }
  return out;
}

export function reduce(x: Arr, axes: number[], keepDim: boolean, kind: "sum" | "max" | "mean"): Arr {
  const ax = axes.map((a) => (a < 0 ? a + x.shape.length : a));
  const kshape = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const out = arr(kshape);
  out.data.fill(kind === "max" ? -Infinity : 0);
  const ost = stridesOf(kshape);
  for (let i = 0; i < x.data.length; i++) {
    const idx = unravel(i, x.shape);
    const o = idx.reduce((a, v, d) => a + (ax.includes(d) ? 0 : v * ost[d]!), 0);
    out.data[o] = kind === "max" ? Math.max(out.data[o]!, x.data[i]!) : out.data[o]! + x.data[i]!;
  }
  if (kind === "mean") {
    const R = numel(ax.map((a) => x.shape[a]!));
    for (let i = 0; i < out.data.length; i++) out.data[i]! /= R;
  }
  return { shape: keepDim ? kshape : x.shape.filter((_, i) => !ax.includes(i)), data: out.data };
}

/** op(A)·op(B) over broadcast batch axes (any mix of 1s and matching sizes). */
export function matmul(a: Arr, b: Arr, transA = false, transB = false): Arr {
  const ar = a.shape.at(-2)!, ac = a.shape.at(-1)!, br = b.shape.at(-2)!, bc = b.shape.at(-1)!;
  const M = transA ? ac : ar, K = transA ? ar : ac, N = transB ? br : bc;
  const aB = a.shape.slice(0, -2), bB = b.shape.slice(0, -2);
  const batch = broadcastShape(aB, bB);
  const stridesFor = (s: number[]) => {
    const st = stridesOf(s), off = batch.length - s.length;
    return batch.map((_, i) => (i < off || s[i - off] === 1 ? 0 : st[i - off]!));
  };
  const sa = stridesFor(aB), sb = stridesFor(bB);
  const out = arr([...batch, M, N]);
  for (let z = 0; z < numel(batch); z++) {
    const idx = unravel(z, batch);
    const ao = idx.reduce((s, v, d) => s + v * sa[d]!, 0) * ar * ac, bo = idx.reduce((s, v, d) => s + v * sb[d]!, 0) * br * bc;
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = a.data[ao + (transA ? k * ac + i : i * ac + k)]!;
        const bv = b.data[bo + (transB ? j * bc + k : k * bc + j)]!;
        s += av * bv;
      }
      out.data[z * M * N + i * N + j] = s;
    }
  }
  return out;
}

export function permute(x: Arr, perm: number[]): Arr {
  const shape = perm.map((p) => x.shape[p]!);
  const st = stridesOf(x.shape);
  const out = arr(shape);
  for (let i = 0; i < out.data.length; i++) {
    const idx = unravel(i, shape);
    out.data[i] = x.data[idx.reduce((a, v, d) => a + v * st[perm[d]!]!, 0)]!;
  }
  return out;
}

export function slice(x: Arr, starts: number[], ends: number[]): Arr {
  const shape = x.shape.map((_, i) => ends[i]! - starts[i]!);
  const st = stridesOf(x.shape);
  const out = arr(shape);
  for (let i = 0; i < out.data.length; i++) {
    const idx = unravel(i, shape);
    out.data[i] = x.data[idx.reduce((a, v, d) => a + (v + starts[d]!) * st[d]!, 0)]!;
  }
  return out;
}

export function concat(xs: Arr[], axis: number): Arr {
  const shape = [...xs[0]!.shape];
  shape[axis] = xs.reduce((s, x) => s + x.shape[axis]!, 0);
  const out = arr(shape);
  const ost = stridesOf(shape);
  let at = 0;
  for (const x of xs) {
    for (let i = 0; i < x.data.length; i++) {
      const idx = unravel(i, x.shape);
      idx[axis]! += at;
      out.data[idx.reduce((a, v, d) => a + v * ost[d]!, 0)] = x.data[i]!;
    }
    at += x.shape[axis]!;
  }
  return out;
}

/** Applies f to each 1-D lane along the last axis. */
export function lanes(x: Arr, f: (lane: number[], row: number) => number[]): Arr {
  const n = x.shape.at(-1)!;
  const out = arr(x.shape);
  for (let r = 0; r < x.data.length / n; r++) {
    const res = f(Array.from(x.data.subarray(r * n, r * n + n)), r);
    out.data.set(res, r * n);
  }
  return out;
}

export function softmax(x: Arr, causal = false, log = false): Arr {
  const T = x.shape.at(-2) ?? 1;
  return lanes(x, (v, r) => {
    const i = r % T;
    const keep = v.map((_, j) => !causal || j <= i);
    const m = Math.max(...v.filter((_, j) => keep[j]));
    const e = v.map((a, j) => (keep[j] ? Math.exp(a - m) : 0));
    const s = e.reduce((a, b) => a + b, 0);
    return log ? v.map((a, j) => (keep[j] ? a - m - Math.log(s) : -Infinity)) : e.map((a) => a / s);
  });
}

export const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
