// Neural-network ops. (Being replaced by fused kernels: softmax, logSoftmax, layerNorm,
// embedding, crossEntropy, dropout.)
import type { Tensor } from "../tensor.ts";
import { normAxis } from "./util.ts";

export interface SoftmaxOptions {
  /** Mask positions j > i of the last two axes (attention scores [..., T, T]). */
  causal?: boolean;
}

export function softmax(x: Tensor, axis = -1, _opts: SoftmaxOptions = {}): Tensor {
  const a = normAxis("softmax", axis, x.ndim);
  const m = x.max(a, true);
  const sh = x.sub(m);
  const e = sh.exp();
  const s = e.sum(a, true);
  const out = e.div(s);
  m.dispose(); sh.dispose(); e.dispose(); s.dispose();
  return out;
}

export function logSoftmax(x: Tensor, axis = -1, _opts: SoftmaxOptions = {}): Tensor {
  const a = normAxis("logSoftmax", axis, x.ndim);
  const m = x.max(a, true);
  const sh = x.sub(m);
  const e = sh.exp();
  const s = e.sum(a, true);
  const ls = s.log();
  const out = sh.sub(ls);
  m.dispose(); sh.dispose(); e.dispose(); s.dispose(); ls.dispose();
  return out;
}
