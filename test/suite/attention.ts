// Fused attention (scaledDotProductAttention and qkvAttention) against the float64 reference
// (test/ref/attention.ts), the unfused GPU path and finite differences: causal and not, T not a
// multiple of any block (1, 7, 33, 70), one head and many, head dims 5/8/16/64, B > 1, dropout
// with an explicit-mask reference built from the same RNG, the whole GPT fused vs unfused, and
// the memory claim (no O(T²) tensor). The float64 and tile-set cases pin the fused backward; the
// rest run the default ("auto": fused on the software adapters, chunked on a GPU);
// attention-chunked.ts tests the chunked backward in depth.
import * as ws from "../../src/index.ts";
import { GPT } from "../../src/nn/index.ts";
import { CausalSelfAttention } from "../../src/nn/transformer.ts";
import { setAttentionBackward, setAttentionTiles } from "../../src/ops/attention.ts";
import { ATTENTION_TILES } from "../../shaders/attention.wgsl.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { backwardPeak } from "../lib/memory.ts";
import { type Arr, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";
import { attention as refAttention, attentionBackward, attentionKeep, mergeHeads, splitQkv } from "../ref/attention.ts";

const qkvArrs = (shape: number[], seed: number, amp = 1.5): [Arr, Arr, Arr] =>
  [randArr(shape, seed, -amp, amp), randArr(shape, seed + 1, -amp, amp), randArr(shape, seed + 2, -amp, amp)];

// [B·H or B, H, T, D] shapes: one head and many, T = 1/7/33/70, D = 5 (odd: the general path), 8, 16, 64
const SHAPES: number[][] = [[1, 1, 1, 8], [2, 3, 7, 16], [1, 2, 33, 64], [1, 1, 70, 5], [2, 1, 70, 8], [3, 33, 16]];

// non-causal: fewer head dims (each head dim × mask is its own set of compiled kernels; SwiftShader compiles slowly)
const FULL_SHAPES: number[][] = [[2, 3, 7, 16], [1, 1, 70, 5], [3, 33, 16]];

for (const causal of [true, false]) {
  const shapes = causal ? SHAPES : FULL_SHAPES;
  test(`scaledDotProductAttention (${causal ? "causal" : "full"}): forward and fused-backward q/k/v gradients match float64 at ${shapes.length} shapes`, async () => {
    for (const [n, shape] of shapes.entries()) {
      const [qa, ka, va] = qkvArrs(shape, 10 + n);
      const ga = randArr(shape, 50 + n);
      const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
      const y = ws.scaledDotProductAttention(q, k, v, { causal, backward: "fused" });
      assertEquals(y.shape, shape);
      const msg = `${causal ? "causal" : "full"} ${shape}`;
      assertClose(await y.toArray(), refAttention(qa, ka, va, { causal }).data, { rtol: 1e-4, atol: 1e-5, msg: `${msg} forward` });
      const g = fromArr(ga);
      y.backward(g);
      const exp = attentionBackward(qa, ka, va, ga, { causal });
      for (const [i, t] of [q, k, v].entries()) {
        assertClose(await t.grad!.toArray(), exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `${msg} d${"qkv"[i]}` });
      }
      ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } y.dispose(); g.dispose(); });
    }
  }, { browser: causal });
}

test(`attention: every tile set (the smaller ones serve adapters with less workgroup memory) matches float64, forward and backward`, async () => {
  const shape = [2, 2, 37, 8];
  const [qa, ka, va] = qkvArrs(shape, 91);
  const ga = randArr(shape, 92);
  const exp = [refAttention(qa, ka, va, { causal: true }), ...attentionBackward(qa, ka, va, ga, { causal: true })];
  try {
    for (const [n, tiles] of ATTENTION_TILES.entries()) {
      setAttentionTiles(tiles);
      const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
      const y = ws.scaledDotProductAttention(q, k, v, { causal: true, backward: "fused" });
      const g = fromArr(ga);
      y.backward(g);
      const got = [await y.toArray(), ...(await Promise.all([q, k, v].map((t) => t.grad!.toArray())))];
      for (let i = 0; i < 4; i++) assertClose(got[i]!, exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `tile set ${n}: ${["y", "dq", "dk", "dv"][i]}` });
      ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } y.dispose(); g.dispose(); });
    }
  } finally {
    setAttentionTiles(null);
  }
}, { browser: false });

test("scaledDotProductAttention: gradients by finite differences (causal, T = 5, D = 3, two heads, scale 0.7)", async () => {
  const shape = [2, 5, 3];
  const [qa, ka, va] = qkvArrs(shape, 3, 1);
  await gradCheck({
    inputs: [qa, ka, va],
    gpu: ([q, k, v]) => ws.scaledDotProductAttention(q!, k!, v!, { causal: true, scale: 0.7 }),
    ref: ([q, k, v]) => refAttention(q!, k!, v!, { causal: true, scale: 0.7 }),
    eps: 1e-5, rtol: 5e-3, atol: 5e-4,
  });
});

test("scaledDotProductAttention equals the unfused GPU path (matmul → causal softmax → matmul), forward and backward", async () => {
  const shape = [2, 2, 37, 16];
  const [qa, ka, va] = qkvArrs(shape, 21);
  const ga = randArr(shape, 22);
  const run = async (fused: boolean) => {
    const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
    const g = fromArr(ga);
    const y = ws.tidy(() => fused ? ws.scaledDotProductAttention(q, k, v, { causal: true })
      : q.matmul(k, { transB: true }).mul(1 / 4).softmax(-1, { causal: true }).matmul(v));
    y.backward(g);
    const out = [await y.toArray(), ...(await Promise.all([q, k, v].map((t) => t.grad!.toArray())))];
    ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } y.dispose(); g.dispose(); });
    return out;
  };
  const [f, u] = [await run(true), await run(false)];
  for (let i = 0; i < 4; i++) assertClose(f[i]!, u[i]!, { rtol: 1e-4, atol: 2e-5, msg: ["y", "dq", "dk", "dv"][i] });
}, { browser: false });

test("qkvAttention: reads q, k, v from [B, T, 3C] and writes [B, T, C]; forward and dqkv match float64 (T = 1, 7, 70; 1 and 4 heads)", async () => {
  const cases: [number, number, number, number][] = [[2, 7, 4, 16], [1, 70, 1, 8], [3, 1, 4, 4], [1, 33, 2, 64]];
  for (const [n, [B, T, H, D]] of cases.entries()) {
    const C = H * D;
    const xa = randArr([B, T, 3 * C], 30 + n, -1.5, 1.5), ga = randArr([B, T, C], 40 + n);
    const [qa, ka, va] = splitQkv(xa, H);
    const x = fromArr(xa, { requiresGrad: true }), g = fromArr(ga);
    const y = ws.qkvAttention(x, H, { causal: true });
    assertEquals(y.shape, [B, T, C]);
    const msg = `B=${B} T=${T} H=${H} D=${D}`;
    assertClose(await y.toArray(), mergeHeads(refAttention(qa, ka, va, { causal: true })).data, { rtol: 1e-4, atol: 1e-5, msg: `${msg} forward` });
    y.backward(g);
    // the gradient in the packed layout: [dq | dk | dv] along the last axis, heads merged
    const dO = toHeads(ga, B, T, H, D);
    const [dq, dk, dv] = attentionBackward(qa, ka, va, dO, { causal: true });
    const exp = concatLast([mergeHeads(dq), mergeHeads(dk), mergeHeads(dv)]);
    assertClose(await x.grad!.toArray(), exp.data, { rtol: 1e-3, atol: 1e-4, msg: `${msg} dqkv` });
    ws.noGrad(() => { x.grad!.dispose(); x.dispose(); y.dispose(); g.dispose(); });
  }
}, { browser: false });

/** [B, T, H·D] → [B, H, T, D]. */
function toHeads(a: Arr, B: number, T: number, H: number, D: number): Arr {
  const out = randArr([B, H, T, D], 0, 0, 0);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) {
    out.data[((b * H + h) * T + t) * D + d] = a.data[(b * T + t) * H * D + h * D + d]!;
  }
  return out;
}

function concatLast(xs: Arr[]): Arr {
  const lead = xs[0]!.shape.slice(0, -1), ws_ = xs.map((x) => x.shape.at(-1)!), W = ws_.reduce((a, b) => a + b, 0);
  const rows = xs[0]!.data.length / ws_[0]!;
  const out = randArr([...lead, W], 0, 0, 0);
  for (let r = 0; r < rows; r++) {
    let at = 0;
    for (const [i, x] of xs.entries()) { out.data.set(x.data.subarray(r * ws_[i]!, (r + 1) * ws_[i]!), r * W + at); at += ws_[i]!; }
  }
  return out;
}

test("attention dropout: the mask is the counter RNG at (key, b·h, i·T + j), identical in forward and backward (explicit-mask float64 reference)", async () => {
  const shape = [2, 2, 33, 8], p = 0.3, seed = 77;
  const [qa, ka, va] = qkvArrs(shape, 61);
  const ga = randArr(shape, 62);
  const key = new ws.Generator(seed).nextKey();
  const keep = attentionKeep(key, p, 33);
  let kept = 0, total = 0;
  for (let bh = 0; bh < 4; bh++) for (let i = 0; i < 33; i++) for (let j = 0; j <= i; j++) { total++; if (keep(bh, i, j)) kept++; }
  assert(Math.abs(kept / total - (1 - p)) < 0.05, `kept fraction ${kept / total}, expected about ${1 - p}`);
  const ro = { causal: true, keep, p };
  const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
  const y = ws.scaledDotProductAttention(q, k, v, { causal: true, dropoutP: p, seed });
  assertClose(await y.toArray(), refAttention(qa, ka, va, ro).data, { rtol: 1e-4, atol: 1e-5, msg: "forward with the mask" });
  const g = fromArr(ga);
  y.backward(g);
  const exp = attentionBackward(qa, ka, va, ga, ro);
  for (const [i, t] of [q, k, v].entries()) assertClose(await t.grad!.toArray(), exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `d${"qkv"[i]} with the mask` });
  // the packed entry draws the same mask for the same key
  const x = fromArr(concatLast([qa, ka, va].map((a) => mergeHeads(a))));
  const yp = ws.qkvAttention(x, 2, { causal: true, dropoutP: p, seed });
  assertClose(await yp.toArray(), mergeHeads(refAttention(qa, ka, va, ro)).data, { rtol: 1e-4, atol: 1e-5, msg: "qkvAttention with the mask" });
  ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } for (const t of [y, g, x, yp]) t.dispose(); });
});

test("attention dropoutP = 0 gives exactly the no-dropout result; dropout draws a new mask per call", async () => {
  const shape = [1, 2, 20, 8];
  const [q, k, v] = qkvArrs(shape, 71).map((a) => fromArr(a)) as [ws.Tensor, ws.Tensor, ws.Tensor];
  const a = await ws.scaledDotProductAttention(q, k, v, { causal: true }).toArray();
  const b = await ws.scaledDotProductAttention(q, k, v, { causal: true, dropoutP: 0 }).toArray();
  assertEquals(Array.from(b), Array.from(a));
  const d1 = await ws.scaledDotProductAttention(q, k, v, { causal: true, dropoutP: 0.5 }).toArray();
  const d2 = await ws.scaledDotProductAttention(q, k, v, { causal: true, dropoutP: 0.5 }).toArray();
  assert(d1.some((x, i) => x !== d2[i]), "two calls with dropout drew the same mask");
  assert(d1.some((x, i) => x !== a[i]), "dropout changed nothing");
  for (const t of [q, k, v]) t.dispose();
});

test("attention in f16 storage matches the float64 reference", async () => {
  const shape = [2, 2, 33, 16];
  const [qa, ka, va] = qkvArrs(shape, 81, 1);
  const [q, k, v] = [qa, ka, va].map((a) => fromArr(a).to("f16").requiresGrad_()) as [ws.Tensor, ws.Tensor, ws.Tensor];
  const y = ws.scaledDotProductAttention(q, k, v, { causal: true });
  assertEquals(y.dtype, "f16");
  assertClose(await y.toArray(), refAttention(qa, ka, va, { causal: true }).data, { rtol: 1e-2, atol: 5e-3, msg: "f16 forward" });
  y.sum().backward();
  const ones = randArr(shape, 0, 1, 1);
  const exp = attentionBackward(qa, ka, va, ones, { causal: true });
  assertClose(await k.grad!.toArray(), exp[1].data, { rtol: 2e-2, atol: 1e-2, msg: "f16 dk" });
  ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } y.dispose(); });
}, { needs: ["shader-f16"] });

test("attention errors: mismatched shapes, i32 input, bad dropoutP, qkv not [B, T, 3C]", async () => {
  const a = ws.zeros([2, 4, 8]), b = ws.zeros([2, 5, 8]);
  await assertThrows(() => ws.scaledDotProductAttention(a, b, a), ws.ShapeError, "scaledDotProductAttention", "[2, 5, 8]");
  await assertThrows(() => ws.scaledDotProductAttention(a, a, a, { dropoutP: 1 }), ws.WebslopeError, "dropoutP");
  const i = ws.tensor(Int32Array.from([1, 2, 3, 4]), [1, 1, 4]);
  await assertThrows(() => ws.scaledDotProductAttention(i, i, i), ws.DTypeError, "f32");
  const x = ws.zeros([2, 3, 10]);
  await assertThrows(() => ws.qkvAttention(x, 2), ws.ShapeError, "qkvAttention", "[B, T, 3C]");
  await assertThrows(() => ws.scaledDotProductAttention(ws.zeros([1, 2, 300]), ws.zeros([1, 2, 300]), ws.zeros([1, 2, 300])), ws.ShapeError, "head dim 300");
  for (const t of [a, b, i, x]) t.dispose();
});

test("GPT with fused attention equals the unfused path: loss and every parameter gradient (dropout 0)", async () => {
  const cfg = { vocabSize: 23, blockSize: 40, nLayer: 2, nHead: 4, nEmbd: 32, seed: 5 };
  const B = 2, T = 37;
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 23), tg = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % 23);
  const run = async (attention: "fused" | "unfused") => {
    ws.manualSeed(9);
    const m = new GPT({ ...cfg, attention });
    const x = ws.tensor(ids, [B, T]), y = ws.tensor(tg, [B, T]);
    const loss = m.loss(x, y);
    loss.backward();
    const l = await loss.item();
    const grads = await Promise.all(m.parameters().map((p) => p.grad!.toArray()));
    loss.dispose(); x.dispose(); y.dispose(); m.dispose();
    return { l, grads };
  };
  const f = await run("fused"), u = await run("unfused");
  assertClose([f.l], [u.l], { rtol: 1e-5, msg: "loss" });
  assertEquals(f.grads.length, u.grads.length);
  for (let i = 0; i < f.grads.length; i++) assertClose(f.grads[i]!, u.grads[i]!, { rtol: 2e-3, atol: 2e-5, msg: `grad ${i}` });
}, { browser: false });

test("fused attention (fused backward) keeps no O(T²) tensor: the peak of a block's forward + backward stays under one [B, H, T, T] tensor", async () => {
  setAttentionBackward("fused");
  try { await fusedPeak(); } finally { setAttentionBackward("auto"); }
});

async function fusedPeak(): Promise<void> {
  const B = 1, T = 256, C = 64, H = 4;
  const attn = new CausalSelfAttention({ nEmbd: C, nHead: H, nLayer: 1 });
  const x = ws.randn([B, T, C], { seed: 3 }).requiresGrad_();
  const { peak, y } = await backwardPeak((t) => attn.forward(t), x);
  const scores = B * H * T * T * 4;
  assert(peak < scores, `peak over the live baseline ${peak} bytes, one [B, H, T, T] f32 tensor is ${scores}`);
  // the unfused path does hold the scores (so the bound above can fail)
  const un = new CausalSelfAttention({ nEmbd: C, nHead: H, nLayer: 1, attention: "unfused" });
  const { peak: peak2, y: y2 } = await backwardPeak((t) => un.forward(t), x);
  assert(peak2 > 2 * scores, "the unfused path keeps scores and probabilities");
  ws.noGrad(() => { x.grad!.dispose(); x.dispose(); y.dispose(); y2.dispose(); attn.dispose(); un.dispose(); });
}
