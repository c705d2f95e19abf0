// One training run of the demo (dense or SLoPe), living in the worker: its model and Trainer,
// losses read back one step late, the smoothed curve and history the page draws (and the
// autosave keeps), and the memory it holds split by purpose.
import { gpu, memoryStats, type Tensor } from "../src/index.ts";
import { GPT, SparseLinear } from "../src/nn/index.ts";
import { type Corpus, Trainer } from "../src/train/index.ts";
import type { DemoConfig, LossPoint, MemoryBreakdown, RunHistory, RunInfo, RunKind } from "./protocol.ts";

export const COLORS: Record<RunKind, string> = { dense: "#f4a261", slope: "#2ec4b6" };

export function runLabel(kind: RunKind, cfg: DemoConfig): string {
  if (kind === "dense") return "Dense";
  return cfg.adapterRankFraction ? `SLoPe 2:4 + adapters r=${(cfg.adapterRankFraction * 100).toFixed(2)}%` : "SLoPe 2:4";
}

export class Run {
  readonly model: GPT;
  readonly trainer: Trainer;
  readonly history: RunHistory = { losses: [], val: [], sample: null };
  private pending: { step: number; loss: Tensor }[] = [];
  ema: number | null = null;
  /** Transient bytes of the last step beyond the model state (activations, gradients, workspace). */
  private stepPeak = 0;

  constructor(readonly kind: RunKind, readonly cfg: DemoConfig, vocabSize: number, corpus: Corpus) {
    this.model = new GPT({ vocabSize, seed: cfg.seed, ...cfg.model });
    this.trainer = new Trainer(this.model, corpus, {
      batchSize: cfg.batchSize, totalSteps: cfg.totalSteps, lr: cfg.lr, seed: cfg.seed, precision: cfg.precision ?? "f32",
      slope: kind === "slope"
        ? { pattern: "2:4", maskChangeFreq: 1, ...(cfg.adapterRankFraction ? { adapterRankFraction: cfg.adapterRankFraction, adapterAt: cfg.adapterAt } : {}) }
        : undefined,
    });
  }

  info(): RunInfo {
    return {
      label: runLabel(this.kind, this.cfg), kind: this.kind, color: COLORS[this.kind],
      params: this.model.numParameters(), adapterStep: this.trainer.adapters?.insertStep ?? null,
    };
  }

  get step(): number {
    return this.trainer.stepCount;
  }

  /** Steps whose loss has been read back. */
  get completed(): number {
    return this.trainer.stepCount - this.pending.length;
  }

  /** Records one whole step into the GPU queue (no waiting) and measures its transient peak. */
  record(): void {
    const before = memoryStats().liveBytes;
    gpu().pool.resetPeak();
    const step = this.trainer.stepCount;
    this.pending.push({ step, loss: this.trainer.step() });
    this.stepPeak = Math.max(0, memoryStats().peakBytes - before);
  }

  /** Reads back all but the newest `keepInFlight` losses; returns the new curve points. */
  async drain(keepInFlight: number): Promise<LossPoint[]> {
    const ready = this.pending.splice(0, Math.max(0, this.pending.length - keepInFlight));
    const vals = await Promise.all(ready.map((p) => p.loss.item()));
    const out: LossPoint[] = [];
    ready.forEach((p, i) => {
      p.loss.dispose();
      const v = vals[i]!;
      this.ema = this.ema === null ? v : 0.9 * this.ema + 0.1 * v;
      out.push([p.step, this.ema, v]);
    });
    this.history.losses.push(...out);
    return out;
  }

  /** What this run holds on the GPU: model state by kind, and the last step's transient peak. */
  memory(): MemoryBreakdown {
    const m: MemoryBreakdown = { weights: 0, wrcT: 0, masks: 0, gradients: 0, optimizer: 0, activations: 0 };
    for (const [name, t] of this.model.stateDict()) {
      const bytes = t.size * 4;
      if (name.endsWith(".meta")) m.masks += bytes;
      else if (name.endsWith("weightT.values")) m.wrcT += bytes;
      else m.weights += bytes;
    }
    let params = 0;
    for (const p of this.model.parameters()) params += p.size * 4;
    m.gradients = params;
    for (const g of this.trainer.dense.paramGroups) for (const p of g.params) {
      const s = this.trainer.dense.stateOf(p);
      if (s) m.optimizer += (s.m.size + s.v.size) * 4;
    }
    const sp = this.trainer.sparse;
    if (sp) for (const l of sp.layers) { const s = sp.stateOf(l); if (s) m.optimizer += (s.m.size + s.v.size) * 4; }
    m.activations = Math.max(0, this.stepPeak - m.gradients);
    return m;
  }

  sparseLayer(name: string): SparseLinear | null {
    const m = this.model.namedModules().find(([n]) => n === name)?.[1];
    return m instanceof SparseLinear ? m : null;
  }

  dispose(): void {
    for (const p of this.pending) p.loss.dispose();
    this.pending = [];
    this.trainer.dispose();
    this.model.dispose();
  }
}
