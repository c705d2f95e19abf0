// LowRankAdapter: SLoPe's lazy adapter, Y += (1/r)·(X·L)·R with L ~ N(0, 1) [d_in, r] (no fan-in
// scaling) and R = 0 [r, d_out], so the layer's output is unchanged when it is inserted
// (docs/slope.md §5.2). Lᵀ carries a static N:M mask along d_in (applied at init and to every
// gradient) so that the merged [W; Lᵀ] inference matrix is exactly the trained one (§5.5).
import { ShapeError, fmtShape } from "../errors.ts";
import { randn, zeros } from "../ops/creation.ts";
import { permuteRaw } from "../ops/raw/copy.ts";
import { matmul } from "../ops/matmul.ts";
import { noGrad } from "../scope.ts";
import { maskOf } from "../sparse/mask.ts";
import { compress24, decompress24, type Pattern } from "../sparse/sparse24.ts";
import type { Tensor } from "../tensor.ts";
import { Module } from "./module.ts";

export interface AdapterRank {
  /** The rank r. */
  rank?: number;
  /** r as a fraction of the hidden size (min(d_in, d_out) of each layer, or `hiddenSize`), e.g. 0.0625. */
  rankFraction?: number;
  hiddenSize?: number;
}

/** Resolves and validates the rank for a d_in × d_out layer. */
export function resolveRank(op: string, dIn: number, dOut: number, o: AdapterRank): number {
  if ((o.rank === undefined) === (o.rankFraction === undefined)) {
    throw new ShapeError(op, "give exactly one of rank (an integer) or rankFraction (a fraction of the hidden size)");
  }
  const hidden = o.hiddenSize ?? Math.min(dIn, dOut);
  const r = o.rank ?? Math.round(o.rankFraction! * hidden);
  const max = Math.min(dIn, dOut);
  if (!Number.isInteger(r) || r < 1 || r > max) {
    throw new ShapeError(op, `adapter rank ${o.rank ?? `${r} (${o.rankFraction} × hidden ${hidden})`} is invalid for a ` +
      `[${dOut}, ${dIn}] layer: it must be an integer in [1, min(d_in, d_out) = ${max}]`);
  }
  return r;
}

export class LowRankAdapter extends Module {
  /** [d_in, r], masked (pruned entries are 0). */
  L: Tensor;
  /** [r, d_out]. */
  R: Tensor;
  /** Dense 0/1 [d_in, r]: the static N:M mask of Lᵀ along d_in. */
  maskL: Tensor;
  readonly rank: number;
  readonly scale: number;

  constructor(readonly inFeatures: number, readonly outFeatures: number, rank: number, opts: { seed?: number; pattern?: Pattern } = {}) {
    super();
    this.rank = resolveRank("LowRankAdapter", inFeatures, outFeatures, { rank });
    this.scale = 1 / this.rank;
    const [L, mask] = noGrad(() => {
      const lt = randn([this.rank, inFeatures], { seed: opts.seed });
      const s = compress24(lt, { pattern: opts.pattern ?? "2:4" });
      const dense = decompress24(s), m = maskOf(s);
      const out: [Tensor, Tensor] = [permuteRaw("LowRankAdapter", dense, [1, 0]), permuteRaw("LowRankAdapter", m, [1, 0])];
      for (const t of [lt, dense, m]) t.dispose();
      s.dispose();
      return out;
    });
    this.L = this.param("L", L);
    this.R = this.param("R", zeros([this.rank, outFeatures]));
    this.maskL = this.buffer("maskL", mask);
  }

  /** (1/r)·(x·(L⊙mask))·R for x [..., d_in] → [..., d_out]. */
  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) {
      throw new ShapeError("LowRankAdapter", `input ${fmtShape(x.shape)} must end in d_in=${this.inFeatures}`);
    }
    const lm = this.L.mul(this.maskL);
    const h = matmul(x, lm);
    const a = matmul(h, this.R);
    const y = a.mul(this.scale);
    for (const t of [lm, h, a]) t.dispose();
    return y;
  }
}
