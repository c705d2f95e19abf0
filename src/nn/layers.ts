// The basic layers: Linear (weight [out, in] like PyTorch, y = x·Wᵀ + b in one fused matmul),
// Embedding and LayerNorm.
import { checkNumber, checkOptional } from "../validate.ts";
import type { Activation } from "../autograd/ops.ts";
import { ShapeError, fmtShape } from "../errors.ts";
import { randn, rand, zeros, ones } from "../ops/creation.ts";
import { matmul } from "../ops/matmul.ts";
import { embedding } from "../ops/embedding.ts";
import { layerNorm } from "../ops/layernorm.ts";
import type { Tensor } from "../tensor.ts";
import { Module } from "./module.ts";

export interface LinearOptions {
  bias?: boolean;
  /** Normal init std; default is PyTorch's U(−1/√in, 1/√in). GPT uses 0.02. */
  std?: number;
  seed?: number;
  /** Fused into the matmul epilogue. */
  activation?: Activation;
}

/** Something that maps [..., in] to [..., out]: Linear, or SparseLinear after pruneModel. */
export interface LinearLike extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  activation: Activation;
  forward(x: Tensor): Tensor;
}

export class Linear extends Module implements LinearLike {
  weight: Tensor;
  bias: Tensor | null;
  activation: Activation;

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    checkNumber("Linear", "inFeatures", inFeatures, { integer: true, min: 1 });
    checkNumber("Linear", "outFeatures", outFeatures, { integer: true, min: 1 });
    checkOptional("Linear", "std", opts.std, { min: 0 });
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.param("weight", opts.std !== undefined
      ? randn([outFeatures, inFeatures], { std: opts.std, seed: opts.seed })
      : rand([outFeatures, inFeatures], { low: -bound, high: bound, seed: opts.seed }));
    this.bias = opts.bias === false ? null : this.param("bias", zeros([outFeatures]));
    this.activation = opts.activation ?? "none";
  }

  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) {
      throw new ShapeError("Linear", `input ${fmtShape(x.shape)} must end in inFeatures=${this.inFeatures} (weight ${fmtShape(this.weight.shape)})`);
    }
    return matmul(x, this.weight, { transB: true, bias: this.bias, activation: this.activation });
  }
}

export class Embedding extends Module {
  weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, opts: { std?: number; seed?: number } = {}) {
    super();
    checkNumber("Embedding", "numEmbeddings", numEmbeddings, { integer: true, min: 1 });
    checkNumber("Embedding", "embeddingDim", embeddingDim, { integer: true, min: 1 });
    checkOptional("Embedding", "std", opts.std, { min: 0 });
    this.weight = this.param("weight", randn([numEmbeddings, embeddingDim], { std: opts.std ?? 1, seed: opts.seed }));
  }
  forward(indices: Tensor): Tensor {
    return embedding(indices, this.weight);
  }
}

export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(readonly normalizedShape: number, readonly eps = 1e-5) {
    super();
    checkNumber("LayerNorm", "normalizedShape", normalizedShape, { integer: true, min: 1 });
    checkNumber("LayerNorm", "eps", eps, { above: 0 });
    this.weight = this.param("weight", ones([normalizedShape]));
    this.bias = this.param("bias", zeros([normalizedShape]));
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}
