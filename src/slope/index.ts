// webslope/slope: SLoPe on top of the core — pruning a model, its sparse optimizer, and (soon)
// the lazy low-rank adapters and their merge for inference.
export { pruneModel, type PruneOptions } from "./prune.ts";
export { SparseLinear, type SparseLinearOptions } from "../nn/sparse-linear.ts";
export { SparseAdamW, type SparseAdamWOptions } from "../optim/sparse-adamw.ts";
