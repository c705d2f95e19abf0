// Embedding lookup (F.embedding) and its deterministic backward: the indices are sorted on the
// GPU (bitonic), then each weight row sums its own run of dY rows (shaders/embedding.wgsl.ts), so
// the gradient does not depend on atomics' order. Registers its rule.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { isGradEnabled } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import {
  EMB_GRAD_CHUNK, EMB_WORKGROUP, SORT_BLOCK, bitonicLocalKernel, bitonicStepKernel, embeddingGradKernel, embeddingKernel,
  runBoundsKernel, sortKeysKernel,
} from "../../shaders/embedding.wgsl.ts";
import { fill, mapOp } from "./raw/map.ts";
import { checkFloat, checkLive, fdt, grid1d } from "./util.ts";

declare module "../autograd/ops.ts" {
  interface OpSaved {
    embedding: { indices: Tensor };
  }
}

/**
 * Rows of `weight` [V, C] picked by i32 `indices` [...] → [..., C] (F.embedding(input, weight)).
 * An index outside [0, V) gives a zero row and no gradient (the GPU cannot raise without a
 * readback, and a clamped index would silently train the wrong row).
 */
export function embedding(indices: Tensor, weight: Tensor): Tensor {
  const op = "embedding";
  checkLive(op, indices, weight);
  if (indices.dtype !== "i32") {
    throw new DTypeError(op, `indices must be i32, got ${indices.dtype} of shape ${fmtShape(indices.shape)}; convert with .to("i32")`);
  }
  if (weight.ndim !== 2) {
    throw new ShapeError(op, `weight must be 2-D [V, C], got ${fmtShape(weight.shape)} (indices ${fmtShape(indices.shape)})`);
  }
  checkFloat(op, weight);
  const [V, C] = weight.shape as [number, number];
  const n = indices.size * C;
  const out = Tensor.empty([...indices.shape, C], weight.dtype, op);
  if (n > 0) {
    gpu().launcher.dispatch(embeddingKernel(fdt(weight)), [indices.buffer(op), weight.buffer(op), out.buffer(op)],
      grid1d(n, EMB_WORKGROUP), [n, C, V]);
  }
  if (isGradEnabled()) record(op, [null, weight], out, {}, { indices });
  return out;
}

/** Sorts Npad (a power of two, >= SORT_BLOCK) (row, position) keys in place, ascending. */
function bitonicSort(op: string, keys: Tensor, npad: number): void {
  const l = gpu().launcher;
  const blocks = npad / SORT_BLOCK;
  const buf = [keys.buffer(op)];
  l.dispatch(bitonicLocalKernel(true), buf, grid1d(blocks, 1), [0, blocks]);
  for (let k = 2 * SORT_BLOCK; k <= npad; k *= 2) {
    for (let j = k / 2; j >= SORT_BLOCK; j /= 2) l.dispatch(bitonicStepKernel(), buf, grid1d(npad / 2, EMB_WORKGROUP), [npad / 2, k, j]);
    l.dispatch(bitonicLocalKernel(false), buf, grid1d(blocks, 1), [k, blocks]);
  }
}

/** dWeight [V, C]: dY rows summed per index, deterministically (see shaders/embedding.wgsl.ts). */
function embeddingBackward(g: Tensor, indices: Tensor, V: number, C: number): Tensor {
  const op = "embedding";
  const l = gpu().launcher;
  const N = indices.size;
  const dW = Tensor.empty([V, C], g.dtype, op);
  if (V * C === 0) return dW;
  const npad = Math.max(SORT_BLOCK, 2 ** Math.ceil(Math.log2(Math.max(N, 1))));
  const keys = Tensor.empty([npad * 2], "i32", op);
  const bounds = fill([2 * V], 0, "i32", op);
  if (N > 0) {
    l.dispatch(sortKeysKernel(), [indices.buffer(op), keys.buffer(op)], grid1d(npad, EMB_WORKGROUP), [N, npad, V]);
    bitonicSort(op, keys, npad);
    l.dispatch(runBoundsKernel(), [keys.buffer(op), bounds.buffer(op)], grid1d(N, EMB_WORKGROUP), [N, V]);
  }
  // One pass per EMB_GRAD_CHUNK positions a run can have (a run is at most N long); more than
  // one pass sums into an f32 accumulator, so the bits match one long loop.
  const passes = Math.max(1, Math.ceil(N / EMB_GRAD_CHUNK));
  const acc = passes === 1 || g.dtype === "f32" ? dW : Tensor.empty([V, C], "f32", op);
  for (let p = 0; p < passes; p++) {
    l.dispatch(embeddingGradKernel(fdt(g), fdt(acc), p > 0), [keys.buffer(op), bounds.buffer(op), g.buffer(op), acc.buffer(op)],
      grid1d(V * C, EMB_WORKGROUP), [V * C, C, p * EMB_GRAD_CHUNK]);
  }
  keys.dispose(); bounds.dispose();
  if (acc !== dW) { dW.dispose(); const h = mapOp(op, "a", [acc], g.dtype); acc.dispose(); return h; }
  return dW;
}

export const embeddingRules: Rules<"embedding"> = {
  embedding: (g, c) => {
    const [V, C] = c.inputShapes[1] as [number, number];
    return [null, embeddingBackward(g, c.saved.indices, V, C)];
  },
};

registerRules(embeddingRules);
