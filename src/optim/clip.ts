// Gradient clipping by one global L2 norm, computed and applied on the GPU (no readback):
// coef = min(1, maxNorm / (norm + 1e-6)) scales every gradient in place, as torch does.
import { mapInPlace, mapOp } from "../ops/elementwise.ts";
import { reduceRaw } from "../ops/reduce.ts";
import { zeros } from "../ops/creation.ts";
import { noGrad } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/** Σ g² over all given gradients, as a 1-element tensor. */
export function sumOfSquares(grads: readonly Tensor[]): Tensor | null {
  let total: Tensor | null = null;
  for (const g of grads) {
    const sq = mapOp("clipGradNorm", "a * a", [g], "f32");
    const s = reduceRaw("clipGradNorm", sq, [...Array(sq.ndim).keys()], "sum", false);
    const flat = s.alias([1]);
    sq.dispose(); s.dispose();
    if (total) { mapInPlace("clipGradNorm", "a + b", total, [flat]); flat.dispose(); } else total = flat;
  }
  return total;
}

/** Scales `grads` in place so their global norm is at most maxNorm, given Σg² (1 element). Returns the norm. */
export function clipBySumOfSquares(grads: readonly Tensor[], sumSq: Tensor, maxNorm: number): Tensor {
  const norm = mapOp("clipGradNorm", "sqrt(a)", [sumSq], "f32");
  const coef = mapOp("clipGradNorm", "min(1.0, s / (a + 1e-6))", [norm], "f32", maxNorm);
  for (const g of grads) mapInPlace("clipGradNorm", "a * b", g, [coef]);
  coef.dispose();
  const out = norm.alias([]);
  norm.dispose();
  return out;
}

/**
 * torch.nn.utils.clip_grad_norm_: clips the gradients of `params` to a global norm of maxNorm
 * and returns the norm before clipping (a 0-d tensor; read it with item() when you need it).
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): Tensor {
  return noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => !!g);
    const ss = sumOfSquares(grads);
    if (!ss) return zeros([]);
    const norm = clipBySumOfSquares(grads, ss, maxNorm);
    ss.dispose();
    return norm;
  });
}
