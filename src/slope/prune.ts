// pruneModel: SLoPe's prune_model. Swaps the Linear layers inside the transformer blocks for
// SparseLinear (embeddings, the tied lm_head, LayerNorms and biases stay dense). By default block
// 0's fused qkv stays dense, as in SLoPe's GPT runs (docs/slope.md §6); pass `skip: []` to prune it.
// With addLora / mergeLora it also adds (and merges) the low-rank adapters for inference.
import { Linear } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import { SparseLinear } from "../nn/sparse-linear.ts";
import type { AdapterRank } from "../nn/lowrank-adapter.ts";
import { resolveRank } from "../nn/lowrank-adapter.ts";
import { type Pattern, parsePattern } from "../sparse/sparse24.ts";
import { ShapeError, WebslopeError } from "../errors.ts";
import { checkVectorBlock, VECTOR_BLOCK } from "../sparse/vector24.ts";
import { addLazyAdapters, mergeAdapters } from "./adapters.ts";

export interface PruneOptions {
  /** Compressed storage and sparse kernels (true, default) or the masked-dense simulation (false). */
  compress?: boolean;
  /** N:M pattern, default "2:4"; "vector" for the opt-in vector-wise 2:4 (see SparseLinearOptions). */
  pattern?: Pattern | "vector";
  /** Rows per mask block of pattern "vector" (a multiple of 64), default 64. */
  vectorBlock?: number;
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

/**
 * Returns the dotted names of the layers it replaced. Each replaced Linear's dense weight is freed.
 * Everything is checked and every sparse layer built before the model is touched: a call that
 * throws (a bad option, a layer whose width the pattern cannot tile) leaves the model as it was.
 */
export function pruneModel(model: Module, opts: PruneOptions = {}): string[] {
  const op = "pruneModel";
  if (opts.mergeLora && !opts.addLora) throw new WebslopeError("pruneModel: mergeLora needs addLora: true (and loraRank)");
  const pattern = opts.pattern ?? "2:4";
  const { m } = parsePattern(op, pattern === "vector" ? "2:4" : pattern);
  if (pattern === "vector") checkVectorBlock(op, opts.vectorBlock ?? VECTOR_BLOCK);
  const skip = new Set(opts.skip ?? ["blocks.0.attn.qkv"]);
  const include = opts.include ?? ((name: string) => name.startsWith("blocks."));
  const rank: AdapterRank = opts.loraRank !== undefined ? { rank: opts.loraRank } : { rankFraction: opts.loraRankFraction ?? 1 / 64 };
  const plan: { mod: Module; childName: string; full: string; child: Linear }[] = [];
  for (const [name, mod] of model.namedModules()) {
    for (const [childName, child] of mod.namedChildren()) {
      const full = name ? `${name}.${childName}` : childName;
      if (!(child instanceof Linear) || skip.has(full) || !include(full)) continue;
      if (child.inFeatures % m !== 0 || child.outFeatures % m !== 0) {
        throw new ShapeError(op, `${full} is [${child.outFeatures}, ${child.inFeatures}]: both sizes must be multiples of the pattern's ` +
          `group size ${m} (${pattern}, W and its double-pruned transpose); leave it dense with skip: ["${full}"] (nothing was changed)`);
      }
      if (opts.addLora) resolveRank(op, child.inFeatures, child.outFeatures, rank);
      plan.push({ mod, childName, full, child });
    }
  }
  const built: SparseLinear[] = [];
  try {
    for (const { child } of plan) built.push(SparseLinear.fromLinear(child, { compress: opts.compress, pattern, vectorBlock: opts.vectorBlock }));
  } catch (e) {
    // Free what was built, except the biases it shares with the untouched Linear layers.
    built.forEach((sp, i) => { for (const [, t] of sp.stateDict()) if (t !== plan[i]!.child.bias) t.dispose(); });
    throw e;
  }
  plan.forEach(({ mod, childName, child }, i) => {
    mod.setModule(childName, built[i]!);
    child.weight.dispose();
  });
  if (opts.addLora) {
    addLazyAdapters(model, rank);
    if (opts.mergeLora) mergeAdapters(model);
  }
  return plan.map((p) => p.full);
}
