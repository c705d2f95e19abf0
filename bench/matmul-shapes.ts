// Which matrix-unit tile each product of a real training step should use: records every
// subgroup-matrix matmul dispatch of one mixed-f16 GPT step (the Trainer's own products: forward,
// input and weight gradients with split-K, the chunked attention backward's batched products),
// then times each distinct product with every compiled tile, and the square N×N×N products of
// bench/matmul-units.ts the same way. The table says, per product, the tile the chooser took,
// the fastest, and what the step would gain (time × how often the step dispatches it). The
// chooser's rule in src/ops/raw/precision.ts comes from these figures, not from square products alone.
// Node + Dawn with the matrix units only (the H200).
//
//   node .bench-dist/matmul-shapes.mjs [--configs small,gpt2] [--sizes 2048,4096,8192] [--json out.json] [--batch-ms 30] [--tiles a,b,…]
import * as ws from "../src/index.ts";
import { GPT } from "../src/nn/index.ts";
import { Corpus, Trainer } from "../src/train/index.ts";
import { SG_TILES, type SgMatmulVariant, type SgTileName, sgMatmulKernel, sgSharedBytes, sgTileExtent } from "../shaders/matmul-subgroup.wgsl.ts";
import type { Kernel } from "../shaders/kernel.ts";
import type { BufferRange } from "../src/gpu/pool.ts";
import { exit, flags, runtimeGpu, writeText } from "./env.ts";
import { timeBatches } from "./timing.ts";

/** bench/train.ts's small and gpt2 shapes (importing it would run that bench). */
const CONFIGS = {
  small: { nLayer: 6, nEmbd: 384, nHead: 6, blockSize: 256, batchSize: 64 },
  gpt2: { nLayer: 12, nEmbd: 768, nHead: 12, blockSize: 1024, batchSize: 8 },
} as const;

const f = await flags({
  configs: { type: "string", default: "small,gpt2" }, sizes: { type: "string", default: "2048,4096,8192" },
  json: { type: "string" }, "batch-ms": { type: "string", default: "30" },
  /** The tiles to try (default: every compiled one but the double-buffered …d2, slower everywhere in g-matmul-units-new). */
  tiles: { type: "string" },
});
const { gpu: dawn } = await runtimeGpu({ dawnToggles: true });
const ctx = await ws.init({ gpu: dawn, matrixUnits: true });
const mu = ctx.matrixUnits;
console.log(`adapter ${ctx.info.adapterName}; matrix-unit tiles: ${mu.tiles.join(", ") || "none"}`);
if (!mu.tiles.length) { console.log(`no matrix units here (${mu.note})`); exit(); }
const maxShared = ctx.limits.maxComputeWorkgroupStorageSize;
const tryTiles = f.tiles ? f.tiles.split(",").filter((t) => mu.tiles.includes(t as SgTileName)) as SgTileName[] : mu.tiles.filter((t) => !t.includes("d2"));

/** One recorded product: its variant (tile fields included), grid z, params and buffer sizes. */
interface Product { variant: SgMatmulVariant; z: number; params: number[]; sizes: number[]; count: number }
const TILE_FIELDS = ["sgm", "sgn", "fm", "fn", "bk", "stages", "f16Staging", "prefetch"] as const;
const tileOf = (v: SgMatmulVariant): SgTileName | "?" => (Object.keys(SG_TILES) as SgTileName[]).find((t) => {
  const s = SG_TILES[t] as Record<string, unknown>;
  return ["sgm", "sgn", "fm", "fn", "bk", "stages", "f16Staging"].every((k) => (s[k] ?? undefined) === ((v as unknown as Record<string, unknown>)[k] ?? undefined));
}) ?? "?";
const shapeKey = (p: Product) => {
  const v = { ...p.variant } as Record<string, unknown>;
  for (const k of TILE_FIELDS) delete v[k];
  return JSON.stringify([v, p.z, p.params.slice(0, 6)]);
};

/** Runs `fn` with every matmul_sgmat dispatch recorded (it still runs). */
function recordProducts(fn: () => void): Product[] {
  const l = ctx.launcher;
  const orig = l.dispatch.bind(l);
  const seen = new Map<string, Product>();
  l.dispatch = (kernel: Kernel, buffers: readonly BufferRange[], groups: readonly number[], params?: ArrayLike<number>) => {
    if (kernel.key.startsWith("matmul_sgmat:")) {
      const variant = JSON.parse(kernel.key.slice(kernel.key.indexOf(":") + 1)) as SgMatmulVariant;
      const p: Product = { variant, z: groups[2] ?? 1, params: Array.from(params ?? []), sizes: buffers.map((b) => b.size), count: 1 };
      const k = shapeKey(p);
      const had = seen.get(k);
      if (had) had.count++; else seen.set(k, p);
    }
    orig(kernel, buffers, groups, params);
  };
  try { fn(); } finally { l.dispatch = orig; }
  return [...seen.values()];
}

/** Median ms of one dispatch of `p` with tile `t` (fresh buffers of the recorded sizes), or null when the tile cannot run it. */
async function timeTile(p: Product, t: SgTileName): Promise<number | null> {
  const tile = SG_TILES[t];
  const base = { ...p.variant } as Record<string, unknown>;
  for (const k of TILE_FIELDS) delete base[k];
  const v = { ...base, ...tile, prefetch: (tile as { prefetch?: boolean }).prefetch ?? true } as SgMatmulVariant;
  if (v.sparseB && ((v.bk ?? 32) !== 32 || (v.stages ?? 1) !== 1 || v.f16Staging)) return null;
  if (sgSharedBytes(v, v.transA, v.transB) > maxShared) return null;
  const kernel = sgMatmulKernel(v);
  const { bm, bn } = sgTileExtent(v);
  const [M, N] = p.params as [number, number];
  const bufs = p.sizes.map((s) => ws.zeros([Math.ceil(s / 4)]));
  const ranges = bufs.map((b) => b.buffer("bench"));
  const groups = [Math.ceil(N / bn), Math.ceil(M / bm), p.z];
  // Compile and clear the fresh buffers first, outside the timing: a first batch that includes the
  // pipeline's compile makes the warm-up think one dispatch takes 100 ms and time batches of two.
  ctx.launcher.dispatch(kernel, ranges, groups, p.params);
  await ctx.sync();
  const timing = await timeBatches(async (n) => {
    for (let i = 0; i < n; i++) ctx.launcher.dispatch(kernel, ranges, groups, p.params);
    await ctx.sync();
  }, { warmupMs: 150, batchMs: Number(f["batch-ms"]), batches: 5, minItems: 50 });
  for (const b of bufs) b.dispose();
  return timing.medianMs;
}

interface Row { source: string; M: number; N: number; K: number; z: number; transA: boolean; transB: boolean; inType: string; outType: string; epilogue: string; sparseB: boolean; count: number; chosen: string; ms: Record<string, number> }
const rows: Row[] = [];

async function measure(source: string, products: Product[]): Promise<void> {
  for (const p of products) {
    const [M, N, K] = p.params as [number, number, number];
    const v = p.variant;
    const ms: Record<string, number> = {};
    const chosen = tileOf(v);
    for (const t of new Set([...tryTiles, ...(chosen === "?" ? [] : [chosen])])) {
      try { const x = await timeTile(p, t); if (x !== null) ms[t] = x; } catch (e) { console.log(`  ${t}: ${(e as Error).message.slice(0, 200)}`); }
    }
    const row: Row = { source, M, N, K, z: p.z, transA: v.transA, transB: v.transB, inType: v.inType, outType: v.outType,
      epilogue: `${v.bias ? "bias+" : ""}${v.act}${v.aux ? "+aux" : ""}`, sparseB: !!v.sparseB, count: p.count, chosen, ms };
    rows.push(row);
    const best = Object.entries(ms).sort((a, b) => a[1] - b[1])[0];
    const flop = 2 * M * N * K * p.z;
    const tf = (t: number) => (flop / (t * 1e-3) / 1e12).toFixed(1);
    console.log(`${source} ${M}×${N}×${K}${p.z > 1 ? ` ×${p.z}` : ""} ${v.transA ? "Aᵀ" : "A"}·${v.transB ? "Bᵀ" : "B"} ${v.inType}→${v.outType} ${row.epilogue}${row.sparseB ? " 2:4" : ""} ×${p.count}/step: ` +
      `chosen ${chosen} ${ms[chosen]?.toFixed(4) ?? "?"} ms (${ms[chosen] ? tf(ms[chosen]!) : "?"} TFLOP/s), best ${best?.[0]} ${best?.[1].toFixed(4)} ms (${best ? tf(best[1]) : "?"}) | ` +
      Object.entries(ms).map(([t, x]) => `${t} ${tf(x)}`).join(", "));
  }
}

for (const name of f.configs!.split(",").filter(Boolean) as (keyof typeof CONFIGS)[]) {
  const c = CONFIGS[name];
  if (!c) throw new Error(`--configs: unknown config ${name}; one of ${Object.keys(CONFIGS).join(", ")}`);
  const ids = new Int32Array(1 << 18).map((_, i) => (i * 7919) % 65);
  const model = new GPT({ vocabSize: 65, blockSize: c.blockSize, nLayer: c.nLayer, nHead: c.nHead, nEmbd: c.nEmbd, dropout: 0, seed: 1 });
  const trainer = new Trainer(model, new Corpus(ids), { batchSize: c.batchSize, totalSteps: 1e9, lr: 1e-3, warmupFraction: 0, seed: 2, precision: "mixed-f16" });
  trainer.step().dispose();
  await ctx.sync();
  const products = recordProducts(() => trainer.step().dispose());
  await ctx.sync();
  console.log(`\n${name}: ${products.length} distinct matrix-unit products in one mixed-f16 step (${products.reduce((a, p) => a + p.count, 0)} dispatches)`);
  await measure(name, products);
  trainer.dispose();
  model.dispose();
  ctx.pool.trim();
}

// The square products of bench/matmul-units.ts, f16 and f32 operands, through the same path.
for (const N of f.sizes!.split(",").filter(Boolean).map(Number)) for (const dtype of ["f16", "f32"] as const) {
  const a = ws.zeros([N, N], { dtype }), b = ws.zeros([N, N], { dtype });
  const prev = ws.getFloat32MatmulPrecision();
  ws.setFloat32MatmulPrecision("medium");
  const products = recordProducts(() => ws.matmul(a, b).dispose());
  ws.setFloat32MatmulPrecision(prev);
  await ctx.sync();
  await measure(`square-${dtype}`, products);
  a.dispose(); b.dispose();
}

/** Per source: the step's matrix-unit time with the chosen tiles against the best tile per product. */
const sums = new Map<string, { chosen: number; best: number }>();
for (const r of rows) {
  const s = sums.get(r.source) ?? { chosen: 0, best: 0 };
  const best = Math.min(...Object.values(r.ms));
  s.chosen += (r.ms[r.chosen] ?? best) * r.count;
  s.best += best * r.count;
  sums.set(r.source, s);
}
for (const [src, s] of sums) console.log(`${src}: matrix-unit products ${s.chosen.toFixed(3)} ms per step with the chooser's tiles, ${s.best.toFixed(3)} ms with the best per product`);
if (f.json) await writeText(f.json, JSON.stringify({ bench: "matmul-shapes", date: new Date().toISOString(), adapter: ctx.info.adapterName, tiles: mu.tiles, rows, sums: Object.fromEntries(sums) }, null, 1));
exit();
