// Lazy low-rank adapters (docs/slope.md §5): addLazyAdapters puts a LowRankAdapter on every sparse
// layer; LazyAdapterSchedule says at which step of a run they enter (default: 99% of training)
// and, at that step, inserts them and hands them to the dense AdamW as a new parameter group
// (existing optimizer state is kept, unlike the reference's BERT code). mergeAdapters turns an
// adapted model into its inference form by swapping in MergedSparseLinear layers.
import { WebslopeError } from "../errors.ts";
import { checkNumber } from "../validate.ts";
import type { AdapterRank } from "../nn/lowrank-adapter.ts";
import type { Module } from "../nn/module.ts";
import { MergedSparseLinear } from "../nn/merged-sparse-linear.ts";
import { SparseLinear } from "../nn/sparse-linear.ts";
import type { AdamW } from "../optim/adamw.ts";
import type { Tensor } from "../tensor.ts";

function sparseLayers(model: Module): SparseLinear[] {
  return model.namedModules().map(([, m]) => m).filter((m): m is SparseLinear => m instanceof SparseLinear);
}

/** Adds an adapter to every SparseLinear of the model; returns the new parameters (L and R of each). */
export function addLazyAdapters(model: Module, rank: AdapterRank & { seed?: number }): Tensor[] {
  const layers = sparseLayers(model);
  if (!layers.length) throw new WebslopeError("addLazyAdapters: the model has no SparseLinear layers; call pruneModel first");
  return layers.flatMap((l, i) => l.addAdapter(rank, { seed: rank.seed === undefined ? undefined : rank.seed + i }));
}

/**
 * Replaces every adapted SparseLinear by its MergedSparseLinear (inference only), as pruneModel
 * replaces Linear layers. Merging twice is an error. Returns the number of layers merged.
 */
export function mergeAdapters(model: Module): number {
  if (model.namedModules().some(([, m]) => m instanceof MergedSparseLinear)) {
    throw new WebslopeError("mergeAdapters: the model is already merged; merge once, after training");
  }
  const adapted: [Module, string, SparseLinear][] = [];
  for (const [, mod] of model.namedModules()) {
    for (const [name, child] of mod.namedChildren()) if (child instanceof SparseLinear && child.adapter) adapted.push([mod, name, child]);
  }
  if (!adapted.length) throw new WebslopeError("mergeAdapters: no layer has an adapter (addLazyAdapters, or pruneModel with addLora)");
  for (const [mod, name, layer] of adapted) mod.setModule(name, MergedSparseLinear.fromAdapted(layer));
  return adapted.length;
}

export interface LazyAdapterOptions extends AdapterRank {
  /** Total optimizer steps of the run. */
  totalSteps: number;
  /** Fraction of training after which adapters enter (SLoPe: 0.99). */
  at?: number;
  seed?: number;
}

export class LazyAdapterSchedule {
  /** The step (0-based) at whose start the adapters are inserted. */
  readonly insertStep: number;
  inserted = false;

  constructor(readonly opts: LazyAdapterOptions) {
    const at = opts.at ?? 0.99;
    checkNumber("LazyAdapterSchedule", "at", at, { min: 0, max: 1 });
    checkNumber("LazyAdapterSchedule", "totalSteps", opts.totalSteps, { integer: true, min: 1 });
    this.insertStep = Math.floor(at * opts.totalSteps);
  }

  /**
   * Call at the start of every step. At insertStep it adds the adapters and registers them with
   * the dense optimizer as a new group with its weight decay; returns the new parameters then,
   * null otherwise.
   */
  step(step: number, model: Module, denseOptimizer: AdamW): Tensor[] | null {
    if (this.inserted || step < this.insertStep) return null;
    const params = addLazyAdapters(model, this.opts);
    denseOptimizer.addParamGroup({ params, weightDecay: denseOptimizer.paramGroups[0]?.weightDecay ?? denseOptimizer.defaults.weightDecay });
    this.inserted = true;
    return params;
  }
}
