// Fused softmax / logSoftmax (optionally causal) over any axis: one workgroup per row
// (shaders/softmax.wgsl.ts), the axis moved last around the kernel when needed. The backward rule
// runs the fused backward kernel on the saved output; Tensor.softmax / logSoftmax are attached here.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { isGradEnabled } from "../scope.ts";
import { defineTensorMethods, Tensor } from "../tensor.ts";
import { NEG_INF_BITS, rowWorkgroup, softmaxBackwardKernel, softmaxKernel } from "../../shaders/softmax.wgsl.ts";
import { permuteRaw } from "./raw/copy.ts";
import { checkFloat, checkLive, fdt, normAxis, rowGrid } from "./util.ts";

export interface SoftmaxOptions {
  /**
   * Mask positions j > i of the last two axes (attention scores [..., T, T]; needs the last axis
   * and a square pair): softmax gives exactly 0 there, logSoftmax -Infinity, and both gradients 0.
   */
  causal?: boolean;
}

/** Softmax (or log-softmax) over the last axis of a contiguous tensor. No autograd. */
function softmaxRaw(op: string, x: Tensor, log: boolean, causal: boolean): Tensor {
  const C = x.shape[x.ndim - 1] ?? 1;
  const rows = C === 0 ? 0 : x.size / C;
  const out = Tensor.empty(x.shape, x.dtype, op);
  if (rows === 0) return out;
  const wg = rowWorkgroup(C);
  const T = causal ? x.shape[x.ndim - 2]! : 0;
  gpu().launcher.dispatch(softmaxKernel(log, fdt(x), wg), [x.buffer(op), out.buffer(op)], rowGrid(rows), [rows, C, T, NEG_INF_BITS]);
  return out;
}

/** The permutation that moves `axis` last (null when it is last already). */
function lastAxisPerm(rank: number, axis: number): number[] | null {
  if (rank === 0 || axis === rank - 1) return null;
  return [...[...Array(rank).keys()].filter((i) => i !== axis), axis];
}

function inversePerm(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => { inv[p] = i; });
  return inv;
}

declare module "../autograd/ops.ts" {
  interface OpSaved {
    /** The output, with the normalised axis last (as the kernels read it). */
    softmax: { y: Tensor };
    logSoftmax: { y: Tensor };
  }
}

function softmaxOp(op: "softmax" | "logSoftmax", x: Tensor, axis: number, opts: SoftmaxOptions): Tensor {
  checkLive(op, x);
  checkFloat(op, x);
  const a = normAxis(op, axis, x.ndim);
  const causal = !!opts.causal;
  if (causal) {
    const T = x.shape[x.ndim - 2], Tk = x.shape[x.ndim - 1];
    if (x.ndim < 2 || a !== x.ndim - 1 || T !== Tk) {
      throw new ShapeError(op, `causal needs scores [..., T, T] normalised over the last axis; got ${fmtShape(x.shape)} with axis ${axis}`);
    }
  }
  const perm = lastAxisPerm(x.ndim, a);
  const xp = perm ? permuteRaw(op, x, perm) : x;
  const yp = softmaxRaw(op, xp, op === "logSoftmax", causal);
  const out = perm ? permuteRaw(op, yp, inversePerm(perm)) : yp;
  if (isGradEnabled()) record(op, [x], out, { axis: a, causal }, { y: yp });
  if (perm) { xp.dispose(); yp.dispose(); }
  return out;
}

/** Softmax along `axis` (default the last), fused: one workgroup per row. */
export function softmax(x: Tensor, axis = -1, opts: SoftmaxOptions = {}): Tensor {
  return softmaxOp("softmax", x, axis, opts);
}

/** log(softmax(x)) along `axis`, computed as x − max − log Σ exp(x − max). */
export function logSoftmax(x: Tensor, axis = -1, opts: SoftmaxOptions = {}): Tensor {
  return softmaxOp("logSoftmax", x, axis, opts);
}

function softmaxBackward(op: "softmax" | "logSoftmax", g: Tensor, y: Tensor, axis: number, causal: boolean, rank: number): Tensor {
  const perm = lastAxisPerm(rank, axis);
  const gp = perm ? permuteRaw(op, g, perm) : g;
  const C = y.shape[y.ndim - 1] ?? 1;
  const rows = C === 0 ? 0 : y.size / C;
  const dxp = Tensor.empty(y.shape, y.dtype, op);
  if (rows > 0) {
    const T = causal ? y.shape[y.ndim - 2]! : 0;
    gpu().launcher.dispatch(softmaxBackwardKernel(op === "logSoftmax", fdt(y), rowWorkgroup(C)),
      [y.buffer(op), gp.buffer(op), dxp.buffer(op)], rowGrid(rows), [rows, C, T]);
  }
  if (!perm) return dxp;
  const dx = permuteRaw(op, dxp, inversePerm(perm));
  gp.dispose(); dxp.dispose();
  return dx;
}

export const softmaxRules: Rules<"softmax" | "logSoftmax"> = {
  softmax: (g, c) => [softmaxBackward("softmax", g, c.saved.y, c.attrs.axis, c.attrs.causal, c.inputShapes[0]!.length)],
  logSoftmax: (g, c) => [softmaxBackward("logSoftmax", g, c.saved.y, c.attrs.axis, c.attrs.causal, c.inputShapes[0]!.length)],
};

registerRules(softmaxRules);

declare module "../tensor.ts" {
  interface Tensor {
    softmax(axis?: number, opts?: SoftmaxOptions): Tensor;
    logSoftmax(axis?: number, opts?: SoftmaxOptions): Tensor;
  }
}

defineTensorMethods({
  softmax(axis = -1, opts) { return softmax(this, axis, opts); },
  logSoftmax(axis = -1, opts) { return logSoftmax(this, axis, opts); },
});
