// MergedSparseLinear: the inference form of a SparseLinear with a lazy low-rank adapter, and the
// merge that builds it (docs/slope.md §5): one compressed [W; Lᵀ] of d_out + r rows (Lᵀ is already
// N:M along d_in, so this is exactly the trained layer), R pre-scaled by 1/r and the bias padded
// with r zeros for the spmm epilogue. Forward: mergedLinear (src/sparse/merged-linear.ts), one
// fused dispatch at decode sizes, else spmm over [W; Lᵀ] with the bias in its epilogue and the
// fused C += A·(R/r) kernel (src/sparse/lowrank-add.ts). mergeAdapters swaps one in for
// each adapted SparseLinear, as pruneModel swaps SparseLinear in for Linear. Inference only.
import type { Activation } from "../autograd/ops.ts";
import { AutogradError, ShapeError, ValueError, fmtShape } from "../errors.ts";
import { zeros } from "../ops/creation.ts";
import { concat } from "../ops/layout.ts";
import { permuteRaw } from "../ops/raw/copy.ts";
import { isGradEnabled, keep, noGrad } from "../scope.ts";
import { mergedLinear } from "../sparse/merged-linear.ts";
import { compress24, type Pattern, Sparse24 } from "../sparse/sparse24.ts";
import type { Tensor } from "../tensor.ts";
import type { LinearLike } from "./layers.ts";
import { Module } from "./module.ts";
import type { SparseLinear } from "./sparse-linear.ts";

/** The merged storage: [W; Lᵀ] compressed, R/r, [bias; 0] and the rank r. */
export interface MergedWeights {
  s: Sparse24;
  rs: Tensor;
  bias: Tensor;
  rank: number;
}

/** [W; Lᵀ] compressed as one Sparse24 of d_out + r rows, R/r, and [bias; 0] (new tensors; no autograd). */
export function mergeWeights(values: Tensor, meta: Tensor, dOut: number, dIn: number, pattern: Pattern, L: Tensor, R: Tensor, bias: Tensor | null): MergedWeights {
  return noGrad(() => {
    const r = L.shape[1]!;
    const lt = permuteRaw("mergeAdapters", L, [1, 0]);
    const sl = compress24(lt, { pattern });
    const s = new Sparse24(concat([values, sl.values], 0), concat([meta, sl.meta], 0), dOut + r, dIn, pattern);
    const zr = zeros([r]), zb = bias ? null : zeros([dOut]);
    const out = { s, rs: R.mul(1 / r), bias: concat([bias ?? zb!, zr], 0), rank: r };
    lt.dispose(); sl.dispose(); zr.dispose(); zb?.dispose();
    return out;
  });
}

export class MergedSparseLinear extends Module implements LinearLike {
  readonly activation: Activation;
  /** The merged storage (state-dict keys merged.values, merged.meta, merged.rs, merged.bias). */
  readonly weights: MergedWeights;

  constructor(readonly inFeatures: number, readonly outFeatures: number, readonly pattern: Pattern, weights: MergedWeights, activation: Activation = "none") {
    super();
    this.activation = activation;
    this.weights = weights;
    keep(weights.s);
    this.buffer("merged.values", weights.s.values);
    this.buffer("merged.meta", weights.s.meta);
    this.buffer("merged.rs", weights.rs);
    this.buffer("merged.bias", weights.bias);
    this.eval();
  }

  /**
   * Merges an adapted, compressed SparseLinear and frees its unmerged tensors (W, W_RC^T, the
   * bias, the adapter). The result replaces it in its parent (mergeAdapters does that).
   */
  static fromAdapted(layer: SparseLinear): MergedSparseLinear {
    const op = "mergeAdapters";
    if (!layer.compress) throw new ValueError(op, "merging needs compressed storage; the masked-dense simulation (compress: false) is a training oracle");
    const a = layer.adapter;
    if (!a) throw new ValueError(op, "the layer has no adapter; call addAdapter first");
    const w = layer.w!;
    const weights = mergeWeights(w.values, w.meta, layer.outFeatures, layer.inFeatures, layer.pattern, a.L, a.R, layer.bias);
    const merged = new MergedSparseLinear(layer.inFeatures, layer.outFeatures, layer.pattern, weights, layer.activation);
    layer.dispose();
    return merged;
  }

  get rank(): number {
    return this.weights.rank;
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) {
      throw new ShapeError("SparseLinear", `input ${fmtShape(x.shape)} must end in inFeatures=${this.inFeatures}`);
    }
    if (isGradEnabled() && this.training) {
      throw new AutogradError("SparseLinear: this layer was merged for inference (mergeAdapters); it cannot be trained. " +
        "Call model.eval() or run it under noGrad(); train the unmerged model instead");
    }
    const m = this.weights;
    const x2 = x.reshape([-1, this.inFeatures]);
    const out = mergedLinear(x2, m.s, m.bias, m.rs, this.activation);
    x2.dispose();
    const r = out.reshape([...x.shape.slice(0, -1), this.outFeatures]);
    out.dispose();
    return r;
  }

  /** Reads the unmerged form (weight.values, weight.meta, bias, adapter.L/R) of a saved state and merges it. */
  protected override convertState(prefix: string, state: ReadonlyMap<string, Tensor>) {
    if (state.has(`${prefix}merged.values`)) return null;
    const k = (n: string) => `${prefix}${n}`;
    const vals = state.get(k("weight.values")), meta = state.get(k("weight.meta"));
    const L = state.get(k("adapter.L")), R = state.get(k("adapter.R")), bias = state.get(k("bias")) ?? null;
    if (!vals || !meta || !L || !R) return null;
    const want = [[vals, this.weights.s.values.shape[1]!, this.outFeatures], [L, this.rank, this.inFeatures], [R, this.outFeatures, this.rank]] as const;
    for (const [t, cols, rows] of want) {
      if (t.ndim !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
        throw new ShapeError("loadStateDict", `${prefix}: saved tensor ${fmtShape(t.shape)} does not fit this merged layer ` +
          `([${this.outFeatures}, ${this.inFeatures}], rank ${this.rank})`);
      }
    }
    const b = mergeWeights(vals, meta, this.outFeatures, this.inFeatures, this.pattern, L, R, bias);
    const tensors = new Map([[k("merged.values"), b.s.values], [k("merged.meta"), b.s.meta], [k("merged.rs"), b.rs], [k("merged.bias"), b.bias]]);
    const consumed = ["weight.values", "weight.meta", "weightT.values", "weightT.meta", "bias", "adapter.L", "adapter.R", "adapter.maskL"].map(k);
    return { tensors, consumed };
  }
}
