// SparseAdamW: SLoPe's optimizer for the sparse layers (SLOPE.md §4). f32 moments exist only for
// kept values (same layout as the compressed values, so a mask change never moves state);
// decoupled weight decay first, then the bias-corrected step in the "old PyTorch Adam" eps form
//   w ← w − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + eps)
// (eps added to √v before bias correction = AdamW with eps scaled by 1/√(1−β₂ᵗ)). After each
// step W_RC^T's values are refreshed from W; every maskChangeFreq steps its mask is recomputed.
// The layers' values, gradients and moments live in flat arenas (src/optim/arena.ts): the update
// of every sparse layer is one dispatch.
import { flush } from "../gpu/context.ts";
import type { Module } from "../nn/module.ts";
import { SparseLinear } from "../nn/sparse-linear.ts";
import { copyInto } from "../ops/raw/copy.ts";
import { zerosLike } from "../ops/creation.ts";
import { keep, noGrad } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { type AdamW, ArenaSet, adamwUpdate } from "./adamw.ts";
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
  /** Optimizer steps taken. */
  stepCount = 0;
  readonly layers: SparseLinear[];
  private readonly state = new Map<SparseLinear, LayerState>();
  private readonly arenas: ArenaSet;

  constructor(model: Module, opts: SparseAdamWOptions = {}) {
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.maskChangeFreq = opts.maskChangeFreq ?? 1;
    if (!Number.isInteger(this.maskChangeFreq) || this.maskChangeFreq < 1) {
      throw new RangeError(`SparseAdamW: maskChangeFreq must be an integer ≥ 1, got ${opts.maskChangeFreq}`);
    }
    this.layers = model.namedModules().map(([, m]) => m).filter((m): m is SparseLinear => m instanceof SparseLinear);
    if (this.layers.some((l) => l.merged)) {
      throw new WebslopeError("SparseAdamW: the model has layers merged for inference (mergeAdapters); a merged model cannot be trained");
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
    this.arenas.arenas.forEach((e, a) => {
      if (!e.grad.gradsInPlace()) return;
      const [m, v] = this.arenas.moments(a);
      adamwUpdate(e.grad.params.flat, e.grad.grads.flat, m.flat, v.flat, t, o, "slope");
      for (const p of e.grad.tensors) done.add(p);
    });
    for (const layer of this.layers) {
      const p = layer.sparseParam;
      if (!p.grad) continue;
      const s = this.stateFor(layer);
      if (!done.has(p)) adamwUpdate(p, p.grad, s.m, s.v, t, o, "slope");
      if (reprune) layer.repruneTranspose();
      else layer.refreshTranspose();
    }
    flush();
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

  /** Name → tensor of the optimizer state (moments per layer index), plus the step count. */
  stateDict(): { step: number; tensors: Map<string, Tensor> } {
    const tensors = new Map<string, Tensor>();
    this.layers.forEach((l, i) => {
      const s = this.state.get(l);
      if (s) { tensors.set(`${i}.m`, s.m); tensors.set(`${i}.v`, s.v); }
    });
    return { step: this.stepCount, tensors };
  }

  /** Restores a stateDict(): validates every shape first and changes nothing on a mismatch. */
  loadStateDict(sd: { step: number; tensors: Map<string, Tensor> }): void {
    const problems: string[] = [];
    const plan: [SparseLinear, Tensor, Tensor][] = [];
    this.layers.forEach((l, i) => {
      const m = sd.tensors.get(`${i}.m`), v = sd.tensors.get(`${i}.v`);
      if (!m && !v) return;
      const want = l.sparseParam.shape;
      for (const [k, t] of [["m", m], ["v", v]] as const) {
        if (!t || t.shape.join() !== want.join()) problems.push(`layer ${i} ${k}: expected ${fmtShape(want)}, got ${t ? fmtShape(t.shape) : "nothing"}`);
      }
      if (m && v) plan.push([l, m, v]);
    });
    if (problems.length) throw new ShapeError("SparseAdamW.loadStateDict", problems.join("; "));
    noGrad(() => {
      for (const [l, m, v] of plan) {
        const s = this.stateFor(l);
        copyInto(s.m, m);
        copyInto(s.v, v);
      }
    });
    this.stepCount = sd.step;
  }

  dispose(): void {
    for (const s of this.state.values()) { s.m.dispose(); s.v.dispose(); }
    this.state.clear();
    this.arenas.dispose();
  }
}
