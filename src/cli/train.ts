// `webslope train`: pretrains a character-level GPT on a text file, dense or SLoPe, with a
// progress bar (cli-progress: step, loss, tokens/s, ETA), metrics as JSONL, a checkpoint every N
// steps (atomic; the NaN guard never overwrites the last good one) and --resume from it.
// Usage: npm run train -- --mode dense|slope --config tiny|mid|small|FILE.json --steps N [--precision f32|mixed-f16]
//          --data FILE --out DIR [--resume] [--adapter-rank R] [--mask-change-freq F] ...
import cliProgress from "cli-progress";
import { appendFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { memoryStats } from "../gpu/context.ts";
import { NonFiniteLossError, WebslopeError } from "../errors.ts";
import { GPT } from "../nn/gpt.ts";
import { loadCheckpoint, readCheckpointInfo, saveCheckpoint } from "../train/checkpoint.ts";
import { Corpus } from "../train/corpus.ts";
import { CharTokenizer } from "../train/tokenizer.ts";
import { type Precision, Trainer, type TrainerOptions } from "../train/trainer.ts";
import { presetFrom } from "./configs.ts";
import { type CliIO, num, parseFlags, UsageError } from "./io.ts";
import { loadTuningFile, tuneAndSave } from "./tuning-file.ts";

export const TRAIN_USAGE = `Usage: npm run train -- --mode dense|slope --config tiny|mid|small|FILE.json --steps N --data FILE --out DIR [options]

  --mode dense|slope        dense AdamW, or SLoPe (2:4 double-pruned sparse + SparseAdamW)   [dense]
  --config NAME|FILE.json   tiny, mid, small (nanoGPT shakespeare_char), or a JSON file of
                            GPTConfig fields (blockSize, nLayer, nHead, nEmbd, dropout) and
                            optional batchSize, lr, steps                                     [tiny]
  --steps N                 optimizer steps of the whole run                        [the config's]
  --data FILE               training text (character-level; 10% held out for validation)
  --out DIR                 where ckpt.safetensors, metrics.jsonl and summary.json go
  --resume                  continue from DIR/ckpt.safetensors (its options; bitwise-exact)
  --adapter-rank R          SLoPe lazy adapters entering at 99%: a rank (8), a fraction of nEmbd
                            (0.0625) or a percentage (6.25%); 0 = none                          [0]
                            With --resume: adds them to a SLoPe run saved without, before their
                            entry step (the same run as one started with them)
  --mask-change-freq F      SLoPe double-pruned mask refresh period in steps                    [1]
  --pattern 2:4|vector      SLoPe mask: per-element 2:4, or the opt-in vector-wise 2:4 (one mask
                            per block of --vector-block output rows, by summed |W|)           [2:4]
  --vector-block N          rows per mask block of --pattern vector (a multiple of 64)         [64]
  --lr X  --batch-size B    override the config's                                   [the config's]
  --seed S                  weights, batches, dropout                                        [1337]
  --precision f32|mixed-f16 mixed-f16: matmuls on the matrix units (f16 operands, f32 accumulate),
                            f32 master weights, dynamic loss scaling; without matrix units the
                            matmuls stay f32 (said once). With --resume: switch precision [f32]
  --checkpoint-every N      steps between checkpoints                                 [steps / 10]
  --eval-every N            steps between validation losses                           [steps / 20]
  --eval-batches N          batches per validation loss                                        [20]
  --until N                 stop after step N with a checkpoint (a time-limited job; --resume later)
  --tune                    SLoPe: after the first step, time every 2:4 kernel candidate at the
                            step's shapes and keep the fastest (DIR/tuning.json; a run that finds
                            one measured on this adapter, resumed or not, uses it and skips this)
  --help                    this text
`;

const FLAGS = {
  mode: { type: "string" }, config: { type: "string" }, steps: { type: "string" }, data: { type: "string" },
  out: { type: "string" }, resume: { type: "boolean" }, "adapter-rank": { type: "string" }, "mask-change-freq": { type: "string" },
  lr: { type: "string" }, "batch-size": { type: "string" }, seed: { type: "string" }, "checkpoint-every": { type: "string" },
  "eval-every": { type: "string" }, "eval-batches": { type: "string" }, until: { type: "string" }, help: { type: "boolean" },
  precision: { type: "string" }, pattern: { type: "string" }, "vector-block": { type: "string" }, tune: { type: "boolean" },
} as const;

/** "8" → rank 8; "0.0625" or "6.25%" → a fraction of nEmbd; "0" → none. */
function adapterFlag(v: string | undefined): Pick<NonNullable<TrainerOptions["slope"]>, "adapterRank" | "adapterRankFraction"> {
  if (v === undefined) return {};
  const pct = v.endsWith("%");
  const n = num("adapter-rank", pct ? v.slice(0, -1) : v, { min: 0 })!;
  if (n === 0) return {};
  if (pct) return { adapterRankFraction: n / 100 };
  if (n < 1) return { adapterRankFraction: n };
  if (!Number.isInteger(n)) throw new UsageError(`--adapter-rank must be an integer rank, a fraction below 1 or a percentage, got "${v}"`);
  return { adapterRank: n };
}

async function exists(p: string): Promise<boolean> {
  try { await stat(p); return true; } catch { return false; }
}

/** Runs the command; returns the exit code (2: bad flags, 1: the run failed). */
export async function train(argv: string[], io: CliIO): Promise<number> {
  try {
    return await run(argv, io);
  } catch (e) {
    if (e instanceof UsageError) { io.err(`error: ${e.message}\n\n${TRAIN_USAGE}`); return 2; }
    if (e instanceof WebslopeError) { io.err(`\nerror: ${e.message}\n`); return 1; }
    throw e;
  }
}

async function run(argv: string[], io: CliIO): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  if (f.help) { io.out(TRAIN_USAGE); return 0; }
  if (!f.data) throw new UsageError("--data FILE is required");
  if (!f.out) throw new UsageError("--out DIR is required");
  let mode = f.mode ?? "dense";
  if (mode !== "dense" && mode !== "slope") throw new UsageError(`--mode must be dense or slope, got "${mode}"`);
  if (mode === "dense" && !f.resume && (f["adapter-rank"] !== undefined || f["mask-change-freq"] !== undefined || f.pattern !== undefined || f["vector-block"] !== undefined)) {
    throw new UsageError("--adapter-rank, --mask-change-freq, --pattern and --vector-block are SLoPe options; add --mode slope");
  }
  if (f.pattern !== undefined && f.pattern !== "2:4" && f.pattern !== "vector") throw new UsageError(`--pattern must be 2:4 or vector, got "${f.pattern}"`);
  if (f["vector-block"] !== undefined && f.pattern !== "vector") throw new UsageError("--vector-block needs --pattern vector");
  const precision = f.precision as Precision | undefined;
  if (precision !== undefined && precision !== "f32" && precision !== "mixed-f16") throw new UsageError(`--precision must be f32 or mixed-f16, got "${precision}"`);
  const ckpt = join(f.out, "ckpt.safetensors"), metricsPath = join(f.out, "metrics.jsonl");
  let text: string;
  try { text = await readFile(f.data, "utf8"); } catch (e) { throw new UsageError(`--data: cannot read "${f.data}" (${(e as Error).message})`); }
  await mkdir(f.out, { recursive: true });

  let model: GPT, trainer: Trainer, tok: CharTokenizer;
  const onLoss = (step: number, loss: number) => metrics.loss(step, loss);
  const evalBatches = num("eval-batches", f["eval-batches"], { min: 1, int: true }) ?? 20;
  if (f.resume) {
    if (!(await exists(ckpt))) throw new UsageError(`--resume: there is no checkpoint at ${ckpt}`);
    const info = readCheckpointInfo(new Uint8Array(await readFile(ckpt)));
    if (!info.trainerOptions || !info.tokenizer) throw new UsageError(`--resume: ${ckpt} holds no training state (it was saved without a trainer)`);
    const steps = num("steps", f.steps, { min: 1, int: true });
    if (steps !== undefined && steps !== info.trainerOptions.totalSteps) {
      throw new UsageError(`--steps ${steps} differs from the checkpoint's run of ${info.trainerOptions.totalSteps} steps (the schedule depends on it); leave --steps out to resume`);
    }
    tok = info.tokenizer;
    model = new GPT(info.config);
    const { lossScale, ...saved } = info.trainerOptions;
    const savedMode = saved.slope ? "slope" : "dense";
    if (f.mode !== undefined && f.mode !== savedMode) throw new UsageError(`--mode ${f.mode} differs from ${ckpt}'s ${savedMode} run; leave --mode out to resume`);
    mode = savedMode;
    if (f["adapter-rank"] !== undefined) {
      // Lazy adapters added to a SLoPe run that has none, before their entry step: the run up to
      // there is the same as one started with them (they change nothing before they enter).
      if (!saved.slope) throw new UsageError(`--adapter-rank: ${ckpt} is a dense run; adapters belong to SLoPe runs`);
      const s = saved.slope;
      if (s.adapterRank !== undefined || s.adapterRankFraction !== undefined) {
        throw new UsageError(`--adapter-rank: ${ckpt}'s run already has lazy adapters (${s.adapterRank !== undefined ? `rank ${s.adapterRank}` : `fraction ${s.adapterRankFraction}`}); leave --adapter-rank out`);
      }
      const entry = Math.floor((s.adapterAt ?? 0.99) * info.trainerOptions.totalSteps);
      if (info.step > entry) {
        throw new UsageError(`--adapter-rank: ${ckpt} is at step ${info.step}, past the adapters' entry step ${entry}; add them to a checkpoint saved at or before step ${entry} (--until ${entry})`);
      }
      saved.slope = { ...s, ...adapterFlag(f["adapter-rank"]) };
    }
    const p = precision ?? saved.precision ?? "f32";
    trainer = new Trainer(model, new Corpus(tok.encode(text)), { ...saved, precision: p, ...(p === "mixed-f16" && lossScale ? { lossScale } : {}), onLoss });
    await loadCheckpoint(ckpt, { trainer });
    io.err(`resuming ${ckpt} at step ${trainer.stepCount} of ${info.trainerOptions.totalSteps}\n`);
  } else {
    let json: string | null = null;
    const cfgName = f.config ?? "tiny";
    if (cfgName.endsWith(".json")) {
      try { json = await readFile(cfgName, "utf8"); } catch (e) { throw new UsageError(`--config: cannot read "${cfgName}" (${(e as Error).message})`); }
    }
    let preset;
    try { preset = presetFrom(cfgName, json); } catch (e) { throw new UsageError((e as Error).message); }
    const steps = num("steps", f.steps, { min: 1, int: true }) ?? preset.steps;
    const seed = num("seed", f.seed, { min: 0, max: 2 ** 31, int: true }) ?? 1337;
    const slope = mode === "slope"
      ? {
        maskChangeFreq: num("mask-change-freq", f["mask-change-freq"], { min: 1, int: true }) ?? 1, ...adapterFlag(f["adapter-rank"]),
        ...(f.pattern === "vector" ? { pattern: "vector" as const, vectorBlock: num("vector-block", f["vector-block"], { min: 64, int: true }) ?? 64 } : {}),
      }
      : undefined;
    const opts: TrainerOptions = {
      batchSize: num("batch-size", f["batch-size"], { min: 1, int: true }) ?? preset.batchSize,
      totalSteps: steps, lr: num("lr", f.lr, { min: 0 }) ?? preset.lr, seed, ...(slope ? { slope } : {}),
      precision: precision ?? "f32",
    };
    tok = new CharTokenizer(text);
    model = new GPT({ ...preset.model, vocabSize: tok.vocabSize, seed });
    trainer = new Trainer(model, new Corpus(tok.encode(text)), { ...opts, onLoss });
    await writeFile(metricsPath, "");
  }
  if (f.tune && mode !== "slope") {
    trainer.dispose(); model.dispose();
    throw new UsageError(`--tune measures the 2:4 kernels of a SLoPe run; ${f.resume ? `${ckpt} is a dense run` : "add --mode slope"}`);
  }
  // A table measured on this adapter (this run's, or the run this one resumes) is used as it is.
  const tunePath = join(f.out, "tuning.json");
  let tuneFirst = false;
  if (mode === "slope") {
    let got: Awaited<ReturnType<typeof loadTuningFile>>;
    try { got = await loadTuningFile(tunePath); } catch (e) { trainer.dispose(); model.dispose(); throw new UsageError(`${tunePath} is not a tuning file (${(e as Error).message}); delete it to tune again`); }
    if (got === "loaded") io.err(`kernel choices: ${tunePath}\n`);
    if (got === "other-adapter") io.err(`note: ${tunePath} was measured on another adapter${f.tune ? "; tuning again" : "; not used (--tune measures here)"}\n`);
    tuneFirst = !!f.tune && got !== "loaded";
  }
  const o = trainer.options;
  if (trainer.precisionWarning) io.err(`note: ${trainer.precisionWarning}
`);
  const total = o.totalSteps;
  const ckptEvery = num("checkpoint-every", f["checkpoint-every"], { min: 1, int: true }) ?? Math.max(1, Math.round(total / 10));
  const evalEvery = num("eval-every", f["eval-every"], { min: 1, int: true }) ?? Math.max(1, Math.round(total / 20));
  const tokensPerStep = o.batchSize * model.config.blockSize;
  const until = Math.min(total, num("until", f.until, { min: 1, int: true }) ?? total);

  const bar = io.tty ? new cliProgress.SingleBar({
    format: "train |{bar}| {value}/{total} | loss {loss} | {tps} tok/s | ETA {eta_formatted}",
    stream: process.stderr, hideCursor: true, etaBuffer: 50,
  }, cliProgress.Presets.shades_classic) : null;
  const t0 = performance.now(), start = trainer.stepCount;
  const times: [number, number][] = [];
  const lines: string[] = [];
  const metrics = {
    last: NaN, tps: 0,
    loss(step: number, loss: number) {
      const now = performance.now();
      times.push([step, now]);
      if (times.length > 50) times.shift();
      const [s0, w0] = times[0]!;
      this.tps = step > s0 ? ((step - s0) * tokensPerStep) / ((now - w0) / 1000) : (tokensPerStep * (step - start + 1)) / ((now - t0) / 1000);
      this.last = loss;
      // Mixed precision: the scaler's state as last read back (it may trail this step by one or two).
      const sc = trainer.lastScaler ? { lossScale: trainer.lastScaler.scale, skippedSteps: trainer.lastScaler.skipped } : {};
      lines.push(JSON.stringify({ step, loss, valLoss: null, lr: trainer.lrAt(step), tokensPerSec: Math.round(this.tps), liveBytes: memoryStats().liveBytes, ...sc }));
      bar?.update(step + 1, { loss: loss.toFixed(4), tps: Math.round(this.tps) });
    },
  };
  const flushLines = async (valLoss?: { step: number; v: number }) => {
    if (valLoss) {
      const i = lines.findIndex((l) => JSON.parse(l).step === valLoss.step);
      if (i >= 0) lines[i] = JSON.stringify({ ...JSON.parse(lines[i]!), valLoss: valLoss.v });
    }
    if (lines.length) await appendFile(metricsPath, lines.join("\n") + "\n");
    lines.length = 0;
  };
  bar?.start(total, start, { loss: "-", tps: 0 });
  let valLoss: number | null = null;
  try {
    while (trainer.stepCount < until) {
      const s = trainer.stepCount;
      if (tuneFirst) {
        // the first step runs the rules and names the shapes; the rest of the run (and a resume) the measured kernels
        const t = await tuneAndSave(tunePath, () => trainer.step().dispose(), s + 1);
        tuneFirst = false;
        if (!bar) io.err(`tuned ${Object.keys(t.spmm.entries).length} spmm and ${Object.keys(t.sddmm.entries).length} sddmm shapes: ${tunePath}\n`);
      } else {
        trainer.step().dispose();
      }
      await trainer.drain(4);
      const done = s + 1;
      if (done % evalEvery === 0 || done === total) {
        await trainer.settle();
        valLoss = await trainer.evaluate(evalBatches);
        await flushLines({ step: s, v: valLoss });
        if (!bar) io.err(`step ${done}/${total}: loss ${metrics.last.toFixed(4)}, val ${valLoss.toFixed(4)}, ${Math.round(metrics.tps)} tok/s\n`);
      }
      if (done % ckptEvery === 0 || done === until) {
        await saveCheckpoint(ckpt, { model, trainer, tokenizer: tok, extra: { data: f.data } });
        await flushLines();
      }
    }
    await trainer.settle();
    await flushLines();
  } catch (e) {
    bar?.stop();
    await flushLines().catch(() => {});
    if (e instanceof NonFiniteLossError) io.err(`\n${e.message}\n`);
    trainer.dispose(); model.dispose();
    if (e instanceof NonFiniteLossError) return 1;
    throw e;
  }
  bar?.stop();
  const seconds = (performance.now() - t0) / 1000;
  const scaler = await trainer.syncScaler();
  const summary = {
    mode, config: model.config, trainer: o, precisionWarning: trainer.precisionWarning ?? undefined, scaler: scaler ?? undefined, steps: until, of: total, resumedAt: start || undefined, loss: metrics.last, valLoss,
    tokensPerSec: Math.round(((until - start) * tokensPerStep) / seconds), peakBytes: memoryStats().peakBytes, seconds: Math.round(seconds * 10) / 10,
  };
  await writeFile(join(f.out, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  io.err(`${until < total ? `stopped at step ${until} of ${total} (--resume continues)` : "done"}: ${until} steps, loss ${metrics.last.toFixed(4)}, val ${valLoss?.toFixed(4)}, ${summary.tokensPerSec} tok/s, peak ${(summary.peakBytes / 2 ** 20).toFixed(1)} MiB; ${ckpt}\n`);
  trainer.dispose(); model.dispose();
  return 0;
}
