// webslope/nn: modules (PyTorch names): Module, Linear, Embedding, LayerNorm, attention, MLP, GPT.
import "../ops/register.ts";
export { Module } from "./module.ts";
export { Linear, Embedding, LayerNorm, type LinearOptions, type LinearLike } from "./layers.ts";
export { CausalSelfAttention, MLP, Block, type BlockConfig } from "./transformer.ts";
export { GPT, type GPTConfig } from "./gpt.ts";
export { SparseLinear, type SparseLinearOptions } from "./sparse-linear.ts";
export { KVCache, forwardCached, kvCacheSupports } from "./kv-cache.ts";
export { MergedSparseLinear, type MergedWeights } from "./merged-sparse-linear.ts";
