// The measured spmm choice (src/sparse/spmm-tune.ts): tuneSpmm times real candidates and keeps the
// fastest for the shape, every candidate's product equals the float64 masked-dense reference, "auto"
// then runs the kept kernel for that shape only (seen in the profile's kernel family), a table
// round-trips through spmmTuning()/loadSpmmTuning() and one from another adapter is refused, and
// bad input is a typed error that leaves the table as it was. Lanes kernels take seconds each to
// compile on SwiftShader, so outside Deno the candidates are the rule, expand 64×64 and gather 64.
import * as ws from "../../src/index.ts";
import { clearSpmmTuning, compress24, doublePrune, loadSpmmTuning, sparseLinear, spmm, spmmCandidates, type SpmmChoice, spmmShapesOf, spmmTuning, tuneSpmm, tuneSpmmShapes } from "../../src/sparse/index.ts";
import { maskedLinear } from "../../src/sparse/masked-linear.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { familiesOf } from "../lib/families.ts";
import { test } from "../lib/harness.ts";
import { arr, map, matmul, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { applyMask, nmMask, slopeMasks } from "../ref/sparse.ts";

const rand32 = (shape: number[], seed: number) => map(Math.fround, randArr(shape, seed, -1, 1));
const cheap = (): SpmmChoice[] => ws.gpu().info.runtime === "Deno" ? spmmCandidates() : ["rule", "expand:64x64", "gather:64"];

test("tuneSpmm: times each candidate, keeps the fastest for the shape, and auto then runs it (float64 reference, odd shape)", async () => {
  clearSpmmTuning();
  const [rows, K, dOut] = [37, 68, 45];
  const w = rand32([dOut, K], 1), x = rand32([rows, K], 2), b = rand32([dOut], 3);
  const want = matmul(x, applyMask(w, nmMask(w, 2, 4)), false, true);
  want.data.forEach((v, i) => { want.data[i] = v + b.data[i % dOut]!; });
  const s = compress24(fromArr(w)), xt = fromArr(x), bt = fromArr(b);
  const candidates = cheap();
  const r = await tuneSpmm(xt, s, bt, { candidates, reps: 2 });
  assertEquals(r.key, `${rows}x${dOut}x${K}|f32|bias|highest`);
  assertEquals(r.timings.map((t) => t.choice).sort(), [...candidates].sort(), "every candidate timed once");
  assert(r.timings.every((t) => Number.isFinite(t.ms) && t.ms >= 0), `finite timings: ${JSON.stringify(r.timings)}`);
  assert(r.timings.every((t, i) => i === 0 || t.ms >= r.timings[i - 1]!.ms), "fastest first");
  assertEquals(r.choice, r.timings[0]!.choice);
  assertEquals(spmmTuning().entries, { [r.key]: r.choice });
  // every candidate computes the same product (as auto would run it once kept)
  for (const c of candidates) {
    loadSpmmTuning({ adapter: spmmTuning().adapter, entries: { [r.key]: c } });
    const y = spmm(xt, s, bt);
    assertClose(await y.toArray(), want.data, { rtol: 1e-4, atol: 1e-5, msg: `choice ${c}` });
    y.dispose();
  }
  // a kept gather choice is what auto runs at this shape, and only at this shape
  loadSpmmTuning({ adapter: spmmTuning().adapter, entries: { [r.key]: "gather:64" } });
  assertEquals(await familiesOf(() => spmm(xt, s, bt).dispose()), ["spmm_gather"]);
  const x2 = fromArr(rand32([rows + 1, K], 4));
  assert(!(await familiesOf(() => spmm(x2, s, bt).dispose())).includes("spmm_gather"), "another row count keeps the rule");
  assert(!(await familiesOf(() => spmm(xt, s, null).dispose())).includes("spmm_gather"), "no bias is another key");
  assert(!(await familiesOf(() => spmm(xt, s, bt, { path: "expand" }).dispose())).includes("spmm_gather"), "an explicit path wins");
  clearSpmmTuning();
  assertEquals(spmmTuning().entries, {});
  for (const t of [xt, bt, x2]) t.dispose();
  s.dispose();
});

test("spmm tuning tables: round trip, another adapter's table refused, bad input typed and changing nothing", async () => {
  clearSpmmTuning();
  const adapter = spmmTuning().adapter;
  assert(adapter.length > 0, "the table names its adapter");
  const entries = { "100x64x32|f32|nobias|highest": "expand:64x64", "4096x768x768|f16|bias|medium": "rule" } as const;
  assertEquals(loadSpmmTuning({ adapter, entries }), true);
  assertEquals(spmmTuning(), { adapter, entries });
  assertEquals(loadSpmmTuning({ adapter: "some other GPU", entries: { "100x64x32|f32|nobias|highest": "gather:128" } }), false);
  assertEquals(spmmTuning().entries, entries, "another adapter's table changes nothing");
  await assertThrows(() => loadSpmmTuning({ adapter, entries: { "100x64x32|f32|nobias|highest": "fast" as SpmmChoice } }), ws.ValueError, "unknown spmm choice \"fast\"");
  await assertThrows(() => loadSpmmTuning({ adapter, entries: { "100 by 64": "rule" } }), ws.ValueError, "malformed key");
  await assertThrows(() => loadSpmmTuning(null as never), ws.ValueError, "expected { adapter");
  assertEquals(spmmTuning().entries, entries, "a refused table changes nothing");
  const w = fromArr(rand32([8, 32], 5)), s = compress24(w);
  const small = fromArr(rand32([16, 32], 6)), big = fromArr(rand32([20, 32], 7));
  await assertThrows(() => tuneSpmm(small, s), ws.ShapeError, "16 rows");
  await assertThrows(() => tuneSpmm(big, s, null, { reps: 0 }), ws.ValueError, "reps must be an integer");
  await assertThrows(() => tuneSpmm(big, s, null, { candidates: [] }), ws.ValueError, "candidates is empty");
  await assertThrows(() => tuneSpmm(big, s, null, { clock: "cpu" as "wall" }), ws.ValueError, "clock must be");
  // the wall clock (a synchronised batch) times and keeps a choice too
  const wall = await tuneSpmm(big, s, null, { candidates: ["rule", "expand:64x64"], reps: 1, clock: "wall" });
  assertEquals(wall.clock, "wall");
  assert(wall.timings.length === 2 && wall.timings.every((t) => Number.isFinite(t.ms) && t.ms > 0), `wall timings ${JSON.stringify(wall.timings)}`);
  assertEquals(spmmTuning().entries[wall.key], wall.choice);
  clearSpmmTuning();
  loadSpmmTuning({ adapter, entries });
  await assertThrows(() => tuneSpmm(big, s, null, { candidates: ["expand:32x32" as SpmmChoice] }), ws.ValueError, "unknown spmm choice");
  await assertThrows(() => tuneSpmm(fromArr(rand32([20, 36], 8)), s), ws.ShapeError, "K=36");
  const s28 = compress24(w, { pattern: "2:8" });
  await assertThrows(() => tuneSpmm(big, s28), ws.ShapeError, "2:4 products");
  assertEquals(spmmTuning().entries, entries, "failed tunings change nothing");
  clearSpmmTuning();
  for (const t of [w, small, big]) t.dispose();
  s.dispose(); s28.dispose();
});

test("spmmShapesOf + tuneSpmmShapes: a sparseLinear step's forward and input-gradient shapes tuned; the tuned step equals the masked-dense oracle", async () => {
  clearSpmmTuning();
  const [rows, dIn, dOut] = [69, 100, 36];
  const w = rand32([dOut, dIn], 21), xa = rand32([rows, dIn], 22), proj = rand32([rows, dOut], 23), b = rand32([dOut], 24);
  const mR = nmMask(w, 2, 4), { mRC } = slopeMasks(w, 2, 4);
  const s = compress24(fromArr(w)), t = doublePrune(s), bias = fromArr(b), pt = fromArr(proj);
  const step = async () => {
    const x = fromArr(xa, { requiresGrad: true });
    const y = sparseLinear(x, s, t, bias);
    ws.tidy(() => y.mul(pt).sum().backward());
    const out = [await y.toArray(), await x.grad!.toArray()];
    x.grad!.dispose(); x.dispose(); y.dispose();
    return out;
  };
  let running: Promise<ArrayLike<number>[]> | null = null;
  const keys = spmmShapesOf(() => { running = step(); });
  await running;
  assertEquals([...keys].sort(), [`${rows}x${dIn}x${dOut}|f32|nobias|highest`, `${rows}x${dOut}x${dIn}|f32|bias|highest`].sort(), "forward (bias) and dX = dY·W_RC (no bias)");
  const results = await tuneSpmmShapes(keys, { candidates: ["rule", "expand:64x64", "gather:64"], reps: 1 });
  assertEquals(results.map((r) => r.key), keys);
  assertEquals(Object.keys(spmmTuning().entries).sort(), [...keys].sort());
  // force a non-rule kernel at both shapes: the step still equals the oracle
  loadSpmmTuning({ adapter: spmmTuning().adapter, entries: Object.fromEntries(keys.map((k) => [k, "gather:64"])) });
  const [y, dx] = await step();
  const xo = fromArr(xa, { requiresGrad: true });
  const yo = maskedLinear(xo, fromArr(w), fromArr(arr([dOut, dIn], Array.from(mR))), fromArr(arr([dOut, dIn], Array.from(mRC))), bias);
  ws.tidy(() => yo.mul(pt).sum().backward());
  assertClose(y!, await yo.toArray(), { rtol: 1e-4, atol: 1e-5, msg: "tuned forward against maskedLinear" });
  assertClose(dx!, await xo.grad!.toArray(), { rtol: 1e-4, atol: 1e-5, msg: "tuned dX against maskedLinear" });
  assertClose(dx!, matmul(proj, applyMask(w, mRC)).data, { rtol: 1e-4, atol: 1e-5, msg: "tuned dX = dY·(M_RC⊙W), float64" });
  await assertThrows(() => tuneSpmmShapes(["4096 by 768"]), ws.ValueError, "malformed key");
  // the key carries the f32 matmul precision (below "highest" the rule may take the matrix units)
  ws.setFloat32MatmulPrecision("medium");
  let medium: string[];
  try {
    medium = spmmShapesOf(() => sparseLinear(fromArr(xa), s, t, bias).dispose());
  } finally {
    ws.setFloat32MatmulPrecision("highest");
  }
  assertEquals(medium, [`${rows}x${dOut}x${dIn}|f32|bias|medium`]);
  clearSpmmTuning();
  xo.grad!.dispose(); xo.dispose(); yo.dispose();
  for (const x of [bias, pt]) x.dispose();
  s.dispose(); t.dispose();
});
