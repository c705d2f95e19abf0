// Reductions (sum, mean, max over any axes, keepDim) against the float64 reference, and their
// backward rules by finite differences, including non-adjacent axes and large rows.
import * as ws from "../../src/index.ts";
import { assertClose, assertEquals } from "../lib/assert.ts";
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
