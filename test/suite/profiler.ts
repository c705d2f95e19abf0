// profile(): a profiled training step accounts for every dispatch the launcher issued, times them
// where the adapter has timestamp-query, attributes them to ops and kernel families whose sums
// equal the total, and writes a valid Chrome trace; with no profile the launcher path is unchanged.
import * as ws from "../../src/index.ts";
import { GPT } from "../../src/nn/index.ts";
import { CharTokenizer, Corpus, Trainer } from "../../src/train/index.ts";
import { assert, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

function tinyTrainer(slope: boolean): { trainer: Trainer; model: GPT } {
  const text = "to be or not to be, that is the question. ".repeat(20);
  const tok = new CharTokenizer(text);
  const corpus = new Corpus(tok.encode(text), { valFraction: 0.2 });
  const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, seed: 3 });
  const trainer = new Trainer(model, corpus, { batchSize: 4, totalSteps: 10, seed: 4, slope: slope ? {} : undefined });
  return { trainer, model };
}

/** Runs `n` steps, returning what the launcher counted (submits include the final flush). */
function steps(trainer: Trainer, n: number): { dispatches: number; submits: number; passes: number } {
  const st = ws.gpu().launcher.stats;
  ws.flush();
  const d0 = st.dispatches, s0 = st.submits, p0 = st.passes;
  for (let i = 0; i < n; i++) trainer.step().dispose();
  ws.flush();
  return { dispatches: st.dispatches - d0, submits: st.submits - s0, passes: st.passes - p0 };
}

function sumRows(rows: ws.ProfileRow[]): { calls: number; ms: number } {
  return { calls: rows.reduce((a, r) => a + r.calls, 0), ms: rows.reduce((a, r) => a + r.totalMs, 0) };
}

function checkProfile(p: ws.Profile, dispatches: number): void {
  assertEquals(p.dispatches, dispatches, "the profile holds every dispatch the launcher counted");
  for (const by of ["op", "family", "kernel"] as const) assertEquals(sumRows(p.summary(by)).calls, dispatches, `calls by ${by}`);
  const trace = JSON.parse(p.chromeTrace()) as { traceEvents: { ph: string; name: string; ts: number; dur: number; cat?: string }[] };
  const xs = trace.traceEvents.filter((e) => e.ph === "X");
  assertEquals(xs.length, dispatches, "one complete trace event per dispatch");
  for (const e of xs) assert(typeof e.name === "string" && e.name && Number.isFinite(e.ts) && e.dur >= 0, `trace event ${JSON.stringify(e)}`);
  const table = p.table();
  assert(table.includes("calls") && table.includes("% of step") && table.includes("mean µs"), table);
}

for (const slope of [false, true]) {
  const mode = slope ? "SLoPe" : "dense";
  test(`profile(): a ${mode} training step reports every dispatch with positive GPU times; per-op sums equal the total`, async () => {
    const { trainer, model } = tinyTrainer(slope);
    steps(trainer, 1); // compile pipelines, allocate optimizer state
    const plain = steps(trainer, 1);
    let inside = { dispatches: 0, submits: 0, passes: 0 };
    const p = await ws.profile(() => { inside = steps(trainer, 1); });
    assertEquals(inside.dispatches, plain.dispatches, "profiling does not change the dispatches of a step");
    assertEquals(inside.submits, plain.submits, "nor its submits");
    assertEquals(inside.passes, inside.dispatches, "a pass per dispatch while profiling");
    checkProfile(p, inside.dispatches);
    assert(p.timed, "the adapter has timestamp-query");
    assert(p.totalMs > 0, `summed GPU time ${p.totalMs}`);
    for (const e of p.events) assert(e.durUs >= 0 && Number.isFinite(e.startUs), `event ${JSON.stringify(e)}`);
    const total = p.totalMs;
    for (const by of ["op", "family"] as const) {
      const s = sumRows(p.summary(by));
      assert(Math.abs(s.ms - total) <= 1e-9 * Math.max(1, total) + 1e-12, `per-${by} sum ${s.ms} = total ${total}`);
      const pct = p.summary(by).reduce((a, r) => a + r.percent, 0);
      assert(Math.abs(pct - 100) < 1e-6, `percentages sum to ${pct}`);
    }
    const ops = new Set(p.summary("op").map((r) => r.name));
    for (const op of ["embedding", "matmul", "layerNorm", "crossEntropy", "matmul.backward", "AdamW.step", "clipGradNorm"]) {
      assert(ops.has(op), `op ${op} in the profile (${[...ops].join(", ")})`);
    }
    if (slope) assert(ops.has("SparseAdamW.step") && ops.has("sparseLinear"), `SLoPe ops in ${[...ops].join(", ")}`);
    const fams = new Set(p.summary("family").map((r) => r.name));
    assert(fams.has("matmul") && fams.has("adamw"), `families ${[...fams].join(", ")}`);
    trainer.dispose(); model.dispose();
  }, { needs: ["timestamp-query"] });
}

test("profile(): without profiling the launcher keeps one pass across dispatches (no timestamp writes, no extra passes)", async () => {
  const { trainer, model } = tinyTrainer(false);
  steps(trainer, 1);
  const before = steps(trainer, 1);
  await ws.profile(() => steps(trainer, 1));
  const after = steps(trainer, 1);
  assertEquals(after, before, "launcher counts of a step before and after a profile");
  assert(after.passes < after.dispatches / 4, `passes ${after.passes} ≪ dispatches ${after.dispatches}`);
  trainer.dispose(); model.dispose();
});

test("profile({ timing: false }): counts dispatches per op and says timing is unavailable", async () => {
  const a = ws.randn([8, 8], { seed: 1 }), b = ws.randn([8, 8], { seed: 2 });
  const p = await ws.profile(() => { ws.matmul(a, b).dispose(); ws.add(a, b).dispose(); }, { timing: false });
  assertEquals(p.dispatches, 2);
  assert(!p.timed && Number.isNaN(p.totalMs), "untimed");
  assertEquals(p.summary("family").map((r) => r.calls).reduce((x, y) => x + y), 2);
  assert(p.table().includes("timing unavailable"), p.table());
  checkProfile(p, 2);
  a.dispose(); b.dispose();
});

test("startProfile(): one profile at a time, stop() once; a throwing profiled function ends the profile", async () => {
  const s = ws.startProfile();
  let threw = false;
  try { ws.startProfile(); } catch (e) { threw = e instanceof ws.ValueError; }
  assert(threw, "a second profile is a ValueError");
  await s.stop();
  threw = false;
  try { await s.stop(); } catch (e) { threw = e instanceof ws.ValueError; }
  assert(threw, "stopping twice is a ValueError");
  threw = false;
  try { await ws.profile(() => { throw new Error("boom"); }); } catch (e) { threw = (e as Error).message === "boom"; }
  assert(threw, "profile() rethrows the function's error");
  const p = await ws.profile(() => ws.zeros([4]).dispose()); // a new profile can start: the failed one ended
  assert(p.dispatches >= 0);
  assertEquals(ws.gpu().launcher.recording, null, "no recording left active");
});
