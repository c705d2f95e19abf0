// The measured sddmm choice (src/sparse/sddmm-tune.ts): tuneSddmm times real candidates and keeps
// the fastest for the shape, every candidate's gradient equals the float64 M_R⊙(dYᵀX), a 2:4 sddmm
// naming no kernel then runs the kept one for that shape only (seen in the profile's kernel
// family), tables round-trip and another adapter's is refused, bad input is a typed error that
// leaves the table as it was, and a sparseLinear step's weight gradient is found by sddmmShapesOf
// and stays equal to the masked-dense oracle when tuned.
import * as ws from "../../src/index.ts";
import {
  clearSddmmTuning, compress24, doublePrune, loadSddmmTuning, type SddmmChoice, sddmm, sddmmCandidates, sddmmShapesOf, sddmmTuning,
  sparseLinear, tuneSddmm, tuneSddmmShapes,
} from "../../src/sparse/index.ts";
import { maskedLinear } from "../../src/sparse/masked-linear.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { familiesOf } from "../lib/families.ts";
import { test } from "../lib/harness.ts";
import { arr, map, matmul, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gather, nmMask, slopeMasks } from "../ref/sparse.ts";

const rand32 = (shape: number[], seed: number) => map(Math.fround, randArr(shape, seed, -1, 1));

test("tuneSddmm: times each candidate, keeps the fastest for the shape, and an sddmm naming no kernel then runs it (float64 reference, odd shape)", async () => {
  clearSddmmTuning();
  const [rows, K, dOut] = [70, 36, 20];
  const w = rand32([dOut, K], 31), x = rand32([rows, K], 32), dY = rand32([rows, dOut], 33);
  const want = gather(matmul(dY, x, true, false), nmMask(w, 2, 4), 2, 4);
  const s = compress24(fromArr(w)), xt = fromArr(x), dYt = fromArr(dY);
  const candidates: SddmmChoice[] = ["rule", "matmul", "gather", "dense-tile:64x64:split2", "dense-tile:128x128:split1"];
  const r = await tuneSddmm(dYt, xt, s, { candidates, reps: 2 });
  assertEquals(r.key, `${rows}x${dOut}x${K}|f32|highest`);
  assertEquals(r.timings.map((t) => t.choice).sort(), [...candidates].sort(), "every candidate timed once");
  assert(r.timings.every((t, i) => Number.isFinite(t.ms) && t.ms >= 0 && (i === 0 || t.ms >= r.timings[i - 1]!.ms)), `finite, fastest first: ${JSON.stringify(r.timings)}`);
  assertEquals(r.choice, r.timings[0]!.choice);
  assertEquals(sddmmTuning().entries, { [r.key]: r.choice });
  const adapter = sddmmTuning().adapter;
  for (const c of candidates) {
    loadSddmmTuning({ adapter, entries: { [r.key]: c } });
    const g = sddmm(dYt, xt, s);
    assertClose(await g.toArray(), want, { rtol: 1e-4, atol: 1e-5, msg: `choice ${c}` });
    g.dispose();
  }
  // a kept gather choice is what runs at this shape, and only there; an explicit method wins
  loadSddmmTuning({ adapter, entries: { [r.key]: "gather" } });
  assertEquals(await familiesOf(() => sddmm(dYt, xt, s).dispose()), ["sddmm"]);
  const x2 = fromArr(rand32([rows + 1, K], 34)), dY2 = fromArr(rand32([rows + 1, dOut], 35));
  assert(!(await familiesOf(() => sddmm(dY2, x2, s).dispose())).includes("sddmm"), "another row count keeps the rule");
  assert(!(await familiesOf(() => sddmm(dYt, xt, s, { method: "dense-tile" }).dispose())).includes("sddmm"), "an explicit method wins");
  clearSddmmTuning();
  assertEquals(sddmmTuning().entries, {});
  for (const t of [xt, dYt, x2, dY2]) t.dispose();
  s.dispose();
});

test("sddmm tuning tables: round trip, another adapter's table refused, bad input typed and changing nothing", async () => {
  clearSddmmTuning();
  const adapter = sddmmTuning().adapter;
  const entries = { "70x20x36|f32|highest": "dense-tile:64x64:split4", "16384x768x768|f16|medium": "matmul" } as const;
  assertEquals(loadSddmmTuning({ adapter, entries }), true);
  assertEquals(sddmmTuning(), { adapter, entries });
  assertEquals(loadSddmmTuning({ adapter: "some other GPU", entries: { "70x20x36|f32|highest": "gather" } }), false);
  assertEquals(sddmmTuning().entries, entries, "another adapter's table changes nothing");
  await assertThrows(() => loadSddmmTuning({ adapter, entries: { "70x20x36|f32|highest": "fast" as SddmmChoice } }), ws.ValueError, "unknown sddmm choice \"fast\"");
  await assertThrows(() => loadSddmmTuning({ adapter, entries: { "70x20x36|f32|highest": "dense-tile:64x64:split99" } }), ws.ValueError, "splitK 99");
  await assertThrows(() => loadSddmmTuning({ adapter, entries: { "70 by 20": "rule" } }), ws.ValueError, "malformed key");
  await assertThrows(() => loadSddmmTuning(null as never), ws.ValueError, "expected { adapter");
  assertEquals(sddmmTuning().entries, entries, "a refused table changes nothing");
  const w = fromArr(rand32([8, 32], 36)), s = compress24(w), x = fromArr(rand32([20, 32], 37)), dY = fromArr(rand32([20, 8], 38));
  await assertThrows(() => tuneSddmm(dY, x, s, { reps: 0 }), ws.ValueError, "reps must be an integer");
  await assertThrows(() => tuneSddmm(dY, x, s, { candidates: [] }), ws.ValueError, "candidates is empty");
  await assertThrows(() => tuneSddmm(dY, x, s, { candidates: ["dense-tile:32x32" as SddmmChoice] }), ws.ValueError, "unknown sddmm choice");
  await assertThrows(() => tuneSddmm(dY, x, s, { clock: "cpu" as "wall" }), ws.ValueError, "clock must be");
  await assertThrows(() => tuneSddmm(x, x, s), ws.ShapeError, "do not fit the sparse matrix");
  const s28 = compress24(w, { pattern: "2:8" });
  await assertThrows(() => tuneSddmm(dY, x, s28), ws.ShapeError, "2:4 weights");
  assertEquals(sddmmTuning().entries, entries, "failed tunings change nothing");
  // the wall clock (a synchronised batch) times and keeps a choice too
  const wall = await tuneSddmm(dY, x, s, { candidates: ["rule", "matmul"], reps: 1, clock: "wall" });
  assertEquals(wall.clock, "wall");
  assertEquals(sddmmTuning().entries[wall.key], wall.choice);
  assertEquals(sddmmCandidates().filter((c) => c.startsWith("lanes")), [], "the lanes kernels are opt-in candidates");
  clearSddmmTuning();
  for (const t of [w, x, dY]) t.dispose();
  s.dispose(); s28.dispose();
});

test("sddmmShapesOf + tuneSddmmShapes: a sparseLinear step's weight-gradient shape tuned; the tuned w.values.grad equals the masked-dense oracle", async () => {
  clearSddmmTuning();
  const [rows, dIn, dOut] = [69, 100, 36];
  const w = rand32([dOut, dIn], 41), xa = rand32([rows, dIn], 42), proj = rand32([rows, dOut], 43);
  const mR = nmMask(w, 2, 4), { mRC } = slopeMasks(w, 2, 4);
  const s = compress24(fromArr(w)), t = doublePrune(s), pt = fromArr(proj);
  s.values.requiresGrad_();
  const step = async () => {
    const y = sparseLinear(fromArr(xa), s, t, null);
    ws.tidy(() => y.mul(pt).sum().backward());
    const g = await s.values.grad!.toArray();
    s.values.grad!.dispose(); s.values.grad = null; y.dispose();
    return g;
  };
  let running: Promise<ArrayLike<number>> | null = null;
  const keys = sddmmShapesOf(() => { running = step(); });
  await running;
  assertEquals(keys, [`${rows}x${dOut}x${dIn}|f32|highest`]);
  const results = await tuneSddmmShapes(keys, { candidates: ["rule", "matmul", "gather"], reps: 1 });
  assertEquals(results.map((r) => r.key), keys);
  loadSddmmTuning({ adapter: sddmmTuning().adapter, entries: { [keys[0]!]: "gather" } });
  const g = await step();
  // the oracle: the masked-dense simulation's dW at the kept positions, and float64 M_R⊙(dYᵀX)
  const wo = fromArr(w, { requiresGrad: true });
  const yo = maskedLinear(fromArr(xa), wo, fromArr(arr([dOut, dIn], Array.from(mR))), fromArr(arr([dOut, dIn], Array.from(mRC))), null);
  ws.tidy(() => yo.mul(pt).sum().backward());
  const dense = arr([dOut, dIn], Array.from(await wo.grad!.toArray()));
  assertClose(g, gather(dense, mR, 2, 4), { rtol: 1e-4, atol: 1e-5, msg: "tuned dW against maskedLinear" });
  assertClose(g, gather(matmul(proj, xa, true, false), mR, 2, 4), { rtol: 1e-4, atol: 1e-5, msg: "tuned dW = M_R⊙(dYᵀX), float64" });
  await assertThrows(() => tuneSddmmShapes(["4096 by 768"]), ws.ValueError, "malformed key");
  clearSddmmTuning();
  wo.grad!.dispose(); wo.dispose(); yo.dispose(); pt.dispose();
  s.dispose(); t.dispose();
});
