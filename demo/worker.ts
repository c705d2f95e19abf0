// The training worker: owns the WebGPU device, the dense and SLoPe runs, the autosave and the
// inference race, so the page's main thread only draws. Each step is recorded without waiting and
// its loss read back before the next (pause acts within one step); validation, samples and masks
// come every `sampleEvery` steps with a status line for each phase.
import { DeviceLostError, flush, gpu, init, manualSeed, memoryStats, profile } from "../src/index.ts";
import { mergeAdapters } from "../src/slope/index.ts";
import { decompress24 } from "../src/sparse/index.ts";
import { CharTokenizer, Corpus, generate } from "../src/train/index.ts";
import { readDemoMeta, runFromBytes, runToBytes } from "./checkpoint.ts";
import { clearAutosave, loadAutosave, saveAutosave, saveCorpus } from "./persist.ts";
import { isSoftwareAdapter } from "./presets.ts";
import type { DemoConfig, FromWorker, Phase, RunKind, ToWorker } from "./protocol.ts";
import { Run } from "./runs.ts";
import { RateWindow } from "./rate.ts";

const post = (m: FromWorker, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(m, transfer);
const status = (phase: Phase, text: string) => post({ type: "status", phase, text });

let cfg: DemoConfig | null = null;
let tok: CharTokenizer | null = null;
let corpus: Corpus | null = null;
let corpusName = "";
let runs: Run[] = [];
let rates: RateWindow[] = [];
let loop: Promise<void> | null = null;
let pauseRequested = false;
let compiled = false;
let merged = false;
let lastSaved: { step: number; bytes: Uint8Array[] } | null = null;
let simulatedLoss = false;
const MASK_LAYER = ["blocks.1.mlp.fc1", "blocks.0.mlp.fc1"];
const MASK_N = 48;

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function setCorpus(name: string, text: string, chars?: string[]): void {
  tok = chars ? new CharTokenizer(chars.join("")) : new CharTokenizer(text);
  corpus = new Corpus(tok.encode(text), { valFraction: 0.1 });
  corpusName = name;
}

function announce(): void {
  post({ type: "runs", config: cfg!, runs: runs.map((r) => r.info()), vocabSize: tok!.vocabSize, corpusName, history: runs.map((r) => r.history) });
  postStats();
}

function postStats(): void {
  const r0 = runs[0];
  if (!r0 || !cfg) return;
  const step = r0.completed;
  const rate = rates.map((w) => w.rate());
  const stepMs = rate.every((x) => x) ? rate.reduce((s, x) => s + x!.stepMs, 0) : null;
  post({
    type: "stats", step, total: cfg.totalSteps,
    tokensPerSec: rate.map((x) => x?.tokensPerSec ?? null), stepMs: rate.map((x) => x?.stepMs ?? null),
    etaSec: stepMs === null ? null : ((cfg.totalSteps - step) * stepMs) / 1000,
    memory: runs.map((r) => r.memory()), liveBytes: memoryStats().liveBytes, lr: r0.trainer.lrAt(step),
    adaptersIn: runs.some((r) => r.trainer.adaptersActive),
  });
}

async function view(step: number): Promise<void> {
  status("validating", `validating at step ${step}…`);
  for (const [i, r] of runs.entries()) {
    const loss = await r.trainer.evaluate(2);
    r.history.val.push([step, loss]);
    post({ type: "val", run: i, step, loss });
  }
  status("sampling", `sampling ${cfg!.sampleTokens} characters from each model…`);
  for (const [i, r] of runs.entries()) {
    const ids = await generate(r.model, tok!.encode("\n"), { maxNewTokens: cfg!.sampleTokens, temperature: 0.8, topK: 20, seed: step });
    const text = tok!.decode(ids);
    const valLoss = r.history.val.at(-1)?.[1] ?? NaN;
    r.history.sample = { step, text, valLoss };
    post({ type: "sample", run: i, step, text, valLoss });
  }
  await postMasks();
}

/** The top-left window of one SLoPe layer's W (M_R kept) and W_RC (double-pruned), as |w|. */
async function postMasks(): Promise<void> {
  const run = runs.find((r) => r.kind === "slope");
  if (!run || merged) return;
  const name = MASK_LAYER.find((n) => run.sparseLayer(n));
  const layer = name ? run.sparseLayer(name) : null;
  if (!layer?.w || !layer.wT) return;
  const w = decompress24(layer.w), wt = decompress24(layer.wT);
  const [wd, wtd] = await Promise.all([w.toArray(), wt.toArray()]);
  w.dispose(); wt.dispose();
  const n = Math.min(MASK_N, layer.inFeatures, layer.outFeatures);
  const r = new Float32Array(n * n), rc = new Float32Array(n * n);
  let kept = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    r[i * n + j] = Math.abs(wd[i * layer.inFeatures + j]!);
    // W_RCᵀ is [d_in, d_out]: read it transposed into W's orientation
    const v = Math.abs(wtd[j * layer.outFeatures + i]!);
    rc[i * n + j] = v;
    if (v > 0) kept++;
  }
  post({ type: "masks", size: n, r, rc, density: kept / (n * n), layer: name! }, [r.buffer, rc.buffer]);
}

async function autosave(): Promise<void> {
  if (!cfg || merged || !cfg.autosaveEvery) return;
  const step = runs[0]!.completed;
  status("saving", `autosaving step ${step}…`);
  const bytes: Uint8Array[] = [];
  for (const r of runs) bytes.push(await runToBytes(r, tok!, corpusName));
  await saveAutosave({ summary: { step, total: cfg.totalSteps, corpusName, savedAt: Date.now() }, config: cfg, runs: bytes });
  lastSaved = { step, bytes };
  post({ type: "saved", step });
}

/** Work that must see the runs between two steps: run now when idle, else by the loop before its next step. */
const between: (() => Promise<void>)[] = [];
function betweenSteps<T>(fn: () => Promise<T>): Promise<T> {
  if (!loop) return fn();
  return new Promise<T>((resolve, reject) => between.push(() => fn().then(resolve, reject)));
}

/** Profiles one real training step of each run (GPU time per kernel family) for the bar chart. */
async function profileStep(c: DemoConfig): Promise<void> {
  status("profiling", "profiling one step (GPU timestamps per kernel)…");
  for (const [i, r] of runs.entries()) {
    const p = await profile(() => r.record());
    const pts = await r.drain(0);
    rates[i]!.add(r.completed, c.batchSize * c.model.blockSize);
    post({ type: "losses", run: i, points: pts });
    const rows = p.summary("family").slice(0, 8).map((x) => ({ name: x.name, ms: x.totalMs, calls: x.calls }));
    post({ type: "profile", run: i, rows, totalMs: p.totalMs, dispatches: p.dispatches, timed: p.timed });
  }
  profiled = true;
}
let profiled = false;

async function trainLoop(): Promise<void> {
  const c = cfg!;
  pauseRequested = false;
  for (const w of rates) w.reset();
  try {
    while (!pauseRequested && runs[0]!.step < c.totalSteps) {
      while (between.length) await between.shift()!();
      if (compiled && !profiled && runs[0]!.completed >= 2) { await profileStep(c); for (const w of rates) w.reset(); continue; }
      if (!compiled) status("compiling", "compiling the GPU kernels (first step)…");
      else status("training", "training");
      for (const [i, r] of runs.entries()) {
        r.record();
        const pts = await r.drain(0);
        rates[i]!.add(r.completed, c.batchSize * c.model.blockSize);
        post({ type: "losses", run: i, points: pts });
      }
      if (!compiled) for (const w of rates) w.reset(); // the first step's time is shader compilation
      compiled = true;
      const step = runs[0]!.completed;
      postStats();
      const last = step >= c.totalSteps;
      let paused = false;
      if (c.sampleEvery && (step % c.sampleEvery === 0 || last)) { await view(step); paused = true; }
      if (c.autosaveEvery && (step % c.autosaveEvery === 0 || last)) { await autosave(); paused = true; }
      if (paused) for (const w of rates) w.reset();
    }
    while (between.length) await between.shift()!();
    if (pauseRequested && runs[0]!.step < c.totalSteps && lastSaved?.step !== runs[0]!.completed) await autosave();
    const step = runs[0]!.completed;
    postStats();
    const done = step >= c.totalSteps;
    status(done ? "done" : "paused", done ? `done: ${step} steps` : `paused at step ${step}`);
    post({ type: "stopped", step, total: c.totalSteps, done });
  } catch (e) {
    if (e instanceof DeviceLostError) post({ type: "lost", message: e.message, autosaveStep: lastSaved?.step ?? null });
    else { status("error", describe(e)); post({ type: "error", message: describe(e) }); }
  } finally {
    loop = null;
  }
}

function disposeRuns(): void {
  for (const r of runs) r.dispose();
  runs = [];
  rates = [];
  merged = false;
  profiled = false;
  lastSaved = null;
}

function buildRuns(c: DemoConfig): void {
  const kinds: RunKind[] = [...(c.dense ? ["dense" as const] : []), ...(c.slope ? ["slope" as const] : [])];
  runs = kinds.map((k) => { manualSeed(c.seed); return new Run(k, c, tok!.vocabSize, corpus!); });
  rates = runs.map(() => new RateWindow());
}

async function stop(): Promise<void> {
  pauseRequested = true;
  await loop;
}

async function race(tokens: number): Promise<void> {
  status("racing", "merging the SLoPe adapters and generating from both models…");
  if (!merged) {
    for (const r of runs) if (r.kind === "slope" && r.trainer.adapters?.inserted) mergeAdapters(r.model);
    merged = true;
  }
  const results: { label: string; tokensPerSec: number; text: string }[] = [];
  for (const r of runs) {
    await generate(r.model, tok!.encode("\n"), { maxNewTokens: 2, seed: 1 }); // warm the kernels
    const t0 = performance.now();
    const ids = await generate(r.model, tok!.encode("\n"), { maxNewTokens: tokens, temperature: 0.8, topK: 20, seed: 7 });
    const s = (performance.now() - t0) / 1000;
    results.push({ label: r.kind === "slope" ? `${r.info().label} (merged 2:4)` : "Dense", tokensPerSec: tokens / s, text: tok!.decode(ids) });
  }
  post({ type: "race", results });
  status("done", "race finished: the models are merged for inference (Reset to train again)");
}

async function handle(m: ToWorker): Promise<void> {
  switch (m.type) {
    case "init": {
      try {
        const g = await init({ matrixUnits: true }); // used only by "mixed-f16" runs
        g.device.lost.then((l) => { if (l.reason !== "destroyed" || simulatedLoss) post({ type: "lost", message: l.message || "the GPU device was lost", autosaveStep: lastSaved?.step ?? null }); });
        const save = await loadAutosave().catch(() => null);
        post({ type: "ready", adapter: g.info.adapterName, features: [...g.features], software: isSoftwareAdapter(g.info.adapterName), autosave: save?.save.summary ?? null });
      } catch (e) {
        post({ type: "nogpu", message: describe(e) });
      }
      return;
    }
    case "start": {
      await stop();
      disposeRuns();
      cfg = m.config;
      setCorpus(m.corpusName, m.text);
      buildRuns(cfg);
      await clearAutosave();
      if (cfg.autosaveEvery) await saveCorpus(corpusName, m.text);
      announce();
      loop = trainLoop();
      return;
    }
    case "pause":
      pauseRequested = true;
      status("paused", "pausing after this step…");
      return;
    case "resume":
      if (loop || !runs.length || merged) return;
      loop = trainLoop();
      return;
    case "reset":
      await stop();
      disposeRuns();
      flush();
      await clearAutosave();
      cfg = null;
      status("idle", "reset: choose settings and press Start");
      return;
    case "restore": {
      await stop();
      const a = await loadAutosave();
      if (!a) { status("idle", "no autosave to restore"); return; }
      disposeRuns();
      const meta = readDemoMeta(a.save.runs[0]!);
      cfg = a.save.config;
      setCorpus(a.save.summary.corpusName, a.text, meta.chars);
      for (const b of a.save.runs) runs.push(await runFromBytes(b, corpus!, tok!.vocabSize));
      rates = runs.map(() => new RateWindow());
      lastSaved = { step: a.save.summary.step, bytes: a.save.runs };
      announce();
      await postMasks();
      const done = runs[0]!.step >= cfg.totalSteps;
      status(done ? "done" : "paused", `restored the autosave at step ${runs[0]!.step}${done ? "" : " — press Resume"}`);
      post({ type: "stopped", step: runs[0]!.step, total: cfg.totalSteps, done });
      return;
    }
    case "download": {
      const r = runs[m.run];
      if (!r) return;
      // a snapshot between two steps (the running loop takes it before its next step)
      const bytes = merged ? lastSaved?.bytes[m.run] : await betweenSteps(() => runToBytes(r, tok!, corpusName));
      if (!bytes) { post({ type: "error", message: "the merged model has no saved training state to download" }); return; }
      const copy = bytes.slice();
      post({ type: "checkpoint", run: m.run, name: `webslope-${r.kind}-${cfg!.preset}-step${r.step}.safetensors`, bytes: copy.buffer }, [copy.buffer]);
      return;
    }
    case "upload": {
      await stop();
      const bytes = new Uint8Array(m.bytes);
      const meta = readDemoMeta(bytes);
      const text = m.text;
      if (!text) { post({ type: "error", message: "load a corpus first: the uploaded model continues training on it" }); return; }
      disposeRuns();
      setCorpus(meta.corpusName, text, meta.chars);
      const run = await runFromBytes(bytes, corpus!, tok!.vocabSize);
      cfg = { ...meta.config, dense: meta.kind === "dense", slope: meta.kind === "slope" };
      runs = [run];
      rates = [new RateWindow()];
      if (cfg.autosaveEvery) await saveCorpus(corpusName, text);
      announce();
      await postMasks();
      const done = run.step >= cfg.totalSteps;
      status(done ? "done" : "paused", `loaded ${m.name} at step ${run.step}${done ? "" : " — press Resume"}`);
      post({ type: "stopped", step: run.step, total: cfg.totalSteps, done });
      return;
    }
    case "lose-device":
      simulatedLoss = true;
      gpu().device.destroy();
      return;
    case "race":
      if (loop) await stop();
      await race(m.tokens);
      return;
  }
}

// Messages are handled one at a time (a start waits for a reset before it), except pause, which
// must reach the running loop at once.
let queue: Promise<void> = Promise.resolve();
self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "pause") { void handle(m); return; }
  queue = queue.then(() => handle(m)).catch((err) => {
    if (err instanceof DeviceLostError) post({ type: "lost", message: err.message, autosaveStep: lastSaved?.step ?? null });
    else { status("error", describe(err)); post({ type: "error", message: describe(err) }); }
  });
};
