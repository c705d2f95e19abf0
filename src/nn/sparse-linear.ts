// SparseLinear: SLoPe's linear layer. With `compress: true` it stores W as a 2:4 (N:M) Sparse24
// plus the double-pruned transpose W_RC^T, and runs sparseLinear (spmm forward, spmm through
// W_RC^T for dX, sddmm for the compressed dW). With `compress: false` it is the masked-dense
// simulation (dense W_R with static mask M_R and dynamic mask M_RC): the tests' oracle.
// A LowRankAdapter can be attached (addAdapter) and, for inference, merged (merge): one
// compressed [W; Lᵀ] spmm with the bias in its epilogue, then the fused C += (1/r)·A·R kernel.
import type { Activation } from "../autograd/ops.ts";
import { AutogradError, ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { zeros } from "../ops/creation.ts";
import { concat } from "../ops/layout.ts";
import { isGradEnabled, keep, noGrad } from "../scope.ts";
import { lowRankAdd } from "../sparse/lowrank-add.ts";
import { spmm } from "../sparse/spmm.ts";
import { type AdapterRank, LowRankAdapter, resolveRank } from "./lowrank-adapter.ts";
import { gelu, relu } from "../ops/elementwise.ts";
import { maskOf } from "../sparse/mask.ts";
import { permuteRaw } from "../ops/raw/copy.ts";
import { compress24, decompress24, type Pattern, Sparse24 } from "../sparse/sparse24.ts";
import { doublePrune, refreshTranspose, repruneTranspose } from "../sparse/double-prune.ts";
import { sparseLinear } from "../sparse/ops.ts";
import { maskedLinear } from "../sparse/masked-linear.ts";
import type { Tensor } from "../tensor.ts";
import type { Linear, LinearLike } from "./layers.ts";
import { Module, sparseParams } from "./module.ts";

export interface SparseLinearOptions {
  /** true: compressed storage and sparse kernels; false: masked-dense simulation (the oracle). Default true. */
  compress?: boolean;
  /** N:M pattern along d_in, default "2:4". */
  pattern?: Pattern;
}

export class SparseLinear extends Module implements LinearLike {
  readonly compress: boolean;
  readonly pattern: Pattern;
  activation: Activation;
  bias: Tensor | null;
  /** compress: true — W_R compressed (values are the trainable parameter) and W_RC^T. */
  w: Sparse24 | null = null;
  wT: Sparse24 | null = null;
  /** compress: false — dense W_R (pruned entries 0) and its masks. */
  weight: Tensor | null = null;
  maskR: Tensor | null = null;
  maskRC: Tensor | null = null;
  /** The lazy low-rank adapter, once added. */
  adapter: LowRankAdapter | null = null;
  /** Merged for inference: [W; Lᵀ] compressed, R/r, and the bias padded with r zeros. */
  merged: { s: Sparse24; rs: Tensor; bias: Tensor; rank: number } | null = null;

  /** Prunes a dense [out, in] weight. The weight tensor is read, not kept. */
  constructor(readonly inFeatures: number, readonly outFeatures: number, weight: Tensor, bias: Tensor | null, opts: SparseLinearOptions & { activation?: Activation } = {}) {
    super();
    if (weight.shape.join() !== [outFeatures, inFeatures].join()) {
      throw new ShapeError("SparseLinear", `weight ${fmtShape(weight.shape)} must be [${outFeatures}, ${inFeatures}]`);
    }
    this.compress = opts.compress ?? true;
    this.pattern = opts.pattern ?? "2:4";
    this.activation = opts.activation ?? "none";
    this.bias = bias ? this.param("bias", bias) : null;
    noGrad(() => {
      const w = compress24(weight, { pattern: this.pattern });
      const wT = doublePrune(w);
      if (this.compress) {
        this.w = keep(w);
        this.wT = keep(wT);
        this.param("weight.values", w.values);
        sparseParams.add(w.values);
        this.buffer("weight.meta", w.meta);
        this.buffer("weightT.values", wT.values);
        this.buffer("weightT.meta", wT.meta);
      } else {
        this.weight = this.param("weight", decompress24(w));
        sparseParams.add(this.weight);
        this.maskR = this.buffer("maskR", maskOf(w));
        this.setMaskRC(wT);
        w.dispose();
        wT.dispose();
      }
    });
  }

  /** Replaces a dense Linear (its weight is pruned; its bias is reused). */
  static fromLinear(lin: Linear, opts: SparseLinearOptions = {}): SparseLinear {
    return new SparseLinear(lin.inFeatures, lin.outFeatures, lin.weight, lin.bias, { ...opts, activation: lin.activation });
  }

  private setMaskRC(wT: Sparse24): void {
    const mT = maskOf(wT);
    const m = permuteRaw("SparseLinear", mT, [1, 0]);
    mT.dispose();
    this.maskRC?.dispose();
    this.maskRC = this.buffer("maskRC", m);
  }

  /** The tensor SparseAdamW updates: the compressed values, or the dense W_R in the simulation. */
  get sparseParam(): Tensor {
    if (this.merged) throw new WebslopeError("SparseLinear: the layer is merged for inference and has no trainable sparse weight");
    return this.compress ? this.w!.values : this.weight!;
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) {
      throw new ShapeError("SparseLinear", `input ${fmtShape(x.shape)} must end in inFeatures=${this.inFeatures}`);
    }
    let y: Tensor;
    if (this.merged) {
      if (isGradEnabled() && this.training) {
        throw new AutogradError("SparseLinear: this layer was merged for inference (mergeAdapters); it cannot be trained. " +
          "Call model.eval() or run it under noGrad(); train the unmerged model instead");
      }
      y = this.mergedForward(x);
    } else {
      y = this.compress
        ? sparseLinear(x, this.w!, this.wT!, this.bias)
        : maskedLinear(x, this.weight!, this.maskR!, this.maskRC!, this.bias);
      if (this.adapter) {
        const a = this.adapter.forward(x);
        const sum = y.add(a);
        y.dispose(); a.dispose();
        y = sum;
      }
    }
    if (this.activation === "none") return y;
    const a = this.activation === "gelu" ? gelu(y) : relu(y);
    y.dispose();
    return a;
  }

  /** After W's values changed: W_RC^T's values regathered at its fixed positions (the simulation's mask needs nothing). */
  refreshTranspose(): void {
    if (this.compress) refreshTranspose(this.w!, this.wT!);
  }

  /** A mask change: M_RC recomputed by magnitude from the current W_R. */
  repruneTranspose(): void {
    if (this.compress) { repruneTranspose(this.w!, this.wT!); return; }
    noGrad(() => {
      const w = compress24(this.weight!, { pattern: this.pattern });
      const wT = doublePrune(w);
      this.setMaskRC(wT);
      w.dispose(); wT.dispose();
    });
  }

  /** Attaches a LowRankAdapter (R = 0: the output is unchanged). Returns its parameters [L, R]. */
  addAdapter(rank: AdapterRank, opts: { seed?: number } = {}): Tensor[] {
    if (this.merged) throw new WebslopeError("SparseLinear.addAdapter: the layer is merged for inference");
    if (this.adapter) throw new WebslopeError("SparseLinear.addAdapter: the layer already has an adapter");
    const r = resolveRank("addAdapter", this.inFeatures, this.outFeatures, rank);
    this.adapter = this.module("adapter", new LowRankAdapter(this.inFeatures, this.outFeatures, r, { seed: opts.seed, pattern: this.pattern }));
    return [this.adapter.L, this.adapter.R];
  }

  /**
   * Merges the adapter for inference: one compressed [W; Lᵀ] of d_out + r rows (Lᵀ is already N:M
   * along d_in, so this is exactly the trained layer), R pre-scaled by 1/r, the bias padded for the
   * spmm epilogue. Frees W_RC^T and the unmerged tensors. The layer can no longer be trained.
   */
  merge(): void {
    if (this.merged) throw new WebslopeError("SparseLinear.merge: the layer is already merged (mergeAdapters was called twice)");
    if (!this.compress) throw new WebslopeError("SparseLinear.merge: merging needs compressed storage; the masked-dense simulation (compress: false) is a training oracle");
    if (!this.adapter) throw new WebslopeError("SparseLinear.merge: the layer has no adapter; call addAdapter first");
    const a = this.adapter;
    this.merged = noGrad(() => buildMerged(this.w!.values, this.w!.meta, this.outFeatures, this.inFeatures, this.pattern, a.L, a.R, this.bias));
    for (const name of ["weight.values", "weight.meta", "weightT.values", "weightT.meta", "bias", "adapter"]) this.unregister(name);
    this.bias?.dispose();
    this.w!.dispose(); this.wT!.dispose(); a.dispose();
    this.w = this.wT = null; this.adapter = null; this.bias = null;
    this.registerMerged();
    this.eval();
  }

  private registerMerged(): void {
    const m = this.merged!;
    keep(m.s);
    this.buffer("merged.values", m.s.values);
    this.buffer("merged.meta", m.s.meta);
    this.buffer("merged.rs", m.rs);
    this.buffer("merged.bias", m.bias);
  }

  private mergedForward(x: Tensor): Tensor {
    const m = this.merged!;
    const y = spmm(x.reshape([-1, this.inFeatures]), m.s, m.bias);
    const out = lowRankAdd(y, m.rs);
    y.dispose();
    const r = out.reshape([...x.shape.slice(0, -1), this.outFeatures]);
    out.dispose();
    return r;
  }

  /** A merged layer reads the unmerged form (weight.values, weight.meta, bias, adapter.L/R) and merges it. */
  protected override convertState(prefix: string, state: ReadonlyMap<string, Tensor>) {
    if (!this.merged || state.has(`${prefix}merged.values`)) return null;
    const k = (n: string) => `${prefix}${n}`;
    const vals = state.get(k("weight.values")), meta = state.get(k("weight.meta"));
    const L = state.get(k("adapter.L")), R = state.get(k("adapter.R")), bias = state.get(k("bias")) ?? null;
    if (!vals || !meta || !L || !R) return null;
    const want = [[vals, this.merged.s.values.shape[1]!, this.outFeatures], [L, this.merged.rank, this.inFeatures], [R, this.outFeatures, this.merged.rank]] as const;
    for (const [t, cols, rows] of want) {
      if (t.ndim !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
        throw new ShapeError("loadStateDict", `${prefix}: saved tensor ${fmtShape(t.shape)} does not fit this merged layer ` +
          `([${this.outFeatures}, ${this.inFeatures}], rank ${this.merged.rank})`);
      }
    }
    const b = buildMerged(vals, meta, this.outFeatures, this.inFeatures, this.pattern, L, R, bias);
    const tensors = new Map([[k("merged.values"), b.s.values], [k("merged.meta"), b.s.meta], [k("merged.rs"), b.rs], [k("merged.bias"), b.bias]]);
    const consumed = ["weight.values", "weight.meta", "weightT.values", "weightT.meta", "bias", "adapter.L", "adapter.R", "adapter.maskL"].map(k);
    return { tensors, consumed };
  }

  /** Dense M_R⊙W (a new tensor), for inspection and export. */
  denseWeight(): Tensor {
    if (this.merged) throw new WebslopeError("SparseLinear.denseWeight: the layer is merged; W is stored inside [W; Lᵀ]");
    return this.compress ? decompress24(this.w!) : this.weight!.mul(1);
  }
}

/** [W; Lᵀ] compressed as one Sparse24 of d_out + r rows, R/r, and [bias; 0]. */
function buildMerged(values: Tensor, meta: Tensor, dOut: number, dIn: number, pattern: Pattern, L: Tensor, R: Tensor, bias: Tensor | null) {
  const r = L.shape[1]!;
  const lt = permuteRaw("mergeAdapters", L, [1, 0]);
  const sl = compress24(lt, { pattern });
  const s = new Sparse24(concat([values, sl.values], 0), concat([meta, sl.meta], 0), dOut + r, dIn, pattern);
  const zr = zeros([r]), zb = bias ? null : zeros([dOut]);
  const out = { s, rs: R.mul(1 / r), bias: concat([bias ?? zb!, zr], 0), rank: r };
  lt.dispose(); sl.dispose(); zr.dispose(); zb?.dispose();
  return out;
}
