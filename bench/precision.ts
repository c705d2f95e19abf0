// The quality check of mixed precision (issue 8): the same GPT trained twice from the same seed,
// f32 and mixed-f16 (matmuls on the matrix units with f16 operands, f32 master weights, dynamic
// loss scaling), with the validation loss of both after the run (and along it) and their relative
// difference; the goal is |Δ| ≤ 1% after 2,000 steps of the mid config (CLI preset `mid`). Also
// records each run's tokens/s, the loss scale at the end, the skipped steps, and whether the
// matrix units were used (where they are missing mixed-f16 falls back to f32 matmuls and says so).
//
//   node .bench-dist/precision.mjs --dawn-toggles [--config mid] [--steps 2000] [--seed 1] [--mode dense|slope]
//        [--precisions f32,mixed-f16] [--eval-every N] [--eval-batches 20] [--json FILE] [--data PATH]   (after npm run bench:build)
//   deno run -A bench/precision.ts --quick        (tiny config, 30 steps: a smoke run on a software GPU)
import * as ws from "../src/index.ts";
import { PRESETS } from "../src/cli/configs.ts";
import { GPT } from "../src/nn/index.ts";
import { CharTokenizer, Corpus, type Precision, Trainer } from "../src/train/index.ts";
import { exit, flags, isBrowser, readText, runtimeGpu, writeText } from "./env.ts";

const SPEC = {
  config: { type: "string", default: "mid" },
  steps: { type: "string" },
  seed: { type: "string", default: "1" },
  mode: { type: "string", default: "dense" },
  precisions: { type: "string", default: "f32,mixed-f16" },
  "eval-every": { type: "string" },
  "eval-batches": { type: "string", default: "20" },
  quick: { type: "boolean", default: false },
  json: { type: "string" },
  data: { type: "string" },
} as const;

const CORPUS_PLACES = isBrowser
  ? ["/data/tinyshakespeare.txt"]
  : ["../shared/data/tinyshakespeare.txt", "../../shared/data/tinyshakespeare.txt", "shared/data/tinyshakespeare.txt"];

interface RunResult {
  precision: Precision;
  matrixUnits: boolean;
  precisionWarning: string | null;
  steps: number;
  /** Mean training loss of the last 50 steps (or all, if fewer). */
  trainLoss: number;
  valLoss: number;
  valCurve: { step: number; valLoss: number }[];
  tokensPerS: number;
  seconds: number;
  lossScale: number | null;
  skippedSteps: number | null;
}

async function main(): Promise<void> {
  const f = await flags(SPEC);
  const cfgName = (f.quick ? "tiny" : f.config) as keyof typeof PRESETS;
  const preset = PRESETS[cfgName];
  if (!preset) throw new Error(`--config must be one of ${Object.keys(PRESETS).join(", ")}, got ${f.config}`);
  const steps = f.steps ? Number(f.steps) : f.quick ? 30 : preset.steps;
  const seed = Number(f.seed);
  const evalBatches = f.quick ? 2 : Number(f["eval-batches"]);
  const evalEvery = f["eval-every"] ? Number(f["eval-every"]) : Math.max(1, Math.round(steps / 10));
  const precisions = f.precisions.split(",").filter(Boolean) as Precision[];
  for (const p of precisions) if (p !== "f32" && p !== "mixed-f16") throw new Error(`unknown precision ${p}; f32 or mixed-f16`);
  if (f.mode !== "dense" && f.mode !== "slope") throw new Error(`--mode must be dense or slope, got ${f.mode}`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be a positive integer, got ${f.steps}`);

  const { gpu, engine } = await runtimeGpu({ dawnToggles: f["dawn-toggles"] });
  const ctx = await ws.init({ gpu, matrixUnits: precisions.includes("mixed-f16") });
  let text: string | null = null, source = "";
  for (source of f.data ? [f.data] : CORPUS_PLACES) if ((text = await readText(source))) break;
  if (!text) throw new Error(`no corpus at ${(f.data ? [f.data] : CORPUS_PLACES).join(" or ")}; pass --data PATH`);
  const tok = new CharTokenizer(text);
  const corpus = new Corpus(tok.encode(text));
  console.log(`engine: ${engine}; adapter: ${ctx.info.adapterName}; matrix units: ${ctx.matrixUnits.tiles.join(", ") || "none"} (${ctx.matrixUnits.note})`);
  console.log(`config ${cfgName} (${preset.model.nLayer}×${preset.model.nEmbd}, T ${preset.model.blockSize}, B ${preset.batchSize}, lr ${preset.lr}), ${f.mode}, ` +
    `${steps} steps, seed ${seed}, validation every ${evalEvery} steps over ${evalBatches} batches`);

  const results: RunResult[] = [];
  for (const precision of precisions) {
    ctx.pool.trim();
    ws.manualSeed(seed);
    const model = new GPT({ ...preset.model, vocabSize: tok.vocabSize, seed });
    const trainer = new Trainer(model, corpus, {
      batchSize: preset.batchSize, totalSteps: steps, lr: preset.lr, seed, precision, slope: f.mode === "slope" ? {} : undefined,
    });
    if (trainer.precisionWarning) console.log(`note: ${trainer.precisionWarning}`);
    const losses: number[] = [];
    const valCurve: RunResult["valCurve"] = [];
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      const l = trainer.step();
      const i = s;
      void l.item().then((v) => { losses[i] = v; }).finally(() => l.dispose());
      await trainer.drain(4);
      if ((s + 1) % evalEvery === 0 || s + 1 === steps) {
        await trainer.settle();
        const v = await trainer.evaluate(evalBatches);
        valCurve.push({ step: s + 1, valLoss: v });
        const sc = trainer.lastScaler;
        console.log(`  ${precision} step ${s + 1}: train ${losses[s]?.toFixed(4)}, val ${v.toFixed(4)}${sc ? `, scale ${sc.scale}, skipped ${sc.skipped}` : ""}`);
      }
    }
    await trainer.settle();
    const seconds = (performance.now() - t0) / 1000;
    const sc = await trainer.syncScaler();
    const tail = losses.slice(-50);
    results.push({
      precision, matrixUnits: precision === "mixed-f16" && !trainer.precisionWarning, precisionWarning: trainer.precisionWarning,
      steps, trainLoss: tail.reduce((a, b) => a + b, 0) / tail.length, valLoss: valCurve.at(-1)!.valLoss, valCurve,
      tokensPerS: (steps * preset.batchSize * preset.model.blockSize) / seconds, seconds,
      lossScale: sc?.scale ?? null, skippedSteps: sc?.skipped ?? null,
    });
    trainer.dispose(); model.dispose();
  }
  const f32 = results.find((r) => r.precision === "f32"), mixed = results.find((r) => r.precision === "mixed-f16");
  const relDiff = f32 && mixed ? (mixed.valLoss - f32.valLoss) / f32.valLoss : null;
  console.log(`\n| precision | matrix units | val loss | train loss (last 50) | tokens/s (incl. evals) | loss scale | skipped |`);
  console.log("|---|---|---|---|---|---|---|");
  for (const r of results) {
    console.log(`| ${r.precision} | ${r.precision === "f32" ? "-" : r.matrixUnits ? "yes" : "no (f32 matmuls)"} | ${r.valLoss.toFixed(4)} | ${r.trainLoss.toFixed(4)} | ` +
      `${Math.round(r.tokensPerS)} | ${r.lossScale ?? "-"} | ${r.skippedSteps ?? "-"} |`);
  }
  if (relDiff !== null) console.log(`mixed-f16 vs f32 validation loss: ${(100 * relDiff).toFixed(3)}% (goal: within ±1%) → ${Math.abs(relDiff) <= 0.01 ? "PASS" : "FAIL"}`);
  if (f.json) {
    const out = {
      bench: "precision", lib: "webslope", date: new Date().toISOString(), engine, adapter: ctx.info.adapterName, matrixUnits: ctx.matrixUnits.tiles,
      corpus: source, config: cfgName, preset, mode: f.mode, steps, seed, evalBatches, results, valLossRelDiff: relDiff,
      withinOnePercent: relDiff === null ? null : Math.abs(relDiff) <= 0.01,
    };
    await writeText(f.json, JSON.stringify(out, null, 1));
    console.log(`wrote ${f.json}`);
  }
}

await main();
exit();
