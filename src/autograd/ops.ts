// The names of every differentiable op and the attributes each records for its backward rule.
// The rule table (src/ops/grads.ts) is typed `{ [K in OpName]: Rule<K> }`, so an op added here
// without a backward rule fails to compile.
import type { DType } from "../dtype.ts";

export type Activation = "none" | "relu" | "gelu";

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
  // nn (src/ops/nn.ts)
  softmax: { axis: number; causal: boolean };
  logSoftmax: { axis: number; causal: boolean };
  layerNorm: { eps: number; hasWeight: boolean; hasBias: boolean };
  embedding: Record<never, never>;
  crossEntropy: { ignoreIndex: number; reduction: "mean" | "sum" | "none" };
  dropout: { p: number; key: [number, number] };
  // sparse (src/sparse/ops.ts): N:M pattern, W is dOut×dIn
  sparseLinear: { n: number; m: number; dOut: number; dIn: number };
  // the masked-dense simulation (src/sparse/masked-linear.ts)
  maskedLinear: Record<never, never>;
}

export type OpName = keyof OpAttrs;
