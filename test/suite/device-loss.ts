// Device loss and recovery, past the first error: storage remembers the context it came from,
// so tensors of a lost device — disposed by the user or collected — never reach the new pool,
// an op recorded before the loss reports DeviceLostError, and training on the device init()
// makes afterwards gives the same losses as before. Imported after compile.ts: it destroys
// the device on purpose.
import * as ws from "../../src/index.ts";
import { GPT } from "../../src/nn/index.ts";
import { CharTokenizer, Corpus, Trainer } from "../../src/train/index.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

async function trainLosses(steps: number): Promise<number[]> {
  const text = "to be or not to be, that is the question. ".repeat(12);
  const tok = new CharTokenizer(text);
  ws.manualSeed(7);
  const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, seed: 3 });
  const trainer = new Trainer(model, new Corpus(tok.encode(text)), { batchSize: 4, totalSteps: steps, seed: 5 });
  const losses = Array.from({ length: steps }, () => trainer.step());
  const vals = await Promise.all(losses.map((l) => l.item()));
  for (const l of losses) l.dispose();
  trainer.dispose(); model.dispose();
  return vals;
}

test("device loss: old tensors disposed or collected never reach the new pool; init() gives a runtime that trains as before", async () => {
  const before = await trainLosses(3);
  const g = ws.gpu();
  const oldModel = new GPT({ vocabSize: 7, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 8, seed: 1 });
  const disposed = [ws.randn([300], { seed: 1 }), ws.ones([5, 5]), ws.zeros([1024])];
  const collected = ws.randn([77], { seed: 2 });
  const collectedStorage = collected.storage();
  const kept = ws.ones([4]);
  const pending = disposed[0]!.mul(2); // recorded, not yet submitted
  g.device.destroy();
  await assertThrows(() => pending.toArray(), ws.DeviceLostError, "init()");
  await g.device.lost;
  const g2 = await ws.init({ gpu: g.info.gpu });
  assert(g2 !== g, "init() after a loss makes a new context");
  const base = ws.memoryStats();
  for (const t of [...disposed, pending]) t.dispose();
  oldModel.dispose();
  collectedStorage.release(); // what the FinalizationRegistry does once `collected` is garbage
  const after = ws.memoryStats();
  assertEquals([after.liveBytes, after.liveTensors, after.pooledBytes], [base.liveBytes, base.liveTensors, base.pooledBytes],
    "the new pool after disposing and collecting the old device's tensors");
  await assertThrows(() => kept.add(1), ws.DeviceLostError, "add", "[4]", "lost device", "rebuild");
  await assertThrows(() => kept.toArray(), ws.DeviceLostError, "toArray");
  kept.dispose();
  const again = await trainLosses(3);
  assert(again.every((l) => Number.isFinite(l) && l > 0.5), `losses on the new device: ${again.join(", ")}`);
  assertClose(again, before, { rtol: 1e-5, atol: 1e-6, msg: "the same seeded run on the new device" });
  assertEquals(ws.memoryStats().liveTensors, base.liveTensors, "nothing left behind");
});
