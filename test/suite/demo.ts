// The demo page's logic outside the page: preset parameter counts against the real models, the
// moving-window throughput, and the run checkpoint (library checkpoint + the demo's metadata)
// resuming a dense and a SLoPe run with the same losses and curves. The page itself is tested in
// Chromium by test/browser/demo.spec.ts.
import { CheckpointError, manualSeed } from "../../src/index.ts";
import { GPT } from "../../src/nn/index.ts";
import { CharTokenizer, checkpointToBytes, Corpus } from "../../src/train/index.ts";
import { readDemoMeta, runFromBytes, runToBytes } from "../../demo/checkpoint.ts";
import { paramCount, PRESETS } from "../../demo/presets.ts";
import type { DemoConfig, RunKind } from "../../demo/protocol.ts";
import { RateWindow } from "../../demo/rate.ts";
import { Run } from "../../demo/runs.ts";
import { assert, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

const TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n".repeat(40);

test("demo: the presets' parameter counts match GPT.numParameters", () => {
  for (const [name, p] of Object.entries({ ...PRESETS, odd: { model: { nLayer: 1, nEmbd: 24, nHead: 3, blockSize: 8, dropout: 0, attention: "fused" as const } } })) {
    const m = new GPT({ vocabSize: 65, ...p.model });
    try {
      assertEquals(paramCount(p.model, 65), m.numParameters(), `preset ${name}`);
    } finally {
      m.dispose();
    }
  }
}, { browser: false });

test("demo: RateWindow needs two steps, slides, and keeps its last rate across a reset", () => {
  const w = new RateWindow(10, 3);
  assertEquals(w.rate(), null);
  w.add(1, 100, 0);
  assertEquals(w.rate(), null, "one point has no rate (no first-frame spike)");
  w.add(2, 100, 1000);
  w.add(3, 100, 2000);
  assertEquals(w.rate(), { tokensPerSec: 100, stepMs: 1000 });
  for (let s = 4; s <= 8; s++) w.add(s, 100, 2000 + (s - 3) * 500); // faster now: the window slides to it
  assertEquals(w.rate(), { tokensPerSec: 200, stepMs: 500 });
  w.reset();
  assertEquals(w.rate(), { tokensPerSec: 200, stepMs: 500 }, "after a reset the last rate stands until two new points");
}, { browser: false });

function config(): DemoConfig {
  return {
    preset: "custom", model: { nLayer: 2, nEmbd: 32, nHead: 2, blockSize: 16, dropout: 0, attention: "fused" },
    batchSize: 4, totalSteps: 10, lr: 3e-3, dense: true, slope: true, adapterRankFraction: 0.125, adapterAt: 0.5,
    sampleEvery: 0, sampleTokens: 8, autosaveEvery: 5, seed: 7,
  };
}

async function losses(run: Run, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) { run.record(); out.push(...(await run.drain(0)).map((p) => p[2])); }
  return out;
}

for (const [kind, precision] of [["dense", "f32"], ["slope", "f32"], ["slope", "mixed-f16"]] as [RunKind, "f32" | "mixed-f16"][]) {
  test(`demo: a ${kind} run${precision === "f32" ? "" : ` in ${precision}`} saved with runToBytes resumes with the same losses and its curves${kind === "slope" ? " (its adapters enter after the save)" : ""}`, async () => {
    const tok = new CharTokenizer(TEXT);
    const corpus = new Corpus(tok.encode(TEXT), { valFraction: 0.1 });
    const cfg = { ...config(), precision };
    manualSeed(cfg.seed);
    const a = new Run(kind, cfg, tok.vocabSize, corpus);
    let b: Run | null = null;
    try {
      await losses(a, 4);
      const bytes = await runToBytes(a, tok, "lines.txt");
      const meta = readDemoMeta(bytes);
      assertEquals([meta.kind, meta.step, meta.corpusName, meta.history.losses.length], [kind, 4, "lines.txt", 4]);
      assertEquals(meta.chars, tok.chars);
      const straight = await losses(a, 3); // crosses the adapters' entry at step 5 (SLoPe)
      b = await runFromBytes(bytes, corpus, tok.vocabSize);
      assertEquals(b.step, 4);
      assertEquals(b.history.losses.map((p) => p[0]), [0, 1, 2, 3]);
      assertEquals(await losses(b, 3), straight, "resumed losses equal the uninterrupted run's");
      if (kind === "slope") assert(b.trainer.adaptersActive, "the resumed SLoPe run inserted its adapters");
      assertEquals(!!b.trainer.scaler, precision === "mixed-f16", "the resumed run keeps its precision");
    } finally {
      a.dispose();
      b?.dispose();
    }
  }, { browser: false });
}

test("demo: a checkpoint without the demo's metadata is a CheckpointError, before any GPU work", async () => {
  const tok = new CharTokenizer(TEXT);
  const m = new GPT({ vocabSize: tok.vocabSize, nLayer: 1, nEmbd: 16, nHead: 2, blockSize: 8, seed: 1 });
  try {
    const bytes = await checkpointToBytes({ model: m, tokenizer: tok });
    await assertThrows(() => readDemoMeta(bytes), CheckpointError, "not saved by the demo page");
    await assertThrows(() => readDemoMeta(bytes.subarray(0, 5)), CheckpointError);
  } finally {
    m.dispose();
  }
}, { browser: false });
