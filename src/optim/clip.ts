// Gradient clipping by one global L2 norm, computed and applied on the GPU (no readback):
// coef = min(1, maxNorm / (norm + 1e-6)) scales every gradient in place, as torch does. Gradients
// in an optimizer's arena are summed and scaled as one flat tensor (a few dispatches in all).
import { checkNumber } from "../validate.ts";
import { mapInPlace, mapOp } from "../ops/raw/map.ts";
import { reduceRaw } from "../ops/raw/reduce.ts";
import { zeros } from "../ops/creation.ts";
import { noGrad } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { gradSpans } from "./arena.ts";

/** Σ g² over all given gradients, as a 1-element tensor. */
export function sumOfSquares(grads: readonly Tensor[]): Tensor | null {
  let total: Tensor | null = null;
  for (const g of gradSpans(grads)) {
    const s = reduceRaw("clipGradNorm", g, [...Array(g.ndim).keys()], "sumsq", false);
    const flat = s.alias([1]);
    s.dispose();
    if (total) { mapInPlace("clipGradNorm", "a + b", total, [flat]); flat.dispose(); } else total = flat;
  }
  return total;
}

/** Scales `grads` in place so their global norm is at most maxNorm, given Σg² (1 element). Returns the norm. */
export function clipBySumOfSquares(grads: readonly Tensor[], sumSq: Tensor, maxNorm: number): Tensor {
  for (const g of gradSpans(grads)) mapInPlace("clipGradNorm", "a * min(1.0, s / (sqrt(b) + 1e-6))", g, [sumSq], maxNorm);
  const norm = mapOp("clipGradNorm", "sqrt(a)", [sumSq], "f32");
  const out = norm.alias([]);
  norm.dispose();
  return out;
}

/**
 * torch.nn.utils.clip_grad_norm_: clips the gradients of `params` to a global norm of maxNorm
 * and returns the norm before clipping (a 0-d tensor; read it with item() when you need it).
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): Tensor {
  checkNumber("clipGradNorm", "maxNorm", maxNorm, { above: 0 });
  return noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => !!g);
    const ss = sumOfSquares(grads);
    if (!ss) return zeros([]);
    const norm = clipBySumOfSquares(grads, ss, maxNorm);
    ss.dispose();
    return norm;
  });
}
