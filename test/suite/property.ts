// A property test of the public API (fast-check): random ops on random shapes (empty axes,
// negative, fractional and NaN sizes among them), dtypes (the closed set, plus "f64" and "int8")
// and options. Every call must give a typed WebslopeError or the result the float64 reference
// gives (test/ref); a call that fails must change nothing (its inputs alive with the same data)
// and, once its inputs are disposed, leave memoryStats() where it was. Each case is classified
// beforehand as valid, invalid or either (the few corner cases where both answers are fine),
// so a wrong refusal fails as surely as a wrong result. A modest number of runs everywhere; many
// in Deno (named so). Prints the cases tried and their outcomes.
import fc from "fast-check";
import * as ws from "../../src/index.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import * as ref from "../ref/cpu.ts";

type Dt = "f32" | "i32" | "f16" | "f64" | "int8";
type Shape = number[];

interface Input { shape: Shape; dtype: Dt; seed: number }
type Call =
  | { op: "unary"; fn: "neg" | "exp" | "tanh" | "relu" | "gelu"; x: Input }
  | { op: "binary"; fn: "add" | "sub" | "mul"; a: Input; b: Input }
  | { op: "scalar"; fn: "add" | "mul"; x: Input; s: number }
  | { op: "reduce"; fn: "sum" | "mean" | "max"; x: Input; axes: number | number[] | undefined; keepDim: boolean }
  | { op: "reshape"; x: Input; shape: Shape }
  | { op: "permute"; x: Input; perm: number[] }
  | { op: "matmul"; a: Input; b: Input }
  | { op: "cast"; x: Input; to: Dt }
  | { op: "concat"; a: Input; b: Input; axis: number }
  | { op: "split"; x: Input; size: number; axis: number }
  | { op: "softmax"; x: Input }
  | { op: "full"; shape: Shape; value: number; dtype: Dt }
  | { op: "arange"; start: number; end: number; step: number; dtype: Dt };

// ---- generators ------------------------------------------------------------------------------

const dim = fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, NaN) });
const shape = fc.array(dim, { maxLength: 3 });
const dtype: fc.Arbitrary<Dt> = fc.oneof(
  { weight: 10, arbitrary: fc.constant("f32" as Dt) }, { weight: 3, arbitrary: fc.constant("i32" as Dt) },
  { weight: 1, arbitrary: fc.constantFrom<Dt>("f16", "f64", "int8") },
);
const seed = fc.integer({ min: 0, max: 1e6 });
const input = fc.record({ shape, dtype, seed });
/** A second operand: usually a shape related to the first (broadcastable or equal), sometimes random. */
const pair = fc.tuple(input, fc.record({ dtype, seed }), fc.integer({ min: 0, max: 3 }), shape).map(([a, b, mode, other]) => {
  const s = mode === 0 ? [...a.shape] : mode === 1 ? a.shape.map((d, i) => (i % 2 ? 1 : d)) : mode === 2 ? a.shape.slice(1) : other;
  return [a, { ...b, shape: s, dtype: b.dtype === "f32" ? a.dtype : b.dtype }] as [Input, Input];
});
const mmPair = fc.tuple(fc.integer({ min: 0, max: 2 }), fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 3, maxLength: 3 }), fc.integer({ min: 0, max: 4 }), dtype, seed, seed, fc.boolean())
  .map(([batch, [M, K, N], kb, dt, s1, s2, bad]) => {
    const bs = batch === 0 ? [] : batch === 1 ? [2] : [1, 3];
    return [{ shape: [...bs, M!, K!], dtype: dt, seed: s1 }, { shape: [...(batch === 2 ? [2, 1] : bs), bad ? kb : K!, N!], dtype: dt, seed: s2 }] as [Input, Input];
  });
const axis = fc.oneof({ weight: 10, arbitrary: fc.integer({ min: -4, max: 3 }) }, { weight: 1, arbitrary: fc.constantFrom(0.5, NaN) });

const call: fc.Arbitrary<Call> = fc.oneof(
  fc.record({ op: fc.constant("unary" as const), fn: fc.constantFrom("neg", "exp", "tanh", "relu", "gelu" as const), x: input }),
  pair.chain(([a, b]) => fc.record({ op: fc.constant("binary" as const), fn: fc.constantFrom("add", "sub", "mul" as const), a: fc.constant(a), b: fc.constant(b) })),
  fc.record({ op: fc.constant("scalar" as const), fn: fc.constantFrom("add", "mul" as const), x: input, s: fc.integer({ min: -3, max: 3 }) }),
  fc.record({
    op: fc.constant("reduce" as const), fn: fc.constantFrom("sum", "mean", "max" as const), x: input,
    axes: fc.oneof(fc.constant(undefined), axis, fc.array(fc.integer({ min: -3, max: 2 }), { maxLength: 3 })), keepDim: fc.boolean(),
  }),
  input.chain((x) => fc.record({ op: fc.constant("reshape" as const), x: fc.constant(x), shape: fc.oneof(fc.shuffledSubarray(x.shape.flatMap((d) => [d])), shape, fc.constant<number[]>([-1])) })),
  input.chain((x) => fc.record({ op: fc.constant("permute" as const), x: fc.constant(x), perm: fc.oneof(fc.shuffledSubarray([...x.shape.keys()], { minLength: x.shape.length }), fc.array(fc.integer({ min: -3, max: 3 }), { maxLength: 3 })) })),
  mmPair.map(([a, b]) => ({ op: "matmul" as const, a, b })),
  fc.record({ op: fc.constant("cast" as const), x: input, to: dtype }),
  pair.chain(([a, b]) => fc.record({ op: fc.constant("concat" as const), a: fc.constant(a), b: fc.constant({ ...b, shape: b.shape.length === a.shape.length ? b.shape : a.shape }), axis })),
  fc.record({ op: fc.constant("split" as const), x: input, size: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.constantFrom(0, -1, 1.5)), axis }),
  fc.record({ op: fc.constant("softmax" as const), x: input }),
  fc.record({ op: fc.constant("full" as const), shape, value: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom(0.5, 3e10)), dtype }),
  fc.record({
    op: fc.constant("arange" as const), start: fc.integer({ min: -4, max: 4 }), end: fc.oneof(fc.integer({ min: -6, max: 8 }), fc.constantFrom(NaN, Infinity, 2.5)),
    step: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constant(0.5)), dtype,
  }),
);

// ---- the reference: is the call valid, and what should it give? -------------------------------

const VALID_DT = new Set(["f32", "i32", "f16"]);
const isShape = (s: Shape) => s.every((d) => Number.isInteger(d) && d >= 0);
const isFloat = (d: Dt) => d === "f32" || d === "f16";
const normAx = (a: number, rank: number) => (Number.isInteger(a) && a >= -rank && a < rank ? (a + rank) % rank : null);
function broadcast(a: Shape, b: Shape): Shape | null {
  const r = Math.max(a.length, b.length), out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1, y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Host data for an input (integers for i32; f16 values rounded as the GPU stores them). */
function dataOf(x: Input): ref.Arr {
  const a = ref.randArr(isShape(x.shape) ? x.shape : [0], x.seed, -2, 2);
  if (x.dtype === "i32") a.data.forEach((v, i) => { a.data[i] = Math.round(v * 3); });
  if (x.dtype === "f16") a.data.forEach((v, i) => { a.data[i] = Math.round(v * 256) / 256; });
  return a;
}

type Expect = { valid: true; out: ref.Arr[]; dtype: Dt } | { valid: false } | { valid: "either"; out?: ref.Arr[]; dtype?: Dt };
const INVALID: Expect = { valid: false };

function expected(c: Call, hasF16: boolean): Expect {
  const dtOk = (d: Dt) => VALID_DT.has(d) && (d !== "f16" || hasF16);
  const ins = "x" in c ? [c.x] : "a" in c ? [c.a, c.b] : [];
  if (ins.some((x) => !isShape(x.shape) || !dtOk(x.dtype))) return INVALID; // the input tensors themselves are refused
  const d = ins.map(dataOf);
  switch (c.op) {
    case "unary": {
      if (c.x.dtype === "i32" && c.fn !== "neg") return INVALID;
      const f = { neg: (v: number) => -v, exp: Math.exp, tanh: Math.tanh, relu: (v: number) => Math.max(v, 0), gelu: ref.geluTanh }[c.fn];
      return { valid: true, out: [ref.map(f, d[0]!)], dtype: c.x.dtype };
    }
    case "binary": {
      if (c.a.dtype !== c.b.dtype || !broadcast(c.a.shape, c.b.shape)) return INVALID;
      const f = { add: (x: number, y: number) => x + y, sub: (x: number, y: number) => x - y, mul: (x: number, y: number) => x * y }[c.fn];
      return { valid: true, out: [ref.map(f, d[0]!, d[1]!)], dtype: c.a.dtype };
    }
    case "scalar":
      return { valid: true, out: [ref.map((v) => (c.fn === "add" ? v + c.s : v * c.s), d[0]!)], dtype: c.x.dtype };
    case "reduce": {
      const r = c.x.shape.length;
      if (!isFloat(c.x.dtype)) return INVALID;
      const list = c.axes === undefined ? [...Array(r).keys()] : Array.isArray(c.axes) ? c.axes : [c.axes];
      const norm = list.map((a) => normAx(a, r));
      if (r === 0 && list.length) return { valid: "either" };
      if (norm.some((a) => a === null) || new Set(norm).size !== norm.length) return INVALID;
      const ax = norm as number[];
      const outSize = ref.numel(c.x.shape.filter((_, i) => !ax.includes(i)));
      if (c.fn === "max" && ax.some((a) => c.x.shape[a] === 0) && outSize > 0) return INVALID;
      return { valid: true, out: [ref.reduce(d[0]!, ax, c.keepDim, c.fn)], dtype: c.x.dtype };
    }
    case "reshape": {
      const n = ref.numel(c.x.shape);
      let s = [...c.shape];
      const inf = s.indexOf(-1);
      if (inf >= 0 && s.lastIndexOf(-1) === inf) {
        const rest = ref.numel(s.filter((_, i) => i !== inf));
        if (rest === 0 || n % rest !== 0) return INVALID;
        s[inf] = n / rest;
      }
      if (!isShape(s) || ref.numel(s) !== n) return INVALID;
      s = s.map(Number);
      return { valid: true, out: [{ shape: s, data: d[0]!.data }], dtype: c.x.dtype };
    }
    case "permute": {
      const r = c.x.shape.length;
      const p = c.perm.map((a) => normAx(a, r));
      if (p.length !== r || p.some((a) => a === null) || new Set(p).size !== r) return INVALID;
      return { valid: true, out: [ref.permute(d[0]!, p as number[])], dtype: c.x.dtype };
    }
    case "matmul": {
      if (!isFloat(c.a.dtype) || c.a.dtype !== c.b.dtype) return INVALID;
      if (c.a.shape.at(-1) !== c.b.shape.at(-2)) return INVALID;
      if (!broadcast(c.a.shape.slice(0, -2), c.b.shape.slice(0, -2))) return INVALID;
      return { valid: true, out: [ref.matmul(d[0]!, d[1]!)], dtype: c.a.dtype };
    }
    case "cast": {
      if (!dtOk(c.to)) return INVALID;
      const f = c.to === "i32" ? Math.trunc : (v: number) => v;
      return { valid: true, out: [ref.map(f, d[0]!)], dtype: c.to };
    }
    case "concat": {
      const r = c.a.shape.length, a = normAx(c.axis, r);
      if (r === 0 || a === null || c.a.dtype !== c.b.dtype || c.b.shape.length !== r || c.a.shape.some((v, i) => i !== a && v !== c.b.shape[i])) return INVALID;
      return { valid: true, out: [ref.concat([d[0]!, d[1]!], a)], dtype: c.a.dtype };
    }
    case "split": {
      const r = c.x.shape.length, a = normAx(c.axis, r);
      if (r === 0 || a === null || !Number.isInteger(c.size) || c.size < 1) return INVALID;
      const n = c.x.shape[a]!, out: ref.Arr[] = [];
      for (let at = 0; at < n; at += c.size) {
        const st = c.x.shape.map((_, i) => (i === a ? at : 0)), en = c.x.shape.map((v, i) => (i === a ? Math.min(at + c.size, n) : v));
        out.push(ref.slice(d[0]!, st, en));
      }
      return { valid: true, out, dtype: c.x.dtype };
    }
    case "softmax":
      if (!isFloat(c.x.dtype) || c.x.shape.length === 0) return INVALID;
      return { valid: true, out: [ref.softmax(d[0]!)], dtype: c.x.dtype };
    case "full": {
      if (!isShape(c.shape) || !dtOk(c.dtype)) return INVALID;
      if (c.dtype === "i32" && (!Number.isInteger(c.value) || Math.abs(c.value) >= 2 ** 31)) return INVALID;
      const a = ref.arr(c.shape);
      a.data.fill(c.value);
      return { valid: true, out: [a], dtype: c.dtype };
    }
    case "arange": {
      if (!dtOk(c.dtype) || !Number.isFinite(c.end) || c.step === 0) return INVALID;
      if (c.dtype === "i32" && [c.start, c.end, c.step].some((v) => !Number.isInteger(v))) return INVALID;
      const n = Math.max(0, Math.ceil((c.end - c.start) / c.step));
      return { valid: true, out: [ref.arr([n], Array.from({ length: n }, (_, i) => c.start + i * c.step))], dtype: c.dtype };
    }
  }
}

// ---- running a call --------------------------------------------------------------------------

function makeInput(x: Input): ws.Tensor {
  const a = dataOf(x);
  return ws.tensor(x.dtype === "i32" ? Int32Array.from(a.data) : Float32Array.from(a.data), x.shape, { dtype: x.dtype as ws.DType });
}

function run(c: Call, ins: ws.Tensor[]): ws.Tensor[] {
  const [x, y] = ins as [ws.Tensor, ws.Tensor];
  switch (c.op) {
    case "unary": return [x[c.fn]()];
    case "binary": return [x[c.fn](y)];
    case "scalar": return [x[c.fn](c.s)];
    case "reduce": return [x[c.fn](c.axes, c.keepDim)];
    case "reshape": return [x.reshape(c.shape)];
    case "permute": return [x.permute(c.perm)];
    case "matmul": return [x.matmul(y)];
    case "cast": return [ws.cast(x, c.to as ws.DType)];
    case "concat": return [ws.concat([x, y], c.axis)];
    case "split": return x.split(c.size, c.axis);
    case "softmax": return [x.softmax(-1)];
    case "full": return [ws.full(c.shape, c.value, { dtype: c.dtype as ws.DType })];
    case "arange": return [ws.arange(c.start, c.end, c.step, { dtype: c.dtype as ws.DType })];
  }
}

export interface Tally {
  cases: number;
  correct: number;
  /** Typed errors by class name (the bad-input cases). */
  typed: Record<string, number>;
  /** Of those, the calls whose inputs were made and which failed without changing them. */
  failedOps: number;
}

/** Live bytes and storages: compared only across synchronous stretches (no await), so that a
 * finalizer freeing an earlier test's garbage cannot move the numbers in between. */
const live = () => { const m = ws.memoryStats(); return [m.liveBytes, m.liveTensors]; };
const minus = (a: number[], b: number[]) => a.map((v, i) => v - b[i]!);

async function check(c: Call, tally: Tally, hasF16: boolean): Promise<void> {
  tally.cases++;
  const exp = expected(c, hasF16);
  const specs = "x" in c ? [c.x] : "a" in c ? [c.a, c.b] : [];
  const ins: ws.Tensor[] = [];
  let outs: ws.Tensor[] | null = null;
  let err: unknown = null;
  const c0 = live();
  try {
    for (const s of specs) ins.push(makeInput(s));
  } catch (e) {
    err = e;
  }
  const inputCost = minus(live(), c0);
  const madeInputs = err === null;
  const snapshot = madeInputs ? await Promise.all(ins.map((t) => t.toArray())) : [];
  const before = live();
  if (madeInputs) {
    try {
      outs = run(c, ins);
    } catch (e) {
      err = e;
    }
  }
  const outCost = minus(live(), before);
  const what = `${JSON.stringify(c)} → ${err ? `${(err as Error).name}: ${(err as Error).message}` : "a result"}`;
  try {
    if (err !== null) {
      assert(err instanceof ws.WebslopeError, `not a typed error: ${what}`);
      assert(exp.valid !== true, `a valid call was refused: ${what}`);
      tally.typed[(err as Error).name] = (tally.typed[(err as Error).name] ?? 0) + 1;
      assertEquals(outCost, [0, 0], `a failed call left memory behind: ${what}`);
      if (madeInputs) {
        tally.failedOps++;
        const after = await Promise.all(ins.map((t) => t.toArray()));
        assert(ins.every((t) => !t.isDisposed), `a failed call disposed an input: ${what}`);
        assertEquals(after.map((a) => Array.from(a)), snapshot.map((a) => Array.from(a)), `a failed call changed its inputs: ${what}`);
      }
    } else {
      assert(exp.valid !== false, `an invalid call gave a result: ${what}`);
      const out = outs!;
      if ("out" in exp && exp.out) {
        assertEquals(out.length, exp.out.length, `number of results: ${what}`);
        const f16 = out.some((t) => t.dtype === "f16") || ins.some((t) => t.dtype === "f16");
        for (let i = 0; i < out.length; i++) {
          assertEquals([...out[i]!.shape], exp.out[i]!.shape, `shape: ${what}`);
          assertEquals(out[i]!.dtype, exp.dtype, `dtype: ${what}`);
          assertClose(await out[i]!.toArray(), exp.out[i]!.data, { rtol: f16 ? 1e-2 : 1e-4, atol: f16 ? 1e-2 : 1e-5, msg: what });
        }
      }
      tally.correct++;
    }
  } finally {
    const s1 = live();
    for (const t of outs ?? []) t.dispose();
    const freedOuts = minus(s1, live());
    const s2 = live();
    for (const t of ins) t.dispose();
    const freedIns = minus(s2, live());
    assertEquals(freedOuts, outCost, `disposing the results gives back what the call took: ${what}`);
    assertEquals(freedIns, inputCost, `disposing the inputs gives back what making them took: ${what}`);
  }
}

async function property(runs: number, seedValue: number): Promise<Tally> {
  const tally: Tally = { cases: 0, correct: 0, typed: {}, failedOps: 0 };
  const hasF16 = ws.gpu().hasF16();
  await fc.assert(fc.asyncProperty(call, (c) => check(c, tally, hasF16)), { numRuns: runs, seed: seedValue, endOnFailure: true });
  const typed = Object.values(tally.typed).reduce((a, b) => a + b, 0);
  console.log(`property test: ${tally.cases} cases (seed ${seedValue}): ${tally.correct} correct results, ${typed} typed errors ` +
    `(${Object.entries(tally.typed).map(([k, v]) => `${k} ${v}`).join(", ")}; ${tally.failedOps} of them failed calls on made inputs, ` +
    "inputs unchanged), 0 other errors, memoryStats() unchanged after every disposed call");
  assert(tally.correct > runs / 10 && typed > runs / 10, "the generator covers both valid and invalid calls");
  return tally;
}

test("property test of the public API: a typed error or the reference result, failed calls change nothing (150 runs)", async () => {
  await property(150, 11);
});

test("property test of the public API, many runs (1,000 runs; Deno only)", async () => {
  await property(1000, 12345);
}, { runtimes: ["deno"] });
