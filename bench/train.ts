// Training speed of the GPT, dense against SLoPe: step time, tokens/s and memory (peak, and model
// state — weights, gradients, optimizer state — apart from activations) per config, with the public
// Trainer, on a char-level tinyshakespeare corpus (vocab 65; synthetic ids when the file is absent).
// Per run: one step to compile the pipelines and allocate the state, then timeBatches (warm-up of
// ≥ 1 s of steps, then timed batches of steps with ONE forced completion per batch); losses are
// read back after the timing, never inside a step. bench/torch/gpt.py writes the same JSON fields
// for the same model in PyTorch. Runs in Node (Dawn), Deno (wgpu) and Chromium (bench/browser/).
// --quick (CI): the tiny config with QUICK_TIMING.
//
// --precision f32,mixed-f16 runs each config and mode in each precision (rows tagged `precision`);
// mixed-f16 asks init() for the matrix units (in Node with --dawn-toggles) and says in its row
// whether it got them (`matrixUnits`, and `precisionWarning` when the matmuls stayed f32).
//
//   deno run -A bench/train.ts [--configs tiny,mid,small,gpt2] [--modes dense,slope] [--precision f32,mixed-f16] [--quick]
//        [--profile] [--trace-dir DIR] [--json FILE] [--data PATH] [--warmup MS] [--batch-ms MS]
//        [--attn-backward auto|fused|chunked] [--attn-chunk-mib MIB] [--mu-rule 192:0,192:0.85] (matrix-unit tile rules, one run each)
//        [--tune]   (SLoPe: tuneSpmmShapes and tuneSddmmShapes on the step's 2:4 product and weight-gradient shapes after the first step; the row lists the choices)
//   node .bench-dist/train.mjs ... [--dawn-toggles]      (after npm run bench:build)
//   npm run bench:browser -- train ...                    (Chromium through Playwright)
import * as ws from "../src/index.ts";
import { GPT, type GPTConfig } from "../src/nn/index.ts";
import { CharTokenizer, Corpus, type Precision, Trainer } from "../src/train/index.ts";
import { DTYPE_BYTES } from "../src/dtype.ts";
import { setMatrixUnitRule } from "../src/ops/matmul.ts";
import { clearSddmmTuning, clearSpmmTuning, sddmmShapesOf, spmmShapesOf, tuneSddmmShapes, tuneSpmmShapes } from "../src/sparse/index.ts";
import { exit, flags, isBrowser, readText, runtimeGpu, writeText } from "./env.ts";
import { QUICK_TIMING, type Timing, timeBatches } from "./timing.ts";

/** The benchmark shapes (bench/torch/gpt.py holds the same table). Dropout 0; heads of 64. */
export const CONFIGS = {
  tiny: { nLayer: 2, nEmbd: 64, nHead: 2, blockSize: 32, batchSize: 8 },
  mid: { nLayer: 4, nEmbd: 256, nHead: 4, blockSize: 128, batchSize: 32 },
  small: { nLayer: 6, nEmbd: 384, nHead: 6, blockSize: 256, batchSize: 64 }, // nanoGPT shakespeare_char
  gpt2: { nLayer: 12, nEmbd: 768, nHead: 12, blockSize: 1024, batchSize: 8 }, // GPT-2 small's shape
} as const;
type ConfigName = keyof typeof CONFIGS;
type Mode = "dense" | "slope";

/** The optimizer recipe (the same in gpt.py): AdamW β (0.9, 0.999), eps 1e-8, weight decay 0.1, clip 1, lr 1e-3 constant. */
const LR = 1e-3, WEIGHT_DECAY = 0.1, GRAD_CLIP = 1;

export interface TrainRow {
  lib: "webslope";
  /** --tune (SLoPe): the measured spmm choice per product shape of the step. */
  spmmTuned?: Record<string, string>;
  /** --tune (SLoPe): the measured sddmm choice per weight-gradient shape of the step. */
  sddmmTuned?: Record<string, string>;
  config: ConfigName;
  mode: Mode;
  precision: Precision;
  /** mixed-f16: whether its matmuls ran on the matrix units; precisionWarning says why not. */
  matrixUnits: boolean;
  precisionWarning?: string;
  /** mixed-f16: the loss scale after the run and the steps it skipped for overflow. */
  lossScale?: number;
  skippedSteps?: number;
  nLayer: number; nEmbd: number; nHead: number; blockSize: number; batchSize: number; vocabSize: number;
  params: number;
  /** Median step time over the timed batches, ms. */
  stepMs: number;
  tokensPerS: number;
  /** Peak live tensor bytes over warm-up and timed steps (memoryStats(), peak reset per run). */
  peakBytes: number;
  /** Live bytes between steps: weights + gradients + optimizer state (and SLoPe's masks / transposes). */
  modelStateBytes: number;
  /** Bytes of the parameters and of their gradients as tensors; the rest of the model state is optimizer (and SLoPe) state. */
  weightBytes: number;
  /** --mu-rule: the matrix-unit tile rule of this run ("bigGrid:minFill"). */
  muRule?: string;
  gradBytes: number;
  optimizerBytes: number;
  /** peakBytes − modelStateBytes: what a step holds on top of the model state. */
  activationBytes: number;
  lossFirst: number;
  lossLast: number;
  steps: number;
  timing: Timing;
}

const SPEC = {
  configs: { type: "string", default: "tiny,mid,small,gpt2" },
  modes: { type: "string", default: "dense,slope" },
  precision: { type: "string", default: "f32" },
  quick: { type: "boolean", default: false },
  profile: { type: "boolean", default: false },
  /** SLoPe: after the first step, tuneSpmmShapes and tuneSddmmShapes on every 2:4 product and weight-gradient shape of the step (the measured kernel choices), then the timing. */
  tune: { type: "boolean", default: false },
  "trace-dir": { type: "string", default: "." },
  json: { type: "string" },
  /** The corpus; by default the team's data folder beside the checkout (or the page server's /data/ in a browser). */
  data: { type: "string" },
  warmup: { type: "string", default: "1000" },
  "batch-ms": { type: "string", default: "250" },
  batches: { type: "string", default: "5" },
  /** The attention backward (auto, fused, chunked) and the chunked one's budget in MiB (src/ops/attention-chunked.ts). */
  "attn-backward": { type: "string", default: "auto" },
  "attn-chunk-mib": { type: "string" },
  /** mixed-f16: matrix-unit tile rules to compare, "bigGrid:minFill" each (setMatrixUnitRule), e.g. 192:0,192:0.85; the default rule when absent. */
  "mu-rule": { type: "string" },
} as const;

const bytesOf = (t: ws.Tensor): number => t.size * DTYPE_BYTES[t.dtype];
const mb = (b: number): string => (b / 2 ** 20).toFixed(1);

const CORPUS_PLACES = isBrowser
  ? ["/data/tinyshakespeare.txt"]
  : ["../shared/data/tinyshakespeare.txt", "../../shared/data/tinyshakespeare.txt", "shared/data/tinyshakespeare.txt"];

async function corpusFrom(paths: string[]): Promise<{ corpus: Corpus; vocabSize: number; source: string }> {
  let text: string | null = null, path = "";
  for (path of paths) if ((text = await readText(path))) break;
  if (text) {
    const tok = new CharTokenizer(text);
    return { corpus: new Corpus(tok.encode(text)), vocabSize: tok.vocabSize, source: `${path} (${text.length} chars, vocab ${tok.vocabSize})` };
  }
  // Synthetic ids of the same vocabulary (xorshift), when the corpus file is not there.
  const ids = new Int32Array(1 << 20);
  let s = 0x9e3779b9;
  for (let i = 0; i < ids.length; i++) { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; ids[i] = (s >>> 0) % 65; }
  return { corpus: new Corpus(ids), vocabSize: 65, source: `synthetic ids, vocab 65 (no ${paths.join(" or ")})` };
}

async function run(name: ConfigName, mode: Mode, precision: Precision, data: { corpus: Corpus; vocabSize: number }, o: {
  warmupMs: number; batchMs: number; batches: number; minItems: number; profile: boolean; traceDir: string; tune: boolean;
}): Promise<TrainRow> {
  const ctx = ws.gpu();
  const c = CONFIGS[name];
  ctx.pool.trim();
  const base = ws.memoryStats().liveBytes;
  const cfg: GPTConfig = { vocabSize: data.vocabSize, blockSize: c.blockSize, nLayer: c.nLayer, nHead: c.nHead, nEmbd: c.nEmbd, dropout: 0, seed: 1 };
  const model = new GPT(cfg);
  const params = model.numParameters();
  const trainer = new Trainer(model, data.corpus, {
    batchSize: c.batchSize, totalSteps: 1e9, lr: LR, warmupFraction: 0, weightDecay: WEIGHT_DECAY, gradClip: GRAD_CLIP, seed: 2,
    slope: mode === "slope" ? {} : undefined, precision,
  });
  const losses: ws.Tensor[] = [];
  // First step: compiles the pipelines and allocates gradients and optimizer state.
  let keys: string[] = [];
  const sddmmKeys = sddmmShapesOf(() => { keys = spmmShapesOf(() => losses.push(trainer.step())); });
  await ctx.sync();
  const modelStateBytes = ws.memoryStats().liveBytes - base - losses.reduce((a, l) => a + bytesOf(l), 0);
  const ps = model.parameters();
  const weightBytes = ps.reduce((a, p) => a + bytesOf(p), 0);
  const gradBytes = ps.reduce((a, p) => a + (p.grad ? bytesOf(p.grad) : 0), 0);
  const tuned = o.tune && keys.length ? await tuneSpmmShapes(keys) : [];
  const tunedSddmm = o.tune && sddmmKeys.length ? await tuneSddmmShapes(sddmmKeys) : [];
  for (const t of [...tuned, ...tunedSddmm]) console.log(`${name} ${mode} ${precision}: tuned ${tuned.includes(t as never) ? "spmm" : "sddmm"} ${t.key} → ${t.choice} (${t.timings.map((x) => `${x.choice} ${x.ms.toFixed(3)}`).join(", ")} ms, ${t.clock} clock)`);
  ws.resetPeakMemory();
  const timing = await timeBatches(async (n) => {
    for (let i = 0; i < n; i++) losses.push(trainer.step());
    await ctx.sync();
  }, { warmupMs: o.warmupMs, batchMs: o.batchMs, batches: o.batches, minItems: o.minItems });
  const peakBytes = ws.memoryStats().peakBytes - base;
  // Losses are read back now, after the timing (one readback each; the last ones say whether it trains).
  const pick = [...losses.slice(0, 3), ...losses.slice(-3)];
  const vals = await Promise.all(pick.map((l) => l.item()));
  for (const l of losses) l.dispose();
  const lossFirst = (vals[0]! + vals[1]! + vals[2]!) / 3, lossLast = (vals[3]! + vals[4]! + vals[5]!) / 3;
  if (!Number.isFinite(lossFirst) || !Number.isFinite(lossLast)) throw new Error(`${name} ${mode}: the loss is not finite (${vals.join(", ")})`);
  const tokens = c.batchSize * c.blockSize;
  const sc = await trainer.syncScaler();
  const row: TrainRow = {
    lib: "webslope", config: name, mode, precision, matrixUnits: precision === "mixed-f16" && !trainer.precisionWarning,
    ...(trainer.precisionWarning ? { precisionWarning: trainer.precisionWarning } : {}),
    ...(sc ? { lossScale: sc.scale, skippedSteps: sc.skipped } : {}), ...c, vocabSize: data.vocabSize, params,
    stepMs: timing.medianMs, tokensPerS: tokens / (timing.medianMs / 1000),
    peakBytes, modelStateBytes, weightBytes, gradBytes, optimizerBytes: modelStateBytes - weightBytes - gradBytes,
    activationBytes: peakBytes - modelStateBytes, lossFirst, lossLast, steps: losses.length, timing,
    ...(tuned.length ? { spmmTuned: Object.fromEntries(tuned.map((t) => [t.key, t.choice])) } : {}),
    ...(tunedSddmm.length ? { sddmmTuned: Object.fromEntries(tunedSddmm.map((t) => [t.key, t.choice])) } : {}),
  };
  console.log(`${name} ${mode} ${precision}${precision === "f32" ? "" : row.matrixUnits ? " (matrix units)" : " (f32 matmuls: no matrix units)"}: ${row.stepMs.toFixed(2)} ms/step, ${Math.round(row.tokensPerS)} tokens/s, peak ${mb(peakBytes)} MB ` +
    `(model state ${mb(modelStateBytes)}, activations ${mb(row.activationBytes)}), loss ${lossFirst.toFixed(3)} → ${lossLast.toFixed(3)} over ${row.steps} steps`);
  if (o.profile) {
    const p = await ws.profile(() => trainer.step().dispose());
    console.log(`\nprofile of one ${name} ${mode} ${precision} step (${ctx.info.adapterName}):\n${p.table({ top: 25 })}\n`);
    const file = `${o.traceDir}/train-${name}-${mode}${precision === "f32" ? "" : `-${precision}`}.trace.json`;
    await writeText(file, p.chromeTrace());
    console.log(`wrote ${file} (open it in https://ui.perfetto.dev)`);
    (row as TrainRow & { profile?: unknown }).profile = { totalMs: p.totalMs, dispatches: p.dispatches, byOp: p.summary("op"), byFamily: p.summary("family") };
  }
  trainer.dispose();
  model.dispose();
  clearSpmmTuning(); clearSddmmTuning(); // each row tunes for itself
  ctx.pool.trim();
  return row;
}

async function main(): Promise<void> {
  const f = await flags(SPEC);
  const configs = (f.quick ? "tiny" : f.configs).split(",").filter(Boolean) as ConfigName[];
  for (const c of configs) if (!(c in CONFIGS)) throw new Error(`unknown config ${c}; one of ${Object.keys(CONFIGS).join(", ")}`);
  const modes = f.modes.split(",").filter(Boolean) as Mode[];
  for (const m of modes) if (m !== "dense" && m !== "slope") throw new Error(`unknown mode ${m}; dense or slope`);
  const precisions = f.precision.split(",").filter(Boolean) as Precision[];
  for (const p of precisions) if (p !== "f32" && p !== "mixed-f16") throw new Error(`unknown precision ${p}; f32 or mixed-f16`);
  const o = {
    ...(f.quick ? QUICK_TIMING : { warmupMs: Number(f.warmup), batchMs: Number(f["batch-ms"]), batches: Number(f.batches), minItems: 20 }),
    profile: f.profile, traceDir: f["trace-dir"], tune: f.tune,
  };
  const { gpu, engine } = await runtimeGpu({ dawnToggles: f["dawn-toggles"] });
  const ctx = await ws.init({ gpu, matrixUnits: precisions.includes("mixed-f16") });
  ws.setAttentionBackward(f["attn-backward"] as ws.AttentionBackward);
  if (f["attn-chunk-mib"]) ws.setAttentionChunkBytes(Number(f["attn-chunk-mib"]) * 2 ** 20);
  const data = await corpusFrom(f.data ? [f.data] : CORPUS_PLACES);
  console.log(`engine: ${engine}; adapter: ${ctx.info.adapterName}; features: ${[...ctx.features].join(", ")}; ` +
    `attention backward ${f["attn-backward"]}${f["attn-chunk-mib"] ? `, chunks of ${f["attn-chunk-mib"]} MiB` : ""}`);
  if (precisions.includes("mixed-f16")) console.log(`matrix units: ${ctx.matrixUnits.tiles.join(", ") || "none"} (${ctx.matrixUnits.note})`);
  console.log(`corpus: ${data.source}; configs ${configs.join(", ")}; modes ${modes.join(", ")}; warm-up ${o.warmupMs} ms, ` +
    `${o.batches} batches of ~${o.batchMs} ms (≥ ${o.minItems} steps)`);
  const rows: TrainRow[] = [];
  const rules = f["mu-rule"] ? f["mu-rule"].split(",").map((r) => { const [bigGrid, minFill] = r.split(":").map(Number); return { bigGrid: bigGrid!, minFill: minFill ?? 0 }; }) : [null];
  for (const name of configs) for (const mode of modes) for (const p of precisions) for (const rule of p === "mixed-f16" ? rules : [null]) {
    setMatrixUnitRule(rule);
    if (rule) console.log(`matrix-unit rule: grid ≥ ${rule.bigGrid}, fill ≥ ${rule.minFill}`);
    const row = await run(name, mode, p, data, o);
    rows.push(rule ? { ...row, muRule: `${rule.bigGrid}:${rule.minFill}` } : row);
  }
  setMatrixUnitRule(null);

  console.log(`\n| config | mode | precision | step ms | tokens/s | peak MB | model state MB | activations MB | params |  (${engine})`);
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.config} (${r.nLayer}×${r.nEmbd}, T ${r.blockSize}, B ${r.batchSize}) | ${r.mode} | ${r.precision}${r.precision !== "f32" && !r.matrixUnits ? " (f32 matmuls)" : ""}${r.muRule ? ` rule ${r.muRule}` : ""} | ${r.stepMs.toFixed(2)} | ${Math.round(r.tokensPerS)} | ` +
      `${mb(r.peakBytes)} | ${mb(r.modelStateBytes)} | ${mb(r.activationBytes)} | ${(r.params / 1e6).toFixed(2)}M |`);
  }
  if (f.json) {
    const out = {
      bench: "train", lib: "webslope", date: new Date().toISOString(), engine, adapter: ctx.info.adapterName, features: [...ctx.features],
      corpus: data.source, optimizer: { name: "AdamW", lr: LR, betas: [0.9, 0.999], eps: 1e-8, weightDecay: WEIGHT_DECAY, gradClip: GRAD_CLIP }, rows,
    };
    await writeText(f.json, JSON.stringify(out, null, 1));
    console.log(`wrote ${f.json}`);
  }
}

await main();
exit();
