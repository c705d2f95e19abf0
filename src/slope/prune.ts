// pruneModel: SLoPe's prune_model. Swaps the Linear layers inside the transformer blocks for
// SparseLinear (embeddings, the tied lm_head, LayerNorms and biases stay dense). By default block
// 0's fused qkv stays dense, as in SLoPe's GPT runs (SLOPE.md §6); pass `skip: []` to prune it.
// With addLora / mergeLora it also adds (and merges) the low-rank adapters for inference.
import { Linear } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import { SparseLinear } from "../nn/sparse-linear.ts";
import type { Pattern } from "../sparse/sparse24.ts";
import { WebslopeError } from "../errors.ts";
import { addLazyAdapters, mergeAdapters } from "./adapters.ts";

export interface PruneOptions {
  /** Compressed storage and sparse kernels (true, default) or the masked-dense simulation (false). */
  compress?: boolean;
  /** N:M pattern, default "2:4". */
  pattern?: Pattern;
  /** Dotted module names to leave dense. Default ["blocks.0.attn.qkv"]. */
  skip?: string[];
  /** Which modules are candidates: default every Linear under "blocks.". */
  include?: (name: string) => boolean;
  /**
   * The reference's tiling splits non-square weights into square tiles for cuSPARSELt; it is a
   * kernel-shape choice with no effect on the math. Accepted for API parity; our kernels tile
   * themselves.
   */
  tiling?: boolean;
  /** Add a low-rank adapter to every pruned layer (the reference's add_lora). */
  addLora?: boolean;
  /** Adapter rank (the reference's lora_rank); or use loraRankFraction. */
  loraRank?: number;
  loraRankFraction?: number;
  /** Merge the adapters for inference right away (merge_lora): the model becomes inference-only. */
  mergeLora?: boolean;
}

/** Returns the dotted names of the layers it replaced. Each replaced Linear's dense weight is freed. */
export function pruneModel(model: Module, opts: PruneOptions = {}): string[] {
  const skip = new Set(opts.skip ?? ["blocks.0.attn.qkv"]);
  const include = opts.include ?? ((name: string) => name.startsWith("blocks."));
  const replaced: string[] = [];
  for (const [name, mod] of model.namedModules()) {
    for (const [childName, child] of mod.namedChildren()) {
      const full = name ? `${name}.${childName}` : childName;
      if (!(child instanceof Linear) || skip.has(full) || !include(full)) continue;
      const sparse = SparseLinear.fromLinear(child, { compress: opts.compress, pattern: opts.pattern });
      mod.setModule(childName, sparse);
      child.weight.dispose();
      replaced.push(full);
    }
  }
  if (opts.mergeLora && !opts.addLora) throw new WebslopeError("pruneModel: mergeLora needs addLora: true (and loraRank)");
  if (opts.addLora) {
    addLazyAdapters(model, opts.loraRank !== undefined ? { rank: opts.loraRank } : { rankFraction: opts.loraRankFraction ?? 1 / 64 });
    if (opts.mergeLora) mergeAdapters(model);
  }
  return replaced;
}
