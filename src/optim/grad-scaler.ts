// Dynamic loss scaling for mixed-precision training (torch.cuda.amp.GradScaler's semantics), kept
// entirely on the GPU: backward is seeded with the scale S instead of 1; one reduction of the
// scaled gradients' squares (the global norm that clipping needs anyway) is the overflow test —
// an inf or NaN sum means the step is skipped — and a one-invocation kernel turns it into the skip
// flag and the gradient multiplier 1/S · clip coefficient, then halves S on overflow or doubles it
// after growthInterval good steps. AdamW and SparseAdamW read the flag and the multiplier in their
// update kernels (the gradients are never unscaled in place), and count their steps on the GPU
// (GpuStepCount) so a skipped step leaves parameters, moments and bias correction untouched.
// Nothing in a step reads back; state() reads the scaler's state when the caller wants it.
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { noGrad, keep } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { ValueError } from "../errors.ts";
import { checkNumber, checkOptional } from "../validate.ts";
import { AMP, AMP_WORDS, gradScalerUpdateKernel } from "../../shaders/grad-scaler.wgsl.ts";
import { sumOfSquares } from "./clip.ts";

export interface GradScalerOptions {
  /** The first scale (GradScaler's init_scale). Default 2^16. */
  initScale?: number;
  /** Multiplies the scale after growthInterval good steps in a row (growth_factor). Default 2. */
  growthFactor?: number;
  /** Multiplies the scale after an overflow (backoff_factor). Default 0.5. */
  backoffFactor?: number;
  /** Good steps in a row before the scale grows (growth_interval). Default 2000. */
  growthInterval?: number;
}

/** The scaler's state as read back (also what checkpoints save). */
export interface GradScalerState {
  /** The scale the next step's backward is seeded with. */
  scale: number;
  /** Good steps since the scale last changed. */
  growthTracker: number;
  /** Steps skipped for overflow since the scaler was made (or restored). */
  skipped: number;
  /** Whether the last step overflowed (and was skipped). */
  lastSkipped: boolean;
}

/** The word of a snapshot that carries the caller's value (a state slot nothing else uses). */
export const SNAPSHOT_CARRY = AMP_WORDS - 1;

export class GradScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  /** The GPU state: AMP slots (shaders/grad-scaler.wgsl.ts). */
  readonly buffer: Tensor;

  constructor(opts: GradScalerOptions = {}) {
    const op = "GradScaler";
    if (typeof opts !== "object" || opts === null) throw new ValueError(op, "options must be an object { initScale?, growthFactor?, backoffFactor?, growthInterval? }");
    const initScale = checkOptional(op, "initScale", opts.initScale, { above: 0, max: 2 ** 127 }) ?? 2 ** 16;
    this.growthFactor = checkOptional(op, "growthFactor", opts.growthFactor, { above: 1 }) ?? 2;
    this.backoffFactor = checkOptional(op, "backoffFactor", opts.backoffFactor, { above: 0, below: 1 }) ?? 0.5;
    this.growthInterval = checkOptional(op, "growthInterval", opts.growthInterval, { integer: true, min: 1, max: 1 << 24 }) ?? 2000;
    const init = new Float32Array(AMP_WORDS);
    init[AMP.scale] = initScale;
    this.buffer = keep(Tensor.empty([AMP_WORDS], "f32", op));
    gpu().launcher.upload(this.buffer.buffer(op), init);
  }

  /** A new tensor of `shape` (one element) holding S: the seed of backward (loss · S). */
  seed(shape: readonly number[]): Tensor {
    const out = Tensor.empty(shape, "f32", "GradScaler.seed");
    gpu().launcher.copy(this.buffer.buffer("GradScaler"), AMP.scale * 4, out.buffer("GradScaler"), 0, 4);
    return out;
  }

  /**
   * After backward: Σg² over `grads` (scaled by S) decides the step — overflow (inf / NaN) sets
   * the skip flag and backs the scale off; otherwise the optimizers will multiply the gradients
   * by 1/S · min(1, maxNorm / (norm + 1e-6)) (maxNorm Infinity: no clipping) and the scale grows
   * after growthInterval good steps. Returns the unscaled global norm as a 0-d tensor (inf or
   * NaN on overflow), with no readback.
   */
  unscaleAndClip(grads: readonly Tensor[], maxNorm = Infinity): Tensor {
    if (maxNorm !== Infinity) checkNumber("GradScaler.unscaleAndClip", "maxNorm", maxNorm, { above: 0 });
    return noGrad(() => {
      const ss = sumOfSquares(grads) ?? Tensor.empty([1], "f32", "GradScaler");
      if (!grads.length) gpu().launcher.upload(ss.buffer("GradScaler"), new Float32Array(1));
      const l = gpu().launcher;
      l.dispatch(gradScalerUpdateKernel(), [ss.buffer("GradScaler"), this.buffer.buffer("GradScaler")], [1],
        [f32bits(maxNorm === Infinity ? 0 : maxNorm), f32bits(this.growthFactor), f32bits(this.backoffFactor), f32bits(this.growthInterval)]);
      ss.dispose();
      const norm = Tensor.empty([], "f32", "GradScaler");
      l.copy(this.buffer.buffer("GradScaler"), AMP.norm * 4, norm.buffer("GradScaler"), 0, 4);
      return norm;
    });
  }

  /**
   * A copy of the state as it is now in the GPU stream (read it late, like a loss). `carry` (one
   * f32 element, e.g. the loss) rides along in its last word, so both come back in one readback.
   */
  snapshot(carry?: Tensor): Tensor {
    const out = Tensor.empty([AMP_WORDS], "f32", "GradScaler");
    const l = gpu().launcher;
    l.copy(this.buffer.buffer("GradScaler"), 0, out.buffer("GradScaler"), 0, AMP_WORDS * 4);
    if (carry) l.copy(carry.buffer("GradScaler"), 0, out.buffer("GradScaler"), SNAPSHOT_CARRY * 4, 4);
    return out;
  }

  /** Decodes a snapshot's data. */
  static decode(a: ArrayLike<number>): GradScalerState {
    return { scale: a[AMP.scale]!, growthTracker: a[AMP.tracker]!, skipped: a[AMP.skipped]!, lastSkipped: a[AMP.foundInf] !== 0 };
  }

  /** Reads the state back (after the work recorded so far). */
  async state(): Promise<GradScalerState> {
    const s = this.snapshot();
    try { return GradScaler.decode(await s.toArray()); } finally { s.dispose(); }
  }

  /** Restores a state() (scale, growth tracker, skipped count); validates first. */
  loadState(s: Partial<GradScalerState> & { scale: number }): void {
    const op = "GradScaler.loadState";
    if (typeof s !== "object" || s === null) throw new ValueError(op, "expects { scale, growthTracker?, skipped? } as returned by state()");
    checkNumber(op, "scale", s.scale, { above: 0, max: 2 ** 127 });
    checkOptional(op, "growthTracker", s.growthTracker, { integer: true, min: 0 });
    checkOptional(op, "skipped", s.skipped, { integer: true, min: 0 });
    const a = new Float32Array(AMP_WORDS);
    a[AMP.scale] = s.scale;
    a[AMP.tracker] = s.growthTracker ?? 0;
    a[AMP.skipped] = s.skipped ?? 0;
    a[AMP.foundInf] = s.lastSkipped ? 1 : 0;
    gpu().launcher.upload(this.buffer.buffer(op), a);
  }

  dispose(): void {
    this.buffer.dispose();
  }
}

/**
 * An optimizer's step count on the GPU (mixed precision): the scaled update kernel reads slot
 * `slot` and writes the advanced (or, on a skipped step, the same) count to the other, so every
 * workgroup of the dispatch reads the count from before it. `host` counts the launches, which is
 * exact whenever no step was skipped; read() gives the true count.
 */
export class GpuStepCount {
  readonly t: Tensor;
  slot = 0;

  constructor(initial: number) {
    this.t = keep(Tensor.empty([2], "f32", "GpuStepCount"));
    this.set(initial);
  }

  /** Sets both slots (recorded in stream order). */
  set(n: number): void {
    gpu().launcher.upload(this.t.buffer("GpuStepCount"), new Float32Array([n, n]));
  }

  /** A copy on the GPU (the same count, diverging from here). */
  clone(): GpuStepCount {
    const c = new GpuStepCount(0);
    gpu().launcher.copy(this.t.buffer("GpuStepCount"), 0, c.t.buffer("GpuStepCount"), 0, 8);
    c.slot = this.slot;
    return c;
  }

  /** The kernel's bindings after (param, grad, m, v) and its slot param; flips the slot. */
  launchArgs(scaler: GradScaler): { buffers: ReturnType<Tensor["buffer"]>[]; slot: number } {
    const slot = this.slot;
    this.slot = 1 - slot;
    return { buffers: [scaler.buffer.buffer("AdamW"), this.t.buffer("AdamW")], slot };
  }

  /** The count after the work recorded so far. */
  async read(): Promise<number> {
    const slot = this.slot;
    const a = await this.t.toArray();
    return a[slot]!;
  }

  dispose(): void {
    this.t.dispose();
  }
}
