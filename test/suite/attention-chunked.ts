// The chunked recompute backward of attention (src/ops/attention-chunked.ts) against the float64
// reference, the unfused GPU path, finite differences and the fused backward: causal and not, T not
// a multiple of any GEMM tile (1, 7, 37, 70), one head and many, the chunk budget forced small so
// several chunks run with a last partial one, dropout (the same mask as the fused forward: equal
// to the fused backward with the same seed), the packed qkv layout, f16 storage, bad settings, and
// the memory claim (the transient stays within the chunk budget).
import * as ws from "../../src/index.ts";
import { CausalSelfAttention } from "../../src/nn/transformer.ts";
import { type AttentionBackward, setAttentionBackward } from "../../src/ops/attention.ts";
import {
  chunkBytesPerHead, getAttentionChunkBytes, keyPieces, panelRows, setAttentionChunkBytes, setAttentionPanelOverride, setAttentionPiecesOverride,
} from "../../src/ops/attention-chunked.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { backwardPeak } from "../lib/memory.ts";
import { type Arr, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";
import { attention as refAttention, attentionBackward, attentionKeep, mergeHeads, splitQkv } from "../ref/attention.ts";

const qkvArrs = (shape: number[], seed: number, amp = 1.5): [Arr, Arr, Arr] =>
  [randArr(shape, seed, -amp, amp), randArr(shape, seed + 1, -amp, amp), randArr(shape, seed + 2, -amp, amp)];

/** Runs `fn` with a chunk budget of `heads` heads of T×D (causal panels as set; null: the default budget). */
async function withChunk<R>(heads: number | null, T: number, D: number, fn: () => Promise<R>): Promise<R> {
  setAttentionChunkBytes(heads === null ? null : heads * chunkBytesPerHead(T, D, panelRows(T, true)));
  try { return await fn(); } finally { setAttentionChunkBytes(null); }
}

/** y, dq, dk, dv of sdpa on the given arrays with one backward. */
async function sdpaGrads(qa: Arr, ka: Arr, va: Arr, ga: Arr, opts: ws.AttentionOptions): Promise<Float32Array[]> {
  const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
  const g = fromArr(ga);
  const y = ws.scaledDotProductAttention(q, k, v, opts);
  y.backward(g);
  const out = [await y.toArray(), ...(await Promise.all([q, k, v].map((t) => t.grad!.toArray())))] as Float32Array[];
  ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } y.dispose(); g.dispose(); });
  return out;
}

// [BH or B, H, T, D]; chunk heads forced to 2 so 5 or 6 heads run as 2 + 2 + 1 / 2 + 2 + 2, one head as one chunk
// [2, 2, 128, 8] at one head per chunk cuts the keys in two pieces (the automatic choice)
const CASES: [number[], number | null][] = [[[1, 1, 1, 8], 2], [[5, 7, 16], 2], [[2, 3, 37, 16], 2], [[1, 1, 70, 5], null], [[2, 2, 128, 8], 1], [[3, 2, 33, 64], 4]];

for (const causal of [true, false]) {
  test(`chunked attention backward (${causal ? "causal" : "full"}): q/k/v gradients match float64, several chunks with a partial last one`, async () => {
    for (const [n, [shape, heads]] of CASES.entries()) {
      if (!causal && n >= 4) continue; // the key pieces and D = 64 once, causal, are enough
      const T = shape.at(-2)!, D = shape.at(-1)!;
      const [qa, ka, va] = qkvArrs(shape, 110 + n);
      const ga = randArr(shape, 150 + n);
      const got = await withChunk(heads, T, D, () => sdpaGrads(qa, ka, va, ga, { causal, backward: "chunked" }));
      const exp = attentionBackward(qa, ka, va, ga, { causal });
      const msg = `${causal ? "causal" : "full"} ${shape} chunk ${heads ?? "default"}`;
      assertClose(got[0]!, refAttention(qa, ka, va, { causal }).data, { rtol: 1e-4, atol: 1e-5, msg: `${msg} y` });
      for (let i = 0; i < 3; i++) assertClose(got[i + 1]!, exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `${msg} d${"qkv"[i]}` });
    }
  }, { browser: causal });
}

test("chunked attention backward equals the unfused GPU path (matmul → causal softmax → matmul) and the fused backward", async () => {
  const shape = [2, 3, 37, 16];
  const [qa, ka, va] = qkvArrs(shape, 121);
  const ga = randArr(shape, 122);
  const unfused = async () => {
    const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
    const g = fromArr(ga);
    const y = ws.tidy(() => q.matmul(k, { transB: true }).mul(1 / 4).softmax(-1, { causal: true }).matmul(v));
    y.backward(g);
    const out = [await y.toArray(), ...(await Promise.all([q, k, v].map((t) => t.grad!.toArray())))];
    ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } y.dispose(); g.dispose(); });
    return out;
  };
  const u = await unfused();
  const c = await withChunk(4, 37, 16, () => sdpaGrads(qa, ka, va, ga, { causal: true, backward: "chunked" }));
  const f = await sdpaGrads(qa, ka, va, ga, { causal: true, backward: "fused" });
  for (let i = 1; i < 4; i++) {
    assertClose(c[i]!, u[i]!, { rtol: 1e-4, atol: 2e-5, msg: `chunked vs unfused ${["y", "dq", "dk", "dv"][i]}` });
    assertClose(c[i]!, f[i]!, { rtol: 1e-4, atol: 2e-5, msg: `chunked vs fused ${["y", "dq", "dk", "dv"][i]}` });
  }
}, { browser: false });

for (const causal of [true, false]) {
  test(`chunked attention backward: gradients by finite differences (${causal ? "causal" : "full"}, T = 5, D = 3, three heads in chunks of 2, scale 0.7)`, async () => {
    const shape = [3, 5, 3];
    const [qa, ka, va] = qkvArrs(shape, 13, 1);
    await withChunk(2, 5, 3, () => gradCheck({
      inputs: [qa, ka, va],
      gpu: ([q, k, v]) => ws.scaledDotProductAttention(q!, k!, v!, { causal, scale: 0.7, backward: "chunked" }),
      ref: ([q, k, v]) => refAttention(q!, k!, v!, { causal, scale: 0.7 }),
      eps: 1e-5, rtol: 5e-3, atol: 5e-4,
    }));
  }, { browser: causal });
}

test("chunked attention backward with dropout: the fused forward's mask (float64 with the explicit mask, and equal to the fused backward, same seed)", async () => {
  const shape = [2, 3, 33, 8], p = 0.3, seed = 78;
  const [qa, ka, va] = qkvArrs(shape, 161);
  const ga = randArr(shape, 162);
  const keep = attentionKeep(new ws.Generator(seed).nextKey(), p, 33);
  const ro = { causal: true, keep, p };
  const c = await withChunk(4, 33, 8, () => sdpaGrads(qa, ka, va, ga, { causal: true, dropoutP: p, seed, backward: "chunked" }));
  const f = await sdpaGrads(qa, ka, va, ga, { causal: true, dropoutP: p, seed, backward: "fused" });
  const exp = attentionBackward(qa, ka, va, ga, ro);
  assertClose(c[0]!, refAttention(qa, ka, va, ro).data, { rtol: 1e-4, atol: 1e-5, msg: "forward with the mask" });
  for (let i = 0; i < 3; i++) {
    assertClose(c[i + 1]!, exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `d${"qkv"[i]} with the mask` });
    assertClose(c[i + 1]!, f[i + 1]!, { rtol: 1e-4, atol: 2e-5, msg: `d${"qkv"[i]}: chunked vs fused` });
  }
  // non-causal too (the mask above the diagonal is drawn as well)
  const cf = await withChunk(2, 33, 8, () => sdpaGrads(qa, ka, va, ga, { dropoutP: p, seed, backward: "chunked" }));
  const ff = await sdpaGrads(qa, ka, va, ga, { dropoutP: p, seed, backward: "fused" });
  for (let i = 1; i < 4; i++) assertClose(cf[i]!, ff[i]!, { rtol: 1e-4, atol: 2e-5, msg: `full mask d${"qkv"[i - 1]}: chunked vs fused` });
});

test("chunked attention backward with the keys cut into pieces (3 of 33 keys; automatic counts), with dropout, matches float64", async () => {
  assertEquals([keyPieces(256, 1024, 12), keyPieces(256, 256, 12), keyPieces(1024, 1024, 96), keyPieces(128, 128, 1), keyPieces(70, 70, 1), keyPieces(96, 96, 1)],
    [8, 4, 1, 2, 1, 1]);
  const shape = [1, 3, 99, 8], p = 0.25, seed = 31;
  const [qa, ka, va] = qkvArrs(shape, 171);
  const ga = randArr(shape, 172);
  const ro = { causal: true, keep: attentionKeep(new ws.Generator(seed).nextKey(), p, 99), p };
  setAttentionPiecesOverride(3);
  let got: Float32Array[];
  try {
    assertEquals(keyPieces(99, 99, 2), 3);
    got = await withChunk(2, 99, 8, () => sdpaGrads(qa, ka, va, ga, { causal: true, dropoutP: p, seed, backward: "chunked" }));
  } finally {
    setAttentionPiecesOverride(null);
  }
  const exp = attentionBackward(qa, ka, va, ga, ro);
  for (let i = 0; i < 3; i++) assertClose(got[i + 1]!, exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `3 key pieces d${"qkv"[i]}` });
});

test("chunked attention backward in causal row panels (the keys above the diagonal skipped; a partial last panel; key pieces), with and without dropout, sdpa and packed, matches float64", async () => {
  assertEquals([panelRows(1024, true), panelRows(512, true), panelRows(300, true), panelRows(1024, false), panelRows(768, true)], [256, 256, 300, 1024, 256]);
  const shape = [2, 2, 37, 8], p = 0.2, seed = 41;
  const [qa, ka, va] = qkvArrs(shape, 201);
  const ga = randArr(shape, 202);
  const keep = attentionKeep(new ws.Generator(seed).nextKey(), p, 37);
  const C = 16, B = 2, H = 2, T = 37, D = 8;
  // the packed input of the same q, k, v: [B, T, 3C]
  const xa = randArr([B, T, 3 * C], 0, 0, 0);
  [qa, ka, va].forEach((t, s) => { for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) for (let d = 0; d < D; d++) {
    xa.data[(b * T + i) * 3 * C + s * C + h * D + d] = t.data[((b * H + h) * T + i) * D + d]!;
  } });
  const gy = randArr([B, T, C], 0, 0, 0);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) for (let d = 0; d < D; d++) gy.data[(b * T + i) * C + h * D + d] = ga.data[((b * H + h) * T + i) * D + d]!;
  for (const [rows, pieces] of [[16, 2], [12, 3]] as const) {
    setAttentionPanelOverride(rows);
    setAttentionPiecesOverride(pieces);
    try {
      for (const dropoutP of [0, p]) {
        const ro = dropoutP ? { causal: true, keep, p } : { causal: true };
        const exp = attentionBackward(qa, ka, va, ga, ro);
        const msg = `panels of ${rows}, ${pieces} key pieces, dropout ${dropoutP}`;
        const got = await withChunk(3, T, D, () => sdpaGrads(qa, ka, va, ga, { causal: true, dropoutP, seed, backward: "chunked" }));
        for (let i = 0; i < 3; i++) assertClose(got[i + 1]!, exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `${msg} d${"qkv"[i]}` });
        const x = fromArr(xa, { requiresGrad: true }), g = fromArr(gy);
        const y = ws.qkvAttention(x, H, { causal: true, dropoutP, seed, backward: "chunked" });
        y.backward(g);
        const dx = await x.grad!.toArray();
        ws.noGrad(() => { x.grad!.dispose(); x.dispose(); y.dispose(); g.dispose(); });
        const [dqm, dkm, dvm] = exp.map(mergeHeads) as [Arr, Arr, Arr];
        const want = new Float64Array(B * T * 3 * C);
        for (let r = 0; r < B * T; r++) [dqm, dkm, dvm].forEach((m, s) => want.set(m.data.subarray(r * C, (r + 1) * C), r * 3 * C + s * C));
        assertClose(dx, want, { rtol: 1e-3, atol: 1e-4, msg: `${msg} packed dqkv` });
      }
    } finally {
      setAttentionPanelOverride(null);
      setAttentionPiecesOverride(null);
    }
  }
});

test("chunked attention backward with its automatic panels and key pieces (T = 512: two panels of 256) equals the fused backward", async () => {
  const shape = [1, 2, 512, 16];
  assertEquals(panelRows(512, true), 256);
  const [qa, ka, va] = qkvArrs(shape, 211);
  const ga = randArr(shape, 212);
  const c = await sdpaGrads(qa, ka, va, ga, { causal: true, backward: "chunked" });
  const f = await sdpaGrads(qa, ka, va, ga, { causal: true, backward: "fused" });
  for (let i = 1; i < 4; i++) assertClose(c[i]!, f[i]!, { rtol: 1e-3, atol: 2e-5, msg: `d${"qkv"[i - 1]}: chunked vs fused` });
}, { browser: false });

test("chunked attention backward on the packed qkv layout: dqkv [B, T, 3C] matches float64 and the fused backward (with and without dropout)", async () => {
  const cases: [number, number, number, number, number][] = [[2, 7, 4, 16, 3], [1, 70, 1, 8, 1], [3, 1, 4, 4, 5], [1, 33, 2, 64, 1]];
  for (const [n, [B, T, H, D, heads]] of cases.entries()) {
    const C = H * D;
    const xa = randArr([B, T, 3 * C], 130 + n, -1.5, 1.5), ga = randArr([B, T, C], 140 + n);
    const [qa, ka, va] = splitQkv(xa, H);
    const run = async (backward: AttentionBackward, dropoutP = 0) => {
      const x = fromArr(xa, { requiresGrad: true }), g = fromArr(ga);
      const y = ws.qkvAttention(x, H, { causal: true, backward, dropoutP, seed: 5 });
      assertEquals(y.shape, [B, T, C]);
      y.backward(g);
      const out = [await y.toArray(), await x.grad!.toArray()];
      ws.noGrad(() => { x.grad!.dispose(); x.dispose(); y.dispose(); g.dispose(); });
      return out;
    };
    const msg = `B=${B} T=${T} H=${H} D=${D} chunk ${heads}`;
    const [y, dx] = await withChunk(heads, T, D, () => run("chunked"));
    assertClose(y!, mergeHeads(refAttention(qa, ka, va, { causal: true })).data, { rtol: 1e-4, atol: 1e-5, msg: `${msg} forward` });
    const dO = randArr([B, H, T, D], 0, 0, 0);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) {
      dO.data[((b * H + h) * T + t) * D + d] = ga.data[(b * T + t) * C + h * D + d]!;
    }
    const [dq, dk, dv] = attentionBackward(qa, ka, va, dO, { causal: true }).map(mergeHeads) as [Arr, Arr, Arr];
    const exp = new Float64Array(B * T * 3 * C);
    for (let r = 0; r < B * T; r++) [dq, dk, dv].forEach((a, s) => exp.set(a.data.subarray(r * C, (r + 1) * C), r * 3 * C + s * C));
    assertClose(dx!, exp, { rtol: 1e-3, atol: 1e-4, msg: `${msg} dqkv` });
    if (D > 16) continue; // the fused dropout kernels at D = 64 compile slowly on the software adapters
    const [, dxc] = await withChunk(heads, T, D, () => run("chunked", 0.2));
    const [, dxf] = await run("fused", 0.2);
    assertClose(dxc!, dxf!, { rtol: 1e-4, atol: 2e-5, msg: `${msg} dropout dqkv: chunked vs fused` });
  }
}, { browser: false });

test("chunked attention backward in f16 storage matches the float64 reference", async () => {
  const shape = [2, 3, 33, 16];
  const [qa, ka, va] = qkvArrs(shape, 181, 1);
  const [q, k, v] = [qa, ka, va].map((a) => fromArr(a).to("f16").requiresGrad_()) as [ws.Tensor, ws.Tensor, ws.Tensor];
  await withChunk(2, 33, 16, async () => {
    const y = ws.scaledDotProductAttention(q, k, v, { causal: true, backward: "chunked" });
    y.sum().backward();
    y.dispose();
  });
  const exp = attentionBackward(qa, ka, va, randArr(shape, 0, 1, 1), { causal: true });
  for (const [i, t] of [q, k, v].entries()) {
    assertEquals(t.grad!.dtype, "f16");
    assertClose(await t.grad!.toArray(), exp[i]!.data, { rtol: 2e-2, atol: 1e-2, msg: `f16 d${"qkv"[i]}` });
  }
  ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } });
}, { needs: ["shader-f16"] });

test("attention backward settings: bad modes and budgets are refused and change nothing; a budget under one head still gives float64 gradients (auto and chunked)", async () => {
  const a = ws.zeros([2, 4, 8]);
  await assertThrows(() => ws.scaledDotProductAttention(a, a, a, { backward: "flash" as AttentionBackward }), ws.ValueError, "scaledDotProductAttention", "flash");
  await assertThrows(() => setAttentionBackward("nope" as AttentionBackward), ws.ValueError, "setAttentionBackward");
  await assertThrows(() => ws.setAttentionChunkBytes(-1), ws.ValueError, "setAttentionChunkBytes");
  await assertThrows(() => ws.setAttentionChunkBytes(Number.NaN), ws.ValueError, "setAttentionChunkBytes");
  assertEquals(getAttentionChunkBytes(), 128 * 2 ** 20);
  // a budget below one head: auto falls back to the fused kernels, explicit chunked still runs one head per chunk
  const shape = [3, 9, 4];
  const [qa, ka, va] = qkvArrs(shape, 191);
  const ga = randArr(shape, 192);
  const exp = attentionBackward(qa, ka, va, ga, { causal: true });
  ws.setAttentionChunkBytes(16);
  try {
    for (const backward of ["auto", "chunked"] as const) {
      const got = await sdpaGrads(qa, ka, va, ga, { causal: true, backward });
      for (let i = 0; i < 3; i++) assertClose(got[i + 1]!, exp[i]!.data, { rtol: 1e-3, atol: 1e-4, msg: `${backward} d${"qkv"[i]}` });
    }
  } finally {
    ws.setAttentionChunkBytes(null);
  }
  a.dispose();
});

test("chunked attention backward keeps its transient within the chunk budget; the fused one keeps no O(T²) tensor", async () => {
  const B = 1, T = 256, C = 64, H = 8, D = C / H;
  const attn = new CausalSelfAttention({ nEmbd: C, nHead: H, nLayer: 1 });
  const x = ws.randn([B, T, C], { seed: 3 }).requiresGrad_();
  const peakOf = async (backward: AttentionBackward) => {
    setAttentionBackward(backward);
    try {
      const { peak, y } = await backwardPeak((t) => attn.forward(t), x);
      ws.noGrad(() => { x.grad!.dispose(); x.grad = null; y.dispose(); });
      return peak;
    } finally {
      setAttentionBackward("auto");
    }
  };
  const scores = B * H * T * T * 4;
  const fused = await peakOf("fused");
  assert(fused < scores, `fused: peak over the live baseline ${fused} bytes, one [B, H, T, T] f32 tensor is ${scores}`);
  // one head per chunk: the transient is one head's S and dP (plus its [T, D] rows), about a quarter of the scores
  const one = await withChunk(1, T, D, () => peakOf("chunked"));
  assert(one < fused + chunkBytesPerHead(T, D), `chunked, 1 head per chunk: peak ${one} bytes, over the fused ${fused} + one chunk ${chunkBytesPerHead(T, D)}`);
  assert(one < scores, `chunked, 1 head per chunk: peak ${one} bytes, over one [B, H, T, T] tensor ${scores}`);
  // all heads in one chunk hold S and dP of every head: the bound above is not vacuous
  const all = await withChunk(H, T, D, () => peakOf("chunked"));
  assert(all > 2 * scores && all < fused + H * chunkBytesPerHead(T, D), `chunked, ${H} heads per chunk: peak ${all} bytes, expected between ${2 * scores} and ${fused + H * chunkBytesPerHead(T, D)}`);
  ws.noGrad(() => { x.dispose(); attn.dispose(); });
});
