// SparseAdamW: SLoPe's optimizer for the sparse layers (docs/slope.md §4). f32 moments exist only for
// kept values (same layout as the compressed values, so a mask change never moves state);
// decoupled weight decay first, then the bias-corrected step in the "old PyTorch Adam" eps form
//   w ← w − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + eps)
// (eps added to √v before bias correction = AdamW with eps scaled by 1/√(1−β₂ᵗ)). After each
// step W_RC^T's values are refreshed from W; every maskChangeFreq steps its mask is recomputed.
// The layers' values, gradients and moments live in flat arenas (src/optim/arena.ts): the update
// of every sparse layer is one dispatch.
import { flush } from "../gpu/context.ts";
import type { Module } from "../nn/module.ts";
import { MergedSparseLinear } from "../nn/merged-sparse-linear.ts";
import { SparseLinear } from "../nn/sparse-linear.ts";
import { copyInto } from "../ops/raw/copy.ts";
import { zerosLike } from "../ops/creation.ts";
import { keep, noGrad } from "../scope.ts";
import { Tensor as TensorClass, type Tensor } from "../tensor.ts";
import { ShapeError, ValueError, WebslopeError, fmtShape } from "../errors.ts";
import { checkNumber } from "../validate.ts";
import { checkAdamOptions } from "./validate.ts";
import { type AdamW, ArenaSet, adamwUpdate, StepCounts } from "./adamw.ts";
import type { GradScaler } from "./grad-scaler.ts";
import { clipBySumOfSquares, sumOfSquares } from "./clip.ts";

export interface SparseAdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /**
   * Recompute the double-pruned mask M_RC every this many steps (1 = every step, the accuracy
   * path's semantics and the default; 100 = the performance path's default in the reference).
   */
  maskChangeFreq?: number;
}

/** What stateDict() returns and loadStateDict() takes. */
export interface SparseAdamWState {
  step: number;
  tensors: Map<string, Tensor>;
  /** Each sparse layer's own step count (bias correction), in layer order. */
  layerSteps?: number[];
}

interface LayerState {
  m: Tensor;
  v: Tensor;
}

export class SparseAdamW {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  maskChangeFreq: number;
  /** Optimizer steps taken (the mask-refresh clock; under a GradScaler skipped steps count too). */
  stepCount = 0;
  /**
   * Mixed precision: when set, step() skips the update on the GPU when the scaler found an
   * overflow and otherwise multiplies the gradients by its 1/S · clip coefficient; each layer's
   * step count (bias correction) is then kept on the GPU, and stepOf() counts launches until
   * syncSteps() reads the true ones. W_RC^T is refreshed or re-pruned either way (from unchanged
   * values after a skipped step).
   */
  gradScaler: GradScaler | null = null;
  private readonly gpuSteps = new StepCounts();
  readonly layers: SparseLinear[];
  private readonly state = new Map<SparseLinear, LayerState>();
  /** Updates each layer has had: its own bias-correction step t, as the method keeps one per weight. */
  private readonly steps = new Map<SparseLinear, number>();
  private readonly arenas: ArenaSet;

  constructor(model: Module, opts: SparseAdamWOptions = {}) {
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.maskChangeFreq = opts.maskChangeFreq ?? 1;
    checkAdamOptions("SparseAdamW", this);
    checkNumber("SparseAdamW", "maskChangeFreq", this.maskChangeFreq, { integer: true, min: 1 });
    if (model.namedModules().some(([, m]) => m instanceof MergedSparseLinear)) {
      throw new WebslopeError("SparseAdamW: the model has layers merged for inference (mergeAdapters); a merged model cannot be trained");
    }
    this.layers = model.namedModules().map(([, m]) => m).filter((m): m is SparseLinear => m instanceof SparseLinear);
    if (this.layers.length === 0) {
      throw new ValueError("SparseAdamW", "the model has no sparse layers, so this optimizer would update nothing; call pruneModel(model) " +
        "first, or train a dense model with AdamW");
    }
    this.arenas = new ArenaSet("SparseAdamW", Infinity);
    this.arenas.add(this.layers.map((l) => l.sparseParam));
  }

  /** The sparse gradients (compressed, or masked-dense in the simulation) that exist now. */
  private grads(): Tensor[] {
    return this.layers.map((l) => l.sparseParam.grad).filter((g): g is Tensor => !!g);
  }

  /**
   * Clips sparse and dense gradients together to one global L2 norm ≤ maxNorm (the dense ones are
   * the parameters of `dense`). Returns the norm before clipping as a 0-d tensor (no readback).
   */
  clipGradNorm(maxNorm: number, dense?: AdamW): Tensor {
    checkNumber("SparseAdamW.clipGradNorm", "maxNorm", maxNorm, { above: 0 });
    return noGrad(() => {
      const denseGrads = dense ? dense.paramGroups.flatMap((g) => g.params).map((p) => p.grad).filter((g): g is Tensor => !!g) : [];
      const all = [...this.grads(), ...denseGrads];
      const ss = sumOfSquares(all);
      if (!ss) throw new ShapeError("SparseAdamW.clipGradNorm", "there are no gradients to clip; call backward() first");
      const norm = clipBySumOfSquares(all, ss, maxNorm);
      ss.dispose();
      return norm;
    });
  }

  /** One update of every sparse layer that has a gradient, then W_RC^T refresh or re-prune. Never waits. */
  step(): void {
    this.stepCount++;
    const t = this.stepCount;
    const o = { lr: this.lr, betas: this.betas, eps: this.eps, weightDecay: this.weightDecay };
    const reprune = t % this.maskChangeFreq === 0;
    const done = new Set<Tensor>();
    const layerOf = new Map(this.layers.map((l) => [l.sparseParam, l]));
    const sc = this.gradScaler;
    this.arenas.arenas.forEach((e, a) => {
      if (!e.grad.gradsInPlace()) return;
      // One dispatch for the arena only while its layers share one step count.
      const ts = new Set(e.grad.tensors.map((p) => this.steps.get(layerOf.get(p)!) ?? 0));
      if (ts.size !== 1) return;
      if (sc && e.grad.tensors.some((p) => this.gpuSteps.has(p))) return;
      const [m, v] = this.arenas.moments(a);
      const flat = e.grad.params.flat, t0 = [...ts][0]!;
      adamwUpdate(flat, e.grad.grads.flat, m.flat, v.flat, t0 + 1, o, "slope", sc && { scaler: sc, steps: this.gpuSteps.of(flat, t0) });
      for (const p of e.grad.tensors) done.add(p);
    });
    for (const layer of this.layers) {
      const p = layer.sparseParam;
      if (!p.grad) continue;
      const s = this.stateFor(layer);
      const lt = (this.steps.get(layer) ?? 0) + 1;
      this.steps.set(layer, lt);
      if (!done.has(p)) adamwUpdate(p, p.grad, s.m, s.v, lt, o, "slope", sc && { scaler: sc, steps: this.gpuSteps.of(p, lt - 1, this.arenas.flatOf(p)) });
      if (reprune) layer.repruneTranspose();
      else layer.refreshTranspose();
    }
    flush();
  }

  /** Under a GradScaler: reads the layers' GPU step counts back into stepOf() / stateDict(). */
  async syncSteps(): Promise<void> {
    const counts = await this.gpuSteps.read();
    for (const l of this.layers) {
      const p = l.sparseParam;
      const n = counts.get(p) ?? counts.get(this.arenas.flatOf(p)!);
      if (n !== undefined) this.steps.set(l, n);
    }
  }

  zeroGrad(): void {
    for (const l of this.layers) { const p = l.sparseParam; p.grad?.dispose(); p.grad = null; }
  }

  private stateFor(layer: SparseLinear): LayerState {
    let s = this.state.get(layer);
    if (!s) {
      const p = layer.sparseParam;
      const mv = this.arenas.momentViews(p);
      s = mv ? { m: mv[0], v: mv[1] } : { m: keep(zerosLike(p)), v: keep(zerosLike(p)) };
      this.state.set(layer, s);
    }
    return s;
  }

  /** The moments of a layer (undefined before its first step). */
  stateOf(layer: SparseLinear): Readonly<LayerState> | undefined {
    return this.state.get(layer);
  }

  /** The updates `layer` has had (its bias-correction step). */
  stepOf(layer: SparseLinear): number {
    return this.steps.get(layer) ?? 0;
  }

  /**
   * Name → tensor of the optimizer state (moments per layer index), the step count, and each
   * layer's own step count (`layerSteps[i]`).
   */
  stateDict(): SparseAdamWState {
    const tensors = new Map<string, Tensor>();
    this.layers.forEach((l, i) => {
      const s = this.state.get(l);
      if (s) { tensors.set(`${i}.m`, s.m); tensors.set(`${i}.v`, s.v); }
    });
    return { step: this.stepCount, tensors, layerSteps: this.layers.map((l) => this.stepOf(l)) };
  }

  /**
   * Restores a stateDict(): validates everything first (step counts, every tensor's key, shape,
   * dtype and liveness) and changes nothing when anything is wrong. Without `layerSteps` (an
   * older state) each layer with moments takes `step`.
   */
  loadStateDict(sd: SparseAdamWState): void {
    const op = "SparseAdamW.loadStateDict";
    if (typeof sd !== "object" || sd === null || !(sd.tensors instanceof Map)) {
      throw new ValueError(op, `expects { step, tensors: Map, layerSteps? } as returned by stateDict(), got ${sd === null ? "null" : typeof sd === "object" ? `an object with keys [${Object.keys(sd).join(", ")}]` : typeof sd}`);
    }
    checkNumber(op, "step", sd.step, { integer: true, min: 0 });
    if (sd.layerSteps !== undefined && (!Array.isArray(sd.layerSteps) || sd.layerSteps.length !== this.layers.length)) {
      throw new ValueError(op, `layerSteps must list one step count per sparse layer (${this.layers.length}), got ${JSON.stringify(sd.layerSteps)}`);
    }
    sd.layerSteps?.forEach((n, i) => checkNumber(op, `layerSteps[${i}]`, n, { integer: true, min: 0 }));
    const problems: string[] = [];
    const plan: [SparseLinear, Tensor, Tensor][] = [];
    const known = new Set<string>();
    this.layers.forEach((l, i) => {
      known.add(`${i}.m`); known.add(`${i}.v`);
      const m = sd.tensors.get(`${i}.m`), v = sd.tensors.get(`${i}.v`);
      if (!m && !v) return;
      const want = l.sparseParam.shape;
      for (const [k, t] of [["m", m], ["v", v]] as const) {
        if (!t || !(t instanceof TensorClass) || t.shape.join() !== want.join() || t.dtype !== "f32") {
          problems.push(`layer ${i} ${k}: expected f32 ${fmtShape(want)}, got ${t instanceof TensorClass ? `${t.dtype} ${fmtShape(t.shape)}` : t ? String(t) : "nothing"}`);
        } else if (t.isDisposed) problems.push(`layer ${i} ${k} was disposed`);
      }
      if (m && v) plan.push([l, m, v]);
    });
    for (const k of sd.tensors.keys()) if (!known.has(k)) problems.push(`unexpected key ${JSON.stringify(k)}`);
    if (problems.length) throw new ShapeError(op, `${problems.join("; ")}; nothing was changed`);
    noGrad(() => {
      for (const [l, m, v] of plan) {
        const s = this.stateFor(l);
        copyInto(s.m, m);
        copyInto(s.v, v);
      }
    });
    this.stepCount = sd.step;
    this.layers.forEach((l, i) => {
      const n = sd.layerSteps?.[i] ?? (this.state.has(l) ? sd.step : 0);
      if (n) this.steps.set(l, n); else this.steps.delete(l);
    });
    this.gpuSteps.clear(); // made again from the restored steps
  }

  dispose(): void {
    for (const s of this.state.values()) { s.m.dispose(); s.v.dispose(); }
    this.state.clear();
    this.gpuSteps.clear();
    this.arenas.dispose();
  }
}
