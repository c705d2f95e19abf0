// 2:4 spmm against our dense matmul, one linear layer's forward Y = X·Wᵀ + b, in the same run:
// weights d×d, 3d×d (qkv), 4d×d (fc1) and d×4d (fc2) at d = 768, 1024, 2048, 4096, for M = 4096
// rows (training) and M = 8 (decode). Per row: dense; per-element 2:4 on spmm's default path
// ("decode" at M ≤ 16, "expand" / the matrix units above); at M ≤ 16 the older "small" kernel
// too; above, the vector-wise 2:4 pattern (compressVector, --block rows per mask) and the weight
// gradient: dense dYᵀX, per-element sddmm (its automatic tile and split-K, and with
// --sddmm-split / --sddmm-tiles a sweep of forced ones), the per-element "lanes" sddmm (warp-uniform
// pattern codes; --sddmm-lanes picks its variants, checked against the default sddmm first) and
// sddmmVector (its automatic split). We report ms,
// dense-equivalent TFLOP/s, speedups over dense, and for decode the weight bytes read per second.
//
//   deno run -A bench/sparse.ts [--d 768,1024,2048,4096] [--m 4096,8] [--shapes dxd,3dxd,4dxd,dx4d] [--block 128] [--json out.json]
//        [--dtype f32|f16] [--sddmm-split 1,4,16] [--sddmm-tiles 64x64,128x128] [--sddmm-lanes c4g2m4,c4g4m2|all|none]   (f16: every operand in f16; the sweep:
//        sddmm at each forced split × tile, the automatic tile when --sddmm-tiles is left out)
//        [--warmup MS] [--batch-ms MS]   (timing per measurement, default 400 and 250; the JSON is rewritten after each weight)
//        [--lanes 8x8,8x4,4x8,4x4 | all]   (M > 16: the lanes kernel's variants, with the expand kernel forced, in the same run)
//        [--tune]   (M > 16: tuneSpmm and tuneSddmm time every candidate kernel, then the default paths run again with their choices kept)
//        [--spmm-only]   (M > 16: leave out the vector-wise spmm and the weight-gradient products)
//   deno run -A bench/sparse.ts --quick        (d = 256, M = 8 and 256, shapes d×d and d×4d, short timing: a smoke run on software adapters)
//   node .bench-dist/sparse.mjs ...   (after npm run bench:build)
//   npm run bench:browser -- sparse ...   (Chromium, bench/browser/)
import * as ws from "../src/index.ts";
import { clearSddmmTuning, clearSpmmTuning, compress24, compressVector, decompress24, SDDMM_LANES, type SddmmLanesVariant, sddmm, sddmmVector, spmm, spmmVector, type SddmmTile, tuneSddmm, tuneSpmm } from "../src/sparse/index.ts";
import { sddmmPlan } from "../src/sparse/sddmm.ts";
import { sddmmVectorPlan } from "../src/sparse/vector24.ts";
import { lanesVariant } from "../src/sparse/spmm.ts";
import { LANES_VARIANTS, type LanesVariant } from "../shaders/spmm-lanes.wgsl.ts";
import { exit, flags, runtimeGpu, writeText } from "./env.ts";
import { QUICK_TIMING, randomF32, type TimingOptions, tflops, timeBatches } from "./timing.ts";

interface Row {
  d: number; shape: string; dOut: number; K: number; M: number;
  denseMs: number; sparseMs: number; speedup: number; denseTflops: number; sparseTflopsEq: number; sparseWeightGBs: number; denseWeightGBs: number;
  /** M ≤ 16: the older small kernel, and the decode kernel forced to one pass (no split-K). */
  smallMs?: number; smallSpeedup?: number;
  onePassMs?: number; onePassSpeedup?: number;
  /** M > 16: vector-wise spmm, and the weight gradient (dense dYᵀX, per-element sddmm, sddmmVector). */
  vectorMs?: number; vectorSpeedup?: number;
  denseDwMs?: number; sddmmMs?: number; sddmmSpeedup?: number; sddmmVectorMs?: number; sddmmVectorSpeedup?: number;
  /** sddmm's automatic choice, e.g. "64x64, split 16 × 1024 rows". */
  sddmmPlan?: string;
  /** The lanes sddmm per variant (--sddmm-lanes), ms, at its automatic split. */
  sddmmLanesMs?: Record<string, number>;
  /** sddmmVector's automatic tile and split, as sddmmPlan. */
  sddmmVectorPlan?: string;
  /** --lanes: the expand kernel forced, each lanes variant (ms and speedup over dense), and the variant "lanes" picks by itself. */
  expandMs?: number; expandSpeedup?: number; lanesMs?: Record<string, number>; lanesSpeedup?: Record<string, number>; lanesAuto?: string;
  /** --tune: tuneSpmm's choice (GPU-timed candidates) and spmm "auto" timed again with it kept, ms and speedup over dense. */
  tunedChoice?: string; tunedMs?: number; tunedSpeedup?: number; tuneTimings?: { choice: string; ms: number }[];
  /** --tune: tuneSddmm's choice and sddmm timed again with it kept (ms; its speedup is over denseDwMs). */
  sddmmTunedChoice?: string; sddmmTunedMs?: number; sddmmTuneTimings?: { choice: string; ms: number }[];
  /** --sddmm-split sweep: ms per "tile/sS" (tile "auto" unless --sddmm-tiles; forced split S, the slices actually dispatched can be fewer at small M). */
  sddmmSweepMs?: Record<string, number>;
}

const DEFAULT_SHAPES = "dxd,3dxd,4dxd,dx4d";
const SHAPES: Record<string, (d: number) => [number, number]> = { dxd: (d) => [d, d], "3dxd": (d) => [3 * d, d], "4dxd": (d) => [4 * d, d], dx4d: (d) => [d, 4 * d] };

async function main(): Promise<void> {
  const f = await flags({
    d: { type: "string", default: "768,1024,2048,4096" }, m: { type: "string", default: "4096,8" }, json: { type: "string" },
    shapes: { type: "string", default: DEFAULT_SHAPES }, block: { type: "string", default: "128" }, quick: { type: "boolean", default: false },
    /** Timing per measurement: warm-up and batch wall time, ms (shorter fits a time-limited device call). */
    warmup: { type: "string", default: "400" }, "batch-ms": { type: "string", default: "250" },
    /** Node + Dawn: both sides on the matrix units (init({ matrixUnits: true }), f32 precision "medium"). */
    units: { type: "boolean", default: false },
    dtype: { type: "string", default: "f32" }, "sddmm-split": { type: "string" }, "sddmm-tiles": { type: "string" },
    /** Variants of the lanes sddmm to time (names of SDDMM_LANES, "all" or "none"). */
    "sddmm-lanes": { type: "string", default: "c4g2m4" },
    lanes: { type: "string" }, "spmm-only": { type: "boolean", default: false },
    /** M > 16: tuneSpmm on each product, then the default path timed again with the kept choice. */
    tune: { type: "boolean", default: false },
  });
  const lanes = (f.lanes === "all" ? Object.keys(LANES_VARIANTS) : f.lanes?.split(",") ?? []) as LanesVariant[];
  for (const v of lanes) if (!(v in LANES_VARIANTS)) throw new Error(`--lanes: unknown variant ${v}; use all or some of ${Object.keys(LANES_VARIANTS)}`);
  if (f.dtype !== "f32" && f.dtype !== "f16") throw new Error(`--dtype: f32 or f16, not ${f.dtype}`);
  const dtype = f.dtype as "f32" | "f16";
  const splits = f["sddmm-split"]?.split(",").map(Number) ?? [];
  const sweepTiles = (f["sddmm-tiles"]?.split(",") ?? [undefined]) as (SddmmTile | undefined)[];
  const lanesArg = f["sddmm-lanes"];
  const lanesVariants = (lanesArg === "none" ? [] : lanesArg === "all" ? Object.keys(SDDMM_LANES) : lanesArg.split(",")) as SddmmLanesVariant[];
  for (const v of lanesVariants) if (!(v in SDDMM_LANES)) throw new Error(`--sddmm-lanes: unknown ${v}; use ${Object.keys(SDDMM_LANES)}, all or none`);
  const ds = f.quick ? [256] : f.d.split(",").map(Number);
  const ms = f.quick ? [8, 256] : f.m.split(",").map(Number);
  const block = Number(f.block);
  // --quick (CI's smoke run on software adapters) keeps one shape of each direction, d×d and d×4d,
  // unless --shapes says otherwise: the other two took half of its 200 s under SwiftShader
  const shapeNames = f.quick && f.shapes === DEFAULT_SHAPES ? ["dxd", "dx4d"] : f.shapes.split(",");
  const shapes = shapeNames.map((n) => { const g = SHAPES[n]; if (!g) throw new Error(`--shapes: unknown ${n}; use ${Object.keys(SHAPES)}`); return [n.replace("x", "×"), g] as const; });
  const timing: TimingOptions = f.quick ? QUICK_TIMING : { warmupMs: Number(f.warmup), batchMs: Number(f["batch-ms"]) };
  const { gpu, engine } = await runtimeGpu({ dawnToggles: f.units || f["dawn-toggles"] });
  const ctx = await ws.init({ gpu, matrixUnits: f.units });
  if (dtype === "f16" && !ctx.features.has("shader-f16")) throw new Error("--dtype f16: the adapter has no shader-f16 (Node: pass --dawn-toggles)");
  /** A tensor of random values in the benchmark's dtype. */
  const rnd = (shape: number[], seed: number) => {
    const t = ws.tensor(randomF32(shape.reduce((a, b) => a * b, 1), seed), shape);
    if (dtype === "f32") return t;
    const h = t.to("f16"); t.dispose(); return h;
  };
  if (f.units) {
    if (!ctx.matrixUnits.tiles.length) throw new Error(`--units: no matrix units on this device (${ctx.matrixUnits.note})`);
    ws.setFloat32MatmulPrecision("medium");
  }
  console.log(`engine: ${engine}, ${dtype}${f.units ? `, matrix units (${ctx.matrixUnits.tiles.join(", ")})` : ""}; adapter: ${ctx.info.adapterName}`);
  const rows: Row[] = [];
  const save = async () => {
    if (f.json) await writeText(f.json, JSON.stringify({ bench: "spmm", dtype, block, date: new Date().toISOString(), engine, matrixUnits: f.units ? ctx.matrixUnits.tiles : null, adapter: ctx.info.adapterName, rows }, null, 1));
  };
  let first = true;
  for (const d of ds) for (const [shape, dims] of shapes) {
    const [dOut, K] = dims(d);
    const W = rnd([dOut, K], d);
    const b = rnd([dOut], 7);
    const S = compress24(W), V = compressVector(W, { block });
    {
      // correctness first: the sparse product equals the dense product of the pruned weight
      // (the reference product in f32 arithmetic, off the matrix units: 8 rows take spmm's f32 small path)
      // (and the vector-wise product that of its pruned weight, on 64 rows: the vector GEMM)
      const Wr = decompress24(S), Vr = decompress24(V), X8 = rnd([8, K], 99), X64 = rnd([64, K], 98);
      ws.setFloat32MatmulPrecision("highest");
      const [ys, yd, yv, ydv] = await Promise.all([spmm(X8, S, b).toArray(), ws.matmul(X8, Wr, { transB: true, bias: b }).toArray(),
        spmmVector(X64, V, b, { block }).toArray(), ws.matmul(X64, Vr, { transB: true, bias: b }).toArray()]);
      if (f.units) ws.setFloat32MatmulPrecision("medium");
      const err = (a: ArrayLike<number>, r: ArrayLike<number>) => { let e = 0; for (let i = 0; i < r.length; i++) e = Math.max(e, Math.abs(a[i]! - r[i]!) / (1 + Math.abs(r[i]!))); return e; };
      const tol = dtype === "f16" ? 2e-2 : 1e-3;
      if (!(err(ys, yd) < tol)) throw new Error(`spmm disagrees with the dense product of the pruned weight at d=${d} ${shape}: ${err(ys, yd)}`);
      if (!(err(yv, ydv) < tol)) throw new Error(`spmmVector disagrees with the dense product of its pruned weight at d=${d} ${shape}: ${err(yv, ydv)}`);
      ws.setFloat32MatmulPrecision("highest");
      const yd64 = ws.matmul(X64, Wr, { transB: true, bias: b });
      const ref64 = await yd64.toArray();
      if (f.units) ws.setFloat32MatmulPrecision("medium");
      for (const v of lanes) {
        const yl = spmm(X64, S, b, { path: "lanes", lanesVariant: v });
        const e = err(await yl.toArray(), ref64);
        if (!(e < tol)) throw new Error(`spmm lanes ${v} disagrees with the dense product of the pruned weight at d=${d} ${shape}: ${e}`);
        yl.dispose();
      }
      yd64.dispose();
      Wr.dispose(); Vr.dispose(); X8.dispose(); X64.dispose();
    }
    for (const M of ms) {
      const X = rnd([M, K], M);
      const time = (fn: () => ws.Tensor, warm = false) => timeBatches(async (n) => { for (let i = 0; i < n; i++) fn().dispose(); await ctx.sync(); },
        { ...timing, ...(warm && !f.quick ? { warmupMs: 1500 } : {}) });
      const dense = await time(() => ws.matmul(X, W, { transB: true, bias: b }), first);
      first = false;
      const sparse = await time(() => spmm(X, S, b));
      const eb = dtype === "f16" ? 2 : 4;
      const wBytesDense = dOut * K * eb, wBytesSparse = S.values.size * eb + S.meta.size * 4;
      const r: Row = {
        d, shape, dOut, K, M, denseMs: dense.medianMs, sparseMs: sparse.medianMs, speedup: dense.medianMs / sparse.medianMs,
        denseTflops: tflops(M, K, dOut, dense.medianMs), sparseTflopsEq: tflops(M, K, dOut, sparse.medianMs),
        denseWeightGBs: wBytesDense / (dense.medianMs * 1e6), sparseWeightGBs: wBytesSparse / (sparse.medianMs * 1e6),
      };
      if (M <= 16) {
        r.smallMs = (await time(() => spmm(X, S, b, { path: "small" }))).medianMs;
        r.smallSpeedup = r.denseMs / r.smallMs;
        r.onePassMs = (await time(() => spmm(X, S, b, { path: "decode", splits: 1 }))).medianMs;
        r.onePassSpeedup = r.denseMs / r.onePassMs;
      } else {
        if (lanes.length) {
          r.expandMs = (await time(() => spmm(X, S, b, { path: "expand" }))).medianMs;
          r.expandSpeedup = r.denseMs / r.expandMs;
          r.lanesMs = {}; r.lanesSpeedup = {};
          for (const v of lanes) {
            r.lanesMs[v] = (await time(() => spmm(X, S, b, { path: "lanes", lanesVariant: v }))).medianMs;
            r.lanesSpeedup[v] = r.denseMs / r.lanesMs[v]!;
          }
          r.lanesAuto = lanesVariant(M, dOut, ctx.limits.maxComputeWorkgroupStorageSize);
        }
        if (f.tune) {
          const t = await tuneSpmm(X, S, b);
          r.tunedChoice = t.choice; r.tuneTimings = t.timings;
          r.tunedMs = (await time(() => spmm(X, S, b))).medianMs;
          r.tunedSpeedup = r.denseMs / r.tunedMs;
          clearSpmmTuning();
        }
      }
      if (M > 16 && !f["spmm-only"]) {
        r.vectorMs = (await time(() => spmmVector(X, V, b, { block }))).medianMs;
        r.vectorSpeedup = r.denseMs / r.vectorMs;
        const dY = rnd([M, dOut], M + 1);
        r.denseDwMs = (await time(() => ws.matmul(dY, X, { transA: true }))).medianMs;
        r.sddmmMs = (await time(() => sddmm(dY, X, S))).medianMs;
        if (f.tune) {
          const t = await tuneSddmm(dY, X, S);
          r.sddmmTunedChoice = t.choice; r.sddmmTuneTimings = t.timings;
          r.sddmmTunedMs = (await time(() => sddmm(dY, X, S))).medianMs;
          clearSddmmTuning();
        }
        const plan = sddmmPlan(M, dOut, K);
        r.sddmmPlan = `${plan.tile}, ${plan.slices > 1 ? `split ${plan.slices} × ${plan.sliceRows} rows` : "no split"}`;
        if (splits.length) {
          r.sddmmSweepMs = {};
          for (const tile of sweepTiles) for (const splitK of splits) {
            r.sddmmSweepMs[`${tile ?? "auto"}/s${splitK}`] = (await time(() => sddmm(dY, X, S, { tile, splitK }))).medianMs;
          }
        }
        // --quick: the lanes sddmm (about 8 s a timing under SwiftShader) at the first shape only
        if (lanesVariants.length && !(f.quick && shape !== shapes[0]![0])) {
          // never run on this GPU before: each variant must agree with the default sddmm first
          const want = await sddmm(dY, X, S).toArray();
          const err = (a: ArrayLike<number>) => { let e = 0; for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(a[i]! - want[i]!) / (1 + Math.abs(want[i]!))); return e; };
          r.sddmmLanesMs = {};
          for (const lanes of lanesVariants) {
            const e = err(await sddmm(dY, X, S, { method: "lanes", lanes }).toArray());
            if (!(e < (dtype === "f16" ? 2e-2 : 1e-3))) throw new Error(`sddmm lanes ${lanes} disagrees with the default sddmm at d=${d} ${shape} M=${M}: ${e}`);
            r.sddmmLanesMs[lanes] = (await time(() => sddmm(dY, X, S, { method: "lanes", lanes }))).medianMs;
          }
        }
        r.sddmmVectorMs = (await time(() => sddmmVector(dY, X, V, { block }))).medianMs;
        const vplan = sddmmVectorPlan(M, dOut, K, block);
        r.sddmmVectorPlan = `${vplan.tile}, ${vplan.slices > 1 ? `split ${vplan.slices} × ${vplan.sliceRows} rows` : "no split"}`;
        r.sddmmSpeedup = r.denseDwMs / r.sddmmMs;
        r.sddmmVectorSpeedup = r.denseDwMs / r.sddmmVectorMs;
        dY.dispose();
      }
      rows.push(r);
      const tuneText = r.tunedChoice ? `; tuned: ${r.tunedChoice} ${r.tunedMs!.toFixed(4)} ms → ${r.tunedSpeedup!.toFixed(2)}× (${r.tuneTimings!.map((t) => `${t.choice} ${t.ms.toFixed(4)}`).join(", ")})` : "";
      const lanesText = tuneText + (r.lanesMs ? `; expand ${r.expandMs!.toFixed(4)} ms → ${r.expandSpeedup!.toFixed(2)}×; lanes ${Object.entries(r.lanesMs).map(([v, ms]) => `${v} ${ms.toFixed(4)} ms → ${r.lanesSpeedup![v]!.toFixed(2)}×`).join(", ")} (auto: ${r.lanesAuto})` : "");
      console.log(`d=${d} ${shape} M=${M}: dense ${r.denseMs.toFixed(4)} ms (${r.denseTflops.toFixed(2)} TFLOP/s), 2:4 ${r.sparseMs.toFixed(4)} ms (${r.sparseTflopsEq.toFixed(2)} dense-eq TFLOP/s) → ${r.speedup.toFixed(2)}×` + lanesText +
        (M <= 16 ? `; small kernel ${r.smallMs!.toFixed(4)} ms → ${r.smallSpeedup!.toFixed(2)}×; decode one pass ${r.onePassMs!.toFixed(4)} ms → ${r.onePassSpeedup!.toFixed(2)}×; weight bytes/s dense ${r.denseWeightGBs.toFixed(0)} GB/s, 2:4 ${r.sparseWeightGBs.toFixed(0)} GB/s`
          : f["spmm-only"] ? "" : `; vector-wise ${r.vectorMs!.toFixed(4)} ms → ${r.vectorSpeedup!.toFixed(2)}×; dW dense ${r.denseDwMs!.toFixed(4)} ms, sddmm (${r.sddmmPlan}) ${r.sddmmMs!.toFixed(4)} ms → ${r.sddmmSpeedup!.toFixed(2)}×` +
            (r.sddmmTunedChoice ? `; sddmm tuned: ${r.sddmmTunedChoice} ${r.sddmmTunedMs!.toFixed(4)} ms → ${(r.denseDwMs! / r.sddmmTunedMs!).toFixed(2)}× (${r.sddmmTuneTimings!.map((t) => `${t.choice} ${t.ms.toFixed(4)}`).join(", ")})` : "") +
            (r.sddmmSweepMs ? ` [${Object.entries(r.sddmmSweepMs).map(([k, v]) => `${k} ${v.toFixed(4)} ms`).join(", ")}]` : "") +
            (r.sddmmLanesMs ? `, lanes ${Object.entries(r.sddmmLanesMs).map(([k, v]) => `${k} ${v.toFixed(4)} ms → ${(r.denseDwMs! / v).toFixed(2)}×`).join(", ")}` : "") + `, sddmmVector (${r.sddmmVectorPlan}) ${r.sddmmVectorMs!.toFixed(4)} ms → ${r.sddmmVectorSpeedup!.toFixed(2)}×`));
      X.dispose();
    }
    W.dispose(); b.dispose(); S.dispose(); V.dispose();
    ctx.pool.trim();
    await save(); // after every weight, so a run cut short by a time limit keeps its rows
  }
  const x = (v: number | undefined) => (v === undefined ? "–" : `${v.toFixed(2)}×`);
  console.log(`\n| d | W | M | dense ms | 2:4 ms | 2:4 speedup | small (M ≤ 16) | decode, one pass (M ≤ 16) | vector-wise (block ${block}) | sddmm | sddmmVector |  (${engine})\n|---|---|---|---|---|---|---|---|---|---|---|`);
  for (const r of rows) {
    console.log(`| ${r.d} | ${r.shape} | ${r.M} | ${r.denseMs.toFixed(4)} | ${r.sparseMs.toFixed(4)} | ${r.speedup.toFixed(2)}× | ${x(r.smallSpeedup)} | ${x(r.onePassSpeedup)} | ${x(r.vectorSpeedup)} | ${x(r.sddmmSpeedup)} | ${x(r.sddmmVectorSpeedup)} |`);
  }
  const laned = rows.filter((r) => r.sddmmLanesMs);
  if (laned.length) {
    const keys = Object.keys(laned[0]!.sddmmLanesMs!);
    console.log(`\nsddmm lanes (warp-uniform pattern codes), ms (speedup over the dense dYᵀX), beside the default sddmm\n| d | W (d_out×K) | M | dense dW | sddmm | ${keys.join(" | ")} |\n|---|---|---|---|---|${keys.map(() => "---|").join("")}`);
    const c = (ms: number, r: Row) => `${ms.toFixed(4)} (${(r.denseDwMs! / ms).toFixed(2)}×)`;
    for (const r of laned) {
      console.log(`| ${r.d} | ${r.shape} (${r.dOut}×${r.K}) | ${r.M} | ${r.denseDwMs!.toFixed(4)} | ${c(r.sddmmMs!, r)} | ${keys.map((k) => c(r.sddmmLanesMs![k]!, r)).join(" | ")} |`);
    }
  }
  const spmmLaned = rows.filter((r) => r.lanesMs);
  if (spmmLaned.length) {
    console.log(`\nspmm lanes, ms (speedup over dense)\n| d | W (d_out×K) | M | dense | default 2:4 | expand | ${lanes.join(" | ")} | lanes picks |\n|---|---|---|---|---|---|${lanes.map(() => "---|").join("")}---|`);
    const c = (ms: number, r: Row) => `${ms.toFixed(4)} (${(r.denseMs / ms).toFixed(2)}×)`;
    for (const r of spmmLaned) {
      console.log(`| ${r.d} | ${r.shape} (${r.dOut}×${r.K}) | ${r.M} | ${r.denseMs.toFixed(4)} | ${c(r.sparseMs, r)} | ${c(r.expandMs!, r)} | ${lanes.map((v) => c(r.lanesMs![v]!, r)).join(" | ")} | ${r.lanesAuto} |`);
    }
  }
  const swept = rows.filter((r) => r.sddmmSweepMs);
  if (swept.length) {
    const keys = Object.keys(swept[0]!.sddmmSweepMs!);
    console.log(`\nsddmm split-K sweep, ms (speedup over the dense dYᵀX)\n| d | W (d_out×K) | M | dense dW | auto | ${keys.join(" | ")} |\n|---|---|---|---|---|${keys.map(() => "---|").join("")}`);
    const c = (ms: number, r: Row) => `${ms.toFixed(4)} (${(r.denseDwMs! / ms).toFixed(2)}×)`;
    for (const r of swept) {
      console.log(`| ${r.d} | ${r.shape} (${r.dOut}×${r.K}) | ${r.M} | ${r.denseDwMs!.toFixed(4)} | ${c(r.sddmmMs!, r)} ${r.sddmmPlan} | ${Object.values(r.sddmmSweepMs!).map((v) => c(v, r)).join(" | ")} |`);
    }
  }
}

await main();
exit();
