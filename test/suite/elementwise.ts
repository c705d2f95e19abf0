// Elementwise ops against the float64 reference at random shapes (odd sizes, broadcasting,
// scalars), and a finite-difference check of every elementwise backward rule.
import * as ws from "../../src/index.ts";
import { assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, geluTanh, map, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";

const SHAPES: [number[], number[]][] = [
  [[7], [7]],
  [[3, 5], [3, 5]],
  [[4, 1, 6], [5, 1]],
  [[1], [2, 3, 9]],
  [[2, 3, 4, 5], [4, 1]],
  [[33, 17], [17]],
  [[], [3, 2]],
];

const BINARY = {
  add: [(a: ws.Tensor, b: ws.Tensor) => a.add(b), (x: number, y: number) => x + y],
  sub: [(a: ws.Tensor, b: ws.Tensor) => a.sub(b), (x: number, y: number) => x - y],
  mul: [(a: ws.Tensor, b: ws.Tensor) => a.mul(b), (x: number, y: number) => x * y],
  div: [(a: ws.Tensor, b: ws.Tensor) => a.div(b), (x: number, y: number) => x / y],
} as const;

for (const [name, [gpuOp, refOp]] of Object.entries(BINARY)) {
  test(`${name}: broadcasting forward at ${SHAPES.length} shape pairs`, async () => {
    for (const [i, [sa, sb]] of SHAPES.entries()) {
      const a = randArr(sa, 10 + i), b = randArr(sb, 20 + i, 0.5, 2);
      const y = ws.tidy(() => gpuOp(fromArr(a), fromArr(b)));
      assertClose(await y.toArray(), map(refOp, a, b).data, { rtol: 1e-6, msg: `${sa} ${name} ${sb}` });
      y.dispose();
    }
  });
  test(`${name}: backward matches finite differences, with broadcasting`, async () => {
    await gradCheck({ inputs: [randArr([3, 1, 4], 1), randArr([2, 4], 2, 0.5, 2)], gpu: ([a, b]) => gpuOp(a!, b!), ref: ([a, b]) => map(refOp, a!, b!) });
  });
}

test("scalar operands: x+2, 2-x, x*3, x/4, 2/x", async () => {
  const a = randArr([5, 3], 3, 0.5, 2);
  const x = fromArr(a);
  const checks: [ws.Tensor, (v: number) => number][] = [
    [x.add(2), (v) => v + 2], [ws.sub(2, x), (v) => 2 - v], [x.mul(3), (v) => v * 3],
    [x.div(4), (v) => v / 4], [ws.div(2, x), (v) => 2 / v],
  ];
  for (const [t, f] of checks) assertClose(await t.toArray(), map(f, a).data, { rtol: 1e-6 });
  ws.tidy(() => x);
  x.dispose();
});

test("scalar operands: gradients of x+s, s-x, x*s, x/s, s/x", async () => {
  const ops: [(x: ws.Tensor) => ws.Tensor, (v: number) => number][] = [
    [(x) => x.add(2), (v) => v + 2], [(x) => ws.sub(2, x), (v) => 2 - v], [(x) => x.mul(3), (v) => v * 3],
    [(x) => x.div(4), (v) => v / 4], [(x) => ws.div(2, x), (v) => 2 / v],
  ];
  for (const [g, f] of ops) await gradCheck({ inputs: [randArr([4, 3], 5, 0.5, 2)], gpu: ([x]) => g(x!), ref: ([x]) => map(f, x!) });
});

const UNARY: Record<string, [(x: ws.Tensor) => ws.Tensor, (v: number) => number, number, number]> = {
  neg: [(x) => x.neg(), (v) => -v, -3, 3],
  exp: [(x) => x.exp(), Math.exp, -3, 3],
  log: [(x) => x.log(), Math.log, 0.1, 5],
  sqrt: [(x) => x.sqrt(), Math.sqrt, 0.1, 5],
  rsqrt: [(x) => x.rsqrt(), (v) => 1 / Math.sqrt(v), 0.2, 5],
  tanh: [(x) => x.tanh(), Math.tanh, -4, 4],
  relu: [(x) => x.relu(), (v) => Math.max(v, 0), -2, 2],
  gelu: [(x) => x.gelu(), geluTanh, -4, 4],
  "pow(3)": [(x) => x.pow(3), (v) => v ** 3, -2, 2],
  "pow(0.5)": [(x) => x.pow(0.5), (v) => v ** 0.5, 0.1, 4],
  "pow(-2)": [(x) => x.pow(-2), (v) => v ** -2, 0.5, 3],
};

for (const [name, [g, f, lo, hi]] of Object.entries(UNARY)) {
  test(`${name}: forward at odd sizes and backward by finite differences`, async () => {
    for (const shape of [[1], [37], [3, 11, 5]]) {
      const a = randArr(shape, shape.length * 7, lo, hi);
      const y = ws.tidy(() => g(fromArr(a)));
      assertClose(await y.toArray(), map(f, a).data, { rtol: 2e-6, atol: 1e-6, msg: `${name} ${shape}` });
      y.dispose();
    }
    // keep relu's finite differences away from the kink
    const inputs: Arr[] = [name === "relu" ? map((v) => (Math.abs(v) < 0.05 ? 0.3 : v), randArr([3, 7], 8, lo, hi)) : randArr([3, 7], 8, lo, hi)];
    await gradCheck({ inputs, gpu: ([x]) => g(x!), ref: ([x]) => map(f, x!) });
  });
}

test("tanh and gelu stay finite for large inputs (no NaN from exp overflow)", async () => {
  const x = ws.tensor([-200, -90, 90, 200]);
  assertClose(await x.tanh().toArray(), [-1, -1, 1, 1]);
  assertClose(await x.gelu().toArray(), [0, 0, 90, 200]);
});

test("where and maskedFill: forward with broadcasting and backward", async () => {
  const c = map((v) => (v > 0 ? 1 : 0), randArr([4, 5], 9));
  const a = randArr([4, 5], 10), b = randArr([5], 11);
  const sel = (x: number, y: number, z: number) => (x !== 0 ? y : z);
  const y = ws.where(fromArr(c), fromArr(a), fromArr(b));
  assertClose(await y.toArray(), map(sel, c, a, b).data);
  await gradCheck({ inputs: [c, a, b], wrt: [1, 2], gpu: ([cc, aa, bb]) => ws.where(cc!, aa!, bb!), ref: ([cc, aa, bb]) => map(sel, cc!, aa!, bb!) });
  const m = map((v) => (v > 0.3 ? 1 : 0), randArr([1, 5], 12));
  const z = fromArr(a).maskedFill(fromArr(m), -1e9);
  assertClose(await z.toArray(), map((x, mm) => (mm ? -1e9 : x), a, m).data);
  await gradCheck({ inputs: [a, m], wrt: [0], gpu: ([x, mm]) => x!.maskedFill(mm!, 5), ref: ([x, mm]) => map((v, k) => (k ? 5 : v), x!, mm!) });
});

test("i32 tensors: arithmetic, comparison and cast", async () => {
  const a = ws.tensor(new Int32Array([1, -2, 7, 40]), [4]);
  const b = ws.tensor(new Int32Array([3, 3, -2, 5]), [4]);
  assertEquals(a.dtype, "i32");
  assertEquals(Array.from(await a.add(b).toArray()), [4, 1, 5, 45]);
  assertEquals(Array.from(await a.mul(b).toArray()), [3, -6, -14, 200]);
  assertEquals(Array.from(await ws.div(a, 2).toArray()), [0, -1, 3, 20]);
  assertEquals(Array.from(await a.gt(b).toArray()), [0, 0, 1, 1]);
  assertEquals(Array.from(await a.to("f32").mul(0.5).toArray()), [0.5, -1, 3.5, 20]);
  assertEquals(Array.from(await ws.tensor([1.7, -2.2]).to("i32").toArray()), [1, -2]);
});

test("f16 tensors: creation, arithmetic and cast round trip", async () => {
  const a = ws.tensor([1, 2.5, -3, 1000], { dtype: "f16" });
  assertEquals(a.dtype, "f16");
  assertClose(await a.mul(2).toArray(), [2, 5, -6, 2000]);
  assertClose(await a.to("f32").toArray(), [1, 2.5, -3, 1000]);
  assertClose(await ws.tensor([0.1, 3]).to("f16").toArray(), [0.0999755859375, 3]);
}, { needs: ["shader-f16"] });
