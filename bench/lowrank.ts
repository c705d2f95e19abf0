// Fused against unfused inference of one SLoPe layer with a low-rank adapter: Y = X·W_Rᵀ + b +
// (1/r)·(X·L)·R. Unfused: spmm (bias in its epilogue), X·L, (X·L)·R scaled, and the add — four
// dispatches and an n×d_out intermediate. Fused (merged): one spmm over [W; Lᵀ] then one kernel
// C += A·(R/r); at M ≤ 16 that is the one-dispatch fused decode kernel, and the row also times
// the merged form unfused (spmm, its split-K sum, the add: `fused: false`) and the dense layer
// (matmul with the bias) of the same shape. d = 768 and 2048, r = 1.56% and 6.25% of d, M = 8 and 4096.
//
//   deno run -A bench/lowrank.ts [--d 768,2048] [--r 0.015625,0.0625] [--m 8,4096] [--quick] [--json out.json] [--components]
// --components also times the merged path's parts (spmm over W, over [W; Lᵀ], the fused add).
import * as ws from "../src/index.ts";
import { MergedSparseLinear, SparseLinear } from "../src/nn/index.ts";
import { lowRankAdd, mergedLinear, Sparse24, spmm } from "../src/slope/index.ts";
import { exit, flags, runtimeGpu, writeText } from "./env.ts";
import { QUICK_TIMING, randomF32, timeBatches } from "./timing.ts";

interface Row {
  d: number; rank: number; M: number; unfusedMs: number; fusedMs: number; speedup: number; maxRelDiff: number;
  /** M ≤ 16: the merged form without the one-dispatch kernel, and the dense layer (× = its time / fusedMs). */
  mergedUnfusedMs?: number; denseMs?: number; overDense?: number;
}

async function main(): Promise<void> {
  const f = await flags({
    d: { type: "string", default: "768,2048" }, r: { type: "string", default: "0.015625,0.0625" }, m: { type: "string", default: "8,4096" },
    components: { type: "boolean", default: false }, json: { type: "string" },
    /** CI: d = 256, r = 6.25%, M = 8 and 256, QUICK_TIMING. */
    quick: { type: "boolean", default: false },
  });
  const ds = (f.quick ? "256" : f.d).split(",").map(Number);
  const fracs = (f.quick ? "0.0625" : f.r).split(",").map(Number);
  const ms = (f.quick ? "8,256" : f.m).split(",").map(Number);
  const at = (warmupMs: number) => (f.quick ? QUICK_TIMING : { warmupMs });
  const { gpu, engine } = await runtimeGpu({ dawnToggles: f["dawn-toggles"] });
  const ctx = await ws.init({ gpu });
  console.log(`engine: ${engine}; adapter: ${ctx.info.adapterName}`);
  const rows: Row[] = [];
  let first = true;
  for (const d of ds) for (const frac of fracs) {
    const rank = Math.max(1, Math.round(frac * d));
    const W = ws.tensor(randomF32(d * d, d), [d, d]), bias = ws.tensor(randomF32(d, 5), [d]);
    const layer = new SparseLinear(d, d, W, bias.mul(1));
    layer.addAdapter({ rank }, { seed: 3 });
    const R = layer.adapter!.R;
    ws.gpu().launcher.upload(R.buffer(), randomF32(R.size, 4));
    layer.eval();
    const Xs = new Map(ms.map((M) => [M, ws.tensor(randomF32(M * d, M), [M, d])]));
    const unfused = new Map<number, [number, Float32Array]>();
    for (const [M, X] of Xs) {
      const t = await timeBatches(async (n) => { ws.noGrad(() => { for (let i = 0; i < n; i++) layer.forward(X).dispose(); }); await ctx.sync(); }, at(first ? 1500 : 400));
      first = false;
      unfused.set(M, [t.medianMs, (await ws.noGrad(() => layer.forward(X)).toArray()) as Float32Array]);
    }
    const plain = layer.w!; // W alone, for the breakdown below
    const wOnly = new Sparse24(plain.values.mul(1), plain.meta.mul(1), plain.rows, plain.cols, plain);
    const merged = MergedSparseLinear.fromAdapted(layer);
    for (const [M, X] of Xs) {
      if (f.components) {
        // where the merged path spends its time: spmm over W (d_out rows) vs over [W; Lᵀ] (d_out + r), and the fused add
        const m = merged.weights;
        const tW = await timeBatches(async (n) => { for (let i = 0; i < n; i++) spmm(X, wOnly, null).dispose(); await ctx.sync(); }, at(300));
        const tM = await timeBatches(async (n) => { for (let i = 0; i < n; i++) spmm(X, m.s, m.bias).dispose(); await ctx.sync(); }, at(300));
        const Y = spmm(X, m.s, m.bias);
        const tA = await timeBatches(async (n) => { for (let i = 0; i < n; i++) lowRankAdd(Y, m.rs).dispose(); await ctx.sync(); }, at(300));
        Y.dispose();
        console.log(`  d=${d} r=${rank} M=${M}: spmm W ${tW.medianMs.toFixed(4)} ms, spmm [W; Lᵀ] ${tM.medianMs.toFixed(4)} ms, fused add ${tA.medianMs.toFixed(4)} ms`);
      }
      const t = await timeBatches(async (n) => { ws.noGrad(() => { for (let i = 0; i < n; i++) merged.forward(X).dispose(); }); await ctx.sync(); }, at(400));
      const y = await ws.noGrad(() => merged.forward(X)).toArray();
      const [uMs, uy] = unfused.get(M)!;
      let diff = 0;
      for (let i = 0; i < y.length; i++) diff = Math.max(diff, Math.abs(y[i]! - uy[i]!) / (1e-3 + Math.abs(uy[i]!)));
      const r: Row = { d, rank, M, unfusedMs: uMs, fusedMs: t.medianMs, speedup: uMs / t.medianMs, maxRelDiff: diff };
      let extra = "";
      if (M <= 16) {
        const m = merged.weights;
        r.mergedUnfusedMs = (await timeBatches(async (n) => { for (let i = 0; i < n; i++) mergedLinear(X, m.s, m.bias, m.rs, "none", { fused: false }).dispose(); await ctx.sync(); }, at(400))).medianMs;
        r.denseMs = (await timeBatches(async (n) => { for (let i = 0; i < n; i++) ws.matmul(X, W, { transB: true, bias }).dispose(); await ctx.sync(); }, at(400))).medianMs;
        r.overDense = r.denseMs / r.fusedMs;
        extra = `; merged without the one-dispatch kernel ${r.mergedUnfusedMs.toFixed(4)} ms; dense layer ${r.denseMs.toFixed(4)} ms → merged ${r.overDense.toFixed(2)}× dense`;
      }
      rows.push(r);
      console.log(`d=${d} r=${rank} (${(frac * 100).toFixed(2)}%) M=${M}: unfused ${uMs.toFixed(4)} ms, fused ${t.medianMs.toFixed(4)} ms → ${r.speedup.toFixed(2)}× (max rel diff ${diff.toExponential(1)})${extra}`);
      X.dispose();
    }
    merged.dispose(); wOnly.dispose(); W.dispose(); bias.dispose();
    ctx.pool.trim();
  }
  const opt = (v?: number, x = false) => v === undefined ? "–" : x ? `${v.toFixed(2)}×` : v.toFixed(4);
  console.log(`\n| d | r | M | unfused ms | fused ms | speedup | merged, not one dispatch | dense layer ms | merged × dense |  (${engine})\n|---|---|---|---|---|---|---|---|---|`);
  for (const r of rows) console.log(`| ${r.d} | ${r.rank} | ${r.M} | ${r.unfusedMs.toFixed(4)} | ${r.fusedMs.toFixed(4)} | ${r.speedup.toFixed(2)}× | ${opt(r.mergedUnfusedMs)} | ${opt(r.denseMs)} | ${opt(r.overDense, true)} |`);
  const json = f.json;
  if (json) await writeText(json, JSON.stringify({ bench: "lowrank", date: new Date().toISOString(), engine, adapter: ctx.info.adapterName, rows }, null, 1));
}

await main();
exit();
