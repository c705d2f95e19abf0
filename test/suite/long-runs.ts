// Long runs keep memory flat: 1,000 training steps of a tiny GPT (dense, and SLoPe with the
// lazy adapters entering at 30%), 1,000 generated tokens and 100 evaluate() calls. Deno only
// (lavapipe): these loops are too slow for the Node and Chromium runners' CI time.
// The training loops never await, so each 100-step stretch is compared synchronously; generate
// and evaluate await inside, where finalizers of earlier tests' garbage may free memory, so
// those check that nothing grew.
import * as ws from "../../src/index.ts";
import { GPT } from "../../src/nn/index.ts";
import { CharTokenizer, Corpus, Trainer, generate } from "../../src/train/index.ts";
import { assert, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

const TEXT = Array.from({ length: 60 }, (_, i) => `line ${i % 13}: the quick brown fox jumps over the lazy dog ${i % 7}.\n`).join("");

function setup(seed: number) {
  const tok = new CharTokenizer(TEXT);
  const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, seed });
  return { tok, model, corpus: new Corpus(tok.encode(TEXT)) };
}

const live = () => { const m = ws.memoryStats(); return [m.liveBytes, m.liveTensors]; };

for (const slope of [false, true]) {
  const name = slope ? "SLoPe with lazy adapters entering at step 300" : "dense";
  test(`1,000 training steps (${name}): live bytes and tensors flat after warm-up (Deno only)`, async () => {
    const { model, corpus } = setup(3);
    const trainer = new Trainer(model, corpus, {
      batchSize: 2, totalSteps: 1000, lr: 3e-3, seed: 1,
      ...(slope ? { slope: { adapterRank: 2, adapterAt: 0.3, maskChangeFreq: 10 } } : {}),
    });
    const growth: string[] = [];
    for (let stretch = 0; stretch < 10; stretch++) {
      await ws.gpu().sync(); // between stretches only: keeps the queue short
      const s0 = live();
      for (let i = 0; i < 100; i++) trainer.step().dispose();
      const s1 = live();
      // warm-up: the first stretch (optimizer state appears), and for SLoPe the one where the adapters enter
      const warm = stretch === 0 || (slope && stretch === 3);
      if (!warm && (s1[0] !== s0[0] || s1[1] !== s0[1])) growth.push(`steps ${stretch * 100}–${stretch * 100 + 99}: ${s0} → ${s1}`);
    }
    await trainer.settle();
    assert(trainer.adaptersActive === slope, "the adapters entered (SLoPe) or never existed (dense)");
    assertEquals(growth, [], "live [bytes, tensors] over each 100-step stretch after warm-up");
    assert(trainer.lastLoss !== null && trainer.lastLoss.loss < 2.5, `it learned: last loss ${trainer.lastLoss?.loss}`);
    trainer.dispose(); model.dispose();
  }, { runtimes: ["deno"] });
}

test("1,000 generated tokens and 100 evaluate() calls leave live memory where it was (Deno only)", async () => {
  const { model, corpus, tok } = setup(4);
  const trainer = new Trainer(model, corpus, { batchSize: 2, totalSteps: 10, seed: 2 });
  for (let i = 0; i < 10; i++) trainer.step().dispose();
  await trainer.settle();
  await generate(model, tok.encode("the "), { maxNewTokens: 20, topK: 5 }); // warm-up
  await trainer.evaluate(2);
  const g0 = live();
  const tokens = await generate(model, tok.encode("the "), { maxNewTokens: 1000, topK: 5, seed: 9 });
  const g1 = live();
  assertEquals(tokens.length, 1000);
  assert(g1[0]! <= g0[0]! && g1[1]! <= g0[1]!, `generate grew live [bytes, tensors]: ${g0} → ${g1}`);
  for (let i = 0; i < 100; i++) await trainer.evaluate(2, i);
  const e1 = live();
  assert(e1[0]! <= g1[0]! && e1[1]! <= g1[1]!, `evaluate grew live [bytes, tensors]: ${g1} → ${e1}`);
  trainer.dispose(); model.dispose();
}, { runtimes: ["deno"] });
