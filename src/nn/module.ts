// Module: the PyTorch-style container of parameters and submodules. Named parameters give the
// state-dict keys ("blocks.0.attn.qkv.weight"); setModule swaps a child in place, which is how
// pruneModel turns Linear layers into SparseLinear ones.
import { keep, noGrad } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { ShapeError, ValueError, fmtShape } from "../errors.ts";
import { copyInto } from "../ops/raw/copy.ts";

/** Parameters owned by sparse layers (SparseAdamW updates them; denseParameters() leaves them out). */
export const sparseParams = new WeakSet<Tensor>();

export abstract class Module {
  training = true;
  private readonly _params = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, Tensor>();
  private readonly _children = new Map<string, Module>();

  /** Registers a trainable tensor under `name` (it outlives tidy scopes and requires grad). */
  protected param(name: string, t: Tensor): Tensor {
    keep(t);
    t.requiresGrad_(true);
    this._params.set(name, t);
    return t;
  }

  /** Registers (or replaces) non-trainable state saved with the model (torch register_buffer): masks, metadata. */
  protected buffer(name: string, t: Tensor): Tensor {
    keep(t);
    this._buffers.set(name, t);
    return t;
  }

  /** Removes a registered parameter, buffer or child (it is not disposed). */
  protected unregister(name: string): void {
    this._params.delete(name);
    this._buffers.delete(name);
    this._children.delete(name);
  }

  /**
   * Hook for modules whose stored form differs from a saved one (a merged SparseLinear reading an
   * unmerged state): given the whole state and this module's key prefix ("blocks.0.mlp.fc1."),
   * returns tensors for its own keys and the saved keys they replace, or null to use the state
   * as it is. Returned tensors are temporaries that loadStateDict disposes.
   */
  protected convertState(_prefix: string, _state: ReadonlyMap<string, Tensor>): { tensors: Map<string, Tensor>; consumed: string[] } | null {
    return null;
  }

  /** Registers a child module under `name`. */
  protected module<M extends Module>(name: string, m: M): M {
    this._children.set(name, m);
    return m;
  }

  /** Replaces the child `name` (also the property of that name, when there is one). */
  setModule(name: string, m: Module): void {
    if (!this._children.has(name)) {
      throw new ValueError("setModule", `${this.constructor.name} has no submodule "${name}"; its children are ${[...this._children.keys()].map((k) => `"${k}"`).join(", ") || "none"}`);
    }
    this._children.set(name, m);
    const self = this as unknown as Record<string, unknown>;
    if (name in self) self[name] = m;
  }

  /** Replaces a registered parameter tensor (the old one is not disposed). */
  protected setParam(name: string, t: Tensor): void {
    keep(t);
    this._params.set(name, t);
    const self = this as unknown as Record<string, unknown>;
    if (name in self) self[name] = t;
  }

  /** Direct children, by name. */
  namedChildren(): [string, Module][] {
    return [...this._children.entries()];
  }

  /** Every module in the tree (this one first), with dotted names. */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this._children) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter in the tree with its dotted name, no duplicates (tied weights appear once). */
  namedParameters(prefix = ""): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [mname, m] of this.namedModules(prefix)) {
      for (const [p, t] of m._params) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([mname ? `${mname}.${p}` : p, t]);
      }
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters a dense optimizer should update: all but the sparse layers' (SparseAdamW owns those). */
  denseParameters(): Tensor[] {
    return this.parameters().filter((t) => !sparseParams.has(t));
  }

  /** Every buffer in the tree with its dotted name. */
  namedBuffers(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [mname, m] of this.namedModules(prefix)) for (const [b, t] of m._buffers) out.push([mname ? `${mname}.${b}` : b, t]);
    return out;
  }

  /** Parameter count. */
  numParameters(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Drops every parameter's gradient (PyTorch zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.parameters()) { p.grad?.dispose(); p.grad = null; }
  }

  /** Name → tensor of every parameter and buffer. Tensors are shared, not copied. */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /**
   * Copies tensors into the parameters of the same names. Validates everything first: on any
   * missing key or shape mismatch it throws and changes nothing.
   */
  loadStateDict(input: ReadonlyMap<string, Tensor>, { strict = true } = {}): void {
    if (!(input instanceof Map)) throw new ValueError("loadStateDict", `expects a Map of name → Tensor (as stateDict() returns), got ${input === null ? "null" : typeof input}`);
    const state = new Map(input);
    const temporaries: Tensor[] = [];
    try {
      noGrad(() => {
        for (const [name, m] of this.namedModules()) {
          const conv = m.convertState(name ? `${name}.` : "", state);
          if (!conv) continue;
          for (const k of conv.consumed) state.delete(k);
          for (const [k, t] of conv.tensors) { state.set(k, t); temporaries.push(t); }
        }
      });
      this.loadOwn(state, strict);
    } finally {
      for (const t of temporaries) t.dispose();
    }
  }

  private loadOwn(state: Map<string, Tensor>, strict: boolean): void {
    const own = this.stateDict();
    const problems: string[] = [];
    for (const [k, t] of own) {
      const s = state.get(k);
      if (!s) { if (strict) problems.push(`missing "${k}"`); continue; }
      if (!(s instanceof Tensor)) { problems.push(`"${k}": expected a Tensor, got ${String(s)}`); continue; }
      if (s.isDisposed) { problems.push(`"${k}" was disposed`); continue; }
      if (s.shape.join() !== t.shape.join() || s.dtype !== t.dtype) {
        problems.push(`"${k}": expected ${fmtShape(t.shape)} ${t.dtype}, got ${fmtShape(s.shape)} ${s.dtype}`);
      }
    }
    if (strict) for (const k of state.keys()) if (!own.has(k)) problems.push(`unexpected "${k}"`);
    if (problems.length) throw new ShapeError("loadStateDict", `${problems.join("; ")}; nothing was loaded`);
    noGrad(() => { for (const [k, t] of own) { const s = state.get(k); if (s) copyInto(t, s); } });
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const p of this.parameters()) { p.grad?.dispose(); p.dispose(); }
    for (const [, b] of this.namedBuffers()) b.dispose();
  }
}
