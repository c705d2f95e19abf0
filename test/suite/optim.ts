// Optimizers over flat arenas: AdamW and SparseAdamW update every parameter of an arena in one
// dispatch, backward writes gradients into their slots, clipGradNorm sums and scales an arena as
// one tensor; all checked against float64 AdamW by hand, with the per-tensor fallbacks.
import * as ws from "../../src/index.ts";
import { AdamW, clipGradNorm, SparseAdamW } from "../../src/optim/index.ts";
import { planArenas } from "../../src/optim/arena.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { randArr } from "../ref/cpu.ts";
import { TwoLayer } from "../lib/models.ts";
import { GPT } from "../../src/nn/index.ts";
import { CharTokenizer, Corpus, Trainer } from "../../src/train/index.ts";

const SHAPES = [[1], [3], [5], [384], [7, 13], [4 * 384]];
const HP = { lr: 0.05, betas: [0.9, 0.99] as [number, number], eps: 1e-8, weightDecay: 0.1 };

/** float64 AdamW on plain arrays, one parameter. */
class RefAdamW {
  m: number[]; v: number[]; t = 0;
  constructor(public w: number[]) { this.m = w.map(() => 0); this.v = w.map(() => 0); }
  step(g: number[]): void {
    const { lr, betas: [b1, b2], eps, weightDecay } = HP;
    this.t++;
    this.w = this.w.map((w0, i) => {
      const w = w0 * (1 - lr * weightDecay);
      this.m[i] = b1 * this.m[i]! + (1 - b1) * g[i]!; this.v[i] = b2 * this.v[i]! + (1 - b2) * g[i]! * g[i]!;
      return w - (lr * this.m[i]! / (1 - b1 ** this.t)) / (Math.sqrt(this.v[i]! / (1 - b2 ** this.t)) + eps);
    });
  }
}

function makeParams(seed: number): { ps: ws.Tensor[]; refs: RefAdamW[] } {
  const arrs = SHAPES.map((s, i) => randArr(s, seed + i));
  return { ps: arrs.map((a) => ws.tensor(Float32Array.from(a.data), a.shape, { requiresGrad: true })), refs: arrs.map((a) => new RefAdamW([...a.data])) };
}

/** loss = Σ_k (k+1)·Σ p_k³, so dL/dp_k = 3(k+1)·p_k². */
function backward(ps: ws.Tensor[], only?: number[]): void {
  ws.tidy(() => {
    let loss: ws.Tensor | null = null;
    ps.forEach((p, k) => {
      if (only && !only.includes(k)) return;
      const term = p.mul(p).mul(p).sum().mul(k + 1);
      loss = loss ? loss.add(term) : term;
    });
    loss!.backward();
  });
}
const refGrad = (w: number[], k: number) => w.map((x) => 3 * (k + 1) * x * x);

/** Counts dispatches whose kernel key starts with `family` while fn runs. */
function countDispatches(family: string, fn: () => void): number {
  const l = ws.gpu().launcher as unknown as { dispatch: (k: { key: string }, ...r: unknown[]) => void };
  const real = l.dispatch;
  let n = 0;
  l.dispatch = function (k, ...r) { if (k.key.startsWith(family)) n++; return real.call(this, k, ...r); };
  try { fn(); } finally { l.dispatch = real; }
  return n;
}

for (const arenaBytes of [undefined, 2048]) {
  const label = arenaBytes ? `arenas of ≤ ${arenaBytes} bytes` : "one arena";
  test(`AdamW (${label}): parameters of sizes 1…1536 match float64 AdamW over 3 steps, one dispatch per arena`, async () => {
    const { ps, refs } = makeParams(7);
    const opt = new AdamW(ps, { ...HP, arenaBytes });
    const align = ws.gpu().limits.minStorageBufferOffsetAlignment;
    const arenas = planArenas(ps.map((p) => p.size), arenaBytes ?? Infinity).length;
    assert(arenaBytes === undefined ? arenas === 1 : arenas > 1 || align > 2048, "the small limit splits the group");
    for (let t = 0; t < 3; t++) {
      backward(ps);
      assertEquals(countDispatches("adamw", () => opt.step()), arenas, "dispatches per step");
      opt.zeroGrad();
      refs.forEach((r, k) => r.step(refGrad(r.w, k)));
    }
    for (const [k, p] of ps.entries()) {
      assertClose(await p.toArray(), refs[k]!.w, { rtol: 2e-5, atol: 1e-6, msg: `param ${k} [${SHAPES[k]}]` });
      assertEquals(opt.stateOf(p)!.step, 3);
      assertClose(await opt.stateOf(p)!.m.toArray(), refs[k]!.m, { rtol: 2e-5, atol: 1e-6, msg: `m ${k}` });
    }
    opt.dispose();
    for (const p of ps) p.dispose();
  });
}

test("AdamW: a parameter without a gradient is left alone, the others update on their own, step counts diverge", async () => {
  const { ps, refs } = makeParams(21);
  const opt = new AdamW(ps, HP);
  const plan = [undefined, [0, 2, 3, 4, 5], undefined];
  for (const only of plan) {
    backward(ps, only);
    opt.step();
    opt.zeroGrad();
    refs.forEach((r, k) => { if (!only || only.includes(k)) r.step(refGrad(r.w, k)); });
  }
  for (const [k, p] of ps.entries()) assertClose(await p.toArray(), refs[k]!.w, { rtol: 2e-5, atol: 1e-6, msg: `param ${k}` });
  assertEquals(opt.stateOf(ps[1]!)!.step, 2);
  assertEquals(opt.stateOf(ps[0]!)!.step, 3);
  opt.dispose();
  for (const p of ps) p.dispose();
});

test("AdamW: a frozen parameter (requiresGrad false) stays out of the arena and unchanged; the rest is still one dispatch", async () => {
  const { ps, refs } = makeParams(57);
  ps[2]!.requiresGrad_(false);
  const before = await ps[2]!.toArray();
  const opt = new AdamW(ps, HP);
  for (let t = 0; t < 2; t++) {
    backward(ps, [0, 1, 3, 4, 5]);
    assertEquals(countDispatches("adamw", () => opt.step()), 1, "dispatches per step");
    opt.zeroGrad();
    refs.forEach((r, k) => { if (k !== 2) r.step(refGrad(r.w, k)); });
  }
  assertClose(await ps[2]!.toArray(), before, { rtol: 0, atol: 0, msg: "frozen" });
  for (const k of [0, 1, 3, 4, 5]) assertClose(await ps[k]!.toArray(), refs[k]!.w, { rtol: 2e-5, atol: 1e-6, msg: `param ${k}` });
  opt.dispose();
  for (const p of ps) p.dispose();
});

test("gradients accumulate in their arena slots over two backward passes; zeroGrad and dispose start afresh", async () => {
  const { ps, refs } = makeParams(33);
  const opt = new AdamW(ps, HP);
  backward(ps); backward(ps);
  for (const [k, p] of ps.entries()) {
    assertClose(await p.grad!.toArray(), refGrad(refs[k]!.w, k).map((g) => 2 * g), { rtol: 1e-5, atol: 1e-6, msg: `grad ${k}` });
  }
  opt.zeroGrad();
  assert(ps.every((p) => p.grad === null), "zeroGrad drops the gradients");
  backward(ps, [4]);
  assertClose(await ps[4]!.grad!.toArray(), refGrad(refs[4]!.w, 4), { rtol: 1e-5, atol: 1e-6, msg: "fresh gradient after zeroGrad" });
  opt.dispose();
  backward(ps, [4]);
  assertClose(await ps[4]!.grad!.toArray(), refGrad(refs[4]!.w, 4).map((g) => 2 * g), { rtol: 1e-5, atol: 1e-6, msg: "accumulates after dispose" });
  ps[4]!.grad!.dispose(); ps[4]!.grad = null;
  backward(ps, [4]);
  assertClose(await ps[4]!.grad!.toArray(), refGrad(refs[4]!.w, 4), { rtol: 1e-5, atol: 1e-6, msg: "a new tensor after dispose" });
  for (const p of ps) { p.grad?.dispose(); p.dispose(); }
});

test("clipGradNorm over an arena: the float64 norm, every gradient scaled, in at most 4 dispatches; a subset scales only itself", async () => {
  const { ps, refs } = makeParams(45);
  const opt = new AdamW(ps, HP);
  backward(ps);
  const grads = refs.map((r, k) => refGrad(r.w, k));
  const norm = Math.sqrt(grads.flat().reduce((s, g) => s + g * g, 0));
  const before = ws.gpu().launcher.stats.dispatches;
  const n = clipGradNorm(ps, 1);
  assert(ws.gpu().launcher.stats.dispatches - before <= 4, `clip took ${ws.gpu().launcher.stats.dispatches - before} dispatches`);
  assertClose([await n.item()], [norm], { rtol: 1e-5 });
  for (const [k, p] of ps.entries()) assertClose(await p.grad!.toArray(), grads[k]!.map((g) => g / (norm + 1e-6)), { rtol: 1e-4, atol: 1e-7, msg: `grad ${k}` });
  n.dispose();
  // A subset: only its gradients change.
  const unit = grads.map((g) => g.map((x) => x / (norm + 1e-6)));
  const sub = [ps[2]!, ps[3]!];
  const subNorm = Math.sqrt([...unit[2]!, ...unit[3]!].reduce((s, g) => s + g * g, 0));
  clipGradNorm(sub, subNorm / 2).dispose();
  assertClose(await ps[3]!.grad!.toArray(), unit[3]!.map((g) => g * (subNorm / 2) / (subNorm + 1e-6)), { rtol: 1e-4, atol: 1e-7, msg: "subset scaled" });
  assertClose(await ps[5]!.grad!.toArray(), unit[5]!, { rtol: 1e-4, atol: 1e-7, msg: "outside the subset unchanged" });
  opt.dispose();
  for (const p of ps) { p.grad?.dispose(); p.dispose(); }
});

test("SparseAdamW: every sparse layer in one update dispatch, the same weights as per-layer updates", async () => {
  const x = ws.randn([8, 16], { seed: 5 });
  const run = async (fused: boolean) => {
    const model = new TwoLayer(16, 32, { seed: 3 });
    const opt = new SparseAdamW(model, { lr: 0.05, weightDecay: 0.1 });
    let updates = 0;
    for (let s = 0; s < 3; s++) {
      ws.tidy(() => model.forward(x).pow(2).mean().backward());
      // A gradient that is not its arena slot's makes the optimizer update layer by layer.
      if (!fused) for (const l of opt.layers) { const g = l.sparseParam.grad!; l.sparseParam.grad = g.mul(1); g.dispose(); }
      updates += countDispatches("adamw", () => opt.step());
      opt.zeroGrad();
    }
    const w = [await model.l1.sparseParam.toArray(), await model.l2.sparseParam.toArray()];
    opt.dispose(); model.dispose();
    return { w, updates };
  };
  const a = await run(true), b = await run(false);
  assertEquals(a.updates, 3, "one dispatch per step");
  assertEquals(b.updates, 6, "one per layer without arena gradients");
  assertClose(a.w[0]!, b.w[0]!, { rtol: 1e-6, atol: 1e-7 });
  assertClose(a.w[1]!, b.w[1]!, { rtol: 1e-6, atol: 1e-7 });
  x.dispose();
});

for (const slope of [false, true]) {
  test(`Trainer (${slope ? "SLoPe" : "dense"}) GPT step: every gradient lands in its arena slot, so the update is ${slope ? "two dispatches (sparse, dense)" : "one dispatch"} and the norm one sum per arena`, () => {
    const text = "to be or not to be, that is the question. ".repeat(20);
    const tok = new CharTokenizer(text);
    const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, seed: 1 });
    const trainer = new Trainer(model, new Corpus(tok.encode(text)), { batchSize: 4, totalSteps: 10, seed: 2, slope: slope ? {} : undefined });
    for (let s = 0; s < 2; s++) {
      let sums = 0;
      const updates = countDispatches("adamw", () => { sums = countDispatches("reduceRows", () => trainer.step().dispose()); });
      assertEquals(updates, slope ? 2 : 1, `step ${s}: AdamW dispatches`);
      // Only the gradient norm sums whole rows in this model: ≤ 2 passes per arena (one sum per tensor without arenas).
      assert(sums >= 1 && sums <= (slope ? 4 : 2), `step ${s}: ${sums} row-sum dispatches`);
    }
    trainer.dispose(); model.dispose();
  });
}
