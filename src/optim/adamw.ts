// AdamW (torch.optim.AdamW semantics) over parameter groups. Each group's parameters move into
// flat arenas (src/optim/arena.ts) with their gradients and moments, so a step is one fused
// dispatch per arena (one per group unless a group outgrows a binding); a parameter without a
// fresh gradient in its slot is updated on its own. lr and weightDecay are plain fields,
// settable every step; addParamGroup() adds parameters later (lazy adapters) without touching
// existing state.
import { flush, gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { zerosLike } from "../ops/creation.ts";
import { checkLive, grid1d } from "../ops/util.ts";
import { keep } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { ADAMW_WORKGROUP, adamwKernel } from "../../shaders/adamw.wgsl.ts";
import { DTypeError, ShapeError, ValueError, fmtShape } from "../errors.ts";
import { copyInto } from "../ops/raw/copy.ts";
import { checkAdamOptions } from "./validate.ts";
import { FlatArena, GradArena, planArenas } from "./arena.ts";
import { type GradScaler, GpuStepCount } from "./grad-scaler.ts";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export interface ParamGroup extends Required<AdamWOptions> {
  params: Tensor[];
}

/**
 * torch.optim.AdamW's state_dict: per-parameter state by index (parameters numbered across the
 * groups in order) and the groups' hyperparameters with their parameter indices. Tensors are the
 * optimizer's own (shared, not copied).
 */
export interface AdamWStateDict {
  state: Map<number, { step: number; expAvg: Tensor; expAvgSq: Tensor }>;
  paramGroups: (Required<AdamWOptions> & { params: number[] })[];
}

interface ParamState {
  step: number;
  m: Tensor;
  v: Tensor;
}

/**
 * Launches one fused AdamW update of `param` from `grad` (shared with SparseAdamW). With `amp`
 * (mixed precision) the kernel takes the skip flag and gradient multiplier from the scaler and
 * the step count from `amp.steps` on the GPU; `step` is then unused.
 */
export function adamwUpdate(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: number, o: Required<AdamWOptions>, epsForm: "torch" | "slope",
  amp: { scaler: GradScaler; steps: GpuStepCount } | null = null): void {
  const [b1, b2] = o.betas;
  const bufs = [param.buffer("AdamW"), grad.buffer("AdamW"), m.buffer("AdamW"), v.buffer("AdamW")];
  const head = [param.size, f32bits(o.lr), f32bits(b1), f32bits(b2), f32bits(o.eps), f32bits(o.weightDecay)];
  if (amp) {
    const { buffers, slot } = amp.steps.launchArgs(amp.scaler);
    gpu().launcher.dispatch(adamwKernel(epsForm, true), [...bufs, ...buffers], grid1d(param.size, ADAMW_WORKGROUP),
      [...head, f32bits(Math.log(b1)), f32bits(Math.log(b2)), slot]);
    return;
  }
  gpu().launcher.dispatch(adamwKernel(epsForm), bufs, grid1d(param.size, ADAMW_WORKGROUP), [...head, f32bits(1 - b1 ** step), f32bits(1 - b2 ** step)]);
}

/**
 * The GPU step counts of an optimizer under a GradScaler, one per dispatch target (an arena's
 * flat parameters, or a parameter updated on its own). A parameter updated on its own takes a
 * copy of its arena's count and keeps it (its arena no longer fuses).
 */
export class StepCounts {
  readonly counts = new Map<Tensor, GpuStepCount>();

  /** The count of `key`, made from `initial` (or a copy of `from`'s) on first use. */
  of(key: Tensor, initial: number, from?: Tensor): GpuStepCount {
    let c = this.counts.get(key);
    if (!c) {
      const src = from && this.counts.get(from);
      c = src ? src.clone() : new GpuStepCount(initial);
      this.counts.set(key, c);
    }
    return c;
  }

  has(key: Tensor): boolean {
    return this.counts.has(key);
  }

  /** Reads every count back: key → true step count. */
  async read(): Promise<Map<Tensor, number>> {
    const keys = [...this.counts.keys()];
    const vals = await Promise.all(keys.map((k) => this.counts.get(k)!.read()));
    return new Map(keys.map((k, i) => [k, vals[i]!]));
  }

  clear(): void {
    for (const c of this.counts.values()) c.dispose();
    this.counts.clear();
  }
}

/**
 * Parameters gathered into gradient arenas with lazily made moment arenas: the shared machinery
 * of AdamW and SparseAdamW. `fused` updates one arena in one dispatch when every tensor of it
 * has its gradient in its slot and the same step count; the rest is left to the caller.
 */
export class ArenaSet {
  readonly arenas: { grad: GradArena; m: FlatArena | null; v: FlatArena | null }[] = [];
  private readonly where = new Map<Tensor, { a: number; i: number }>();

  constructor(private readonly op: string, private readonly maxBytes: number) {}

  /** Moves `tensors` (f32, requiring grad, not yet in any arena) into new arenas. */
  add(tensors: readonly Tensor[]): void {
    // A frozen tensor stays out: it never has a gradient, and would keep its arena off the fused path.
    const free = tensors.filter((t) => t.requiresGrad && !t.gradSlot && !t.storage(this.op).parent);
    const limit = Math.min(this.maxBytes, gpu().limits.maxStorageBufferBindingSize);
    for (const { start, end, layout } of planArenas(free.map((t) => t.size), limit)) {
      const ts = free.slice(start, end);
      ts.forEach((t, i) => this.where.set(t, { a: this.arenas.length, i }));
      this.arenas.push({ grad: new GradArena(this.op, ts, layout), m: null, v: null });
    }
  }

  /** The moments of arena a, made (zeroed) on first use. */
  moments(a: number): [FlatArena, FlatArena] {
    const e = this.arenas[a]!;
    if (!e.m || !e.v) {
      const sizes = e.grad.tensors.map((t) => t.size);
      e.m = new FlatArena(this.op, e.grad.params.layout, sizes);
      e.v = new FlatArena(this.op, e.grad.params.layout, sizes);
    }
    return [e.m, e.v];
  }

  /** The flat parameters of `t`'s arena (the key of its fused dispatch), if it has one. */
  flatOf(t: Tensor): Tensor | undefined {
    const w = this.where.get(t);
    return w ? this.arenas[w.a]!.grad.params.flat : undefined;
  }

  /** Moments of one tensor: views of its arena's moments, or null when it has no arena. */
  momentViews(t: Tensor): [Tensor, Tensor] | null {
    const w = this.where.get(t);
    if (!w) return null;
    const [m, v] = this.moments(w.a);
    return [m.view(w.i, t.shape), v.view(w.i, t.shape)];
  }

  dispose(): void {
    for (const e of this.arenas) { e.grad.dispose(); e.m?.dispose(); e.v?.dispose(); }
    this.arenas.length = 0;
    this.where.clear();
  }
}

export class AdamW {
  readonly paramGroups: ParamGroup[] = [];
  readonly defaults: Required<AdamWOptions>;
  /**
   * Mixed precision: when set, step() skips the update on the GPU when the scaler found an
   * overflow and otherwise multiplies the gradients by its 1/S · clip coefficient; step counts
   * (bias correction) are then kept on the GPU and the host's `step` counts launches until
   * syncSteps() reads the true ones.
   */
  gradScaler: GradScaler | null = null;
  private readonly gpuSteps = new StepCounts();
  private readonly state = new Map<Tensor, ParamState>();
  private readonly arenas: ArenaSet;
  /** Arena indices of each group. */
  private readonly groupArenas: number[][] = [];

  /**
   * `arenaBytes` caps one flat arena (default and upper bound: the adapter's
   * maxStorageBufferBindingSize); a group larger than that takes one dispatch per arena.
   */
  constructor(params: Tensor[] | (AdamWOptions & { params: Tensor[] })[], opts: AdamWOptions & { arenaBytes?: number } = {}) {
    const { arenaBytes, ...o } = opts;
    this.defaults = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, ...o };
    this.arenas = new ArenaSet("AdamW", arenaBytes ?? Infinity);
    const groups = params.length && !("params" in (params[0] as object)) ? [{ params: params as Tensor[] }] : (params as (AdamWOptions & { params: Tensor[] })[]);
    for (const g of groups) this.addParamGroup(g);
  }

  /** The first group's learning rate; setting it sets every group's (what a scheduler does). */
  get lr(): number { return this.paramGroups[0]?.lr ?? this.defaults.lr; }
  set lr(v: number) { for (const g of this.paramGroups) g.lr = v; }

  /** Adds parameters (with their own options); existing state is kept. */
  addParamGroup(group: AdamWOptions & { params: Tensor[] }): void {
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    checkAdamOptions("AdamW", { ...this.defaults, ...group });
    if (!Array.isArray(group.params)) throw new ValueError("AdamW", `params must be an array of tensors, got ${typeof group.params}`);
    for (const p of group.params) {
      if (!(p instanceof Tensor)) throw new ValueError("AdamW", `params must be tensors, got ${String(p)}`);
      checkLive("AdamW", p);
      if (seen.has(p)) throw new ShapeError("AdamW", "a parameter appears in two groups");
      if (p.dtype !== "f32") throw new DTypeError("AdamW", `parameters must be f32 (master weights), got ${p.dtype}`);
    }
    this.paramGroups.push({ ...this.defaults, ...group, params: [...group.params] });
    const first = this.arenas.arenas.length;
    this.arenas.add(group.params);
    this.groupArenas.push(Array.from({ length: this.arenas.arenas.length - first }, (_, k) => first + k));
  }

  private stateFor(p: Tensor): ParamState {
    let s = this.state.get(p);
    if (!s) {
      const mv = this.arenas.momentViews(p);
      s = mv ? { step: 0, m: mv[0], v: mv[1] } : { step: 0, m: keep(zerosLike(p)), v: keep(zerosLike(p)) };
      this.state.set(p, s);
    }
    return s;
  }

  /**
   * Applies one update to every parameter that has a gradient: one dispatch per arena whose
   * parameters all have one (and equal step counts), one per parameter otherwise. Records GPU
   * work and submits it; never waits.
   */
  step(): void {
    const sc = this.gradScaler;
    this.paramGroups.forEach((group, gi) => {
      const done = new Set<Tensor>();
      for (const a of this.groupArenas[gi]!) {
        const e = this.arenas.arenas[a]!;
        if (!e.grad.gradsInPlace()) continue;
        const states = e.grad.tensors.map((p) => this.stateFor(p));
        if (states.some((s) => s.step !== states[0]!.step)) continue;
        if (sc && e.grad.tensors.some((p) => this.gpuSteps.has(p))) continue;
        for (const s of states) s.step++;
        const [m, v] = this.arenas.moments(a);
        const flat = e.grad.params.flat;
        adamwUpdate(flat, e.grad.grads.flat, m.flat, v.flat, states[0]!.step, group, "torch",
          sc && { scaler: sc, steps: this.gpuSteps.of(flat, states[0]!.step - 1) });
        for (const p of e.grad.tensors) done.add(p);
      }
      for (const p of group.params) {
        if (!p.grad || done.has(p)) continue;
        const s = this.stateFor(p);
        s.step++;
        adamwUpdate(p, p.grad, s.m, s.v, s.step, group, "torch", sc && { scaler: sc, steps: this.gpuSteps.of(p, s.step - 1, this.arenas.flatOf(p)) });
      }
    });
    flush();
  }

  /**
   * Under a GradScaler: reads the GPU step counts back into the host's (stateOf().step,
   * stateDict()), which until then count launches, skipped steps included. Checkpoints call it.
   */
  async syncSteps(): Promise<void> {
    const counts = await this.gpuSteps.read();
    for (const [p, s] of this.state) {
      const n = counts.get(p) ?? counts.get(this.arenas.flatOf(p)!);
      if (n !== undefined) s.step = n;
    }
  }

  /** Drops every gradient (set to none). */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) { p.grad?.dispose(); p.grad = null; }
  }

  /** The moments of a parameter (undefined before its first step). */
  stateOf(p: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(p);
  }

  /** The state dict (torch layout; see AdamWStateDict). */
  stateDict(): AdamWStateDict {
    const state: AdamWStateDict["state"] = new Map();
    let i = 0;
    const paramGroups = this.paramGroups.map(({ params, ...h }) => ({
      ...h, betas: [...h.betas] as [number, number],
      params: params.map((p) => {
        const s = this.state.get(p);
        if (s) state.set(i, { step: s.step, expAvg: s.m, expAvgSq: s.v });
        return i++;
      }),
    }));
    return { state, paramGroups };
  }

  /**
   * Restores a stateDict() of an optimizer over parameters of the same shapes in the same groups.
   * Validates everything first and changes nothing on a mismatch.
   */
  loadStateDict(sd: AdamWStateDict): void {
    const flat = this.paramGroups.flatMap((g) => g.params);
    const problems: string[] = [];
    if (sd.paramGroups.length !== this.paramGroups.length) problems.push(`${sd.paramGroups.length} parameter groups, this optimizer has ${this.paramGroups.length}`);
    sd.paramGroups.forEach((g, gi) => {
      const n = this.paramGroups[gi]?.params.length;
      if (n !== undefined && g.params.length !== n) problems.push(`group ${gi} has ${g.params.length} parameters, this optimizer's has ${n}`);
    });
    for (const [i, s] of sd.state) {
      const p = flat[i];
      if (!p) { problems.push(`state for parameter ${i}, this optimizer has ${flat.length}`); continue; }
      for (const [k, t] of [["expAvg", s.expAvg], ["expAvgSq", s.expAvgSq]] as const) {
        if (t.shape.join() !== p.shape.join() || t.dtype !== "f32") problems.push(`parameter ${i} ${k}: expected ${fmtShape(p.shape)} f32, got ${fmtShape(t.shape)} ${t.dtype}`);
      }
      if (!Number.isInteger(s.step) || s.step < 0) problems.push(`parameter ${i}: step ${s.step} is not a non-negative integer`);
    }
    if (problems.length) throw new ShapeError("AdamW.loadStateDict", problems.join("; "));
    sd.paramGroups.forEach(({ params: _, ...h }, gi) => Object.assign(this.paramGroups[gi]!, h, { betas: [...h.betas] }));
    for (const [i, s] of sd.state) {
      const st = this.stateFor(flat[i]!);
      copyInto(st.m, s.expAvg);
      copyInto(st.v, s.expAvgSq);
      st.step = s.step;
    }
    this.gpuSteps.clear(); // made again from the restored steps
  }

  /** Frees the optimizer state; parameters stay where they are, gradients go back to new tensors. */
  dispose(): void {
    for (const s of this.state.values()) { s.m.dispose(); s.v.dispose(); }
    this.state.clear();
    this.gpuSteps.clear();
    this.arenas.dispose();
  }
}
