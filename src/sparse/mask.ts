// maskOf: the dense 0/1 mask of a sparse matrix's kept positions (decompressing ones), used by
// the masked-dense simulation and the adapters' static 2:4 mask.
import { fill } from "../ops/raw/map.ts";
import type { Tensor } from "../tensor.ts";
import { decompress24, Sparse24 } from "./sparse24.ts";

export function maskOf(s: Sparse24): Tensor {
  const ones = fill(s.values.shape, 1, s.values.dtype, "maskOf");
  const view = new Sparse24(ones, s.meta.alias(), s.rows, s.cols, s);
  const m = decompress24(view);
  view.dispose();
  return m;
}
