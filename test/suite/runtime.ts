// The runtime's promises: memory accounting is honest, tidy/dispose/aliases free what they
// should, a training step records into one submit (not one per op), and 1,000 steps of
// forward + backward + update keep live memory flat.
import * as ws from "../../src/index.ts";
import { Linear } from "../../src/nn/index.ts";
import { AdamW } from "../../src/optim/index.ts";
import { assert, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

test("memoryStats counts live bytes and tensors; dispose and tidy give them back", async () => {
  const before = ws.memoryStats();
  const a = ws.zeros([100, 10]);
  const s1 = ws.memoryStats();
  assertEquals(s1.liveBytes - before.liveBytes, 4000);
  assertEquals(s1.liveTensors - before.liveTensors, 1);
  const kept = ws.tidy(() => {
    const b = a.add(1);
    const c = b.mul(2);
    return c.sum();
  });
  assertEquals(ws.memoryStats().liveTensors - before.liveTensors, 2, "tidy kept only its result");
  const v = a.reshape([1000]);
  a.dispose();
  assertEquals(ws.memoryStats().liveBytes - before.liveBytes, 4000 + 4, "an alias keeps the storage alive");
  v.dispose(); kept.dispose();
  const after = ws.memoryStats();
  assertEquals(after.liveBytes, before.liveBytes);
  assertEquals(after.liveTensors, before.liveTensors);
  assert(after.peakBytes >= before.liveBytes + 4000, "peak remembers the high-water mark");
});

test("an unused autograd graph is freed when its tensors are disposed", async () => {
  const w = ws.randn([16, 16], { requiresGrad: true, seed: 3 });
  const base = ws.memoryStats().liveBytes;
  for (let i = 0; i < 5; i++) ws.tidy(() => { w.matmul(w).tanh().sum(); });
  assertEquals(ws.memoryStats().liveBytes, base, "saved tensors of never-backpropagated graphs were released");
  w.dispose();
});

function tinyModel() {
  const l1 = new Linear(8, 32, { seed: 1, activation: "gelu" });
  const l2 = new Linear(32, 4, { seed: 2 });
  return { l1, l2, params: [...l1.parameters(), ...l2.parameters()] };
}

test("a forward + backward + AdamW step of a 2-layer model is one queue submit, not one per op", async () => {
  const { l1, l2, params } = tinyModel();
  const opt = new AdamW(params, { lr: 1e-3 });
  const x = ws.randn([16, 8], { seed: 4 }), y = ws.randn([16, 4], { seed: 5 });
  const stats = ws.gpu().launcher.stats;
  const step = () => ws.tidy(() => {
    const loss = l2.forward(l1.forward(x)).sub(y).pow(2).mean();
    loss.backward();
    opt.step();
    opt.zeroGrad();
  });
  step();
  await ws.gpu().sync();
  const s0 = stats.submits, d0 = stats.dispatches;
  step();
  const submits = stats.submits - s0, dispatches = stats.dispatches - d0;
  assert(dispatches >= 15, `expected many dispatches in a step, got ${dispatches}`);
  assertEquals(submits, 1, `submits in one step (dispatches: ${dispatches})`);
  opt.dispose(); l1.dispose(); l2.dispose(); x.dispose(); y.dispose();
});

test("1,000 steps of forward, backward and AdamW keep memoryStats().liveBytes flat", async () => {
  const { l1, l2, params } = tinyModel();
  const opt = new AdamW(params, { lr: 1e-3 });
  const x = ws.randn([8, 8], { seed: 6 }), y = ws.randn([8, 4], { seed: 7 });
  const samples: number[] = [];
  for (let i = 0; i < 1000; i++) {
    ws.tidy(() => {
      const loss = l2.forward(l1.forward(x)).sub(y).pow(2).mean();
      loss.backward();
      opt.step();
      opt.zeroGrad();
    });
    // no await in the loop: finalizers of earlier tests' garbage cannot run between samples
    if (i % 100 === 99) samples.push(ws.memoryStats().liveBytes);
  }
  await ws.gpu().sync();
  assert(samples.every((s) => s === samples[0]), `liveBytes drifted: ${samples.join(", ")}`);
  opt.dispose(); l1.dispose(); l2.dispose(); x.dispose(); y.dispose();
}, { browser: false });

test("the same seed gives the same random tensors; the global generator follows manualSeed", async () => {
  const a = await ws.randn([5, 7], { seed: 42 }).toArray();
  const b = await ws.randn([5, 7], { seed: 42 }).toArray();
  assertEquals(Array.from(a), Array.from(b));
  ws.manualSeed(9);
  const c = await ws.rand([50]).toArray();
  ws.manualSeed(9);
  const d = await ws.rand([50]).toArray();
  assertEquals(Array.from(c), Array.from(d));
  assert(c.every((v) => v >= 0 && v < 1), "rand in [0, 1)");
  const big = Array.from(await ws.randn([20000], { seed: 1 }).toArray());
  const mean = big.reduce((s, v) => s + v, 0) / big.length;
  const std = Math.sqrt(big.reduce((s, v) => s + (v - mean) ** 2, 0) / big.length);
  assert(Math.abs(mean) < 0.03 && Math.abs(std - 1) < 0.03, `randn moments off: mean ${mean}, std ${std}`);
});

test("creation: tensor from nested and flat data, full, arange (f32 and i32)", async () => {
  assertEquals(Array.from(await ws.tensor([[1, 2], [3, 4]]).toArray()), [1, 2, 3, 4]);
  assertEquals(ws.tensor(new Float32Array(6), [2, 3]).shape, [2, 3]);
  assertEquals(Array.from(await ws.full([3], 7.5).toArray()), [7.5, 7.5, 7.5]);
  assertEquals(Array.from(await ws.arange(2, 11, 3).toArray()), [2, 5, 8]);
  const ai = ws.arange(0, 5, 1, { dtype: "i32" });
  assertEquals(ai.dtype, "i32");
  assertEquals(Array.from(await ai.toArray()), [0, 1, 2, 3, 4]);
  assertEquals(await ws.tensor([[3.5]]).item(), 3.5);
});

test("backward accumulates into .grad across calls and zeroGrad clears it", async () => {
  const w = ws.tensor([1, 2, 3], { requiresGrad: true });
  ws.tidy(() => w.mul(w).sum().backward());
  ws.tidy(() => w.mul(3).sum().backward());
  assertEquals(Array.from(await w.grad!.toArray()), [5, 7, 9]);
  const x = ws.tensor([1, 2], { requiresGrad: true });
  const y = ws.tensor([[1, 2], [3, 4]]);
  ws.tidy(() => x.mul(y).backward(ws.tensor([[1, 0], [0, 1]])));
  assertEquals(Array.from(await x.grad!.toArray()), [1, 4]);
  ws.noGrad(() => assert(!w.mul(2).requiresGrad, "noGrad records nothing"));
});
