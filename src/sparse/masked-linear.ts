// maskedLinear: the masked-dense simulation of SLoPe's linear layer (`compress: false`), the
// oracle the compressed path is tested against. Dense f32 buffers plus dense 0/1 masks, the
// accuracy-path semantics of docs/slope.md §1:
//   Y  = X·(M_R⊙W)ᵀ + b
//   dX = dY·(M_RC⊙W)
//   dW = M_R ⊙ (dYᵀX)
//   db = Σ_rows dY
// The rule is registered with the tape when this module loads.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import { ShapeError, fmtShape } from "../errors.ts";
import { matmulRaw } from "../ops/matmul.ts";
import { mapOp } from "../ops/raw/map.ts";
import { reduceRaw } from "../ops/raw/reduce.ts";
import { checkLive } from "../ops/util.ts";
import { isGradEnabled } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

declare module "../autograd/ops.ts" {
  interface OpSaved {
    maskedLinear: { x: Tensor; weight: Tensor; maskR: Tensor; maskRC: Tensor };
  }
}

/** x [..., d_in], weight/maskR/maskRC [d_out, d_in] (masks 0/1 f32), bias [d_out] → [..., d_out]. */
export function maskedLinear(x: Tensor, weight: Tensor, maskR: Tensor, maskRC: Tensor, bias: Tensor | null = null): Tensor {
  const op = "maskedLinear";
  checkLive(op, x, weight, maskR, maskRC, bias);
  const [dOut, dIn] = weight.shape as [number, number];
  if (weight.ndim !== 2 || x.shape.at(-1) !== dIn || maskR.shape.join() !== weight.shape.join() || maskRC.shape.join() !== weight.shape.join()) {
    throw new ShapeError(op, `x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}, masks ${fmtShape(maskR.shape)} / ${fmtShape(maskRC.shape)} do not fit`);
  }
  const rows = x.size / dIn;
  const x2 = x.alias([rows, dIn]);
  const wr = mapOp(op, "a * b", [weight, maskR], weight.dtype);
  const [y2] = matmulRaw(x2, wr, false, true, bias);
  wr.dispose(); x2.dispose();
  const y = y2.alias([...x.shape.slice(0, -1), dOut]);
  y2.dispose();
  if (isGradEnabled()) record(op, [x, weight, bias], y, {}, { x, weight, maskR, maskRC });
  return y;
}

export const maskedLinearRules: Rules<"maskedLinear"> = {
  maskedLinear: (g, c) => {
    const { x, weight: w, maskR, maskRC } = c.saved;
    const [dOut, dIn] = w.shape as [number, number];
    const rows = g.size / dOut;
    const g2 = g.alias([rows, dOut]);
    let dx: Tensor | null = null, dw: Tensor | null = null, db: Tensor | null = null;
    if (c.needsGrad[0]) {
      const wrc = mapOp("maskedLinear", "a * b", [w, maskRC], w.dtype);
      const [r] = matmulRaw(g2, wrc, false, false);
      dx = r.alias(c.inputShapes[0]!);
      r.dispose(); wrc.dispose();
    }
    if (c.needsGrad[1]) {
      const x2 = x.alias([rows, dIn]);
      const [full] = matmulRaw(g2, x2, true, false);
      dw = mapOp("maskedLinear", "a * b", [full, maskR], w.dtype);
      full.dispose(); x2.dispose();
    }
    if (c.needsGrad[2]) {
      const r = reduceRaw("maskedLinear", g2, [0], "sum", false);
      db = r.alias([dOut]);
      r.dispose();
    }
    g2.dispose();
    return [dx, dw, db];
  },
};

registerRules(maskedLinearRules);
