// Layout ops (reshape, permute/transpose, slice/narrow, concat/split, expand) against the
// float64 reference, with finite-difference checks of their backward rules.
import * as ws from "../../src/index.ts";
import { assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, concat, map, permute, randArr, slice } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";

test("reshape is a view (no copy) and infers -1; its gradient flows", async () => {
  const a = randArr([2, 3, 4], 1);
  const x = fromArr(a);
  const y = x.reshape(4, -1);
  assertEquals(y.shape, [4, 6]);
  assert(y.buffer() === x.buffer(), "reshape shares the buffer");
  assertClose(await y.toArray(), a.data);
  await gradCheck({ inputs: [a], gpu: ([t]) => t!.reshape([6, 4]).mul(t!.reshape([6, 4])), ref: ([t]) => ({ shape: [6, 4], data: map((v) => v * v, t!).data }) });
});

function assert(c: boolean, m: string) { if (!c) throw new Error(m); }

test("permute and transpose at ranks 2-5, forward and backward", async () => {
  const cases: [number[], number[]][] = [[[3, 5], [1, 0]], [[2, 3, 4], [2, 0, 1]], [[2, 3, 4, 5], [0, 2, 1, 3]], [[2, 1, 3, 2, 3], [4, 3, 2, 1, 0]]];
  for (const [shape, perm] of cases) {
    const a = randArr(shape, shape.length);
    const y = fromArr(a).permute(perm);
    assertClose(await y.toArray(), permute(a, perm).data, { msg: `${shape} ${perm}` });
  }
  await gradCheck({ inputs: [randArr([2, 3, 4], 3)], gpu: ([t]) => t!.permute([1, 2, 0]), ref: ([t]) => permute(t!, [1, 2, 0]) });
  const b = randArr([4, 7], 5);
  assertClose(await fromArr(b).T.toArray(), permute(b, [1, 0]).data);
});

test("slice and narrow with negative and clamped bounds, forward and backward", async () => {
  const a = randArr([5, 6, 7], 9);
  const y = fromArr(a).slice([1, -4, 0], [4, 6, 100]);
  assertEquals(y.shape, [3, 4, 7]);
  assertClose(await y.toArray(), slice(a, [1, 2, 0], [4, 6, 7]).data);
  const n = fromArr(a).narrow(2, 3, 2);
  assertClose(await n.toArray(), slice(a, [0, 0, 3], [5, 6, 5]).data);
  await gradCheck({ inputs: [randArr([4, 5], 10)], gpu: ([t]) => t!.slice([1, 2], [3, 5]), ref: ([t]) => slice(t!, [1, 2], [3, 5]) });
});

test("concat and split along inner and outer axes, forward and backward", async () => {
  const a = randArr([2, 3, 4], 11), b = randArr([2, 5, 4], 12), c = randArr([2, 1, 4], 13);
  const y = ws.concat([fromArr(a), fromArr(b), fromArr(c)], 1);
  assertClose(await y.toArray(), concat([a, b, c], 1).data);
  const parts = y.split([3, 5, 1], 1);
  for (const [i, ref] of [a, b, c].entries()) assertClose(await parts[i]!.toArray(), ref.data);
  const eq = fromArr(randArr([6, 2], 14)).split(4, 0);
  assertEquals(eq.map((t) => t.shape[0]), [4, 2]);
  await gradCheck({
    inputs: [randArr([3, 2], 15), randArr([3, 4], 16)],
    gpu: ([p, q]) => ws.concat([p!, q!], 1),
    ref: ([p, q]) => concat([p!, q!], 1),
  });
  await gradCheck({ inputs: [randArr([5, 3], 17)], gpu: ([t]) => t!.split([2, 3], 0)[1]!, ref: ([t]) => slice(t!, [2, 0], [5, 3]) });
});

test("expand broadcasts and its gradient sums back", async () => {
  const a = randArr([3, 1], 18);
  const y = fromArr(a).expand([2, 3, 4]);
  const ref: Arr = map((v) => v, a, { shape: [2, 3, 4], data: new Float64Array(24) });
  assertClose(await y.toArray(), ref.data);
  await gradCheck({ inputs: [randArr([1, 4], 19)], gpu: ([t]) => t!.expand([3, 4]), ref: ([t]) => map((v) => v, t!, { shape: [3, 4], data: new Float64Array(12) }) });
});
