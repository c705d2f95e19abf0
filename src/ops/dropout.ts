// Dropout with a counter-based mask (shaders/dropout.wgsl.ts): the mask follows from a key drawn
// from the generator and is regenerated from that key in the backward, never stored.
// Registers its rule.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { WebslopeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { generatorFor } from "../random.ts";
import { isGradEnabled } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { DROPOUT_WORKGROUP, dropoutKernel } from "../../shaders/dropout.wgsl.ts";
import { checkFloat, checkLive, fdt, grid1d } from "./util.ts";

export interface DropoutOptions {
  /** false (eval mode) returns the input unchanged. Default true. */
  training?: boolean;
  /** A fixed seed for this call's mask; without it the global generator (manualSeed) is used. */
  seed?: number;
}

function dropoutRaw(op: string, x: Tensor, p: number, key: readonly [number, number]): Tensor {
  const out = Tensor.empty(x.shape, x.dtype, op);
  if (x.size > 0) {
    gpu().launcher.dispatch(dropoutKernel(fdt(x)), [x.buffer(op), out.buffer(op)], grid1d(x.size, DROPOUT_WORKGROUP),
      [x.size, key[0], key[1], f32bits(p), f32bits(1 / (1 - p))]);
  }
  return out;
}

/**
 * Zeroes each element with probability p and scales the rest by 1/(1 − p). The mask comes from
 * a key drawn from the generator and is regenerated from that key in the backward (not stored).
 * p = 0 or training = false returns an alias of x (gradient passes through).
 */
export function dropout(x: Tensor, p: number, opts: DropoutOptions = {}): Tensor {
  const op = "dropout";
  checkLive(op, x);
  checkFloat(op, x);
  if (!(typeof p === "number" && p >= 0 && p < 1)) throw new WebslopeError(`${op}: p must be in [0, 1), got ${p} (input ${fmtShape(x.shape)})`);
  if (p === 0 || opts.training === false) {
    const out = x.alias();
    if (isGradEnabled()) record(op, [x], out, { p: 0, key: [0, 0] });
    return out;
  }
  const key = generatorFor(opts.seed).nextKey();
  const out = dropoutRaw(op, x, p, key);
  if (isGradEnabled()) record(op, [x], out, { p, key });
  return out;
}

export const dropoutRules: Rules<"dropout"> = {
  dropout: (g, c) => [c.attrs.p === 0 ? g : dropoutRaw("dropout", g, c.attrs.p, c.attrs.key)],
};

registerRules(dropoutRules);
