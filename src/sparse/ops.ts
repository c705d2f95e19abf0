// sparseLinear: the differentiable SLoPe linear layer, Y = X·W_Rᵀ + b, with the double-pruned
// backward of docs/slope.md §1:
//   dX      = dY·W_RC            (spmm through W_RC^T = wT)
//   dValues = (M_R ⊙ dYᵀX)[M_R]  (sddmm: the gradient of the compressed w.values)
//   db      = Σ_rows dY
// The differentiable inputs are x, w.values and bias: mark w.values requiresGrad and
// w.values.grad accumulates the compressed gradient (same layout as w.values) over backwards.
// A vector-wise W (compressVector, `vectorBlock` set) runs its forward and dValues as dense GEMMs
// over the gathered half of K (vector24.ts); its dX goes through the same double-pruned W_RC^T
// (a vector-wise mask is a 2:4 mask, so SLoPe's transpose rule applies unchanged).
// The rule is registered with the tape when this module loads.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { ShapeError, ValueError, fmtShape } from "../errors.ts";
import { isGradEnabled } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { reduceRaw } from "../ops/raw/reduce.ts";
import { sddmmRaw } from "./sddmm.ts";
import type { Sparse24, SparseLike } from "./sparse24.ts";
import { activate, checkSpmm, spmmActRaw, spmmRaw } from "./spmm.ts";
import { ACTIVATION_MAP, mapOp } from "../ops/raw/map.ts";
import type { Activation } from "../autograd/ops.ts";
import { checkVectorBlock, sddmmVectorRaw, spmmVectorRaw } from "./vector24.ts";
import { DECODE_MAX_ROWS } from "../../shaders/spmm-decode.wgsl.ts";

declare module "../autograd/ops.ts" {
  interface OpSaved {
    /** The input, W's metadata (for sddmm) and the double-pruned transpose (for dX). */
    sparseLinear: { x: Tensor; meta: Tensor; valuesT: Tensor; metaT: Tensor; z?: Tensor };
  }
}

/**
 * y = x·W_Rᵀ + bias for x [..., d_in], w = compress24(W) [d_out, d_in] and wT = doublePrune(w)
 * [d_in, d_out]; returns [..., d_out]. Backward: dx through wT, w.values.grad by sddmm, bias.grad.
 * `vectorBlock`: w was built by compressVector with this block (its kernels then take over).
 */
export function sparseLinear(x: Tensor, w: Sparse24, wT: Sparse24, bias: Tensor | null = null, vectorBlock: number | null = null,
  activation: Activation = "none"): Tensor {
  const op = "sparseLinear";
  if (activation !== "none" && activation !== "relu" && activation !== "gelu") {
    throw new ValueError(op, `activation must be "none", "relu" or "gelu", got ${JSON.stringify(activation)}`);
  }
  const rows = checkSpmm(op, x, w, bias);
  if (vectorBlock !== null) {
    checkVectorBlock(op, vectorBlock);
    if (w.n !== 2 || w.m !== 4) throw new ShapeError(op, `a vector-wise weight is 2:4, got ${w.pattern}`);
  }
  if (wT.rows !== w.cols || wT.cols !== w.rows || wT.n !== w.n || wT.m !== w.m || wT.dtype !== w.dtype) {
    throw new ShapeError(op, `wT ${fmtShape(wT.shape)} (${wT.pattern}, ${wT.dtype}) is not the double-pruned transpose of w ` +
      `${fmtShape(w.shape)} (${w.pattern}, ${w.dtype}); build it with doublePrune(w)`);
  }
  wT.values.buffer(op); wT.meta.buffer(op);
  // the activation's backward needs the pre-activation z (the dense matmul keeps it the same way)
  const wantZ = activation !== "none" && isGradEnabled() && (x.requiresGrad || w.values.requiresGrad || !!bias?.requiresGrad);
  // decoding (≤ 16 rows) stays on the decode kernel, which reads any 2:4 matrix at weight-byte speed
  const [y2, z] = vectorBlock !== null && rows > DECODE_MAX_ROWS
    ? activate(spmmVectorRaw(x, w, bias, rows, vectorBlock, {}, op), activation, wantZ, op)
    : spmmActRaw(x, w, bias, rows, activation, wantZ, {}, op);
  let y = y2;
  if (x.ndim !== 2) { y = y2.alias([...x.shape.slice(0, -1), w.rows]); y2.dispose(); }
  if (isGradEnabled()) {
    record(op, [x, w.values, bias], y, { n: w.n, m: w.m, dOut: w.rows, dIn: w.cols, vectorBlock: vectorBlock ?? 0, activation },
      { x, meta: w.meta, valuesT: wT.values, metaT: wT.meta, z: z ?? undefined });
  }
  z?.dispose();
  return y;
}

export const sparseRules: Rules<"sparseLinear"> = {
  sparseLinear: (g, c) => {
    const { n, m, dOut, dIn, vectorBlock, activation } = c.attrs;
    const { x, meta, valuesT: valsT, metaT, z } = c.saved;
    const g0 = g;
    // through the activation first: dz = g · act'(z), then the product's backward with dz
    if (activation !== "none") {
      const zs = z!.alias(g.shape); // z is [rows, d_out]; g has the output's leading axes
      g = mapOp("sparseLinear", ACTIVATION_MAP[activation].grad, [g, zs], g.dtype);
      zs.dispose();
    }
    const rows = g.size / dOut;
    let dx: Tensor | null = null, dv: Tensor | null = null, db: Tensor | null = null;
    if (c.needsGrad[0]) {
      const wT: SparseLike = { values: valsT, meta: metaT, rows: dIn, cols: dOut, n, m };
      const r = spmmRaw(g, wT, null, rows, {}, "sparseLinear");
      dx = r.alias(c.inputShapes[0]!);
      r.dispose();
    }
    if (c.needsGrad[1]) {
      const w: SparseLike = { values: valsT, meta, rows: dOut, cols: dIn, n, m };
      dv = vectorBlock ? sddmmVectorRaw(g, x, w, rows, vectorBlock, null, false, {}, "sparseLinear") : sddmmRaw(g, x, w, rows, null, false, {}, "sparseLinear");
    }
    if (c.needsGrad[2]) {
      const flat = g.alias([rows, dOut]);
      const r = reduceRaw("sparseLinear", flat, [0], "sum", false);
      db = r.alias([dOut]);
      flat.dispose(); r.dispose();
    }
    if (g !== g0) g.dispose();
    return [dx, dv, db];
  },
};

registerRules(sparseRules);
