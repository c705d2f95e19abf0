// The double-pruned transpose of SLoPe (docs/slope.md §1, §2, §4): from W (d_out×d_in, N:M along
// d_in) build W_RC^T (d_in×d_out, N:M along d_out), the operand of the input gradient
// dX = dY·W_RC. Built on the GPU from W's (values, meta), never from a dense W.
//
// Mask rule: within each column i of W_R, every group of M consecutive rows keeps its top-N
// magnitudes (an entry pruned in W counts as 0; ties keep the lower row), intersected with W's
// mask. So meta(W_RC^T) ⊆ meta(W_R) always, and a group with fewer than N survivors of W's mask
// keeps fewer than N (its unused slots hold 0) instead of storing W-pruned zeros.
//
// Three entry points: doublePrune (new W_RC^T), refreshTranspose (values only, at the fixed W_RC
// positions, after an optimizer step changed W's values) and repruneTranspose (mask change:
// recompute metaT and valsT by magnitude, in place).
import { ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { Tensor } from "../tensor.ts";
import { SP_WORKGROUP, transposeKernel } from "../../shaders/sparse24.wgsl.ts";
import { checkLive, grid1d } from "../ops/util.ts";
import { metaWords, Sparse24 } from "./sparse24.ts";

function checkRows(op: string, w: Sparse24): void {
  checkLive(op, w.values, w.meta);
  if (w.rows % w.m !== 0) {
    throw new ShapeError(op, `d_out ${w.rows} of W ${fmtShape(w.shape)} is not a multiple of the group size ${w.m} ` +
      `(pattern ${w.pattern}): the transpose is ${w.pattern} along d_out; pad the output dimension`);
  }
}

function checkPair(op: string, w: Sparse24, wT: Sparse24): void {
  checkRows(op, w);
  checkLive(op, wT.values, wT.meta);
  if (wT.rows !== w.cols || wT.cols !== w.rows || wT.n !== w.n || wT.m !== w.m || wT.dtype !== w.dtype) {
    throw new ShapeError(op, `W^T ${fmtShape(wT.shape)} (${wT.pattern}, ${wT.dtype}) is not the transpose of W ` +
      `${fmtShape(w.shape)} (${w.pattern}, ${w.dtype}); it must be [${w.cols}, ${w.rows}] with the same pattern and dtype`);
  }
}

function launch(mode: "prune" | "refresh", w: Sparse24, wT: Sparse24, op: string): void {
  const dOut = w.rows, dIn = w.cols, wsT = metaWords(dOut);
  gpu().launcher.dispatch(transposeKernel(w.n, w.m, w.dtype, mode),
    [w.values.buffer(op), w.meta.buffer(op), wT.values.buffer(op), wT.meta.buffer(op)],
    grid1d(dIn * wsT, SP_WORKGROUP), [dOut, dIn, w.wordsPerRow, w.valuesPerRow, wsT, wT.valuesPerRow]);
}

/** W_RC^T: a new d_in×d_out Sparse24, N:M along d_out, from a compressed W (d_out×d_in). */
export function doublePrune(w: Sparse24): Sparse24 {
  checkRows("doublePrune", w);
  const dOut = w.rows, dIn = w.cols;
  const values = Tensor.empty([dIn, (dOut * w.n) / w.m], w.dtype, "doublePrune");
  const meta = Tensor.empty([dIn, metaWords(dOut)], "i32", "doublePrune");
  const wT = new Sparse24(values, meta, dIn, dOut, w);
  launch("prune", w, wT, "doublePrune");
  return wT;
}

/** Regathers wT's values from W's current values at wT's fixed positions (metaT unchanged). */
export function refreshTranspose(w: Sparse24, wT: Sparse24): void {
  checkPair("refreshTranspose", w, wT);
  launch("refresh", w, wT, "refreshTranspose");
}

/** Recomputes wT's mask and values by magnitude from W's current values, in place (a mask change). */
export function repruneTranspose(w: Sparse24, wT: Sparse24): void {
  checkPair("repruneTranspose", w, wT);
  launch("prune", w, wT, "repruneTranspose");
}
