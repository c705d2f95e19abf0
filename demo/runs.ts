// One training run of the demo (dense or SLoPe): its model, Trainer, pending losses read back a
// few steps late, smoothed loss, throughput and memory accounting.
import type { Tensor } from "../src/index.ts";
import { GPT, SparseLinear } from "../src/nn/index.ts";
import { Corpus, type SlopeOptions, Trainer } from "../src/train/index.ts";

export interface RunConfig {
  label: string;
  color: string;
  model: { nLayer: number; nEmbd: number; nHead: number; blockSize: number };
  batchSize: number;
  totalSteps: number;
  lr: number;
  slope?: SlopeOptions;
}

export class Run {
  readonly model: GPT;
  readonly trainer: Trainer;
  private pending: { step: number; loss: Tensor }[] = [];
  ema: number | null = null;
  lastLoss: number | null = null;
  tokensSeen = 0;

  constructor(readonly cfg: RunConfig, vocabSize: number, corpus: Corpus, seed: number) {
    this.model = new GPT({ vocabSize, seed, ...cfg.model });
    this.trainer = new Trainer(this.model, corpus, { batchSize: cfg.batchSize, totalSteps: cfg.totalSteps, lr: cfg.lr, seed, slope: cfg.slope });
  }

  /** Records one step (no waiting). */
  step(): void {
    const step = this.trainer.stepCount;
    this.pending.push({ step, loss: this.trainer.step() });
    this.tokensSeen += this.cfg.batchSize * this.cfg.model.blockSize;
  }

  /** Reads back all but the newest `keepInFlight` losses; returns [step, smoothed loss] pairs. */
  async drain(keepInFlight: number): Promise<[number, number][]> {
    const ready = this.pending.splice(0, Math.max(0, this.pending.length - keepInFlight));
    const vals = await Promise.all(ready.map((p) => p.loss.item()));
    const out: [number, number][] = [];
    ready.forEach((p, i) => {
      p.loss.dispose();
      const v = vals[i]!;
      this.lastLoss = v;
      this.ema = this.ema === null ? v : 0.9 * this.ema + 0.1 * v;
      out.push([p.step, this.ema]);
    });
    return out;
  }

  /** Bytes of weights, gradients' future home and optimizer state that this run keeps on the GPU. */
  memoryBytes(): { weights: number; optimizer: number } {
    let weights = 0, optimizer = 0;
    for (const [, t] of this.model.stateDict()) weights += t.size * 4;
    for (const g of this.trainer.dense.paramGroups) for (const p of g.params) {
      const s = this.trainer.dense.stateOf(p);
      if (s) optimizer += (s.m.size + s.v.size) * 4;
    }
    const sp = this.trainer.sparse;
    if (sp) for (const l of sp.layers) { const s = sp.stateOf(l); if (s) optimizer += (s.m.size + s.v.size) * 4; }
    return { weights, optimizer };
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

export const PRESETS: Record<string, RunConfig["model"]> = {
  tiny: { nLayer: 2, nEmbd: 64, nHead: 4, blockSize: 64 },
  small: { nLayer: 4, nEmbd: 128, nHead: 4, blockSize: 64 },
  medium: { nLayer: 6, nEmbd: 192, nHead: 6, blockSize: 64 },
};
