// The names of every differentiable op and the attributes each records for its backward rule,
// plus the interface op modules extend with the tensors each op saves. Types only: the op modules
// register their rules with the tape (src/autograd/rules.ts), and test/suite/registry.ts holds the
// one typed check that every op here has a rule (`satisfies RuleTable`: an op added without one
// fails to compile).
import type { DType } from "../dtype.ts";
import type { Activation } from "../../shaders/matmul.wgsl.ts";

export type { Activation };

/** How the attention kernels address one call's q, k, v, O and gradients (src/ops/attention.ts). */
export interface AttentionGeometry {
  BH: number;
  T: number;
  D: number;
  /** Heads per batch: row (bh, t) sits at (bh / H)·sB + (bh % H)·sH + t·sT. */
  H: number;
  /** Q/K/V (and gradient) strides of a batch, a head and a row; the q, k, v base offsets. */
  sB: number; sH: number; sT: number;
  bases: [number, number, number];
  /** O / dO strides of a batch, a head and a row. */
  oSB: number; oSH: number; oST: number;
  /** Packed qkv: one [B, T, 3C] buffer for q, k, v and one for their gradient. */
  packed: boolean;
}

export interface AttentionAttrs {
  geo: AttentionGeometry;
  causal: boolean;
  p: number;
  scale: number;
  key: [number, number];
  /** Which backward runs (chosen at the forward, src/ops/attention.ts) and, chunked, heads per chunk. */
  backward: "fused" | "chunked";
  chunkHeads: number;
}

export interface OpAttrs {
  // elementwise (src/ops/elementwise.ts)
  add: Record<never, never>;
  sub: Record<never, never>;
  mul: Record<never, never>;
  div: Record<never, never>;
  addScalar: { s: number };
  mulScalar: { s: number };
  rdivScalar: { s: number };
  pow: { p: number };
  neg: Record<never, never>;
  exp: Record<never, never>;
  log: Record<never, never>;
  sqrt: Record<never, never>;
  rsqrt: Record<never, never>;
  tanh: Record<never, never>;
  relu: Record<never, never>;
  gelu: Record<never, never>;
  where: Record<never, never>;
  maskedFill: { value: number };
  cast: { from: DType };
  // reductions (src/ops/reduce.ts)
  sum: { axes: number[]; keepDim: boolean };
  mean: { axes: number[]; keepDim: boolean };
  max: { axes: number[]; keepDim: boolean };
  // layout (src/ops/layout.ts)
  reshape: Record<never, never>;
  permute: { perm: number[] };
  slice: { starts: number[]; ends: number[] };
  concat: { axis: number };
  expand: Record<never, never>;
  // matmul (src/ops/matmul.ts)
  matmul: { transA: boolean; transB: boolean; activation: Activation; hasBias: boolean };
  // nn (src/ops/softmax.ts, layernorm.ts, embedding.ts, crossentropy.ts, dropout.ts)
  softmax: { axis: number; causal: boolean };
  logSoftmax: { axis: number; causal: boolean };
  layerNorm: { eps: number; hasWeight: boolean; hasBias: boolean };
  embedding: Record<never, never>;
  crossEntropy: { ignoreIndex: number; reduction: "mean" | "sum" | "none" };
  dropout: { p: number; key: [number, number] };
  // attention (src/ops/attention.ts)
  scaledDotProductAttention: AttentionAttrs;
  qkvAttention: AttentionAttrs;
  // sparse (src/sparse/ops.ts): N:M pattern, W is dOut×dIn
  sparseLinear: { n: number; m: number; dOut: number; dIn: number; /** Rows per mask block of a vector-wise W (0: per-element). */ vectorBlock: number; /** Applied after the bias (its backward through the saved pre-activation). */ activation: Activation };
  // the masked-dense simulation (src/sparse/masked-linear.ts)
  maskedLinear: Record<never, never>;
}

export type OpName = keyof OpAttrs;

/**
 * The tensors an op saves for its backward, by name: each op module declares its entries next to
 * the forward that saves them (`declare module "../autograd/ops.ts" { interface OpSaved { ... } }`);
 * record() takes that record and the rule reads it back as `ctx.saved`. Ops that save nothing
 * have no entry.
 */
// deno-lint-ignore no-empty-interface
export interface OpSaved {}

/** What `op` saves: its OpSaved record, or nothing. */
export type SavedOf<K extends OpName> = K extends keyof OpSaved ? OpSaved[K] : Record<never, never>;
