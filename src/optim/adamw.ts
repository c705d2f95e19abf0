// AdamW (torch.optim.AdamW semantics) over parameter groups, one fused kernel dispatch per
// parameter. lr and weightDecay are plain fields, settable every step; addParamGroup() adds
// parameters later (lazy adapters) without touching existing state.
import { flush, gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { zerosLike } from "../ops/creation.ts";
import { grid1d } from "../ops/util.ts";
import { keep } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { ADAMW_WORKGROUP, adamwKernel } from "../../shaders/adamw.wgsl.ts";
import { DTypeError, ShapeError } from "../errors.ts";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export interface ParamGroup extends Required<AdamWOptions> {
  params: Tensor[];
}

interface ParamState {
  step: number;
  m: Tensor;
  v: Tensor;
}

/** Launches one fused AdamW update of `param` from `grad` (shared with SparseAdamW). */
export function adamwUpdate(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: number, o: Required<AdamWOptions>, epsForm: "torch" | "slope"): void {
  const [b1, b2] = o.betas;
  gpu().launcher.dispatch(adamwKernel(epsForm), [param.buffer("AdamW"), grad.buffer("AdamW"), m.buffer("AdamW"), v.buffer("AdamW")],
    grid1d(param.size, ADAMW_WORKGROUP),
    [param.size, f32bits(o.lr), f32bits(b1), f32bits(b2), f32bits(o.eps), f32bits(o.weightDecay), f32bits(1 - b1 ** step), f32bits(1 - b2 ** step)]);
}

export class AdamW {
  readonly paramGroups: ParamGroup[] = [];
  readonly defaults: Required<AdamWOptions>;
  private readonly state = new Map<Tensor, ParamState>();

  constructor(params: Tensor[] | (AdamWOptions & { params: Tensor[] })[], opts: AdamWOptions = {}) {
    this.defaults = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, ...opts };
    const groups = params.length && !("params" in (params[0] as object)) ? [{ params: params as Tensor[] }] : (params as (AdamWOptions & { params: Tensor[] })[]);
    for (const g of groups) this.addParamGroup(g);
  }

  /** The first group's learning rate; setting it sets every group's (what a scheduler does). */
  get lr(): number { return this.paramGroups[0]?.lr ?? this.defaults.lr; }
  set lr(v: number) { for (const g of this.paramGroups) g.lr = v; }

  /** Adds parameters (with their own options); existing state is kept. */
  addParamGroup(group: AdamWOptions & { params: Tensor[] }): void {
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    for (const p of group.params) {
      if (seen.has(p)) throw new ShapeError("AdamW", "a parameter appears in two groups");
      if (p.dtype !== "f32") throw new DTypeError("AdamW", `parameters must be f32 (master weights), got ${p.dtype}`);
    }
    this.paramGroups.push({ ...this.defaults, ...group, params: [...group.params] });
  }

  /** Applies one update to every parameter that has a gradient. Records GPU work and submits it; never waits. */
  step(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (!p.grad) continue;
        let s = this.state.get(p);
        if (!s) {
          s = { step: 0, m: keep(zerosLike(p)), v: keep(zerosLike(p)) };
          this.state.set(p, s);
        }
        s.step++;
        adamwUpdate(p, p.grad, s.m, s.v, s.step, group, "torch");
      }
    }
    flush();
  }

  /** Drops every gradient (set to none). */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) { p.grad?.dispose(); p.grad = null; }
  }

  /** The moments of a parameter (undefined before its first step). */
  stateOf(p: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(p);
  }

  /** Frees the optimizer state. */
  dispose(): void {
    for (const s of this.state.values()) { s.m.dispose(); s.v.dispose(); }
    this.state.clear();
  }
}
