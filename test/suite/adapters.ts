// Lazy low-rank adapters and merged inference (issue 4): insertion leaves the loss unchanged,
// merged inference equals the unmerged forward, the fused multiply-add equals matmul + add,
// finite differences through the adapter, state dicts load into a merged model, a hand-written
// SLoPe loop with adapters at 99% runs, and misuse gets clear errors.
import * as ws from "../../src/index.ts";
import { GPT, MergedSparseLinear, type Module } from "../../src/nn/index.ts";
import { AdamW, SparseAdamW } from "../../src/optim/index.ts";
import { LazyAdapterSchedule, LowRankAdapter, addLazyAdapters, compress24, decompress24, fusedDecodeWins, lowRankAdd, mergeAdapters, mergedLinear, pruneModel } from "../../src/slope/index.ts";
import { TwoLayer } from "../lib/models.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, arr, geluTanh, map, matmul as refMatmul, randArr } from "../ref/cpu.ts";
import { fromArr, toArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";
import { copyInto } from "../../src/ops/raw/copy.ts";

const lossOf = (m: Module & { forward(x: ws.Tensor): ws.Tensor }, x: ws.Tensor, y: ws.Tensor) => ws.tidy(() => m.forward(x).sub(y).pow(2).mean());

test("inserting adapters leaves the loss unchanged (R = 0); rank from an integer or a fraction", async () => {
  const m = new TwoLayer(32, 64, { seed: 21, bias1Std: 0.1 });
  const x = ws.randn([6, 32], { seed: 1 }), y = ws.randn([6, 32], { seed: 2 });
  const before = await lossOf(m, x, y).item();
  const params = addLazyAdapters(m, { rankFraction: 0.0625, seed: 5 });
  assertEquals(params.length, 4);
  assertEquals(m.l1.adapter!.rank, 2, "6.25% of min(32, 64)");
  assertEquals(params[0]!.shape, [32, 2]);
  const after = await lossOf(m, x, y).item();
  assertEquals(after, before);
  m.dispose(); x.dispose(); y.dispose();
});

test("Lᵀ carries a static 2:4 mask along d_in: exactly 2 nonzeros per group of 4", async () => {
  const a = new LowRankAdapter(16, 8, 3, { seed: 4 });
  const L = await a.L.toArray(); // [16, 3]
  for (let k = 0; k < 3; k++) for (let g = 0; g < 4; g++) {
    let nz = 0;
    for (let i = 0; i < 4; i++) if (L[(4 * g + i) * 3 + k] !== 0) nz++;
    assertEquals(nz, 2, `column ${k} group ${g}`);
  }
  a.dispose();
});

test("the adapter's backward matches finite differences (x, L, R; mask respected)", async () => {
  const a = new LowRankAdapter(8, 6, 2, { seed: 6 });
  const mask = await toArr(a.maskL);
  const ref = ([x, L, R]: Arr[]) => {
    const lm = map((u, v) => u * v, L!, mask);
    return map((v) => v / 2, refMatmul(refMatmul(x!, lm), R!));
  };
  const L0 = await toArr(a.L);
  await gradCheck({
    inputs: [randArr([5, 8], 7), L0, randArr([2, 6], 8)],
    gpu: ([x, L, R]) => { a.L = L!; a.R = R!; return a.forward(x!); },
    ref,
  });
  a.dispose();
});

test("the fused multiply-add equals a separate matmul and add (odd shapes)", async () => {
  // Automatic choice (≤ 16 rows: the one-row kernel; more: the tiled one), then each kernel forced
  // on edges of its tile: ragged rows and columns, dOut % 4 ≠ 0, r % 4 ≠ 0, r below and above bk.
  const cases: [number, number, number, Parameters<typeof lowRankAdd>[2]?][] = [
    [5, 12, 3], [1, 7, 1], [16, 130, 33], [33, 64, 4], [17, 64, 32], [70, 67, 5], [130, 130, 33], [130, 67, 1], [70, 128, 32],
    [70, 67, 5, "small"], [40, 64, 8, "small"],
    [1, 7, 1, "64x64"], [70, 130, 33, "64x64"], [130, 128, 36, "128x64"], [130, 67, 5, "128x64"],
    [130, 130, 33, "128x128k8"], [257, 260, 8, "128x128k8"], [200, 129, 1, "128x128k8"],
  ];
  for (const [rows, dOut, r, kernel] of cases) {
    const y = randArr([rows, dOut + r], rows), R = randArr([r, dOut], dOut);
    const got = lowRankAdd(fromArr(y), fromArr(R), kernel);
    const C = arr([rows, dOut]), A = arr([rows, r]);
    for (let i = 0; i < rows; i++) { C.data.set(y.data.subarray(i * (dOut + r), i * (dOut + r) + dOut), i * dOut); A.data.set(y.data.subarray(i * (dOut + r) + dOut, (i + 1) * (dOut + r)), i * r); }
    const want = map((c, p) => c + p, C, refMatmul(A, R));
    assertClose(await got.toArray(), want.data, { rtol: 1e-5, atol: 1e-6, msg: `${rows}×${dOut}, r ${r}, ${kernel ?? "auto"}` });
  }
});

// The merged layer's math in float64 from the pruned [W; Lᵀ] (decompressed), [b; 0] and Rs.
function refMerged(x: Arr, wl: Arr, bias: Arr, rs: Arr, dOut: number, act: "none" | "relu" | "gelu"): Arr {
  const z = refMatmul(x, wl, false, true); // [rows, dOut + r]
  const [rows, r] = [x.shape[0]!, rs.shape[0]!];
  const out = arr([rows, dOut]);
  for (let m = 0; m < rows; m++) for (let o = 0; o < dOut; o++) {
    let y = z.data[m * (dOut + r) + o]! + bias.data[o]!;
    for (let j = 0; j < r; j++) y += z.data[m * (dOut + r) + dOut + j]! * rs.data[j * dOut + o]!;
    out.data[m * dOut + o] = act === "gelu" ? geluTanh(y) : act === "relu" ? Math.max(y, 0) : y;
  }
  return out;
}

test("fused merged decode (one dispatch: 2:4 spmm + bias + low-rank + activation) equals the float64 reference at odd shapes", async () => {
  // rows 1–16 (1–4 vec4s of x per k), K from one 2:4 pair of groups to several staged chunks,
  // d_out not a multiple of 16, ranks from 1 to the largest (one to four rounds of 32 rows per team)
  const cases: [number, number, number, number, "none" | "relu" | "gelu"][] = [
    [1, 8, 5, 1, "none"], [3, 40, 17, 3, "gelu"], [8, 776, 33, 12, "gelu"], [13, 520, 20, 17, "relu"],
    [16, 200, 37, 40, "none"], [5, 64, 16, 112, "gelu"], [16, 64, 9, 16, "none"],
  ];
  for (const [rows, K, dOut, r, act] of cases) {
    const label = `${rows}×${K} → ${dOut}, r ${r}, ${act}`;
    const wl = ws.randn([dOut + r, K], { seed: K + r }), s = compress24(wl);
    const bArr = randArr([dOut + r], dOut);
    for (let j = 0; j < r; j++) bArr.data[dOut + j] = 0; // [b; 0], as mergeWeights pads it
    const xArr = randArr([rows, K], rows), rsArr = randArr([r, dOut], r, -0.5, 0.5);
    const x = fromArr(xArr), b = fromArr(bArr), rs = fromArr(rsArr), pruned = decompress24(s);
    const want = refMerged(xArr, await toArr(pruned), bArr, rsArr, dOut, act);
    const stats = ws.gpu().launcher.stats, d0 = stats.dispatches;
    const fused = mergedLinear(x, s, b, rs, act, { fused: true });
    assertEquals(stats.dispatches - d0, 1, `${label}: one dispatch`);
    const tol = { rtol: 1e-4, atol: 1e-4 };
    assertClose(await fused.toArray(), want.data, { ...tol, msg: `${label}, fused` });
    const unfused = mergedLinear(x, s, b, rs, act, { fused: false });
    assertClose(await unfused.toArray(), want.data, { ...tol, msg: `${label}, unfused` });
    for (const t of [wl, x, b, rs, pruned, fused, unfused]) t.dispose();
    s.dispose();
  }
  // refusals name the op and the fix, and allocate nothing
  const s = compress24(ws.randn([10, 16], { seed: 1 })), x17 = ws.randn([17, 16], { seed: 2 });
  // "auto" takes the fused kernel for one round of Z rows only (r ≤ 16) and ≤ 16 rows
  assert(fusedDecodeWins(8, s, 12) && fusedDecodeWins(1, s, 16), "auto fuses r ≤ 16");
  assert(!fusedDecodeWins(8, s, 17) && !fusedDecodeWins(17, s, 4), "auto leaves r > 16 and over 16 rows unfused");
  const b = ws.zeros([10]), rs = ws.randn([2, 8], { seed: 3 }), bad = ws.randn([3, 8], { seed: 4 });
  const live = ws.memoryStats().liveTensors;
  await assertThrows(() => mergedLinear(x17, s, b, rs, "none", { fused: true }), ws.ShapeError, "mergedLinear", "17 rows", 'fused: "auto"');
  await assertThrows(() => mergedLinear(x17, s, b, bad), ws.ShapeError, "mergedLinear", "r + d_out = 10");
  await assertThrows(() => mergedLinear(x17, s, b, rs, "tanh" as "gelu"), ws.ShapeError, "mergedLinear", "tanh", "none, relu, gelu");
  await assertThrows(() => mergedLinear(x17, s, b, rs, "none", { fused: "yes" as "auto" }), ws.ShapeError, "mergedLinear", "fused must be");
  // no rows: an empty [0, d_out] result, no kernel
  const x0 = ws.zeros([0, 16]), y0 = mergedLinear(x0, s, b, rs);
  assertEquals(y0.shape, [0, 8]);
  x0.dispose(); y0.dispose();
  assertEquals(ws.memoryStats().liveTensors, live, "nothing allocated by a refused call");
  for (const t of [x17, b, rs, bad]) t.dispose();
  s.dispose();
});

async function trainedAdapted() {
  const m = new TwoLayer(32, 64, { seed: 21, bias1Std: 0.1 });
  addLazyAdapters(m, { rank: 4, seed: 9 });
  const x = ws.randn([8, 32], { seed: 10 }), y = ws.randn([8, 32], { seed: 11 });
  const sp = new SparseAdamW(m, { lr: 1e-2 }), dn = new AdamW(m.denseParameters(), { lr: 1e-2 });
  for (let i = 0; i < 3; i++) {
    ws.tidy(() => m.forward(x).sub(y).pow(2).mean().backward());
    sp.step(); dn.step(); sp.zeroGrad(); dn.zeroGrad();
  }
  sp.dispose(); dn.dispose(); y.dispose();
  return { m, x };
}

test("merged inference ([W; Lᵀ] spmm + fused add) equals the unmerged forward within 1e-5", async () => {
  const { m, x } = await trainedAdapted();
  assert((await m.l1.adapter!.R.toArray()).some((v) => v !== 0), "R was trained");
  const unmerged = await ws.noGrad(() => m.forward(x)).toArray();
  const wT = m.l1.wT!;
  assertEquals(mergeAdapters(m), 2);
  // (the layer is swapped for a MergedSparseLinear, as pruneModel swaps Linear for SparseLinear)
  assert(m.l1 instanceof MergedSparseLinear && wT.values.isDisposed && wT.meta.isDisposed, "W_RC^T freed by the merge");
  const merged = await ws.noGrad(() => m.forward(x)).toArray();
  assertClose(merged, unmerged, { rtol: 1e-5, atol: 1e-6 });
  m.dispose(); x.dispose();
});

test("a state dict saved with adapters loads into a merged inference model with the same outputs", async () => {
  const { m, x } = await trainedAdapted();
  const want = await ws.noGrad(() => m.forward(x)).toArray();
  const inf = new TwoLayer(32, 64, { seed: 21, bias1Std: 0.1 });
  addLazyAdapters(inf, { rank: 4 });
  mergeAdapters(inf);
  inf.loadStateDict(m.stateDict());
  const got = await ws.noGrad(() => inf.forward(x)).toArray();
  assertClose(got, want, { rtol: 1e-5, atol: 1e-6 });
  // a GPT pruned with addLora + mergeLora reads a trained GPT's state the same way
  const cfg = { vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, seed: 3 };
  const g = new GPT(cfg);
  pruneModel(g, { addLora: true, loraRank: 2 });
  for (const [n, p] of g.namedParameters()) {
    if (n.endsWith("adapter.R")) { const r = ws.randn([...p.shape], { seed: 1, std: 0.1 }); copyInto(p, r); r.dispose(); } // as if trained
  }
  const idx = ws.tensor(new Int32Array([1, 5, 2, 9, 3, 3, 0, 12]), [1, 8]);
  const gWant = await ws.noGrad(() => g.eval().forward(idx)).toArray();
  const gi = new GPT({ ...cfg, seed: 99 });
  pruneModel(gi, { addLora: true, loraRank: 2, mergeLora: true });
  gi.loadStateDict(g.stateDict());
  assertClose(await ws.noGrad(() => gi.forward(idx)).toArray(), gWant, { rtol: 1e-5, atol: 1e-5 });
  for (const t of [m, inf, g, gi]) t.dispose();
  x.dispose(); idx.dispose();
});

test("a hand-written SLoPe loop: sparse steps, then lazy adapters at 99% with existing optimizer state kept", async () => {
  const m = new TwoLayer(32, 64, { seed: 21, bias1Std: 0.1 });
  const x = ws.randn([8, 32], { seed: 12 }), y = ws.randn([8, 32], { seed: 13 });
  const total = 100;
  const sp = new SparseAdamW(m, { lr: 3e-3, weightDecay: 0.1 }), dn = new AdamW(m.denseParameters(), { lr: 3e-3, weightDecay: 0.1 });
  const sched = new LazyAdapterSchedule({ totalSteps: total, rank: 4, seed: 1 });
  assertEquals(sched.insertStep, 99);
  const bias = m.l1.bias!;
  let lossAtInsert = NaN, lossBefore = NaN;
  for (let step = 0; step < total; step++) {
    if (step === sched.insertStep) lossBefore = await lossOf(m, x, y).item();
    const added = sched.step(step, m, dn);
    if (added) {
      assertEquals(added.length, 4);
      assertEquals(dn.paramGroups.length, 2);
      assertEquals(dn.paramGroups[1]!.weightDecay, 0.1);
      assertEquals(dn.stateOf(bias)!.step, 99, "dense state was kept");
      lossAtInsert = await lossOf(m, x, y).item();
    }
    ws.tidy(() => m.forward(x).sub(y).pow(2).mean().backward());
    sp.clipGradNorm(1.0, dn).dispose();
    sp.step(); dn.step(); sp.zeroGrad(); dn.zeroGrad();
  }
  assertEquals(lossAtInsert, lossBefore, "loss unchanged at the insertion step");
  assertEquals(dn.stateOf(bias)!.step, 100);
  assertEquals(dn.stateOf(m.l1.adapter!.R)!.step, 1);
  assert((await m.l1.adapter!.R.toArray()).some((v) => v !== 0), "adapters trained in the last step");
  sp.dispose(); dn.dispose(); m.dispose(); x.dispose(); y.dispose();
});

test("adapter misuse: rank 0 or over min(d_in, d_out), merging twice, training a merged model", async () => {
  const m = new TwoLayer(32, 64, { seed: 21, bias1Std: 0.1 });
  await assertThrows(() => addLazyAdapters(m, { rank: 0 }), ws.ShapeError, "rank", "[1, min(d_in, d_out) = 32]");
  await assertThrows(() => addLazyAdapters(m, { rank: 33 }), ws.ShapeError, "33");
  await assertThrows(() => m.l1.addAdapter({ rankFraction: 0.001 }), ws.ShapeError, "rank");
  await assertThrows(() => mergeAdapters(m), ws.WebslopeError, "no layer has an adapter");
  addLazyAdapters(m, { rank: 2 });
  mergeAdapters(m);
  await assertThrows(() => mergeAdapters(m), ws.WebslopeError, "already merged");
  const x = ws.randn([2, 32], { seed: 1 });
  m.train();
  await assertThrows(() => m.forward(x), ws.AutogradError, "merged for inference");
  await assertThrows(() => new SparseAdamW(m), ws.WebslopeError, "cannot be trained");
  m.eval();
  ws.noGrad(() => m.forward(x)).dispose();
  m.dispose(); x.dispose();
});
