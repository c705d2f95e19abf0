// Reductions (sum, mean, max over any axes, keepDim) against the float64 reference, and their
// backward rules by finite differences, including non-adjacent axes and large rows; argmax
// against a CPU scan (ties to the first index) along every axis and flattened.
import * as ws from "../../src/index.ts";
import { assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { reduce, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";

const CASES: [number[], number[] | undefined, boolean][] = [
  [[7], undefined, false],
  [[5, 3], [1], false],
  [[5, 3], [0], true],
  [[4, 6, 5], [0, 2], false],
  [[4, 6, 5], [1], true],
  [[2, 3, 4, 5], [1, 2], false],
  [[2, 3, 4, 5], [0, 3], true],
  [[3, 1000], [-1], false],
  [[1301], [0], false],
];

for (const kind of ["sum", "mean", "max"] as const) {
  test(`${kind}: forward over ${CASES.length} axis sets (adjacent, split, all, keepDim)`, async () => {
    for (const [i, [shape, axes, keep]] of CASES.entries()) {
      const a = randArr(shape, 40 + i);
      const t = fromArr(a);
      const y = t[kind](axes, keep);
      const ref = reduce(a, axes ?? shape.map((_, d) => d), keep, kind);
      assertEquals(y.shape, ref.shape, `${kind} ${shape} axes ${axes} shape`);
      assertClose(await y.toArray(), ref.data, { rtol: 1e-5, atol: 1e-5, msg: `${kind} ${shape} axes ${axes}` });
      t.dispose(); y.dispose();
    }
  });
  test(`${kind}: backward matches finite differences`, async () => {
    for (const [shape, axes, keep] of [[[3, 4, 5], [0, 2], false], [[4, 6], [1], true], [[2, 3], undefined, false]] as const) {
      await gradCheck({
        inputs: [randArr([...shape], 77)],
        gpu: ([x]) => x![kind](axes ? [...axes] : undefined, keep),
        ref: ([x]) => reduce(x!, axes ? [...axes] : shape.map((_, d) => d), keep, kind),
      });
    }
  });
}

test("max backward splits the gradient equally among tied maxima", async () => {
  const x = ws.tensor([[1, 3, 3], [2, 0, 1]], { requiresGrad: true });
  x.max(1).sum().backward();
  assertClose(await x.grad!.toArray(), [0, 0.5, 0.5, 1, 0, 0]);
});

// The partial-pass chains of the tiled reduce: R and inner off the tile sizes, R past lavapipe's
// 65,535-iteration loop cap, inner = 1, 3, 5, 384 and 4·384, over [outer, R, inner] blocks.
const TILED: [number[], number[]][] = [
  [[300, 1], [0]], [[300, 3], [0]], [[1001, 5], [0]], [[257, 384], [0]], [[513, 1536], [0]],
  [[2, 70001, 3], [1]], [[70003, 1], [0]], [[70005, 5], [0]], [[3, 70000], [1]], [[4099, 7], [0]],
  [[5, 9, 384], [1]], [[17, 4], [0]], [[2, 33, 3, 4], [1, 2]], [[1, 20, 1536], [1]],
];
for (const kind of ["sum", "mean", "max"] as const) {
  test(`${kind}: tiled passes over ${TILED.length} odd [outer, R, inner] shapes, R up to 70,005`, async () => {
    for (const [i, [shape, axes]] of TILED.entries()) {
      const a = randArr(shape, 90 + i);
      const t = fromArr(a);
      const y = t[kind](axes);
      const ref = reduce(a, axes, false, kind);
      const R = axes.reduce((p, d) => p * shape[d]!, 1);
      const atol = kind === "sum" ? 2e-6 * Math.sqrt(R) + 1e-5 : 1e-5;
      assertEquals(y.shape, ref.shape, `${kind} ${shape} shape`);
      assertClose(await y.toArray(), ref.data, { rtol: 1e-5, atol, msg: `${kind} [${shape}] axes ${axes}` });
      t.dispose(); y.dispose();
    }
  });
}

test("f16 sum/max over a non-last axis accumulate in f32 (R = 3000, inner = 384 and 5)", async () => {
  for (const [shape, seed] of [[[3000, 384], 5], [[3000, 5], 6]] as const) {
    const a = randArr([...shape], seed);
    const t = fromArr(a).to("f16");
    const back = await t.to("f32").toArray();
    const a16 = { shape: [...shape], data: Float64Array.from(back) };
    for (const kind of ["sum", "max"] as const) {
      const y = t[kind](0);
      assertEquals(y.dtype, "f16");
      const ref = reduce(a16, [0], false, kind);
      // The f32 sum is exact enough; the one f16 rounding of the result is the error.
      assertClose(await y.toArray(), ref.data, { rtol: 1e-3, atol: 2e-2, msg: `f16 ${kind} [${shape}]` });
      y.dispose();
    }
    t.dispose();
  }
}, { needs: ["shader-f16"] });

/** Indices of the first maximum along `axis` of a row-major array (undefined: flattened). */
function refArgmax(data: ArrayLike<number>, shape: number[], axis?: number): number[] {
  if (axis === undefined) { let b = 0; for (let i = 1; i < data.length; i++) if (data[i]! > data[b]!) b = i; return [b]; }
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1), n = shape[axis]!, inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
    let b = 0;
    for (let k = 1; k < n; k++) if (data[(o * n + k) * inner + i]! > data[(o * n + b) * inner + i]!) b = k;
    out.push(b);
  }
  return out;
}

test("argmax along every axis, flattened and with keepDim equals a CPU scan; ties go to the first index; bad input is a typed error", async () => {
  const cases: [number[], number | undefined, boolean][] = [[[3, 700], -1, false], [[5, 7, 3], 0, false], [[5, 7, 3], 1, true], [[4, 9], undefined, false], [[4, 9], undefined, true], [[1301], 0, false]];
  for (const [n, [shape, axis, keepDim]] of cases.entries()) {
    const a = randArr(shape, 300 + n);
    // coarse values: many ties, so the first-index rule is exercised
    a.data.forEach((v, i) => { a.data[i] = Math.round(v * 3); });
    const x = fromArr(a);
    const y = x.argmax(axis, keepDim);
    const norm = axis === undefined ? undefined : (axis + shape.length) % shape.length;
    const want = norm === undefined ? (keepDim ? shape.map(() => 1) : []) : shape.flatMap((d, i) => (i === norm ? (keepDim ? [1] : []) : [d]));
    assertEquals(y.dtype, "i32");
    assertEquals(y.shape, want, `shape of ${shape} axis ${axis}`);
    assertEquals(Array.from(await y.toArray()).join(), refArgmax(a.data, shape, norm).join(), `${shape} axis ${axis}`);
    x.dispose(); y.dispose();
  }
  const x = ws.tensor([1, 5, 5, -2], [2, 2]);
  assertEquals(Array.from(await ws.argmax(x, 1).toArray()).join(), "1,0");
  await assertThrows(() => ws.argmax(ws.zeros([3, 0]), 1), ws.ShapeError, "argmax", "empty axis");
  await assertThrows(() => ws.argmax(x, 2), ws.ShapeError, "argmax");
  await assertThrows(() => ws.argmax(x, 0.5), ws.ShapeError, "argmax", "integer axis");
  await assertThrows(() => ws.argmax(ws.cast(x, "i32"), 0), ws.DTypeError, "argmax");
  x.dispose();
});
