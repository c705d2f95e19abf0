// The fused attention forward on the real matrix units (shaders/attention-subgroup.wgsl.ts)
// against the float64 reference. These cases need chromium-experimental-subgroup-matrix (with
// shader-f16): no software adapter has it, so they skip here and run on a GPU — in Node on NVIDIA
// with Dawn made by create(dawnFlags()) (WEBSLOPE_DAWN_FLAGS=matrix). Inputs are rounded to f16
// first (what the matrix units see); P is rounded to f16 before P·V, so the tolerance is f16's.
// attention-units-emulated.ts checks the same kernel's logic on any adapter.
import * as ws from "../../src/index.ts";
import { fromHalfBits, toHalfBits } from "../../src/dtype.ts";
import { setAttentionMatrixUnits, setAttentionUnitsTile } from "../../src/ops/attention.ts";
import { ATTENTION_UNITS_TILES, attentionUnitsSharedBytes } from "../../shaders/attention-subgroup.wgsl.ts";
import { GPT } from "../../src/nn/index.ts";
import { CharTokenizer, Corpus, Trainer } from "../../src/train/index.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, map, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { attention as refAttention, attentionBackward, attentionKeep, mergeHeads, splitQkv } from "../ref/attention.ts";

const NEEDS = { needs: ["chromium-experimental-subgroup-matrix" as const, "shader-f16" as const] };
const toF16 = (a: Arr): Arr => map((v) => fromHalfBits(toHalfBits(v)), a);
const qkvArrs = (shape: number[], seed: number): [Arr, Arr, Arr] =>
  [randArr(shape, seed, -1.5, 1.5), randArr(shape, seed + 1, -1.5, 1.5), randArr(shape, seed + 2, -1.5, 1.5)].map(toF16) as [Arr, Arr, Arr];
const FWD = { rtol: 4e-3, atol: 2e-3 };
const BWD = { rtol: 1e-2, atol: 4e-3 };
const unitsRan = () => ws.gpu().pipelines.all().some((p) => p.kernel.key.startsWith("attention_sgmat"));

async function medium<R>(fn: () => Promise<R>): Promise<R> {
  const prev = ws.getFloat32MatmulPrecision();
  ws.setFloat32MatmulPrecision("medium");
  setAttentionMatrixUnits(true);
  try { return await fn(); } finally { ws.setFloat32MatmulPrecision(prev); setAttentionUnitsTile(null); setAttentionMatrixUnits(false); }
}

test("attention on the matrix units: init() compiled the matrix-unit forward (matrix units)", () => {
  assert(ws.gpu().matrixUnits.attention, `the matrix-unit attention forward did not compile: ${ws.gpu().matrixUnits.note}`);
}, NEEDS);

test("attention forward on the matrix units at odd shapes: [B, H, T, D] and packed qkv, causal and full, T = 1, 17, 37, 100, head dims 16/32/64/128, f32 and f16 inputs; gradients through the chunked and fused backwards (matrix units)", async () => {
  await medium(async () => {
    let seed = 1000;
    for (const [shape, causal, dtype, backward] of [
      [[2, 3, 17, 16], true, "f32", "fused"], [[1, 2, 37, 32], true, "f32", "chunked"], [[2, 1, 100, 64], true, "f32", "chunked"],
      [[3, 1, 1, 64], true, "f32", "fused"], [[2, 2, 37, 16], false, "f32", "chunked"], [[1, 3, 100, 64], false, "f32", "fused"],
      [[1, 2, 100, 128], true, "f32", "chunked"], [[2, 2, 37, 64], true, "f16", "chunked"],
    ] as const) {
      const sh = [...shape];
      const [qa, ka, va] = qkvArrs(sh, seed += 10);
      const ga = randArr(sh, seed + 5);
      const mk = (a: Arr) => (dtype === "f16" ? fromArr(a).to("f16") : fromArr(a)).requiresGrad_();
      const q = mk(qa), k = mk(ka), v = mk(va);
      const y = ws.scaledDotProductAttention(q, k, v, { causal, backward });
      const msg = `${dtype} ${causal ? "causal" : "full"} [${sh}] (${backward} backward)`;
      const f16tol = dtype === "f16" ? { rtol: 1e-2, atol: 5e-3 } : FWD;
      assertClose(await y.toArray(), refAttention(qa, ka, va, { causal }).data, { ...f16tol, msg: `${msg} forward` });
      const g = dtype === "f16" ? fromArr(ga).to("f16") : fromArr(ga);
      y.backward(g);
      const exp = attentionBackward(qa, ka, va, ga, { causal });
      const bt = dtype === "f16" ? { rtol: 3e-2, atol: 2e-2 } : BWD;
      for (const [i, t] of [q, k, v].entries()) assertClose(await t.grad!.toArray(), exp[i]!.data, { ...bt, msg: `${msg} d${"qkv"[i]}` });
      ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } y.dispose(); g.dispose(); });
    }
    // the packed entry (the GPT block's), with dropout's mask as the reference rebuilds it
    const [B, T, H, D, p, dseed] = [2, 37, 2, 64, 0.2, 5];
    const C = H * D;
    const xa = toF16(randArr([B, T, 3 * C], 1200, -1.5, 1.5));
    const [qa, ka, va] = splitQkv(xa, H);
    const ro = { causal: true, keep: attentionKeep(new ws.Generator(dseed).nextKey(), p, T), p };
    for (const drop of [false, true]) {
      const y = ws.qkvAttention(fromArr(xa), H, drop ? { causal: true, dropoutP: p, seed: dseed } : { causal: true });
      assertClose(await y.toArray(), mergeHeads(refAttention(qa, ka, va, drop ? ro : { causal: true })).data, { ...FWD, msg: `qkvAttention${drop ? " with dropout" : ""}` });
      y.dispose();
    }
    assert(unitsRan(), "no attention_sgmat dispatch");
  });
}, NEEDS);

test("attention forward on the matrix units: every tile that fits, causal at odd T; equal to the shader-core forward within f16 rounding (matrix units)", async () => {
  await medium(async () => {
    const shape = [2, 3, 70, 64];
    const [qa, ka, va] = qkvArrs(shape, 1300);
    const [q, k, v] = [qa, ka, va].map((a) => fromArr(a));
    const exp = refAttention(qa, ka, va, { causal: true }).data;
    let n = 0;
    for (const tile of ATTENTION_UNITS_TILES) {
      if (attentionUnitsSharedBytes(tile, 64) > ws.gpu().limits.maxComputeWorkgroupStorageSize) continue;
      setAttentionUnitsTile(tile);
      const y = ws.noGrad(() => ws.scaledDotProductAttention(q!, k!, v!, { causal: true }));
      assertClose(await y.toArray(), exp, { ...FWD, msg: `tile ${JSON.stringify(tile)}` });
      y.dispose();
      n++;
    }
    assert(n > 0, "no tile fits");
    setAttentionUnitsTile(null);
    setAttentionMatrixUnits(false);
    try {
      const y = ws.noGrad(() => ws.scaledDotProductAttention(q!, k!, v!, { causal: true }));
      assertClose(await y.toArray(), exp, { rtol: 1e-4, atol: 1e-5, msg: "the shader-core forward (setAttentionMatrixUnits(false))" });
      y.dispose();
    } finally {
      setAttentionMatrixUnits(true); // medium() turns it off again
    }
    for (const t of [q, k, v]) t!.dispose();
  });
}, NEEDS);

test("mixed-f16 on the matrix units: a step's attention forward runs as an attention_sgmat dispatch (matrix units)", async () => {
  const text = "the quick brown fox jumps over the lazy dog. ".repeat(40);
  const tok = new CharTokenizer(text);
  const corpus = new Corpus(tok.encode(text), { valFraction: 0.2 });
  // head dim 32: a multiple of 16
  const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 32, nLayer: 1, nHead: 2, nEmbd: 64, seed: 1 });
  const trainer = new Trainer(model, corpus, { batchSize: 8, totalSteps: 10, lr: 3e-3, seed: 2, precision: "mixed-f16" });
  let loss: ws.Tensor | null = null;
  // Opt-in (slower than the shader-core forward on the H200): the default step keeps attentionForward.
  const plain = await ws.profile(() => { trainer.step().dispose(); });
  assert(plain.events.some((e) => e.kernel.startsWith("attentionForward")) && !plain.events.some((e) => e.kernel.startsWith("attention_sgmat")), "by default the mixed step's attention forward stays on the shader cores");
  setAttentionMatrixUnits(true);
  const prof = await ws.profile(() => { loss = trainer.step(); }).finally(() => setAttentionMatrixUnits(false));
  const l = await loss!.item();
  (loss as ws.Tensor | null)?.dispose();
  const kernels = prof.events.map((e) => e.kernel);
  assert(kernels.some((k) => k.startsWith("attention_sgmat")), `no matrix-unit attention dispatch among ${prof.dispatches} (${[...new Set(prof.events.map((e) => e.family))].join(", ")})`);
  assert(!kernels.some((k) => k.startsWith("attentionForward")), "the shader-core forward ran as well");
  assert(Number.isFinite(l), `loss ${l}`);
  assertEquals(ws.getFloat32MatmulPrecision(), "highest", "the step restores the global matmul precision");
  trainer.dispose(); model.dispose();
}, NEEDS);
