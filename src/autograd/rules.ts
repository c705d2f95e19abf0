// The tape's table of backward rules. Op modules (src/ops/, src/sparse/) register theirs when they
// load, as TF.js registers its gradients, so the tape imports no op. The few kernels the tape runs
// itself (the seed gradient of backward(), summing gradients, accumulating into .grad) are
// registered the same way, by src/ops/elementwise.ts. Every public entry point loads every op
// module (src/ops/register.ts); test/suite/registry.ts checks that the table is complete.
import { AutogradError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import type { OpAttrs, OpName, SavedOf } from "./ops.ts";

export interface NodeCtx<K extends OpName> {
  readonly attrs: OpAttrs[K];
  readonly saved: SavedOf<K>;
  readonly inputShapes: readonly (readonly number[])[];
  readonly needsGrad: readonly boolean[];
}

/** One gradient (or null where the input needs none) per input, in input order. */
export type Rule<K extends OpName> = (g: Tensor, ctx: NodeCtx<K>) => (Tensor | null)[];
/** The rules of the ops `K`, as an op module registers them. */
export type Rules<K extends OpName> = { [P in K]: Rule<P> };
/** A rule for every op. */
export type RuleTable = Rules<OpName>;

/** The kernels the tape runs outside any rule (no autograd). */
export interface TapeKernels {
  /** A new tensor of t's shape and dtype filled with `value` (the seed gradient). */
  fillLike(t: Tensor, value: number): Tensor;
  /** a + b as a new tensor (two gradients reaching one node). */
  add(a: Tensor, b: Tensor): Tensor;
  /** dst += src (a gradient reaching a leaf that has one). */
  addInPlace(dst: Tensor, src: Tensor): void;
}

const table: { [K in OpName]?: Rule<K> } = {};
let kernels: TapeKernels | null = null;

/** Adds an op module's backward rules to the table (called once, when the module loads). */
export function registerRules<K extends OpName>(rules: Rules<K>): void {
  Object.assign(table, rules);
}

export function registerTapeKernels(k: TapeKernels): void {
  kernels = k;
}

/** The rule of `op`; a typed error when its module was never loaded. */
export function ruleFor<K extends OpName>(op: K): Rule<K> {
  const rule = table[op] as Rule<K> | undefined;
  if (!rule) throw new AutogradError(`backward(): no backward rule is registered for ${op}; import webslope (or the module that defines ${op}) so its op modules load`);
  return rule;
}

export function tapeKernels(): TapeKernels {
  if (!kernels) throw new AutogradError("backward(): the elementwise kernels are not registered; import webslope so its op modules load");
  return kernels;
}

/** The ops that have a registered rule (for the completeness test). */
export function registeredOps(): OpName[] {
  return Object.keys(table) as OpName[];
}
