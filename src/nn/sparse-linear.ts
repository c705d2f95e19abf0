// SparseLinear: SLoPe's linear layer. With `compress: true` it stores W as a 2:4 (N:M) Sparse24
// plus the double-pruned transpose W_RC^T, and runs sparseLinear (spmm forward, spmm through
// W_RC^T for dX, sddmm for the compressed dW). With `compress: false` it is the masked-dense
// simulation (dense W_R with static mask M_R and dynamic mask M_RC): the tests' oracle.
// A LowRankAdapter can be attached (addAdapter); for inference, mergeAdapters replaces the layer
// with a MergedSparseLinear (./merged-sparse-linear.ts).
import type { Activation } from "../autograd/ops.ts";
import { ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { keep, noGrad } from "../scope.ts";
import { type AdapterRank, LowRankAdapter, resolveRank } from "./lowrank-adapter.ts";
import { gelu, relu } from "../ops/elementwise.ts";
import { maskOf } from "../sparse/mask.ts";
import { permuteRaw } from "../ops/raw/copy.ts";
import { compress24, decompress24, type Pattern, type Sparse24 } from "../sparse/sparse24.ts";
import { doublePrune, refreshTranspose, repruneTranspose } from "../sparse/double-prune.ts";
import { sparseLinear } from "../sparse/ops.ts";
import { maskedLinear } from "../sparse/masked-linear.ts";
import { checkVectorBlock, compressVector, VECTOR_BLOCK } from "../sparse/vector24.ts";
import type { Tensor } from "../tensor.ts";
import type { Linear, LinearLike } from "./layers.ts";
import { Module, sparseParams } from "./module.ts";

export interface SparseLinearOptions {
  /** true: compressed storage and sparse kernels; false: masked-dense simulation (the oracle). Default true. */
  compress?: boolean;
  /**
   * N:M pattern along d_in, default "2:4"; or "vector": the opt-in vector-wise 2:4 pattern (one
   * mask per block of `vectorBlock` output rows, chosen by the block's summed |W|; a different
   * method from SLoPe's per-element mask, never the default; src/sparse/vector24.ts).
   */
  pattern?: Pattern | "vector";
  /** Rows per mask block of pattern "vector" (a multiple of 64), default 64. */
  vectorBlock?: number;
}

export class SparseLinear extends Module implements LinearLike {
  readonly compress: boolean;
  /** The N:M of the mask ("2:4" for the vector-wise pattern too). */
  readonly pattern: Pattern;
  /** Rows per mask block when the pattern is vector-wise, else null. */
  readonly vectorBlock: number | null;
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

  /** Prunes a dense [out, in] weight. The weight tensor is read, not kept. */
  constructor(readonly inFeatures: number, readonly outFeatures: number, weight: Tensor, bias: Tensor | null, opts: SparseLinearOptions & { activation?: Activation } = {}) {
    super();
    if (weight.shape.join() !== [outFeatures, inFeatures].join()) {
      throw new ShapeError("SparseLinear", `weight ${fmtShape(weight.shape)} must be [${outFeatures}, ${inFeatures}]`);
    }
    this.compress = opts.compress ?? true;
    this.pattern = opts.pattern === "vector" ? "2:4" : opts.pattern ?? "2:4";
    this.vectorBlock = opts.pattern === "vector" ? opts.vectorBlock ?? VECTOR_BLOCK : null;
    if (this.vectorBlock !== null) checkVectorBlock("SparseLinear", this.vectorBlock);
    this.activation = opts.activation ?? "none";
    this.bias = bias ? this.param("bias", bias) : null;
    noGrad(() => {
      const w = this.vectorBlock !== null ? compressVector(weight, { block: this.vectorBlock }) : compress24(weight, { pattern: this.pattern });
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
    return this.compress ? this.w!.values : this.weight!;
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) {
      throw new ShapeError("SparseLinear", `input ${fmtShape(x.shape)} must end in inFeatures=${this.inFeatures}`);
    }
    // Without an adapter the activation is the sparse product's own (its epilogue on the matrix
    // units, as the dense Linear's matmul); an adapter's sum comes before the activation.
    if (this.compress && !this.adapter) return sparseLinear(x, this.w!, this.wT!, this.bias, this.vectorBlock, this.activation);
    let y = this.compress
      ? sparseLinear(x, this.w!, this.wT!, this.bias, this.vectorBlock)
      : maskedLinear(x, this.weight!, this.maskR!, this.maskRC!, this.bias);
    if (this.adapter) {
      const a = this.adapter.forward(x);
      const sum = y.add(a);
      y.dispose(); a.dispose();
      y = sum;
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
    if (this.adapter) throw new WebslopeError("SparseLinear.addAdapter: the layer already has an adapter");
    const r = resolveRank("addAdapter", this.inFeatures, this.outFeatures, rank);
    this.adapter = this.module("adapter", new LowRankAdapter(this.inFeatures, this.outFeatures, r, { seed: opts.seed, pattern: this.pattern }));
    return [this.adapter.L, this.adapter.R];
  }

  /** Dense M_R⊙W (a new tensor), for inspection and export. */
  denseWeight(): Tensor {
    return this.compress ? decompress24(this.w!) : this.weight!.mul(1);
  }
}
