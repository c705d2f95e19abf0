// SLoPe at the layer and optimizer level: the compressed path against the masked-dense
// simulation over 50 training steps, SparseAdamW's update and mask-change semantics
// (maskChangeFreq 1 and 100), optimizer-state layout across mask changes, global clipping,
// state save/load, pruneModel on a GPT, and the memory claims measured with memoryStats().
import * as ws from "../../src/index.ts";
import { GPT, Linear, Module, SparseLinear } from "../../src/nn/index.ts";
import { AdamW, SparseAdamW } from "../../src/optim/index.ts";
import { pruneModel } from "../../src/slope/index.ts";
import { decompress24, doublePrune } from "../../src/sparse/index.ts";
import { TwoLayer } from "../lib/models.ts";
import { type Arr, map, matmul, randArr, reduce } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { applyMask, gather, nmMask, transpose2d, vectorMask } from "../ref/sparse.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

async function trainTwoLayer(compress: boolean, steps: number, maskChangeFreq: number) {
  const d = 32, h = 64, n = 24;
  const model = new TwoLayer(d, h, { compress });
  const x = ws.randn([n, d], { seed: 13 }), y = ws.randn([n, d], { seed: 14 });
  const sparse = new SparseAdamW(model, { lr: 3e-3, weightDecay: 0.1, maskChangeFreq });
  const dense = new AdamW(model.denseParameters(), { lr: 3e-3, weightDecay: 0.1 });
  const losses: ws.Tensor[] = [];
  for (let s = 0; s < steps; s++) {
    const loss = ws.tidy(() => { const l = model.forward(x).sub(y).pow(2).mean(); l.backward(); return l; });
    sparse.clipGradNorm(1.0, dense).dispose();
    sparse.step();
    dense.step();
    sparse.zeroGrad(); dense.zeroGrad();
    losses.push(ws.keep(loss));
  }
  const lossValues = await Promise.all(losses.map((l) => l.item()));
  const w1 = await model.l1.denseWeight().toArray(), w2 = await model.l2.denseWeight().toArray();
  const b1 = await model.l1.bias!.toArray();
  for (const l of losses) l.dispose();
  sparse.dispose(); dense.dispose(); model.dispose(); x.dispose(); y.dispose();
  return { lossValues, w1, w2, b1 };
}

test("compressed SLoPe matches the masked-dense simulation within 1e-5 over 50 training steps", async () => {
  const a = await trainTwoLayer(true, 50, 1);
  const b = await trainTwoLayer(false, 50, 1);
  assert(a.lossValues[49]! < a.lossValues[0]! * 0.8, `loss should fall: ${a.lossValues[0]} → ${a.lossValues[49]}`);
  assertClose(a.lossValues, b.lossValues, { rtol: 1e-5, atol: 1e-7, msg: "losses" });
  assertClose(a.w1, b.w1, { rtol: 1e-5, atol: 1e-6, msg: "layer 1 weights" });
  assertClose(a.w2, b.w2, { rtol: 1e-5, atol: 1e-6, msg: "layer 2 weights" });
  assertClose(a.b1, b.b1, { rtol: 1e-5, atol: 1e-6, msg: "layer 1 bias" });
}, { browser: false });

test("compressed SLoPe matches the simulation with maskChangeFreq = 100 too (20 steps)", async () => {
  const a = await trainTwoLayer(true, 20, 100);
  const b = await trainTwoLayer(false, 20, 100);
  assertClose(a.lossValues, b.lossValues, { rtol: 1e-5, atol: 1e-7 });
  assertClose(a.w1, b.w1, { rtol: 1e-5, atol: 1e-6 });
});

/** One step of a single layer, returning masks and values around it. */
async function oneLayerSteps(maskChangeFreq: number, steps: number) {
  const d = 16;
  const model = new TwoLayer(d, d);
  const layer = model.l1;
  const opt = new SparseAdamW(model, { lr: 0.05, weightDecay: 0, maskChangeFreq });
  const x = ws.randn([8, d], { seed: 3 });
  const metaT0 = Array.from(await layer.wT!.meta.toArray());
  const stateBuffers: ws.BufferRange[] = [];
  for (let s = 0; s < steps; s++) {
    ws.tidy(() => model.forward(x).pow(2).mean().backward());
    opt.step();
    opt.zeroGrad();
    const st = opt.stateOf(layer)!;
    stateBuffers.push(st.m.buffer(), st.v.buffer());
  }
  return { model, layer, opt, x, metaT0, stateBuffers };
}

test("SparseAdamW maskChangeFreq = 100: W_RC's mask stays fixed and its values follow W at the old positions", async () => {
  const { model, layer, opt, x, metaT0 } = await oneLayerSteps(100, 3);
  assertEquals(Array.from(await layer.wT!.meta.toArray()), metaT0, "metaT unchanged before step 100");
  // values of W_RC^T = (dense W)ᵀ at the fixed mask
  const wDense = await layer.denseWeight().toArray();
  const wtDense = await decompress24(layer.wT!).toArray();
  const [dOut, dIn] = [layer.outFeatures, layer.inFeatures];
  for (let i = 0; i < dIn; i++) for (let o = 0; o < dOut; o++) {
    const kept = (metaT0[i * Math.ceil(dOut / 32) + (o >> 5)]! >>> (o & 31)) & 1;
    assertEquals(wtDense[i * dOut + o], kept ? wDense[o * dIn + i] : 0, `W_RC^T[${i}, ${o}]`);
  }
  opt.dispose(); model.dispose(); x.dispose();
});

test("SparseAdamW maskChangeFreq = 1: M_RC is recomputed by magnitude after every step", async () => {
  const { model, layer, opt, x } = await oneLayerSteps(1, 4);
  const fresh = doublePrune(layer.w!);
  assertEquals(Array.from(await layer.wT!.meta.toArray()), Array.from(await fresh.meta.toArray()), "metaT = a fresh double prune");
  assertClose(await layer.wT!.values.toArray(), await fresh.values.toArray());
  fresh.dispose(); opt.dispose(); model.dispose(); x.dispose();
});

test("the optimizer state's layout is unchanged by a mask change (same buffers, same shape as the values)", async () => {
  const { model, layer, opt, x, stateBuffers } = await oneLayerSteps(2, 6);
  const st = opt.stateOf(layer)!;
  assertEquals(st.m.shape, layer.w!.values.shape);
  for (let i = 2; i < stateBuffers.length; i += 2) {
    assert(stateBuffers[i] === stateBuffers[0] && stateBuffers[i + 1] === stateBuffers[1], "m and v stay in the same buffers across mask changes");
  }
  assertEquals(layer.w!.meta.shape, [layer.outFeatures, Math.ceil(layer.inFeatures / 32)]);
  opt.dispose(); model.dispose(); x.dispose();
});

test("SparseAdamW's update equals the SLoPe formula (decay first, eps on √v) computed in float64", async () => {
  const model = new TwoLayer(8, 8);
  const layer = model.l1;
  const opt = new SparseAdamW(model, { lr: 0.01, betas: [0.9, 0.99], eps: 1e-3, weightDecay: 0.2 });
  const x = ws.randn([4, 8], { seed: 5 });
  let w = Array.from(await layer.w!.values.toArray());
  const m = w.map(() => 0), v = w.map(() => 0);
  for (let t = 1; t <= 3; t++) {
    ws.tidy(() => model.forward(x).pow(2).sum().backward());
    const g = Array.from(await layer.w!.values.grad!.toArray());
    opt.step();
    opt.zeroGrad();
    w = w.map((wi, i) => {
      wi *= 1 - 0.01 * 0.2;
      m[i] = 0.9 * m[i]! + 0.1 * g[i]!; v[i] = 0.99 * v[i]! + 0.01 * g[i]! ** 2;
      return wi - (0.01 * Math.sqrt(1 - 0.99 ** t)) / (1 - 0.9 ** t) * m[i]! / (Math.sqrt(v[i]!) + 1e-3);
    });
  }
  assertClose(await layer.w!.values.toArray(), w, { rtol: 1e-5, atol: 1e-7 });
  opt.dispose(); model.dispose(); x.dispose();
});

test("SparseAdamW.clipGradNorm: one global norm over sparse and dense gradients; lr settable per step", async () => {
  const model = new TwoLayer(8, 8);
  const x = ws.randn([4, 8], { seed: 6 });
  const sparse = new SparseAdamW(model, { lr: 0 , weightDecay: 0.5 });
  const dense = new AdamW(model.denseParameters(), { lr: 0 });
  ws.tidy(() => model.forward(x).pow(2).sum().mul(100).backward());
  const grads = [...model.parameters()].map((p) => p.grad!).filter(Boolean);
  let ss = 0;
  for (const g of grads) for (const v of await g.toArray()) ss += v * v;
  const norm = sparse.clipGradNorm(1.0, dense);
  assertClose([await norm.item()], [Math.sqrt(ss)], { rtol: 1e-4 });
  let after = 0;
  for (const g of grads) for (const v of await g.toArray()) after += v * v;
  assertClose([Math.sqrt(after)], [1], { rtol: 1e-4 });
  const before = Array.from(await model.l1.w!.values.toArray());
  sparse.step(); // lr 0: nothing moves (decay is lr·wd)
  assertClose(await model.l1.w!.values.toArray(), before);
  sparse.lr = 0.1;
  ws.tidy(() => model.forward(x).pow(2).sum().backward());
  sparse.step();
  const moved = Array.from(await model.l1.w!.values.toArray());
  assert(moved.some((v, i) => Math.abs(v - before[i]!) > 1e-3), "lr set between steps takes effect");
  sparse.dispose(); dense.dispose(); model.dispose(); x.dispose();
});

test("SparseAdamW state save and load round-trips; a mismatched state changes nothing", async () => {
  const model = new TwoLayer(8, 8);
  const x = ws.randn([4, 8], { seed: 7 });
  const a = new SparseAdamW(model, { lr: 0.01 });
  ws.tidy(() => model.forward(x).pow(2).sum().backward());
  a.step(); a.zeroGrad();
  const sd = a.stateDict();
  const b = new SparseAdamW(model, { lr: 0.01 });
  b.loadStateDict(sd);
  assertEquals(b.stepCount, 1);
  assertClose(await b.stateOf(model.l1)!.v.toArray(), await a.stateOf(model.l1)!.v.toArray());
  const bad = { step: 5, tensors: new Map([["0.m", ws.zeros([3])], ["0.v", ws.zeros([3])]]) };
  let threw = false;
  try { b.loadStateDict(bad); } catch (e) { threw = e instanceof ws.ShapeError; }
  assert(threw, "mismatched state is refused with a ShapeError");
  assertEquals(b.stepCount, 1, "a failed load changes nothing");
  a.dispose(); b.dispose(); model.dispose(); x.dispose();
});

test("SparseLinear pattern \"vector\": compressed equals the masked-dense simulation and float64 (y, dX through W_RC, values grad, bias grad) at 67 and 5 rows, after an optimizer step too", async () => {
  const [dOut, dIn, block] = [136, 72, 64];
  const wA = map(Math.fround, randArr([dOut, dIn], 500)), bA = map(Math.fround, randArr([dOut], 501));
  const mR = vectorMask(wA, block);
  const wR = applyMask(wA, mR);
  // SLoPe's M_RC: M_R ∩ the top-2 of each group of 4 rows of W_R, per column
  const colTop = transpose2d({ shape: [dIn, dOut], data: Float64Array.from(nmMask(transpose2d(wR), 2, 4)) } as Arr);
  const wRC = map((v, k) => v * k, wR, colTop);
  const layers = [true, false].map((compress) => ws.tidy(() => {
    const l = new SparseLinear(dIn, dOut, fromArr(wA), fromArr(bA), { compress, pattern: "vector", vectorBlock: block });
    return l;
  }));
  for (const l of layers) assertEquals(l.vectorBlock, block);
  for (const rows of [67, 5]) {
    const xA = map(Math.fround, randArr([rows, dIn], 502 + rows)), pA = map(Math.fround, randArr([rows, dOut], 503 + rows));
    const got: Float32Array[][] = [];
    for (const l of layers) {
      const x = fromArr(xA, { requiresGrad: true });
      const y = l.forward(x);
      ws.tidy(() => y.mul(fromArr(pA)).sum().backward());
      const gv = l.compress ? l.w!.values.grad! : l.weight!.grad!;
      got.push([await y.toArray() as Float32Array, await x.grad!.toArray() as Float32Array, await gv.toArray() as Float32Array, await l.bias!.grad!.toArray() as Float32Array]);
      x.grad!.dispose(); x.dispose(); y.dispose(); l.zeroGrad();
    }
    const [c, m] = got as [Float32Array[], Float32Array[]];
    const yRef = map((v, b) => v + b, matmul(xA, wR, false, true), bA).data;
    const gFull = matmul(pA, xA, true, false);
    assertClose(c[0]!, yRef, { rtol: 1e-4, atol: 1e-5, msg: `y rows=${rows}` });
    assertClose(m[0]!, yRef, { rtol: 1e-4, atol: 1e-5, msg: `masked y rows=${rows}` });
    assertClose(c[1]!, matmul(pA, wRC).data, { rtol: 1e-4, atol: 1e-5, msg: `dX through W_RC rows=${rows}` });
    assertClose(c[1]!, m[1]!, { rtol: 1e-4, atol: 1e-5, msg: `dX compressed vs masked rows=${rows}` });
    assertClose(c[2]!, gather(gFull, mR, 2, 4), { rtol: 1e-4, atol: 2e-5, msg: `values grad rows=${rows}` });
    assertClose(m[2]!, applyMask(gFull, mR).data, { rtol: 1e-4, atol: 2e-5, msg: `masked dW rows=${rows}` });
    assertClose(c[3]!, reduce(pA, [0], false, "sum").data, { rtol: 1e-4, atol: 2e-5, msg: `bias grad rows=${rows}` });
  }
  // one SparseAdamW step on each: the compressed values stay the masked-dense weight's kept entries
  const x = fromArr(map(Math.fround, randArr([20, dIn], 510)));
  const opts = layers.map((l) => { ws.tidy(() => l.forward(x).sum().backward()); const o = new SparseAdamW(l, { lr: 0.01 }); o.step(); return o; });
  const dc = layers[0]!.denseWeight(), dm = layers[1]!.denseWeight();
  assertClose(await dc.toArray(), await dm.toArray(), { rtol: 1e-5, atol: 1e-6, msg: "after a step" });
  dc.dispose(); dm.dispose(); x.dispose();
  opts.forEach((o) => o.dispose()); layers.forEach((l) => { l.zeroGrad(); l.dispose(); });
});

test("pruneModel pattern \"vector\": every sparse layer shares meta per block of 64 rows and the GPT trains (finite loss, sparse grads)", async () => {
  const model = new GPT({ vocabSize: 11, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 64, seed: 1 });
  pruneModel(model, { compress: true, pattern: "vector" });
  const fc1 = model.blocks[1]!.mlp.fc1 as SparseLinear;
  assertEquals(fc1.vectorBlock, 64);
  const meta = await fc1.w!.meta.toArray() as Int32Array, wpr = fc1.w!.wordsPerRow;
  for (let r = 0; r < fc1.outFeatures; r++) {
    const b0 = r - (r % 64);
    for (let j = 0; j < wpr; j++) if (meta[r * wpr + j] !== meta[b0 * wpr + j]) throw new Error(`row ${r} word ${j} differs from its block's first row`);
  }
  const idx = ws.tensor(new Int32Array(16).map((_, i) => i % 11), [2, 8]);
  const loss = model.loss(idx, idx);
  loss.backward();
  const v = await loss.item();
  assert(Number.isFinite(v), `loss ${v}`);
  assert(fc1.w!.values.grad !== null, "sparse values get gradients");
  let threw = false;
  try { pruneModel(new GPT({ vocabSize: 11, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 64, seed: 1 }), { pattern: "vector", vectorBlock: 32 }); } catch (e) { threw = e instanceof ws.ShapeError; }
  assert(threw, "a block that is not a multiple of 64 is a ShapeError");
  model.dispose(); idx.dispose(); loss.dispose();
});

test("pruneModel swaps the block Linears of a GPT (not block 0's qkv, embeddings, lm_head, norms)", async () => {
  const model = new GPT({ vocabSize: 11, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, seed: 1 });
  const nBefore = model.numParameters();
  const replaced = pruneModel(model, { compress: true });
  assertEquals(replaced, ["blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.attn.qkv", "blocks.1.attn.proj", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]);
  assert(model.blocks[0]!.attn.qkv instanceof Linear, "block 0 qkv stays dense");
  assert(model.blocks[1]!.mlp.fc1 instanceof SparseLinear, "fc1 became sparse");
  const sparseNames = model.namedParameters().filter(([, t]) => !model.denseParameters().includes(t)).map(([n]) => n);
  assert(sparseNames.every((n) => n.endsWith("weight.values")) && sparseNames.length === 7, `sparse params: ${sparseNames}`);
  assert(model.numParameters() < nBefore, "compressed model has fewer stored parameters");
  const idx = ws.tensor(new Int32Array([1, 2, 3, 4, 5, 6, 7, 8]), [1, 8]);
  const loss = model.loss(idx, idx);
  loss.backward();
  const v = await loss.item();
  assert(Number.isFinite(v) && Math.abs(v - Math.log(11)) < 0.5, `initial loss ≈ ln(vocab): ${v}`);
  assert((model.blocks[1]!.mlp.fc1 as SparseLinear).w!.values.grad !== null, "sparse values get gradients");
  model.dispose(); idx.dispose(); loss.dispose();
});

test("memory: a 2:4 SparseLinear with grad and SparseAdamW state ≤ 0.66× a dense Linear with AdamW; inference storage ≤ 0.54×", async () => {
  const d = 256;
  const measure = async (sparse: boolean) => {
    const base = ws.memoryStats().liveBytes;
    const lin = new Linear(d, d, { bias: false, seed: 1 });
    let model: Module = lin;
    if (sparse) {
      const sl = SparseLinear.fromLinear(lin);
      lin.weight.dispose();
      model = sl;
    }
    const inference = ws.memoryStats().liveBytes - base;
    const x = ws.randn([4, d], { seed: 2 });
    ws.tidy(() => (model as Linear | SparseLinear).forward(x).sum().backward());
    const opt = sparse ? new SparseAdamW(model) : new AdamW(model.parameters());
    opt.step();
    x.dispose();
    // measured before any await, so no finalizer of earlier tests' garbage can run in between
    const training = ws.memoryStats().liveBytes - base;
    await ws.gpu().sync();
    opt.dispose(); model.zeroGrad(); model.dispose();
    return { inference, training };
  };
  const dense = await measure(false), sparse = await measure(true);
  // sparse inference storage is W's values + meta only (W_RC^T is training state)
  const sl = new SparseLinear(d, d, ws.randn([d, d], { seed: 3 }), null);
  const inferenceBytes = sl.w!.values.size * 4 + sl.w!.meta.size * 4;
  sl.dispose();
  const trainRatio = sparse.training / dense.training, inferRatio = inferenceBytes / dense.inference;
  console.log(`SparseLinear ${d}×${d}: training ${sparse.training} B vs dense ${dense.training} B (${trainRatio.toFixed(3)}×); inference ${inferenceBytes} B vs ${dense.inference} B (${inferRatio.toFixed(3)}×)`);
  assert(trainRatio <= 0.66, `training memory ratio ${trainRatio}`);
  assert(inferRatio <= 0.54, `inference storage ratio ${inferRatio}`);
});
