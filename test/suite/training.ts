// End-to-end training: a 2-layer MLP learns a toy regression in 200 AdamW steps, with losses
// read back in one batch at the end (no await inside the loop); clipGradNorm matches torch.
import * as ws from "../../src/index.ts";
import { GPT, Linear } from "../../src/nn/index.ts";
import { CharTokenizer, Corpus, Trainer, generate } from "../../src/train/index.ts";
import { AdamW, clipGradNorm, linearWarmupDecay } from "../../src/optim/index.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

test("a 2-layer MLP trains 200 steps on a toy regression to low loss", async () => {
  // target: y = sin(3·x0)·cos(2·x1) on x ∈ [−1, 1]²
  const n = 256;
  const xs = new Float32Array(n * 2), ys = new Float32Array(n);
  let s = 12345;
  const r = () => { s = (s * 1103515245 + 12345) >>> 0; return (s / 4294967296) * 2 - 1; };
  for (let i = 0; i < n; i++) {
    const a = r(), b = r();
    xs[2 * i] = a; xs[2 * i + 1] = b;
    ys[i] = Math.sin(3 * a) * Math.cos(2 * b);
  }
  const x = ws.tensor(xs, [n, 2]), y = ws.tensor(ys, [n, 1]);
  const l1 = new Linear(2, 64, { seed: 1, activation: "gelu" }), l2 = new Linear(64, 1, { seed: 2 });
  const params = [...l1.parameters(), ...l2.parameters()];
  const opt = new AdamW(params, { lr: 3e-2, weightDecay: 0 });
  const losses: ws.Tensor[] = [];
  for (let step = 0; step < 200; step++) {
    const loss = ws.tidy(() => {
      const l = l2.forward(l1.forward(x)).sub(y).pow(2).mean();
      l.backward();
      return l;
    });
    opt.step();
    opt.zeroGrad();
    if (step === 0 || step === 199) losses.push(ws.keep(loss)); else loss.dispose();
  }
  const [first, last] = await Promise.all(losses.map((l) => l.item()));
  assert(first! > 0.15, `initial loss should be large, got ${first}`);
  assert(last! < 0.005 && last! < first! / 50, `final loss ${last} should be < 0.005 and < 1/50 of the initial ${first}`);
  for (const t of [...losses, x, y]) t.dispose();
  opt.dispose(); l1.dispose(); l2.dispose();
});

test("clipGradNorm: one global norm over all gradients, scaled in place like torch", async () => {
  const a = ws.tensor([3, 0], { requiresGrad: true }), b = ws.tensor([[0, 4]], { requiresGrad: true });
  ws.tidy(() => { a.mul(a).mul(0.5).sum().backward(); b.mul(b).mul(0.5).sum().backward(); });
  const norm = clipGradNorm([a, b], 1);
  assertClose([await norm.item()], [5]);
  assertClose(await a.grad!.toArray(), [0.6, 0], { rtol: 1e-5 });
  assertClose(await b.grad!.toArray(), [0, 0.8], { rtol: 1e-5 });
  const n2 = clipGradNorm([a, b], 10);
  assertClose([await n2.item()], [1], { rtol: 1e-5 });
  assertClose(await a.grad!.toArray(), [0.6, 0], { rtol: 1e-5 });
});

test("AdamW matches the torch.optim.AdamW update (computed by hand in float64)", async () => {
  const p = ws.tensor([0.5, -1, 2], { requiresGrad: true });
  const opt = new AdamW([p], { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.1 });
  let ref = [0.5, -1, 2], m = [0, 0, 0], v = [0, 0, 0];
  for (let t = 1; t <= 3; t++) {
    ws.tidy(() => p.mul(p).mul(p).sum().backward()); // g = 3p²
    opt.step();
    opt.zeroGrad();
    ref = ref.map((w, i) => {
      const g = 3 * w * w;
      w = w * (1 - 0.1 * 0.1);
      m[i] = 0.9 * m[i]! + 0.1 * g; v[i] = 0.99 * v[i]! + 0.01 * g * g;
      const mh = m[i]! / (1 - 0.9 ** t), vh = v[i]! / (1 - 0.99 ** t);
      return w - 0.1 * mh / (Math.sqrt(vh) + 1e-8);
    });
  }
  assertClose(await p.toArray(), ref, { rtol: 1e-5, atol: 1e-6 });
  opt.dispose();
});

test("linearWarmupDecay: warm-up to lr, then linear decay to 0", () => {
  const o = { lr: 1, warmupSteps: 4, totalSteps: 12 };
  assertClose([0, 3, 4, 8, 12].map((s) => linearWarmupDecay(s, o)), [0.25, 1, 1, 0.5, 0]);
});

for (const mode of ["dense", "SLoPe 2:4 with lazy adapters"] as const) {
  test(`Trainer (${mode}): a small GPT's loss falls within 40 steps on a repetitive corpus`, async () => {
    const text = "the quick brown fox jumps over the lazy dog. ".repeat(40);
    const tok = new CharTokenizer(text);
    const corpus = new Corpus(tok.encode(text), { valFraction: 0.2 });
    const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, seed: 1 });
    const trainer = new Trainer(model, corpus, {
      batchSize: 8, totalSteps: 40, lr: 3e-3, seed: 2,
      slope: mode === "dense" ? undefined : { adapterRank: 2, adapterAt: 0.9 },
    });
    const losses: ws.Tensor[] = [];
    for (let i = 0; i < 40; i++) losses.push(trainer.step());
    const vals = await Promise.all(losses.map((l) => l.item()));
    for (const l of losses) l.dispose();
    const first = vals.slice(0, 3).reduce((a, b) => a + b) / 3, last = vals.slice(-3).reduce((a, b) => a + b) / 3;
    assert(Math.abs(first - Math.log(tok.vocabSize)) < 0.6, `initial loss ${first} ≈ ln(${tok.vocabSize})`);
    assert(last < first - 0.8, `loss should fall: ${first.toFixed(3)} → ${last.toFixed(3)}`);
    if (mode !== "dense") assert(trainer.adaptersActive, "adapters entered at 90%");
    const val = await trainer.evaluate(2);
    assert(Number.isFinite(val) && val < first, `validation loss ${val}`);
    const sample = tok.decode(await generate(model, tok.encode("the "), { maxNewTokens: 8, seed: 3, topK: 5 }));
    assertEquals(sample.length, 8);
    trainer.dispose(); model.dispose();
  });
}
