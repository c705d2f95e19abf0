// The demo page: pretrains a small character-level GPT on tiny Shakespeare in the browser, dense
// and SLoPe side by side, with live loss curves, throughput and memory, samples every 100 steps,
// and the 2:4 / double-pruned masks of one layer. Steps are recorded without awaiting the GPU;
// losses are read back a few steps late (DESIGN.md §3).
import { init, memoryStats, WebGPUUnavailableError } from "../src/index.ts";
import { CharTokenizer, Corpus, generate } from "../src/train/index.ts";
import { LossChart } from "./chart.ts";
import { loadDefaultCorpus, readFile } from "./data.ts";
import { drawMasks } from "./masks.ts";
import { PRESETS, Run, type RunConfig } from "./runs.ts";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const fmtBytes = (b: number) => (b > 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

let text: string | null = null;
let runs: Run[] = [];
let chart: LossChart | null = null;
let running = false;
let stopRequested = false;

async function setup(): Promise<void> {
  try {
    const g = await init();
    $("gpu-info").textContent = `WebGPU adapter: ${g.info.adapterName} · features: ${[...g.features].join(", ") || "none"}`;
  } catch (e) {
    $("gpu-info").textContent = e instanceof WebGPUUnavailableError ? e.message : `WebGPU failed: ${(e as Error).message}`;
    $<HTMLButtonElement>("start").disabled = true;
    return;
  }
  text = await loadDefaultCorpus();
  $("data-status").textContent = text ? `tiny Shakespeare loaded: ${(text.length / 1e6).toFixed(2)} M characters` : "No corpus found at /data/tinyshakespeare.txt — pick a text file below.";
  $<HTMLButtonElement>("start").disabled = !text;
  $<HTMLInputElement>("file").addEventListener("change", async (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (!f) return;
    text = await readFile(f);
    $("data-status").textContent = `${f.name}: ${(text.length / 1e3).toFixed(0)} K characters`;
    $<HTMLButtonElement>("start").disabled = text.length < 2000;
  });
  $("start").addEventListener("click", () => void start());
  $("pause").addEventListener("click", () => { stopRequested = true; });
}

function readConfig(): RunConfig[] {
  const model = PRESETS[$<HTMLSelectElement>("preset").value]!;
  const [B, T] = $<HTMLSelectElement>("batch").value.split("x").map(Number) as [number, number];
  const totalSteps = Number($<HTMLInputElement>("steps").value);
  const lr = Number($<HTMLInputElement>("lr").value);
  const frac = Number($<HTMLSelectElement>("rank").value);
  const base = { model: { ...model, blockSize: T }, batchSize: B, totalSteps, lr };
  const out: RunConfig[] = [];
  if ($<HTMLInputElement>("run-dense").checked) out.push({ ...base, label: "Dense", color: "#f4a261" });
  if ($<HTMLInputElement>("run-slope").checked) {
    out.push({ ...base, label: frac ? `SLoPe 2:4 + adapters r=${(frac * 100).toFixed(2)}%` : "SLoPe 2:4", color: "#2ec4b6",
      slope: { pattern: "2:4", maskChangeFreq: 1, ...(frac ? { adapterRankFraction: frac, adapterAt: Number($<HTMLSelectElement>("at").value) } : {}) } });
  }
  return out;
}

async function start(): Promise<void> {
  if (running) return;
  if (runs.length && runs.every((r) => r.trainer.stepCount < r.cfg.totalSteps)) { void loop(); return; } // resume
  for (const r of runs) r.dispose();
  const cfgs = readConfig();
  if (!cfgs.length || !text) return;
  const tok = new CharTokenizer(text);
  const corpus = new Corpus(tok.encode(text), { valFraction: 0.1 });
  runs = cfgs.map((c) => new Run(c, tok.vocabSize, corpus, 1337));
  $("chart").innerHTML = "";
  chart = new LossChart($("chart"), cfgs.map((c) => ({ label: c.label, color: c.color })));
  const slope = runs.find((r) => r.trainer.adapters);
  chart.setMarker(slope?.trainer.adapters?.insertStep ?? null);
  $("samples").innerHTML = runs.map((r, i) => `<div class="sample" style="--c:${r.cfg.color}"><b>${r.cfg.label}</b> <span id="sample-step-${i}" class="muted"></span><pre id="sample-${i}">…</pre></div>`).join("");
  viewEvery = Math.max(10, Math.min(100, Math.round(cfgs[0]!.totalSteps / 10)));
  nextView = 0;
  lastViewStep = -1;
  $("sample-every").textContent = `every ${viewEvery} steps`;
  (window as unknown as { demo: unknown }).demo = { runs, tok };
  void loop(tok);
}

async function loop(tok?: CharTokenizer): Promise<void> {
  running = true; stopRequested = false;
  $<HTMLButtonElement>("start").disabled = true;
  $<HTMLButtonElement>("pause").disabled = false;
  const total = runs[0]!.cfg.totalSteps;
  let t0 = performance.now(), tokens0 = runs.reduce((s, r) => s + r.tokensSeen, 0);
  while (!stopRequested && runs[0]!.trainer.stepCount < total) {
    const frame = performance.now();
    do { for (const r of runs) r.step(); } while (performance.now() - frame < 25 && runs[0]!.trainer.stepCount < total);
    // read back everything but the last 2 steps: the GPU stays busy while we wait
    const points = await Promise.all(runs.map((r) => r.drain(2)));
    points.forEach((pts, i) => { for (const [s, v] of pts) chart!.push(s, i, v); });
    const step = runs[0]!.trainer.stepCount;
    if (step >= nextView || step >= total) { nextView = step + viewEvery; await checkpointView(step, tok); }
    const now = performance.now();
    const tokens = runs.reduce((s, r) => s + r.tokensSeen, 0);
    updateCards(step, total, (tokens - tokens0) / ((now - t0) / 1000));
    if (now - t0 > 3000) { t0 = now; tokens0 = tokens; }
    chart!.redraw();
    await new Promise(requestAnimationFrame);
  }
  for (const r of runs) for (const [s, v] of await r.drain(0)) chart!.push(s, runs.indexOf(r), v);
  chart!.redraw();
  running = false;
  $<HTMLButtonElement>("start").disabled = false;
  $<HTMLButtonElement>("start").textContent = runs[0]!.trainer.stepCount < total ? "Resume" : "Start again";
  $<HTMLButtonElement>("pause").disabled = true;
}

/** Samples, validation loss and masks are refreshed every `viewEvery` steps (and at the first frame). */
let viewEvery = 100;
let nextView = 0;
let lastViewStep = -1;
async function checkpointView(step: number, tok?: CharTokenizer): Promise<void> {
  if (step === lastViewStep) return;
  lastViewStep = step;
  for (const [i, r] of runs.entries()) {
    const val = await r.trainer.evaluate(2);
    chart!.push(r.trainer.stepCount, i, null, val);
    if (tok) {
      const ids = await generate(r.model, tok.encode("\n"), { maxNewTokens: 120, temperature: 0.8, topK: 20, seed: step });
      $(`sample-${i}`).textContent = tok.decode(ids);
      $(`sample-step-${i}`).textContent = `step ${r.trainer.stepCount} · val loss ${val.toFixed(3)}`;
    }
  }
  const slope = runs.find((r) => r.trainer.sparse);
  const layer = slope?.sparseLayer("blocks.1.mlp.fc1");
  if (layer) {
    const d = await drawMasks(layer, $("mask-r"), $("mask-rc"));
    $("rc-caption").innerHTML = `M<sub>RC</sub> (backward) · ${(d * 100).toFixed(1)}% kept in this window (theory: 40.6%)`;
  }
}

function updateCards(step: number, total: number, tokPerSec: number): void {
  $("step-label").textContent = `step ${step} / ${total} · ${Math.round(tokPerSec).toLocaleString()} tokens/s · GPU live ${fmtBytes(memoryStats().liveBytes)}`;
  $("cards").innerHTML = runs.map((r) => {
    const mem = r.memoryBytes();
    const ad = r.trainer.adapters ? (r.trainer.adaptersActive ? "adapters: training" : `adapters enter at step ${r.trainer.adapters.insertStep}`) : "";
    return `<div class="card" style="--c:${r.cfg.color}"><b>${r.cfg.label}</b>
      <div class="big">${r.ema?.toFixed(3) ?? "…"}</div>
      <div class="muted">weights ${fmtBytes(mem.weights)} · optimizer ${fmtBytes(mem.optimizer)}</div>
      <div class="muted">lr ${r.trainer.lrAt(r.trainer.stepCount).toExponential(2)} ${ad}</div></div>`;
  }).join("");
}

void setup();
