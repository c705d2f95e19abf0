// Cross-entropy of logits against class indices: log-softmax and NLL fused in one row kernel, the
// mean/sum in a finishing kernel, and the fused gradient (shaders/crossentropy.wgsl.ts).
// Registers its rule.
import { record } from "../autograd/graph.ts";
import type { OpSaved } from "../autograd/ops.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { DTypeError, ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { isGradEnabled } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { rowWorkgroup } from "../../shaders/softmax.wgsl.ts";
import {
  CE_GRAD_WORKGROUP, crossEntropyFinishKernel, crossEntropyGradKernel, crossEntropyRowKernel,
} from "../../shaders/crossentropy.wgsl.ts";
import { mapOp } from "./raw/map.ts";
import { checkFloat, checkLive, fdt, grid1d, numel, rowGrid, sameShape } from "./util.ts";

export type Reduction = "mean" | "sum" | "none";

export interface CrossEntropyOptions {
  /** Target value whose rows count for nothing (loss 0, gradient 0, not in the mean). Default -100. */
  ignoreIndex?: number;
  /** "mean" over counted rows (0 when none count), "sum", or "none" (one loss per row). Default "mean". */
  reduction?: Reduction;
}

const REDUCTION_MODE: Record<Reduction, number> = { mean: 0, sum: 1, none: 2 };

declare module "../autograd/ops.ts" {
  interface OpSaved {
    /** The logits, the targets, each row's log-sum-exp and, when reduced, the counted rows. */
    crossEntropy: { logits: Tensor; targets: Tensor; lse: Tensor; count?: Tensor };
  }
}

/**
 * Cross-entropy of `logits` [..., C] (classes on the last axis, leading axes flattened to N rows)
 * against i32 class indices `targets` (shape [...] or [N]): log-softmax and NLL in one kernel.
 * A target outside [0, C) is treated like ignoreIndex (no readback can raise it). "none"
 * returns the targets' shape.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = "crossEntropy";
  checkLive(op, logits, targets);
  checkFloat(op, logits);
  if (targets.dtype !== "i32") {
    throw new DTypeError(op, `targets must be i32 class indices, got ${targets.dtype} of shape ${fmtShape(targets.shape)}; convert with .to("i32")`);
  }
  if (logits.ndim < 1) throw new ShapeError(op, `logits must have a class axis, got a scalar ${fmtShape(logits.shape)}`);
  const C = logits.shape[logits.ndim - 1]!;
  const lead = logits.shape.slice(0, -1);
  const N = numel(lead);
  if (!sameShape(targets.shape, lead) && !(targets.ndim === 1 && targets.shape[0] === N)) {
    throw new ShapeError(op, `targets ${fmtShape(targets.shape)} do not match logits ${fmtShape(logits.shape)}: ` +
      `expected ${fmtShape(lead)} or [${N}] (one class index per row)`);
  }
  const reduction = opts.reduction ?? "mean";
  if (!(reduction in REDUCTION_MODE)) throw new WebslopeError(`${op}: reduction must be "mean", "sum" or "none", got ${JSON.stringify(reduction)}`);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  if (!Number.isInteger(ignoreIndex)) throw new WebslopeError(`${op}: ignoreIndex must be an integer, got ${ignoreIndex}`);
  const l = gpu().launcher;
  const loss = Tensor.empty([N], "f32", op), lse = Tensor.empty([N], "f32", op);
  const ign = ignoreIndex >>> 0;
  if (N > 0) {
    l.dispatch(crossEntropyRowKernel(fdt(logits), rowWorkgroup(C)),
      [logits.buffer(op), targets.buffer(op), loss.buffer(op), lse.buffer(op)], rowGrid(N), [N, C, ign]);
  }
  let out: Tensor, count: Tensor | null = null;
  if (reduction === "none") {
    const shaped = loss.alias(targets.shape);
    out = logits.dtype === "f32" ? shaped : mapOp(op, "a", [shaped], logits.dtype);
    if (out !== shaped) shaped.dispose();
  } else {
    out = Tensor.empty([], logits.dtype, op);
    count = Tensor.empty([1], "f32", op);
    l.dispatch(crossEntropyFinishKernel(fdt(logits)), [loss.buffer(op), targets.buffer(op), out.buffer(op), count.buffer(op)],
      [1, 1, 1], [N, C, ign, reduction === "mean" ? 1 : 0]);
  }
  if (isGradEnabled()) {
    record(op, [logits, null], out, { ignoreIndex, reduction }, { logits, targets, lse, count: count ?? undefined });
  }
  loss.dispose(); lse.dispose(); count?.dispose();
  return out;
}

function crossEntropyBackward(g: Tensor, saved: OpSaved["crossEntropy"], ignoreIndex: number, reduction: Reduction): Tensor {
  const op = "crossEntropy";
  const { logits: x, targets, lse, count } = saved;
  const C = x.shape[x.ndim - 1]!;
  const dx = Tensor.empty(x.shape, x.dtype, op);
  const gd = g.dtype === x.dtype ? g : mapOp(op, "a", [g], x.dtype);
  if (x.size > 0) {
    gpu().launcher.dispatch(crossEntropyGradKernel(fdt(x)),
      [x.buffer(op), targets.buffer(op), lse.buffer(op), gd.buffer(op), (count ?? lse).buffer(op), dx.buffer(op)],
      grid1d(x.size, CE_GRAD_WORKGROUP), [x.size, C, ignoreIndex >>> 0, REDUCTION_MODE[reduction]]);
  }
  if (gd !== g) gd.dispose();
  return dx;
}

export const crossEntropyRules: Rules<"crossEntropy"> = {
  crossEntropy: (g, c) => [crossEntropyBackward(g, c.saved, c.attrs.ignoreIndex, c.attrs.reduction), null],
};

registerRules(crossEntropyRules);
