// 2:4 spmm against our dense matmul, one linear layer's forward Y = X·Wᵀ + b: square d×d and
// up-projection 4d×d weights at d = 768, 1024, 2048, 4096, for M = 4096 rows (training) and
// M = 8 (decode). Both sides get the same input and bias; we report ms, dense-equivalent
// TFLOP/s, the speedup, and for decode the weight bytes read per second.
//
//   deno run -A bench/sparse.ts [--d 768,1024,2048,4096] [--m 4096,8] [--json out.json]
//   node .bench-dist/sparse.mjs ...   (after npm run bench:build)
import * as ws from "../src/index.ts";
import { compress24, decompress24, spmm } from "../src/sparse/index.ts";
import { parseArgs } from "node:util";
import { argv, exit, runtimeGpu, writeText } from "./env.ts";
import { randomF32, tflops, timeBatches } from "./timing.ts";

interface Row { d: number; shape: string; M: number; denseMs: number; sparseMs: number; speedup: number; denseTflops: number; sparseTflopsEq: number; sparseWeightGBs: number; denseWeightGBs: number }

async function main(): Promise<void> {
  const { values: f } = parseArgs({
    args: argv(), options: {
      d: { type: "string", default: "768,1024,2048,4096" }, m: { type: "string", default: "4096,8" }, json: { type: "string" },
      /** Node + Dawn: both sides on the matrix units (init({ matrixUnits: true }), f32 precision "medium"). */
      units: { type: "boolean", default: false },
    },
  });
  const ds = f.d.split(",").map(Number);
  const ms = f.m.split(",").map(Number);
  const { gpu, engine } = await runtimeGpu({ dawnToggles: f.units });
  const ctx = await ws.init({ gpu, matrixUnits: f.units });
  if (f.units) {
    if (!ctx.matrixUnits.tiles.length) throw new Error(`--units: no matrix units on this device (${ctx.matrixUnits.note})`);
    ws.setFloat32MatmulPrecision("medium");
  }
  console.log(`engine: ${engine}${f.units ? `, matrix units (${ctx.matrixUnits.tiles.join(", ")})` : ""}; adapter: ${ctx.info.adapterName}`);
  const rows: Row[] = [];
  let first = true;
  for (const d of ds) for (const [shape, dOut] of [["d×d", d], ["4d×d", 4 * d]] as const) {
    const W = ws.tensor(randomF32(dOut * d, d), [dOut, d]);
    const b = ws.tensor(randomF32(dOut, 7), [dOut]);
    const S = compress24(W);
    {
      // correctness first: the sparse product equals the dense product of the pruned weight
      // (the reference product in f32 arithmetic, off the matrix units: 8 rows take spmm's f32 small path)
      const Wr = decompress24(S), X8 = ws.tensor(randomF32(8 * d, 99), [8, d]);
      ws.setFloat32MatmulPrecision("highest");
      const [ys, yd] = await Promise.all([spmm(X8, S, b).toArray(), ws.matmul(X8, Wr, { transB: true, bias: b }).toArray()]);
      if (f.units) ws.setFloat32MatmulPrecision("medium");
      let err = 0;
      for (let i = 0; i < yd.length; i++) err = Math.max(err, Math.abs(ys[i]! - yd[i]!) / (1 + Math.abs(yd[i]!)));
      if (!(err < 1e-3)) throw new Error(`spmm disagrees with the dense product of the pruned weight at d=${d} ${shape}: ${err}`);
      Wr.dispose(); X8.dispose();
    }
    for (const M of ms) {
      const X = ws.tensor(randomF32(M * d, M), [M, d]);
      const dense = await timeBatches(async (n) => { for (let i = 0; i < n; i++) ws.matmul(X, W, { transB: true, bias: b }).dispose(); await ctx.sync(); }, { warmupMs: first ? 1500 : 400 });
      first = false;
      const sparse = await timeBatches(async (n) => { for (let i = 0; i < n; i++) spmm(X, S, b).dispose(); await ctx.sync(); }, { warmupMs: 400 });
      const wBytesDense = dOut * d * 4, wBytesSparse = S.values.size * 4 + S.meta.size * 4;
      const r: Row = {
        d, shape, M, denseMs: dense.medianMs, sparseMs: sparse.medianMs, speedup: dense.medianMs / sparse.medianMs,
        denseTflops: tflops(M, d, dOut, dense.medianMs), sparseTflopsEq: tflops(M, d, dOut, sparse.medianMs),
        denseWeightGBs: wBytesDense / (dense.medianMs * 1e6), sparseWeightGBs: wBytesSparse / (sparse.medianMs * 1e6),
      };
      rows.push(r);
      console.log(`d=${d} ${shape} M=${M}: dense ${r.denseMs.toFixed(4)} ms (${r.denseTflops.toFixed(2)} TFLOP/s), 2:4 ${r.sparseMs.toFixed(4)} ms (${r.sparseTflopsEq.toFixed(2)} dense-eq TFLOP/s) → ${r.speedup.toFixed(2)}×` +
        (M <= 16 ? `; weight bytes/s dense ${r.denseWeightGBs.toFixed(0)} GB/s, 2:4 ${r.sparseWeightGBs.toFixed(0)} GB/s` : ""));
      X.dispose();
    }
    W.dispose(); b.dispose(); S.dispose();
    ctx.pool.trim();
  }
  console.log(`\n| d | W | M | dense ms | 2:4 ms | speedup |  (${engine})\n|---|---|---|---|---|---|`);
  for (const r of rows) console.log(`| ${r.d} | ${r.shape} | ${r.M} | ${r.denseMs.toFixed(4)} | ${r.sparseMs.toFixed(4)} | ${r.speedup.toFixed(2)}× |`);
  const json = f.json;
  if (json) await writeText(json, JSON.stringify({ bench: "spmm", date: new Date().toISOString(), engine, matrixUnits: f.units ? ctx.matrixUnits.tiles : null, adapter: ctx.info.adapterName, rows }, null, 1));
}

await main();
exit();
