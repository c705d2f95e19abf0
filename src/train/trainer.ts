// Trainer: the GPT pretraining loop of the demo, the CLI and the benchmarks — dense or SLoPe
// (pruneModel + SparseAdamW + lazy adapters at 99%), linear warm-up + decay, global clipping.
// step() records one whole step into the GPU queue and returns the loss tensor without waiting:
// callers read losses a few steps late (docs/design.md §3). The Trainer itself reads every loss back
// asynchronously (started at the end of the step, never awaited in it): onLoss sees each value,
// and a NaN or infinite loss stops the next step() (or settle()) with a NonFiniteLossError that
// names the step and says what to try; saveCheckpoint settles first, so it never overwrites the
// last good checkpoint with a diverged model.
// precision "mixed-f16" runs the step's matmuls (forward and backward) on the matrix units with
// f16-rounded operands and f32 accumulation (setFloat32MatmulPrecision("medium"), scoped to the
// step), keeps f32 master weights and optimizer state, and scales the loss dynamically on the GPU
// (GradScaler: overflowed steps are skipped there, never read back in the step). Where the device
// has no matrix units the matmuls stay f32 and the loss scaling still runs (precisionWarning says so).
import { endOp } from "../gpu/profiler.ts";
import type { GPT } from "../nn/gpt.ts";
import { gpu } from "../gpu/context.ts";
import { getFloat32MatmulPrecision, setFloat32MatmulPrecision } from "../ops/matmul.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipGradNorm } from "../optim/clip.ts";
import { GradScaler, type GradScalerOptions, type GradScalerState, SNAPSHOT_CARRY } from "../optim/grad-scaler.ts";
import { linearWarmupDecay } from "../optim/schedule.ts";
import { SparseAdamW } from "../optim/sparse-adamw.ts";
import { Generator } from "../random.ts";
import { keep, noGrad, tidy } from "../scope.ts";
import { LazyAdapterSchedule } from "../slope/adapters.ts";
import { pruneModel } from "../slope/prune.ts";
import type { Pattern } from "../sparse/sparse24.ts";
import type { Tensor } from "../tensor.ts";
import { NonFiniteLossError } from "../errors.ts";
import { checkNumber } from "../validate.ts";
import { checkTrainer } from "./validate.ts";
import type { Corpus } from "./corpus.ts";

/**
 * SLoPe training (`TrainerOptions.slope`): the Trainer prunes the model's block Linears to N:M
 * sparse layers (pruneModel; block 0's fused qkv stays dense), trains them with SparseAdamW, and
 * adds lazy low-rank adapters near the end of the run when a rank is given (docs/slope.md).
 */
export interface SlopeOptions {
  /**
   * The N:M sparsity pattern of the pruned weights along d_in ("2:4", "1:2", "2:8", "4:8", ...), or
   * "vector": the opt-in vector-wise 2:4 pattern (one mask per block of vectorBlock output rows,
   * chosen by the block's summed |W|; a different method from SLoPe's per-element mask, see
   * SparseLinearOptions). Default "2:4".
   */
  pattern?: Pattern | "vector";
  /** Rows per mask block of pattern "vector", a multiple of 64. Default 64. */
  vectorBlock?: number;
  /**
   * true: compressed N:M storage with the sparse kernels. false: the masked-dense simulation (dense
   * weights times the mask, the same semantics; the reference the compressed path is tested
   * against). Default true.
   */
  compress?: boolean;
  /**
   * Steps between recomputations of the double-pruned transpose's mask M_RC (SparseAdamW); its
   * values are refreshed every step. 1 is the reference's accuracy path, 100 its performance
   * path. An integer ≥ 1. Default 1.
   */
  maskChangeFreq?: number;
  /**
   * Rank r of the lazy adapters (an integer in [1, min(d_in, d_out)] of every layer). Give this or
   * adapterRankFraction, or neither for no adapters (SLoPe r = 0); adapterRank wins when both are given.
   */
  adapterRank?: number;
  /** Rank of the lazy adapters as a fraction of nEmbd, in (0, 1], rounded (SLoPe: 0.0625 = 6.25%). */
  adapterRankFraction?: number;
  /**
   * Fraction of totalSteps after which the adapters enter, in [0, 1]: they are inserted at the start of
   * step floor(adapterAt · totalSteps), with R = 0, as a new AdamW group. Default 0.99.
   */
  adapterAt?: number;
}

/** Options of a training run (nanoGPT's names in brackets). Checked by the constructor (ValueError). */
export interface TrainerOptions {
  /** Sequences per step, each of the model's blockSize tokens [batch_size]. An integer ≥ 1. */
  batchSize: number;
  /**
   * Optimizer steps of the whole run [max_iters], an integer ≥ 1; the learning-rate schedule and
   * the adapters' insertion step follow from it.
   */
  totalSteps: number;
  /** Peak learning rate, reached after the warm-up and decayed linearly to 0 at totalSteps [learning_rate]. Default 1e-3. */
  lr?: number;
  /** Fraction of totalSteps spent warming the learning rate up linearly from 0, in [0, 1]. Default 0.01. */
  warmupFraction?: number;
  /** Decoupled weight decay of AdamW and SparseAdamW [weight_decay], ≥ 0. Default 0.1. */
  weightDecay?: number;
  /** Clip of the global L2 norm over all gradients (dense and sparse) [grad_clip], > 0. Default 1. */
  gradClip?: number;
  /**
   * Seed of batch sampling and of the adapters' initialisation, an integer. Default 0. (The
   * weights are seeded by GPTConfig.seed; dropout by manualSeed.)
   */
  seed?: number;
  /** Train SLoPe (double-pruned N:M sparse, optional lazy adapters) instead of dense; absent: dense. */
  slope?: SlopeOptions;
  /**
   * "f32" (the default): f32 everywhere. "mixed-f16": matmuls on the matrix units (f16 operands,
   * f32 accumulation) with f32 master weights and optimizer state and dynamic loss scaling;
   * without matrix units the matmuls stay f32 (precisionWarning says so).
   */
  precision?: Precision;
  /** Dynamic loss scaling of "mixed-f16" (torch.cuda.amp.GradScaler's defaults: GradScalerOptions). */
  lossScale?: GradScalerOptions;
  /**
   * Called with each step's loss once it is read back: a few steps late, in step order, never
   * inside step(). Not saved in checkpoints.
   */
  onLoss?: (step: number, loss: number) => void;
}

export type Precision = "f32" | "mixed-f16";

export class Trainer {
  readonly dense: AdamW;
  readonly sparse: SparseAdamW | null = null;
  readonly adapters: LazyAdapterSchedule | null = null;
  readonly gen: Generator;
  stepCount = 0;
  /** The global gradient norm (before clipping) of the last step, a 0-d tensor (no readback). */
  lastGradNorm: Tensor | null = null;
  /** The last checkpoint saved or loaded through saveCheckpoint / loadCheckpoint. */
  lastCheckpoint: { step: number; path: string } | null = null;
  /** The most recent loss read back. */
  lastLoss: { step: number; loss: number } | null = null;
  /** "mixed-f16": the loss scaler (its state is on the GPU; lastScaler is its late readback). */
  readonly scaler: GradScaler | null = null;
  /** "mixed-f16": the scaler's state after step `step`, read back late like the loss. */
  lastScaler: ({ step: number } & GradScalerState) | null = null;
  /** Why "mixed-f16" cannot use the matrix units here (null when it can, or with "f32"). Said once, not logged. */
  readonly precisionWarning: string | null = null;
  private readonly matrixUnits: boolean = false;
  private readonly o: Required<Omit<TrainerOptions, "slope" | "onLoss" | "lossScale">> & { slope?: SlopeOptions; lossScale?: GradScalerOptions; onLoss?: TrainerOptions["onLoss"] };
  private readonly pending = new Set<Promise<void>>();
  private failure: Error | null = null;

  constructor(readonly model: GPT, readonly corpus: Corpus, opts: TrainerOptions) {
    checkTrainer(model, corpus, opts);
    this.o = { lr: 1e-3, warmupFraction: 0.01, weightDecay: 0.1, gradClip: 1, seed: 0, precision: "f32", ...opts };
    this.gen = new Generator(this.o.seed);
    if (this.o.precision === "mixed-f16") {
      this.scaler = new GradScaler(this.o.lossScale ?? {});
      const mu = gpu().matrixUnits;
      this.matrixUnits = mu.tiles.length > 0;
      if (!this.matrixUnits) {
        this.precisionWarning = `precision "mixed-f16": this device has no usable matrix units (${mu.note}), so matmuls stay on f32 arithmetic; ` +
          "f32 master weights and the dynamic loss scaling run as configured";
      }
    }
    const s = opts.slope;
    if (s) {
      pruneModel(model, { pattern: s.pattern, vectorBlock: s.vectorBlock, compress: s.compress });
      this.sparse = new SparseAdamW(model, { lr: this.o.lr, weightDecay: this.o.weightDecay, maskChangeFreq: s.maskChangeFreq ?? 1 });
      if (s.adapterRank !== undefined || s.adapterRankFraction !== undefined) {
        this.adapters = new LazyAdapterSchedule({
          totalSteps: opts.totalSteps, at: s.adapterAt ?? 0.99, seed: this.o.seed,
          ...(s.adapterRank !== undefined ? { rank: s.adapterRank } : { rankFraction: s.adapterRankFraction, hiddenSize: model.config.nEmbd }),
        });
      }
    }
    this.dense = new AdamW(model.denseParameters(), { lr: this.o.lr, weightDecay: this.o.weightDecay });
    this.dense.gradScaler = this.scaler;
    if (this.sparse) this.sparse.gradScaler = this.scaler;
  }

  /** The resolved options (JSON-serialisable; saved in checkpoints). */
  get options(): TrainerOptions {
    const { onLoss: _, ...o } = this.o;
    return JSON.parse(JSON.stringify(o)) as TrainerOptions;
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
    if (this.failure) throw this.failure;
    const t = this.stepCount;
    this.adapters?.step(t, this.model, this.dense);
    const lr = this.lrAt(t);
    this.dense.lr = lr;
    const { x, y } = this.corpus.batch("train", this.o.batchSize, this.model.config.blockSize, this.gen);
    const sc = this.scaler;
    const precision = getFloat32MatmulPrecision();
    if (this.matrixUnits) setFloat32MatmulPrecision("medium");
    let loss: Tensor;
    try {
      loss = tidy(() => {
        const l = this.model.loss(x, y);
        l.backward(sc ? sc.seed(l.shape) : undefined);
        return l;
      });
    } finally {
      setFloat32MatmulPrecision(precision);
      x.dispose(); y.dispose();
    }
    if (sc) this.mixedUpdate(sc, lr);
    else this.f32Update(lr);
    this.stepCount++;
    if (sc) {
      // The loss rides in the scaler's snapshot: one readback per step for both.
      const snap = sc.snapshot(loss);
      this.watch(t, snap.toArray().then((a) => {
        if (!this.lastScaler || this.lastScaler.step < t) this.lastScaler = { step: t, ...GradScaler.decode(a) };
        return a[SNAPSHOT_CARRY]!;
      }).finally(() => snap.dispose()));
    } else {
      this.watch(t, loss.item());
    }
    return keep(loss);
  }

  /** The f32 update: clip the gradients in place, then the optimizers. */
  private f32Update(lr: number): void {
    if (this.sparse) {
      this.sparse.lr = lr;
      this.sparse.weightDecay = this.o.weightDecay;
      this.setGradNorm(this.sparse.clipGradNorm(this.o.gradClip, this.dense));
      endOp("clipGradNorm");
      this.sparse.step();
      this.sparse.zeroGrad();
      endOp("SparseAdamW.step");
    } else {
      this.setGradNorm(clipGradNorm(this.dense.paramGroups.flatMap((g) => g.params), this.o.gradClip));
      endOp("clipGradNorm");
    }
    this.dense.step();
    this.dense.zeroGrad();
    endOp("AdamW.step");
  }

  /** The mixed-precision update: one Σg² decides overflow and clipping on the GPU; the optimizers skip or unscale there. */
  private mixedUpdate(sc: GradScaler, lr: number): void {
    const grads = [...(this.sparse?.layers ?? []).map((l) => l.sparseParam.grad), ...this.dense.paramGroups.flatMap((g) => g.params).map((p) => p.grad)]
      .filter((g): g is Tensor => !!g);
    this.setGradNorm(sc.unscaleAndClip(grads, this.o.gradClip));
    endOp("GradScaler.unscaleAndClip");
    if (this.sparse) {
      this.sparse.lr = lr;
      this.sparse.weightDecay = this.o.weightDecay;
      this.sparse.step();
      this.sparse.zeroGrad();
      endOp("SparseAdamW.step");
    }
    this.dense.step();
    this.dense.zeroGrad();
    endOp("AdamW.step");
  }

  /**
   * "mixed-f16": settles, then reads the optimizers' GPU step counts (skipped steps do not count)
   * and the scaler's state. Checkpoints call it; returns null under "f32".
   */
  async syncScaler(): Promise<GradScalerState | null> {
    if (!this.scaler) return null;
    await this.settle();
    await this.dense.syncSteps();
    await this.sparse?.syncSteps();
    return await this.scaler.state();
  }

  private setGradNorm(n: Tensor): void {
    this.lastGradNorm?.dispose();
    this.lastGradNorm = keep(n);
  }

  /** Watches the readback of step t's loss (its copy is recorded already, so the caller may dispose the loss). */
  private watch(t: number, value: Promise<number>): void {
    const p = value.then((v) => {
      if (this.failure) return;
      if (!Number.isFinite(v)) { this.failure = this.divergence(t, v); return; }
      this.lastLoss = { step: t, loss: v };
      this.o.onLoss?.(t, v);
    }, (e) => { this.failure ??= e as Error; });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private divergence(t: number, v: number): NonFiniteLossError {
    const last = this.lastLoss ? ` (the last finite loss was ${this.lastLoss.loss.toFixed(4)} at step ${this.lastLoss.step})` : "";
    const ck = this.lastCheckpoint ? `the last good checkpoint (step ${this.lastCheckpoint.step}, ${this.lastCheckpoint.path}) is kept; resume from it` : "no checkpoint was saved yet";
    return new NonFiniteLossError(t, v, `Trainer: the loss is ${v} at step ${t}${last}; training stopped and ${ck}. ` +
      `Try a lower learning rate (lr is ${this.o.lr}; e.g. ${this.o.lr / 3}), stronger gradient clipping (gradClip is ${this.o.gradClip}; e.g. ${Math.min(this.o.gradClip, 1) / 2}) ` +
      `or a longer warm-up (warmupFraction is ${this.o.warmupFraction})`);
  }

  /** Loss readbacks still in flight. */
  get lossesInFlight(): number {
    return this.pending.size;
  }

  /**
   * Waits until at most `maxInFlight` loss readbacks are in flight (keeps a loop a few steps ahead
   * of the GPU without a sync per step); throws the NonFiniteLossError if a loss was NaN or infinite.
   */
  async drain(maxInFlight = 0): Promise<void> {
    while (this.pending.size > maxInFlight) await Promise.race([...this.pending]);
    if (this.failure) throw this.failure;
  }

  /** Waits for every loss readback in flight; throws the NonFiniteLossError if one was NaN or infinite. */
  async settle(): Promise<void> {
    await this.drain(0);
  }

  /** Restores the step counter and the batch generator (loadCheckpoint does this). */
  restore(s: { stepCount: number; batchRng: number }): void {
    this.stepCount = s.stepCount;
    this.gen.setState(s.batchRng);
    this.failure = null;
    this.lastLoss = null;
    this.lastScaler = null;
  }

  /** Mean validation loss over `batches` seeded batches (reads back once). */
  async evaluate(batches = 4, seed = 1234): Promise<number> {
    checkNumber("Trainer.evaluate", "batches", batches, { integer: true, min: 1 });
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
    this.lastGradNorm?.dispose();
    this.lastGradNorm = null;
    this.scaler?.dispose();
    this.dense.dispose();
    this.sparse?.dispose();
  }
}
