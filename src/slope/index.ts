// webslope/slope: SLoPe on top of the core — pruning a model, its sparse optimizer, the lazy
// low-rank adapters and their merge for inference.
import "../ops/register.ts";
export { pruneModel, type PruneOptions } from "./prune.ts";
export { SparseLinear, type SparseLinearOptions } from "../nn/sparse-linear.ts";
export { MergedSparseLinear } from "../nn/merged-sparse-linear.ts";
export { SparseAdamW, type SparseAdamWOptions } from "../optim/sparse-adamw.ts";
export { addLazyAdapters, mergeAdapters, LazyAdapterSchedule, type LazyAdapterOptions } from "./adapters.ts";
export { LowRankAdapter, type AdapterRank } from "../nn/lowrank-adapter.ts";
export { lowRankAdd } from "../sparse/lowrank-add.ts";
// the 2:4 storage and kernels underneath (src/sparse/)
export * from "../sparse/index.ts";
export { maskedLinear } from "../sparse/masked-linear.ts";
