// Fused against unfused causal self-attention (the attention core of a GPT block, from the qkv
// projection's output [B, T, 3C] to y [B, T, C], projections excluded): forward alone and
// forward + backward, with the peak memory of one forward + backward. Fused: qkvAttention (one
// flash-style forward kernel; Δ, dK/dV and dQ kernels backward). Chunked: the same forward, the
// chunked recompute backward (the five products on the batched GEMM, c heads at a time under the
// chunk budget; src/ops/attention-chunked.ts). Unfused: permute/split → q·kᵀ [B, H, T, T] →
// scale → causal softmax → ·v → merge heads (unfusedCausalAttention).
// Shapes: the GPT configs of issue 7 (D = 64): small (6 × 384 → H = 6, block 256, batch 64) and
// gpt2 (12 × 768 → H = 12, block 1024, batch 8); `tiny` for CI. TFLOP/s count the causal half:
// forward 2·B·H·T²·D, forward + backward 3.5× that (FlashAttention's accounting).
//
// --tiles 0,1,2 also times the fused path with each tile set of ATTENTION_TILES forced (index).
// --chunk-mib 32,128,256 also times the chunked backward under each of these chunk budgets (MiB;
// the default row uses the default 64 MiB); --panel-rows 512,1024 with causal row panels of these
// many rows (the default: ~T/4 from T = 512 on; T rows = no panels). --precision medium runs the GEMMs on the matrix units
// (with init's matrixUnits; setFloat32MatmulPrecision; in Node add --dawn-toggles for Dawn's feature),
// and with it the forward too (shaders/attention-subgroup.wgsl.ts, head dims that are multiples of
// 16): every row then runs the matrix-unit forward, and one more row, "… shader-core fwd", runs the
// f32 fused forward (setAttentionMatrixUnits(false)) in the same run; --units-tiles 4x32,2x32,1x16
// adds a row per matrix-unit forward tile (nsub × keys of ATTENTION_UNITS_TILES' shape).
//
//   deno run -A bench/attention.ts [--configs small,gpt2] [--quick] [--dropout 0.1] [--tiles 0,1,2] [--chunk-mib 32,128] [--panel-rows 512,1024] [--precision medium] [--units-tiles 4x32,2x32] [--dawn-toggles] [--json out.json]
//   npm run bench:build && node .bench-dist/attention.mjs [same flags]
//   npm run bench:browser -- attention [same flags]     (Chromium, bench/browser/)
import * as ws from "../src/index.ts";
import { unfusedCausalAttention } from "../src/nn/transformer.ts";
import { setAttentionMatrixUnits, setAttentionTiles, setAttentionUnitsTile } from "../src/ops/attention.ts";
import type { AttentionUnitsTile } from "../shaders/attention-subgroup.wgsl.ts";
import { setAttentionChunkBytes, setAttentionPanelOverride } from "../src/ops/attention-chunked.ts";
import { ATTENTION_TILES } from "../shaders/attention.wgsl.ts";
import { exit, flags, runtimeGpu, writeText } from "./env.ts";
import { QUICK_TIMING, randomF32, timeBatches } from "./timing.ts";

interface Config { name: string; B: number; T: number; H: number; D: number }
const CONFIGS: Config[] = [
  { name: "tiny", B: 2, T: 64, H: 2, D: 16 },
  { name: "small", B: 64, T: 256, H: 6, D: 64 },
  { name: "gpt2", B: 8, T: 1024, H: 12, D: 64 },
];

interface Row {
  config: string; B: number; T: number; H: number; D: number; impl: string;
  fwdMs: number; fwdBwdMs: number; fwdTflops: number; fwdBwdTflops: number; peakBytes: number;
}

type Attn = (qkv: ws.Tensor) => ws.Tensor;

async function main(): Promise<void> {
  const f = await flags({
    configs: { type: "string" }, quick: { type: "boolean", default: false }, dropout: { type: "string", default: "0" }, tiles: { type: "string" }, json: { type: "string" },
    "chunk-mib": { type: "string" }, "panel-rows": { type: "string" }, precision: { type: "string", default: "highest" }, "units-tiles": { type: "string" },
  });
  const quick = f.quick;
  const names = (f.configs ?? (quick ? "tiny" : "small,gpt2")).split(",");
  const pDrop = Number(f.dropout);
  const { gpu, engine } = await runtimeGpu({ dawnToggles: f["dawn-toggles"] });
  const precision = f.precision as ws.MatmulPrecision;
  const ctx = await ws.init({ gpu, matrixUnits: precision !== "highest" });
  ws.setFloat32MatmulPrecision(precision);
  console.log(`engine: ${engine}; adapter: ${ctx.info.adapterName}; dropout ${pDrop}; matmul precision ${precision}` +
    (precision !== "highest" ? ` (matrix units: ${ctx.matrixUnits.tiles.join(", ") || ctx.matrixUnits.note}; attention forward ${ctx.matrixUnits.attention ? "on them" : "not on them"})` : ""));
  const unitsTiles: AttentionUnitsTile[] = (f["units-tiles"] ? f["units-tiles"].split(",") : []).map((s) => {
    const [nsub, keys] = s.split("x").map(Number);
    if (![1, 2, 4, 8].includes(nsub!) || ![16, 32, 64].includes(keys!)) throw new Error(`--units-tiles: ${s} is not NSUBxKEYS (nsub 1/2/4/8, keys 16/32/64)`);
    return { nsub, keys } as AttentionUnitsTile;
  });
  const timing = quick ? QUICK_TIMING : { warmupMs: 1000 };
  const rows: Row[] = [];
  for (const name of names) {
    const c = CONFIGS.find((x) => x.name === name);
    if (!c) throw new Error(`unknown config ${name}; one of ${CONFIGS.map((x) => x.name).join(", ")}`);
    const { B, T, H, D } = c, C = H * D;
    const qkv = ws.tensor(randomF32(B * T * 3 * C, 1), [B, T, 3 * C]).requiresGrad_();
    const gy = ws.tensor(randomF32(B * T * C, 2), [B, T, C]);
    const fused: Attn = (x) => ws.qkvAttention(x, H, { causal: true, dropoutP: pDrop, backward: "fused" });
    const chunked: Attn = (x) => ws.qkvAttention(x, H, { causal: true, dropoutP: pDrop, backward: "chunked" });
    // [name, attention, tile set forced, chunk budget in MiB (null: default), compared with fused, causal panel rows (null: automatic),
    //  matrix-unit forward: "off" (the shader-core forward), a tile forced, or null (the automatic choice)]
    type Units = "off" | AttentionUnitsTile | null;
    const impls: [string, Attn, number | null, number | null, boolean, number | null, Units][] = [
      ["fused", fused, null, null, true, null, null], ["fused fwd + chunked bwd", chunked, null, null, false, null, null],
      ["unfused", (x) => unfusedCausalAttention(x, H, pDrop), null, null, true, null, null],
    ];
    if (precision !== "highest" && ctx.matrixUnits.attention && D % 16 === 0) {
      impls.push(["shader-core fwd + chunked bwd", chunked, null, null, false, null, "off"]);
      for (const t of unitsTiles) impls.push([`units fwd ${t.nsub}x${t.keys} + chunked bwd`, chunked, null, null, false, null, t]);
    }
    for (const t of f.tiles ? f.tiles.split(",").map(Number) : []) {
      const ts = ATTENTION_TILES[t];
      if (!ts) throw new Error(`--tiles: no tile set ${t}; 0..${ATTENTION_TILES.length - 1}`);
      impls.push([`fused tiles ${t} (fwd ${ts.fwdRows}×${ts.fwdKeys}, dq ${ts.dqRows}×${ts.dqKeys}, dkv ${ts.dkvKeys}×${ts.dkvRows})`, fused, t, null, false, null, null]);
    }
    for (const mib of f["chunk-mib"] ? f["chunk-mib"].split(",").map(Number) : []) {
      if (!(mib > 0)) throw new Error(`--chunk-mib: ${mib} is not a positive number of MiB`);
      impls.push([`fused fwd + chunked bwd, ${mib} MiB chunks`, chunked, null, mib, false, null, null]);
    }
    for (const rows of f["panel-rows"] ? f["panel-rows"].split(",").map(Number) : []) {
      if (!(rows >= 1)) throw new Error(`--panel-rows: ${rows} is not a row count`);
      impls.push([`fused fwd + chunked bwd, panels of ${rows} rows`, chunked, null, null, false, rows, null]);
    }
    const outs: Float32Array[] = [];
    const grads = new Map<string, Float32Array>();
    for (const [impl, attn, tiles, mib, compare, panel, units] of impls) {
      setAttentionMatrixUnits(units !== null && units !== "off");
      setAttentionUnitsTile(units === "off" ? null : units);
      setAttentionTiles(tiles === null ? null : ATTENTION_TILES[tiles]!);
      setAttentionChunkBytes(mib === null ? null : mib * 2 ** 20);
      setAttentionPanelOverride(panel);
      const fwd = await timeBatches(async (n) => {
        ws.noGrad(() => { for (let i = 0; i < n; i++) attn(qkv).dispose(); });
        await ctx.sync();
      }, timing);
      const step = () => {
        const y = attn(qkv);
        y.backward(gy);
        y.dispose();
        qkv.grad!.dispose();
        qkv.grad = null;
      };
      const fb = await timeBatches(async (n) => { for (let i = 0; i < n; i++) step(); await ctx.sync(); }, timing);
      ctx.pool.resetPeak();
      const live = ws.memoryStats().liveBytes;
      step();
      await ctx.sync();
      const peakBytes = ws.memoryStats().peakBytes - live;
      if (pDrop === 0 && compare) outs.push((await ws.noGrad(() => attn(qkv)).toArray()) as Float32Array);
      if (impl === "fused" || impl === "fused fwd + chunked bwd") {
        // one more step with a fixed dropout seed, so both backwards see one mask
        const y = ws.qkvAttention(qkv, H, { causal: true, dropoutP: pDrop, seed: 7, backward: impl === "fused" ? "fused" : "chunked" });
        y.backward(gy);
        y.dispose();
        grads.set(impl, (await qkv.grad!.toArray()) as Float32Array);
        qkv.grad!.dispose();
        qkv.grad = null;
      }
      const flops = 2 * B * H * T * T * D;
      const r: Row = {
        config: name, B, T, H, D, impl, fwdMs: fwd.medianMs, fwdBwdMs: fb.medianMs,
        fwdTflops: flops / (fwd.medianMs * 1e-3) / 1e12, fwdBwdTflops: (3.5 * flops) / (fb.medianMs * 1e-3) / 1e12, peakBytes,
      };
      rows.push(r);
      console.log(`${name} B=${B} T=${T} H=${H} D=${D} ${impl}: fwd ${r.fwdMs.toFixed(3)} ms (${r.fwdTflops.toFixed(1)} TFLOP/s), ` +
        `fwd+bwd ${r.fwdBwdMs.toFixed(3)} ms (${r.fwdBwdTflops.toFixed(1)} TFLOP/s), peak ${(peakBytes / 2 ** 20).toFixed(1)} MiB`);
      setAttentionTiles(null);
      setAttentionChunkBytes(null);
      setAttentionPanelOverride(null);
      setAttentionMatrixUnits(false);
      setAttentionUnitsTile(null);
      ctx.pool.trim();
    }
    if (outs.length === 2) {
      let diff = 0;
      for (let i = 0; i < outs[0]!.length; i++) diff = Math.max(diff, Math.abs(outs[0]![i]! - outs[1]![i]!));
      console.log(`  max |fused − unfused| = ${diff.toExponential(2)}`);
    }
    const gf = grads.get("fused"), gc = grads.get("fused fwd + chunked bwd");
    if (gf && gc) {
      let diff = 0, max = 0;
      for (let i = 0; i < gf.length; i++) { diff = Math.max(diff, Math.abs(gf[i]! - gc[i]!)); max = Math.max(max, Math.abs(gf[i]!)); }
      console.log(`  max |dqkv fused − dqkv chunked| = ${diff.toExponential(2)} (max |dqkv| ${max.toExponential(2)})`);
    }
    qkv.dispose(); gy.dispose();
    ctx.pool.trim();
  }
  console.log(`\n| config | B | T | H | D | impl | fwd ms | fwd+bwd ms | fwd TFLOP/s | fwd+bwd TFLOP/s | peak MiB |  (${engine})`);
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.config} | ${r.B} | ${r.T} | ${r.H} | ${r.D} | ${r.impl} | ${r.fwdMs.toFixed(3)} | ${r.fwdBwdMs.toFixed(3)} | ` +
      `${r.fwdTflops.toFixed(1)} | ${r.fwdBwdTflops.toFixed(1)} | ${(r.peakBytes / 2 ** 20).toFixed(1)} |`);
  }
  const json = f.json;
  if (json) await writeText(json, JSON.stringify({ bench: "attention", date: new Date().toISOString(), engine, adapter: ctx.info.adapterName, dropout: pDrop, rows }, null, 1));
}

await main();
exit();
