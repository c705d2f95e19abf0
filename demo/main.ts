// The demo page: pretrains a small character-level GPT in the browser, dense and SLoPe side by
// side. Training runs in a Web Worker (worker.ts) so this thread only handles the controls and
// draws what the worker reports: loss curves, throughput, memory, samples, masks, the race.
import { LossChart } from "./chart.ts";
import { CORPUS_NAME, type LoadedCorpus, loadDefaultCorpus, minChars } from "./corpus.ts";
import { drawMask } from "./masks.ts";
import { fmtCount, paramCount, PRESETS, type PresetName } from "./presets.ts";
import type { DemoConfig, FromWorker, MemoryBreakdown, RunInfo, ToWorker } from "./protocol.ts";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);
const button = (id: string) => $<HTMLButtonElement>(id);
const fmtBytes = (b: number) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`);
const fmtTime = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`);

let worker: Worker;
let corpus: LoadedCorpus | null = null;
let software = false;
let adapterFeatures: string[] = [];
let gpuReady = false;
let runCfg: DemoConfig | null = null;
let runs: RunInfo[] = [];
let chart: LossChart | null = null;
let state: "none" | "running" | "paused" | "done" = "none";
let lastStep = 0;
let autosaveNote = "";

// ---- settings ----------------------------------------------------------------------------------

const MODEL_FIELDS = ["n-layer", "n-embd", "n-head", "block", "batch", "steps", "lr"] as const;

function vocabSize(): number {
  return corpus ? new Set(corpus.text).size : 65;
}

function fillPreset(name: PresetName): void {
  if (name === "custom") return updateParams();
  const p = PRESETS[name];
  input("n-layer").value = String(p.model.nLayer);
  input("n-embd").value = String(p.model.nEmbd);
  input("n-head").value = String(p.model.nHead);
  input("block").value = String(p.model.blockSize);
  input("batch").value = String(p.batchSize);
  input("steps").value = String(p.totalSteps);
  input("lr").value = String(p.lr);
  updateParams();
}

function readConfig(): DemoConfig {
  const num = (id: string) => Number(input(id).value);
  const preset = $<HTMLSelectElement>("preset").value as PresetName;
  return {
    preset,
    model: { nLayer: num("n-layer"), nEmbd: num("n-embd"), nHead: num("n-head"), blockSize: num("block"), dropout: preset === "custom" ? 0 : PRESETS[preset].model.dropout,
      attention: $<HTMLSelectElement>("attention").value as "fused" | "unfused" },
    batchSize: num("batch"), totalSteps: num("steps"), lr: num("lr"),
    dense: input("run-dense").checked, slope: input("run-slope").checked,
    adapterRankFraction: Number($<HTMLSelectElement>("rank").value), adapterAt: Number($<HTMLSelectElement>("at").value),
    precision: $<HTMLSelectElement>("precision").value as "f32" | "mixed-f16",
    sampleEvery: num("sample-every"), sampleTokens: software ? 32 : 160, autosaveEvery: num("autosave-every"), seed: 1337,
  };
}

/** Why the settings cannot start a run, or null. */
function configProblem(c: DemoConfig): string | null {
  const m = c.model;
  if (![m.nLayer, m.nEmbd, m.nHead, m.blockSize, c.batchSize, c.totalSteps].every((v) => Number.isInteger(v) && v > 0)) return "layers, width, heads, context, batch and steps must be positive whole numbers";
  if (m.nEmbd % m.nHead) return `width ${m.nEmbd} must be a multiple of heads ${m.nHead}`;
  if (m.nEmbd % 4) return `width ${m.nEmbd} must be a multiple of 4 (the 2:4 groups)`;
  if (!(c.lr > 0)) return "the learning rate must be positive";
  if (!c.dense && !c.slope) return "tick at least one of Dense and SLoPe";
  if (corpus && corpus.text.length < minChars(m.blockSize)) {
    return `${corpus.name} has ${corpus.text.length.toLocaleString()} characters; a context of ${m.blockSize} needs at least ${minChars(m.blockSize).toLocaleString()} (10% is held out for validation)`;
  }
  return null;
}

function updateParams(): void {
  const c = readConfig();
  const n = paramCount(c.model, vocabSize());
  $("params").textContent = `${fmtCount(n)} parameters · ${c.model.nLayer} × ${c.model.nEmbd}, context ${c.model.blockSize}, batch ${c.batchSize}`;
  refreshButtons();
}

function sameRun(a: DemoConfig, b: DemoConfig): boolean {
  const key = (c: DemoConfig) => JSON.stringify([c.model.attention, c.model.nLayer, c.model.nEmbd, c.model.nHead, c.model.blockSize, c.batchSize, c.totalSteps, c.lr, c.dense, c.slope, c.adapterRankFraction, c.adapterAt, c.precision ?? "f32"]);
  return key(a) === key(b);
}

function refreshButtons(): void {
  const c = readConfig();
  const problem = configProblem(c);
  const hasRuns = runs.length > 0;
  button("start").disabled = !gpuReady || !corpus || !!problem || state === "running";
  button("start").textContent = hasRuns ? "Start new run" : "Start";
  button("pause").disabled = state !== "running";
  button("resume").disabled = state !== "paused";
  button("reset").disabled = !hasRuns;
  button("race").disabled = state !== "done" || !hasRuns;
  const note = $("settings-note");
  const lines: string[] = [];
  if (problem && gpuReady && corpus) lines.push(`Start is disabled: ${problem}.`);
  if (c.precision === "mixed-f16" && gpuReady && !adapterFeatures.includes("chromium-experimental-subgroup-matrix")) {
    lines.push("This adapter has no matrix units (chromium-experimental-subgroup-matrix): mixed f16 keeps f32 matmuls and runs only the loss scaling.");
  }
  if (runCfg && state === "paused" && !sameRun(c, runCfg)) lines.push("These settings differ from the paused run's: Resume continues it unchanged; Start new run applies them.");
  if (runCfg && state === "running" && !sameRun(c, runCfg)) lines.push("Settings changes apply to a new run (Pause, then Start new run).");
  note.hidden = !lines.length;
  note.textContent = lines.join(" ");
}

// ---- corpus ------------------------------------------------------------------------------------

function setCorpus(c: LoadedCorpus): void {
  corpus = c;
  $("data-status").textContent = `${c.name}: ${(c.text.length / 1e6).toFixed(2)} M characters, ${vocabSize()} distinct, from ${c.source}.`;
  updateParams();
}

async function useFile(f: File): Promise<void> {
  const text = await f.text();
  setCorpus({ name: f.name, text, source: "your file" });
}

// ---- worker ------------------------------------------------------------------------------------

function send(m: ToWorker, transfer: Transferable[] = []): void {
  worker.postMessage(m, transfer);
}

function startWorker(then: ToWorker | null): void {
  worker?.terminate();
  worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  worker.onmessage = (e: MessageEvent<FromWorker>) => onMessage(e.data);
  worker.onerror = (e) => setStatus("error", `the worker failed: ${e.message}`);
  send({ type: "init" });
  pendingAfterInit = then;
}
let pendingAfterInit: ToWorker | null = null;

function setStatus(phase: string, text: string): void {
  const el = $("status");
  el.dataset.phase = phase;
  el.textContent = text;
}

let redrawQueued = false;
function redraw(): void {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => { redrawQueued = false; chart?.redraw(); });
}

function onMessage(m: FromWorker): void {
  switch (m.type) {
    case "ready": {
      gpuReady = true;
      software = m.software;
      adapterFeatures = m.features;
      $("gpu-info").textContent = `WebGPU adapter: ${m.adapter}${m.software ? " (a software adapter: the tiny preset and short samples)" : ""} · features: ${m.features.join(", ") || "none"}`;
      if (m.software && state === "none" && !runs.length) { $<HTMLSelectElement>("preset").value = "tiny"; fillPreset("tiny"); }
      input("sample-every").value ||= String(software ? 20 : 100);
      input("autosave-every").value ||= String(software ? 10 : 100);
      if (pendingAfterInit) { send(pendingAfterInit); pendingAfterInit = null; }
      else if (m.autosave) { setStatus("restoring", `restoring the autosave from step ${m.autosave.step} of ${m.autosave.total}…`); send({ type: "restore" }); }
      else setStatus("idle", corpus ? "ready: press Start" : "ready once a corpus is loaded");
      refreshButtons();
      return;
    }
    case "nogpu":
      $("nogpu").hidden = false;
      $("nogpu-detail").textContent = m.message;
      $("gpu-info").textContent = m.message;
      setStatus("error", "no WebGPU: see the message above");
      for (const b of ["start", "pause", "resume", "reset", "race"]) button(b).disabled = true;
      return;
    case "status":
      setStatus(m.phase, m.text);
      if (m.phase === "training" || m.phase === "compiling") { state = "running"; refreshButtons(); }
      return;
    case "runs":
      setupRuns(m.config, m.runs, m.history);
      return;
    case "losses":
      for (const [s, ema] of m.points) chart?.push(s + 1, m.run, ema);
      redraw();
      return;
    case "val":
      chart?.push(m.step, m.run, null, m.loss);
      redraw();
      return;
    case "sample":
      showSample(m.run, m.step, m.text, m.valLoss);
      return;
    case "stats":
      showStats(m);
      return;
    case "masks": {
      $("mask-layer").textContent = m.layer;
      drawMask($<HTMLCanvasElement>("mask-r"), m.r, m.size, [46, 196, 182]);
      drawMask($<HTMLCanvasElement>("mask-rc"), m.rc, m.size, [233, 196, 106]);
      $("rc-caption").innerHTML = `M<sub>RC</sub> (backward) · ${(m.density * 100).toFixed(1)}% kept in this window (theory: 40.6%)`;
      return;
    }
    case "saved":
      autosaveNote = `autosaved at step ${m.step}`;
      $("step-label").title = autosaveNote;
      return;
    case "checkpoint": {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([m.bytes], { type: "application/octet-stream" }));
      a.download = m.name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
      return;
    }
    case "race":
      $("race-results").innerHTML = m.results.map((r, i) => `<div class="sample" style="--c:${runs[i]?.color ?? "#ccc"}"><b>${r.label}</b>
        <span class="muted">${r.tokensPerSec.toFixed(1)} tokens/s</span><pre>${escape(r.text)}</pre></div>`).join("") +
        (software ? `<p class="muted small">A software adapter runs shaders on the CPU: these speeds say nothing about a GPU's.</p>` : "");
      return;
    case "stopped":
      state = m.done ? "done" : "paused";
      lastStep = m.step;
      refreshButtons();
      return;
    case "lost":
      state = "paused";
      $("lost").hidden = false;
      $("lost-detail").textContent = `${m.message}. ${m.autosaveStep !== null ? `The autosave has step ${m.autosaveStep}.` : "There is no autosave yet; Reset and start again."}`;
      button("lost-resume").disabled = m.autosaveStep === null;
      setStatus("lost", "the GPU device was lost");
      refreshButtons();
      return;
    case "error":
      setStatus("error", m.message);
      if (state === "running") state = runs.length ? "paused" : "none";
      refreshButtons();
      return;
    case "profile":
      showProfile(m);
      return;
  }
}

const escape = (s: string) => s.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]!);

function setupRuns(cfg: DemoConfig, infos: RunInfo[], history: { losses: [number, number, number][]; val: [number, number][]; sample: { step: number; text: string; valLoss: number } | null }[]): void {
  runCfg = cfg;
  runs = infos;
  $("chart").innerHTML = "";
  chart = new LossChart($("chart"), infos.map((r) => ({ label: r.label, color: r.color })), cfg.totalSteps);
  chart.setMarker(infos.find((r) => r.adapterStep !== null)?.adapterStep ?? null);
  $("samples").innerHTML = infos.map((r, i) => `<div class="sample" style="--c:${r.color}"><b>${r.label}</b> <span id="sample-step-${i}" class="muted"></span><pre id="sample-${i}" data-step="-1">(first sample at step ${cfg.sampleEvery || cfg.totalSteps})</pre></div>`).join("");
  $("sample-note").textContent = cfg.sampleEvery ? `(every ${cfg.sampleEvery} steps, ${cfg.sampleTokens} characters, temperature 0.8, top-20)` : "";
  $("cards").innerHTML = infos.map((r, i) => `<div class="card" style="--c:${r.color}" id="card-${i}"><div class="card-head"><b>${r.label}</b>
    <button class="mini" data-download="${i}">Download checkpoint</button></div>
    <div class="muted small">${fmtCount(r.params)} parameters</div><div id="card-body-${i}"></div></div>`).join("");
  for (const b of document.querySelectorAll<HTMLButtonElement>("[data-download]")) b.onclick = () => send({ type: "download", run: Number(b.dataset.download) });
  history.forEach((h, i) => {
    for (const [s, ema] of h.losses) chart!.push(s + 1, i, ema);
    for (const [s, v] of h.val) chart!.push(s, i, null, v);
    if (h.sample) showSample(i, h.sample.step, h.sample.text, h.sample.valLoss);
  });
  $("race-results").innerHTML = "";
  profiles.clear();
  $("profile").innerHTML = `<p class="muted small">(after the second step)</p>`;
  chart.redraw();
  refreshButtons();
}

const profiles = new Map<number, string>();
function showProfile(m: Extract<FromWorker, { type: "profile" }>): void {
  const r = runs[m.run];
  if (!r) return;
  const max = Math.max(...m.rows.map((x) => x.ms), 1e-9);
  const head = `<b>${r.label}</b> <span class="muted small">${m.dispatches} dispatches${m.timed ? ` · ${m.totalMs.toFixed(1)} ms of GPU time` : " · this adapter has no timestamp-query: calls only"}</span>`;
  const bars = m.rows.map((x) => `<span>${escape(x.name)}</span><span class="bar" style="width:${m.timed ? (100 * x.ms) / max : 0}%"></span>` +
    `<span class="muted">${m.timed ? `${x.ms.toFixed(2)} ms` : ""} · ${x.calls}×</span>`).join("");
  profiles.set(m.run, `<div class="sample" style="--c:${r.color}">${head}<div class="bars">${bars}</div></div>`);
  $("profile").innerHTML = [...profiles.entries()].sort((a, b) => a[0] - b[0]).map(([, h]) => h).join("");
}

function showSample(i: number, step: number, text: string, valLoss: number): void {
  const el = $(`sample-${i}`);
  if (!el) return;
  el.textContent = text;
  el.dataset.step = String(step);
  $(`sample-step-${i}`).textContent = `step ${step} · val loss ${valLoss.toFixed(3)}`;
}

const MEM_PARTS: [keyof MemoryBreakdown, string, string][] = [
  ["weights", "weights", "#5b8def"], ["wrcT", "W_RCᵀ", "#2ec4b6"], ["masks", "2:4 indices", "#8ac926"],
  ["gradients", "gradients", "#e9c46a"], ["optimizer", "optimizer", "#f4a261"], ["activations", "activations (peak)", "#e76f51"],
];

function showStats(m: Extract<FromWorker, { type: "stats" }>): void {
  lastStep = m.step;
  const label = $("step-label");
  label.dataset.step = String(m.step);
  const eta = m.etaSec === null ? "" : ` · ETA ${fmtTime(m.etaSec)}`;
  label.textContent = `step ${m.step} / ${m.total}${eta} · GPU live ${fmtBytes(m.liveBytes)} · lr ${m.lr.toExponential(2)}${m.adaptersIn ? " · adapters training" : ""}`;
  const denseState = m.memory.map((x, i) => (runs[i]?.kind === "dense" ? x.weights + x.gradients + x.optimizer : null)).find((x) => x !== null) ?? null;
  const max = Math.max(...m.memory.map((x) => MEM_PARTS.reduce((s, [k]) => s + x[k], 0)), 1);
  m.memory.forEach((mem, i) => {
    const body = $(`card-body-${i}`);
    if (!body) return;
    const tps = m.tokensPerSec[i] ?? null, ms = m.stepMs[i] ?? null;
    const state = mem.weights + mem.wrcT + mem.masks + mem.gradients + mem.optimizer;
    const ratio = denseState && runs[i]?.kind === "slope" ? ` · ${(state / denseState).toFixed(2)}× dense` : "";
    const total = MEM_PARTS.reduce((s, [k]) => s + mem[k], 0);
    body.innerHTML = `<div class="big" data-loss>${chartLatest(i)}</div>
      <div class="muted small">${ms === null ? "measuring…" : `${ms.toFixed(ms < 100 ? 1 : 0)} ms/step · ${Math.round(tps!).toLocaleString()} tokens/s`}</div>
      <div class="membar" style="width:${(100 * total) / max}%">${MEM_PARTS.map(([k, , c]) => `<span style="flex:${mem[k]};background:${c}"></span>`).join("")}</div>
      <div class="memlist small">${MEM_PARTS.filter(([k]) => mem[k] > 0).map(([k, n, c]) => `<span><i style="background:${c}"></i>${n} ${fmtBytes(mem[k])}</span>`).join("")}</div>
      <div class="muted small">model state ${fmtBytes(state)}${ratio}</div>`;
  });
}

function chartLatest(i: number): string {
  const t = chart?.latestTrain(i);
  return t === null || t === undefined ? "…" : t.toFixed(3);
}

// ---- controls ----------------------------------------------------------------------------------

function start(): void {
  const c = readConfig();
  if (!corpus || configProblem(c)) return;
  state = "running";
  refreshButtons();
  setStatus("starting", "building the models…");
  send({ type: "start", config: c, corpusName: corpus.name, text: corpus.text });
}

function wire(): void {
  $<HTMLSelectElement>("preset").addEventListener("change", (e) => fillPreset((e.target as HTMLSelectElement).value as PresetName));
  for (const id of MODEL_FIELDS) input(id).addEventListener("input", () => {
    const sel = $<HTMLSelectElement>("preset");
    if (sel.value !== "custom" && id !== "steps" && id !== "lr") sel.value = "custom";
    updateParams();
  });
  for (const id of ["attention", "run-dense", "run-slope", "rank", "at", "precision", "sample-every", "autosave-every"]) $(id).addEventListener("change", refreshButtons);
  button("start").onclick = start;
  button("pause").onclick = () => { send({ type: "pause" }); button("pause").disabled = true; };
  button("resume").onclick = () => { state = "running"; refreshButtons(); send({ type: "resume" }); };
  button("reset").onclick = () => {
    send({ type: "reset" });
    state = "none"; runs = []; runCfg = null; chart = null;
    for (const id of ["chart", "cards", "samples", "race-results"]) $(id).innerHTML = "";
    $("step-label").textContent = ""; $("step-label").dataset.step = "0";
    refreshButtons();
  };
  button("race").onclick = () => { button("race").disabled = true; send({ type: "race", tokens: software ? 32 : 200 }); };
  button("lost-resume").onclick = () => { $("lost").hidden = true; startWorker({ type: "restore" }); };
  button("lost-close").onclick = () => { $("lost").hidden = true; };
  input("file").addEventListener("change", () => { const f = input("file").files?.[0]; if (f) void useFile(f); });
  input("ckpt-file").addEventListener("change", async () => {
    const f = input("ckpt-file").files?.[0];
    if (!f) return;
    const bytes = await f.arrayBuffer();
    setStatus("loading", `loading ${f.name}…`);
    send({ type: "upload", name: f.name, bytes, text: corpus?.text ?? null }, [bytes]);
  });
  const drop = $("drop");
  let depth = 0;
  document.addEventListener("dragenter", (e) => { if (e.dataTransfer?.types.includes("Files")) { depth++; drop.hidden = false; } });
  document.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; drop.hidden = true; } });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0; drop.hidden = true;
    const f = e.dataTransfer?.files[0];
    if (!f) return;
    if (f.name.endsWith(".safetensors")) {
      void f.arrayBuffer().then((bytes) => send({ type: "upload", name: f.name, bytes, text: corpus?.text ?? null }, [bytes]));
    } else void useFile(f);
  });
}

async function main(): Promise<void> {
  wire();
  fillPreset("tiny");
  input("sample-every").value = "";
  input("autosave-every").value = "";
  if (!("gpu" in navigator)) {
    onMessage({ type: "nogpu", message: "navigator.gpu is missing in this browser" });
    return;
  }
  startWorker(null);
  const c = await loadDefaultCorpus((msg) => { $("data-status").textContent = msg; });
  if ("error" in c) $("data-status").textContent = `${c.error} Pick or drop any text file below (${CORPUS_NAME} or your own).`;
  else setCorpus(c);
  if (gpuReady && state === "none" && !runs.length) setStatus("idle", "ready: press Start");
  refreshButtons();
}

/** What the Playwright test (test/browser/demo.spec.ts) reads besides the DOM. */
(window as unknown as { demo: unknown }).demo = {
  get step() { return lastStep; },
  get state() { return state; },
  legend: () => chart?.legendText() ?? "",
  curve: (i: number) => chart?.curve(i) ?? [],
  loseDevice: () => send({ type: "lose-device" }),
};
void main();
