// Trainer: the GPT pretraining loop of the demo, the CLI and the benchmarks — dense or SLoPe
// (pruneModel + SparseAdamW + lazy adapters at 99%), linear warm-up + decay, global clipping.
// step() records one whole step into the GPU queue and returns the loss tensor without waiting:
// callers read losses a few steps late (DESIGN.md §3).
import { endOp } from "../gpu/profiler.ts";
import type { GPT } from "../nn/gpt.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipGradNorm } from "../optim/clip.ts";
import { linearWarmupDecay } from "../optim/schedule.ts";
import { SparseAdamW } from "../optim/sparse-adamw.ts";
import { Generator } from "../random.ts";
import { keep, noGrad, tidy } from "../scope.ts";
import { LazyAdapterSchedule } from "../slope/adapters.ts";
import { pruneModel } from "../slope/prune.ts";
import type { Pattern } from "../sparse/sparse24.ts";
import type { Tensor } from "../tensor.ts";
import type { Corpus } from "./corpus.ts";

export interface SlopeOptions {
  /** N:M pattern, default "2:4". */
  pattern?: Pattern;
  /** false: the masked-dense simulation. Default true. */
  compress?: boolean;
  /** Double-pruned mask refresh period (SparseAdamW). Default 1. */
  maskChangeFreq?: number;
  /** Lazy adapters: a rank, or a fraction of nEmbd; none when both are absent. */
  adapterRank?: number;
  adapterRankFraction?: number;
  /** Fraction of training after which the adapters enter (default 0.99). */
  adapterAt?: number;
}

export interface TrainerOptions {
  batchSize: number;
  totalSteps: number;
  lr?: number;
  warmupFraction?: number;
  weightDecay?: number;
  gradClip?: number;
  seed?: number;
  /** Train SLoPe (sparse) instead of dense. */
  slope?: SlopeOptions;
}

export class Trainer {
  readonly dense: AdamW;
  readonly sparse: SparseAdamW | null = null;
  readonly adapters: LazyAdapterSchedule | null = null;
  readonly gen: Generator;
  stepCount = 0;
  private readonly o: Required<Omit<TrainerOptions, "slope">> & { slope?: SlopeOptions };

  constructor(readonly model: GPT, readonly corpus: Corpus, opts: TrainerOptions) {
    this.o = { lr: 1e-3, warmupFraction: 0.01, weightDecay: 0.1, gradClip: 1, seed: 0, ...opts };
    this.gen = new Generator(this.o.seed);
    const s = opts.slope;
    if (s) {
      pruneModel(model, { pattern: s.pattern, compress: s.compress });
      this.sparse = new SparseAdamW(model, { lr: this.o.lr, weightDecay: this.o.weightDecay, maskChangeFreq: s.maskChangeFreq ?? 1 });
      if (s.adapterRank !== undefined || s.adapterRankFraction !== undefined) {
        this.adapters = new LazyAdapterSchedule({
          totalSteps: opts.totalSteps, at: s.adapterAt ?? 0.99, seed: this.o.seed,
          ...(s.adapterRank !== undefined ? { rank: s.adapterRank } : { rankFraction: s.adapterRankFraction, hiddenSize: model.config.nEmbd }),
        });
      }
    }
    this.dense = new AdamW(model.denseParameters(), { lr: this.o.lr, weightDecay: this.o.weightDecay });
  }

  /** The learning rate of step `t`. */
  lrAt(t: number): number {
    return linearWarmupDecay(t, { lr: this.o.lr, warmupSteps: Math.round(this.o.warmupFraction * this.o.totalSteps), totalSteps: this.o.totalSteps });
  }

  /** Whether the lazy adapters are in (they enter at adapters.insertStep). */
  get adaptersActive(): boolean {
    return !!this.adapters?.inserted;
  }

  /** One optimizer step. Returns the (kept) loss tensor; the caller disposes it. Never waits on the GPU. */
  step(): Tensor {
    const t = this.stepCount;
    this.adapters?.step(t, this.model, this.dense);
    const lr = this.lrAt(t);
    this.dense.lr = lr;
    const { x, y } = this.corpus.batch("train", this.o.batchSize, this.model.config.blockSize, this.gen);
    const loss = tidy(() => {
      const l = this.model.loss(x, y);
      l.backward();
      return l;
    });
    x.dispose(); y.dispose();
    if (this.sparse) {
      this.sparse.lr = lr;
      this.sparse.weightDecay = this.o.weightDecay;
      this.sparse.clipGradNorm(this.o.gradClip, this.dense).dispose();
      endOp("clipGradNorm");
      this.sparse.step();
      this.sparse.zeroGrad();
      endOp("SparseAdamW.step");
    } else {
      clipGradNorm(this.dense.paramGroups.flatMap((g) => g.params), this.o.gradClip).dispose();
      endOp("clipGradNorm");
    }
    this.dense.step();
    this.dense.zeroGrad();
    endOp("AdamW.step");
    this.stepCount++;
    return keep(loss);
  }

  /** Mean validation loss over `batches` seeded batches (reads back once). */
  async evaluate(batches = 4, seed = 1234): Promise<number> {
    const gen = new Generator(seed);
    const wasTraining = this.model.training;
    this.model.eval();
    const losses = noGrad(() => Array.from({ length: batches }, () => {
      const { x, y } = this.corpus.batch("val", this.o.batchSize, this.model.config.blockSize, gen);
      const l = this.model.loss(x, y);
      x.dispose(); y.dispose();
      return l;
    }));
    const vals = await Promise.all(losses.map((l) => l.item()));
    for (const l of losses) l.dispose();
    this.model.train(wasTraining);
    return vals.reduce((a, b) => a + b, 0) / vals.length;
  }

  dispose(): void {
    this.dense.dispose();
    this.sparse?.dispose();
  }
}
