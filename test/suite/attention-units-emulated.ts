// The matrix-unit attention forward (shaders/attention-subgroup.wgsl.ts) on adapters without the
// feature: the op routes its kernel through the subgroup-matrix emulation (test/lib/sgmat-emulate.ts;
// without shader-f16, its f16 workgroup arrays run as f32 rounded to f16), so the kernel's own
// logic — staging both layouts, the online softmax over key blocks, causal skipping, bounds at
// odd T, rows and keys past T, every tile, dropout's mask, the logsumexp the backward reads — is
// checked against the float64 reference with the existing backwards (fused and chunked) behind
// it, and by finite differences through the whole op. Inputs are rounded to f16 first (what the
// matrix units see); what remains is P's f16 rounding and f32 arithmetic. The structure check
// needs no GPU: declared workgroup memory, subgroup-uniform and 16-byte-aligned matrix offsets.
// The real builtins are checked on the H200 by attention-units.ts.
import * as ws from "../../src/index.ts";
import { fromHalfBits, toHalfBits } from "../../src/dtype.ts";
import { emulateAttentionMatrixUnits, getAttentionMatrixUnits, setAttentionMatrixUnits, setAttentionUnitsTile } from "../../src/ops/attention.ts";
import {
  ATTENTION_UNITS_TILES, type AttentionUnitsTile, UNITS_MAX_HEAD_DIM, attentionUnitsForwardKernel, attentionUnitsSharedBytes,
} from "../../shaders/attention-subgroup.wgsl.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { emulateSubgroupMatrices, emulatedParams, findCalls } from "../lib/sgmat-emulate.ts";
import { type Arr, map, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";
import { attention as refAttention, attentionBackward, attentionKeep, mergeHeads, splitQkv } from "../ref/attention.ts";

const H200_WORKGROUP_BYTES = 49152;
const SG = 32;
const toF16 = (a: Arr): Arr => map((v) => fromHalfBits(toHalfBits(v)), a);
const qkvArrs = (shape: number[], seed: number, amp = 1.5): [Arr, Arr, Arr] =>
  [randArr(shape, seed, -amp, amp), randArr(shape, seed + 1, -amp, amp), randArr(shape, seed + 2, -amp, amp)].map(toF16) as [Arr, Arr, Arr];

/** Runs `fn` with the op's matrix-unit forward emulated and the f32 matmul precision at "medium"; counts its dispatches. */
async function withUnits<R>(fn: () => Promise<R>, tile: AttentionUnitsTile | null = null): Promise<R> {
  const halfAsF32 = !ws.gpu().hasF16();
  emulateAttentionMatrixUnits({
    subgroupSize: SG,
    kernel: (k) => ({ ...k, key: `emulated:${k.key}`, code: emulateSubgroupMatrices(k.code, SG, { halfAsF32 }) }),
    params: (p) => emulatedParams(p, SG),
  });
  setAttentionUnitsTile(tile);
  const prev = ws.getFloat32MatmulPrecision();
  ws.setFloat32MatmulPrecision("medium");
  assert(!getAttentionMatrixUnits(), "the matrix-unit attention forward is opt-in (off by default)");
  setAttentionMatrixUnits(true);
  try {
    return await fn();
  } finally {
    ws.setFloat32MatmulPrecision(prev);
    setAttentionUnitsTile(null);
    setAttentionMatrixUnits(false);
    emulateAttentionMatrixUnits(null);
  }
}

/** Pipelines of the emulated matrix-unit forward compiled so far. */
const unitsPipelines = () => ws.gpu().pipelines.all().filter((p) => p.kernel.key.startsWith("emulated:attention_sgmat")).length;

// P is rounded to f16 before P·V: ~2⁻¹¹ relative per term of O.
const FWD = { rtol: 4e-3, atol: 2e-3 };
const BWD = { rtol: 1e-2, atol: 4e-3 };

/** [B·H…, T, D] through scaledDotProductAttention: forward and q/k/v gradients against float64. */
async function sdpaCase(shape: number[], causal: boolean, seed: number, backward: "fused" | "chunked" = "fused", grads = true): Promise<void> {
  const [qa, ka, va] = qkvArrs(shape, seed);
  const ga = randArr(shape, seed + 7);
  const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
  const before = unitsPipelines();
  const y = ws.scaledDotProductAttention(q, k, v, { causal, backward });
  const msg = `${causal ? "causal" : "full"} [${shape}] (${backward} backward)`;
  assertClose(await y.toArray(), refAttention(qa, ka, va, { causal }).data, { ...FWD, msg: `${msg} forward` });
  assert(unitsPipelines() > before || ws.gpu().pipelines.all().some((p) => p.kernel.key.startsWith("emulated:attention_sgmat")), `${msg}: the matrix-unit forward ran`);
  if (grads) {
    const g = fromArr(ga);
    y.backward(g);
    const exp = attentionBackward(qa, ka, va, ga, { causal });
    for (const [i, t] of [q, k, v].entries()) assertClose(await t.grad!.toArray(), exp[i]!.data, { ...BWD, msg: `${msg} d${"qkv"[i]}` });
    g.dispose();
  }
  ws.noGrad(() => { for (const t of [q, k, v]) { t.grad?.dispose(); t.dispose(); } y.dispose(); });
}

test("matrix-unit attention forward's generated code: workgroup memory as attentionUnitsSharedBytes counts it, some tile within the H200's at every head dim, uniform 16-byte-aligned matrix offsets", () => {
  let checked = 0;
  for (let D = 16; D <= UNITS_MAX_HEAD_DIM; D += 16) {
    assert(ATTENTION_UNITS_TILES.some((t) => attentionUnitsSharedBytes(t, D) <= H200_WORKGROUP_BYTES), `head dim ${D}: no tile fits ${H200_WORKGROUP_BYTES} bytes`);
    for (const t of ATTENTION_UNITS_TILES) for (const [causal, dropout, dtype] of [[true, false, "f32"], [false, true, "f16"]] as const) {
      const code = attentionUnitsForwardKernel({ ...t, dtype, D, causal, dropout, subgroupSize: SG, sgSyntax: "majorness" }).code;
      const what = `${JSON.stringify(t)} D ${D} ${dtype}${causal ? " causal" : ""}${dropout ? " dropout" : ""}`;
      const declared = [...code.matchAll(/var<workgroup> \w+: array<(f16|f32), (\d+)>;/g)].reduce((s, m) => s + (m[1] === "f16" ? 2 : 4) * Number(m[2]), 0);
      assertEquals(declared, attentionUnitsSharedBytes(t, D), `${what}: declared workgroup bytes`);
      const loads = findCalls(code, "subgroupMatrixLoad"), stores = findCalls(code, "subgroupMatrixStore");
      // S = Q·Kᵀ: D/16 Q loads, (D/16)(keys/16) K loads; U = P·V: keys/16 P loads, (keys/16)(D/16) V loads.
      assertEquals(loads.length, D / 16 + 2 * (D / 16) * (t.keys / 16) + t.keys / 16, `${what}: matrix loads`);
      assertEquals(stores.length, t.keys / 16 + D / 16, `${what}: matrix stores`);
      assertEquals(findCalls(code, "subgroupMatrixMultiplyAccumulate").length, 2 * (D / 16) * (t.keys / 16), `${what}: products per key block`);
      for (const c of [...loads, ...stores]) {
        assert(/^&(Qs|Ks|Vs|Ps|Ss)$/.test(c.args[0]!), `${what}: ${c.fn} on workgroup memory (${c.args[0]})`);
        // Offsets: constants and sr (= sgid·16) only — subgroup-uniform; strides constant.
        const off = c.args[1]!, ld = c.args.at(-1)!;
        assert(/^(sr \* \d+u \+ )?\d+u$/.test(off), `${what}: ${c.fn} offset ${off} is built from sr and constants`);
        assert(/^\d+u$/.test(ld), `${what}: ${c.fn} stride ${ld} is a constant`);
        const elem = c.args[0] === "&Ss" ? 4 : 2;
        const consts = [...off.matchAll(/(\d+)u/g)].map((m) => Number(m[1]));
        for (const x of [...consts, Number(ld.slice(0, -1))]) assertEquals((x * elem) % 16, 0, `${what}: ${c.fn} ${off} / ${ld} in whole 16-byte units`);
      }
      assert(code.includes("let sr = sgid * 16u;") || t.nsub === 1, `${what}: the subgroup's rows come from the subgroup_id builtin`);
      checked++;
    }
  }
  console.log(`checked the generated code of ${checked} matrix-unit attention variants`);
});

// Each (tile, head dim, causal, dropout) is a pipeline of its own, several seconds to compile
// under lavapipe: Deno only, for CI time.
const EMU = { runtimes: ["deno" as const] };

test("matrix-unit attention forward, emulated (Deno only: compile time): [B, H, T, D] causal and full at T = 1, 17, 37, 100, head dims 16/32/64, B·H > 1; forward and q/k/v gradients (fused and chunked backward) match float64", async () => {
  await withUnits(async () => {
    let seed = 100;
    // Full (non-causal) cases at D > 16 take the chunked backward (the Trainer's on a GPU): the fused
    // full backward at D = 64 compiles for minutes under lavapipe (attention.ts keeps it to small D too).
    for (const [shape, causal, backward] of [
      [[2, 3, 17, 16], true, "fused"], [[1, 2, 37, 32], true, "fused"], [[2, 1, 100, 64], true, "fused"], [[3, 1, 1, 64], true, "fused"],
      [[2, 2, 37, 16], false, "fused"], [[1, 3, 17, 64], false, "chunked"], [[1, 1, 100, 32], false, "chunked"], [[2, 2, 37, 32], true, "chunked"],
    ] as const) await sdpaCase([...shape], causal, seed += 10, backward);
  });
}, EMU);

test("matrix-unit attention forward, emulated (Deno only: compile time): every other tile of ATTENTION_UNITS_TILES (the cases above run the first) at odd T, causal: row blocks straddling the diagonal", async () => {
  let n = 0;
  for (const tile of ATTENTION_UNITS_TILES.slice(1)) {
    if (attentionUnitsSharedBytes(tile, 32) > ws.gpu().limits.maxComputeWorkgroupStorageSize) continue;
    await withUnits(() => sdpaCase([2, 1, 70, 32], true, 400 + n++, "fused", n === 1), tile);
  }
  assert(n > 0, "no other tile fits this adapter");
}, EMU);

test("matrix-unit attention forward, emulated (Deno only: compile time): qkvAttention's packed [B, T, 3C] layout, causal and full, T = 1, 17, 100; y and dqkv match float64", async () => {
  await withUnits(async () => {
    for (const [n, [B, T, H, D, causal]] of ([[2, 17, 2, 32, true], [1, 100, 3, 16, false], [2, 1, 2, 64, true], [1, 37, 2, 64, false]] as const).entries()) {
      const C = H * D;
      const xa = toF16(randArr([B, T, 3 * C], 500 + n, -1.5, 1.5)), ga = randArr([B, T, C], 510 + n);
      const [qa, ka, va] = splitQkv(xa, H);
      const x = fromArr(xa, { requiresGrad: true }), g = fromArr(ga);
      const y = ws.qkvAttention(x, H, { causal, backward: causal || D <= 16 ? "fused" : "chunked" });
      const msg = `qkv B=${B} T=${T} H=${H} D=${D}${causal ? " causal" : ""}`;
      assertEquals(y.shape, [B, T, C]);
      assertClose(await y.toArray(), mergeHeads(refAttention(qa, ka, va, { causal })).data, { ...FWD, msg: `${msg} forward` });
      y.backward(g);
      const dO = splitQkv(concat3(ga), H)[0];
      const exp = attentionBackward(qa, ka, va, dO, { causal });
      const got = splitQkv({ data: Float64Array.from(await x.grad!.toArray()), shape: [B, T, 3 * C] }, H);
      for (let i = 0; i < 3; i++) assertClose(Float32Array.from(got[i]!.data), exp[i]!.data, { ...BWD, msg: `${msg} d${"qkv"[i]}` });
      ws.noGrad(() => { x.grad!.dispose(); x.dispose(); y.dispose(); g.dispose(); });
    }
    assert(unitsPipelines() > 0, "the matrix-unit forward ran");
  });
}, EMU);

/** [B, T, C] → [B, T, 3C] with it as the first third (so splitQkv's q part is it, as [B, H, T, D]). */
function concat3(a: Arr): Arr {
  const [B, T, C] = a.shape as [number, number, number];
  const out = randArr([B, T, 3 * C], 0, 0, 0);
  for (let r = 0; r < B * T; r++) out.data.set(a.data.subarray(r * C, (r + 1) * C), r * 3 * C);
  return out;
}

test("matrix-unit attention forward, emulated (Deno only: compile time): dropout draws the counter-RNG mask the backward regenerates (explicit-mask float64 reference), both entries", async () => {
  await withUnits(async () => {
    const shape = [2, 2, 37, 32], p = 0.3, seed = 77;
    const [qa, ka, va] = qkvArrs(shape, 600);
    const ga = randArr(shape, 601);
    const ro = { causal: true, keep: attentionKeep(new ws.Generator(seed).nextKey(), p, 37), p };
    const q = fromArr(qa, { requiresGrad: true }), k = fromArr(ka, { requiresGrad: true }), v = fromArr(va, { requiresGrad: true });
    const y = ws.scaledDotProductAttention(q, k, v, { causal: true, dropoutP: p, seed, backward: "fused" });
    assertClose(await y.toArray(), refAttention(qa, ka, va, ro).data, { ...FWD, msg: "forward with the mask" });
    const g = fromArr(ga);
    y.backward(g);
    const exp = attentionBackward(qa, ka, va, ga, ro);
    for (const [i, t] of [q, k, v].entries()) assertClose(await t.grad!.toArray(), exp[i]!.data, { ...BWD, msg: `d${"qkv"[i]} with the mask` });
    const xa: Arr = { data: new Float64Array(2 * 37 * 3 * 64), shape: [2, 37, 3 * 64] };
    const [mq, mk, mv] = [qa, ka, va].map(mergeHeads);
    for (let r = 0; r < 2 * 37; r++) for (const [s, m] of [mq, mk, mv].entries()) xa.data.set(m!.data.subarray(r * 64, (r + 1) * 64), r * 192 + s * 64);
    const x = fromArr(xa);
    const yp = ws.qkvAttention(x, 2, { causal: true, dropoutP: p, seed });
    assertClose(await yp.toArray(), mergeHeads(refAttention(qa, ka, va, ro)).data, { ...FWD, msg: "qkvAttention with the mask" });
    assert(ws.gpu().pipelines.all().some((pl) => pl.kernel.key.startsWith("emulated:attention_sgmat") && pl.kernel.key.includes("\"dropout\":true")), "the dropout variant ran");
    ws.noGrad(() => { for (const t of [q, k, v]) { t.grad!.dispose(); t.dispose(); } for (const t of [y, g, x, yp]) t.dispose(); });
  });
}, EMU);

test("matrix-unit attention forward, emulated (Deno only: compile time): gradients by finite differences through the op (causal, T = 19, D = 16, two heads, scale 0.6)", async () => {
  await withUnits(async () => {
    const shape = [2, 19, 16];
    const [qa, ka, va] = qkvArrs(shape, 700, 1);
    const before = unitsPipelines();
    await gradCheck({
      inputs: [qa, ka, va],
      gpu: ([q, k, v]) => ws.scaledDotProductAttention(q!, k!, v!, { causal: true, scale: 0.6, backward: "fused" }),
      ref: ([q, k, v]) => refAttention(q!, k!, v!, { causal: true, scale: 0.6 }),
      eps: 1e-5, rtol: 2e-2, atol: 2e-3,
    });
    assert(unitsPipelines() > before || unitsPipelines() > 0, "the matrix-unit forward ran");
  });
}, EMU);

test("matrix-unit attention forward: not used at \"highest\" precision with f32 inputs, nor at head dims that are not multiples of 16; a forced tile too large is a typed error", async () => {
  await withUnits(async () => {
    ws.setFloat32MatmulPrecision("highest");
    const before = unitsPipelines();
    const [q, k, v] = qkvArrs([1, 2, 9, 16], 800).map((a) => fromArr(a)) as [ws.Tensor, ws.Tensor, ws.Tensor];
    ws.scaledDotProductAttention(q, k, v, { causal: true }).dispose();
    ws.setFloat32MatmulPrecision("medium");
    const [q2, k2, v2] = qkvArrs([1, 2, 9, 24], 810).map((a) => fromArr(a)) as [ws.Tensor, ws.Tensor, ws.Tensor];
    ws.scaledDotProductAttention(q2, k2, v2, { causal: true }).dispose();
    await ws.gpu().sync();
    assertEquals(unitsPipelines(), before, "no matrix-unit attention pipeline was built");
    // A forced tile over the adapter's workgroup memory: refused before anything is allocated or dispatched.
    const big = { nsub: 8, keys: 64 } as const;
    if (attentionUnitsSharedBytes(big, 128) > ws.gpu().limits.maxComputeWorkgroupStorageSize) {
      setAttentionUnitsTile(big);
      const x = fromArr(randArr([1, 40, 128], 1));
      const live = ws.memoryStats().liveTensors;
      let threw: unknown = null;
      try { ws.scaledDotProductAttention(x, x, x); } catch (e) { threw = e; }
      assert(threw instanceof ws.ResourceLimitError && /workgroup memory/.test((threw as Error).message), `expected a ResourceLimitError, got ${threw}`);
      assertEquals(ws.memoryStats().liveTensors, live, "the failed call left no tensor behind");
      x.dispose();
    }
    for (const t of [q, k, v, q2, k2, v2]) t.dispose();
  });
});
