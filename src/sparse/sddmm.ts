// sddmm: the weight gradient of a sparse layer at the kept positions only,
//   gW[o, slot] = Σ_n dY[n, o] · X[n, col(o, slot)]  =  (M_R ⊙ dYᵀX) compressed,
// in the layout of s.values (so it is the gradient of the compressed values and shares the
// layout of the optimizer state). Accumulates into an existing buffer for micro-batches.
// Two kernels (shaders/sddmm.wgsl.ts): dense register tiles with a masked store (default) and a
// gather kernel that does only the kept multiply-adds.
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { Tensor } from "../tensor.ts";
import type { SpDType } from "../../shaders/sparse24.wgsl.ts";
import { chooseTile } from "../../shaders/gemm.ts";
import { SDDMM_ROWS, SDDMM_TILES, sddmmDenseTileKernel, sddmmExtent, sddmmKernel, type SddmmTile } from "../../shaders/sddmm.wgsl.ts";
import { checkLive, numel } from "../ops/util.ts";
import { metaWords, type Sparse24, type SparseLike } from "./sparse24.ts";

/** Workgroups of 128×128 from which the dense-tile kernel takes that tile (fewer leave SMs idle). */
const BIG_GRID = 256;

export interface SddmmOptions {
  /** Write into this tensor (shape of s.values) instead of a new one. */
  out?: Tensor;
  /** Add to `out` instead of overwriting it (gradient accumulation over micro-batches). */
  accumulate?: boolean;
  /**
   * "dense-tile" (default): dense 64×64 register tiles of dYᵀX, only the kept entries stored
   * (fastest measured on the H200); "gather": N/M of the multiply-adds, x gathered per kept
   * position with loop-invariant columns decoded once per output.
   */
  method?: "dense-tile" | "gather";
  /** Tile of the dense-tile kernel (default: 128x128 when the grid has ≥ 256 such tiles). */
  tile?: SddmmTile;
}

/** The product without validation, into `out` (new when omitted). dY [n, d_out], x [n, K]. */
export function sddmmRaw(dY: Tensor, x: Tensor, s: SparseLike, rows: number, out: Tensor | null = null, accumulate = false,
  opts: SddmmOptions = {}, op = "sddmm"): Tensor {
  const ws = metaWords(s.cols), vpr = (s.cols * s.n) / s.m, dtype = dY.dtype as SpDType;
  const gW = out ?? Tensor.empty([s.rows, vpr], dtype, op);
  if (s.rows === 0 || ws === 0) return gW;
  const bufs = [dY.buffer(op), x.buffer(op), s.meta.buffer(op), gW.buffer(op)];
  const params = [rows, s.cols, s.rows, ws, vpr];
  if (opts.method === "gather") {
    gpu().launcher.dispatch(sddmmKernel(s.n, s.m, dtype, accumulate), bufs, [ws, Math.ceil(s.rows / SDDMM_ROWS)], params);
  } else {
    const tile: SddmmTile = opts.tile ?? (chooseTile(s.rows, s.cols, 1, [SDDMM_TILES["128x128"], SDDMM_TILES["64x64"]], BIG_GRID) === "64x64" ? "64x64" : "128x128");
    const { bo, bk } = sddmmExtent(tile);
    gpu().launcher.dispatch(sddmmDenseTileKernel(s.n, s.m, dtype, accumulate, tile), bufs, [Math.ceil(s.cols / bk), Math.ceil(s.rows / bo)], params);
  }
  return gW;
}

/**
 * dW at s's kept positions: dY [..., d_out], x [..., K] (same leading axes), s [d_out, K].
 * Returns a tensor shaped like s.values; with { out, accumulate: true } adds into out.
 */
export function sddmm(dY: Tensor, x: Tensor, s: Sparse24, opts: SddmmOptions = {}): Tensor {
  const op = "sddmm";
  const out = opts.out ?? null;
  checkLive(op, dY, x, s.values, s.meta, out);
  if (dY.ndim < 1 || x.ndim < 1 || dY.shape.at(-1) !== s.rows || x.shape.at(-1) !== s.cols ||
      dY.shape.slice(0, -1).join() !== x.shape.slice(0, -1).join()) {
    throw new ShapeError(op, `dY ${fmtShape(dY.shape)} and x ${fmtShape(x.shape)} do not fit the sparse matrix ${fmtShape(s.shape)}: ` +
      `they need shapes [..., ${s.rows}] and [..., ${s.cols}] with the same leading axes`);
  }
  if (dY.dtype !== s.dtype || x.dtype !== s.dtype) {
    throw new DTypeError(op, `dY (${dY.dtype}), x (${x.dtype}) and the sparse values (${s.dtype}) must have one dtype`);
  }
  if (out && (out.shape.join() !== s.values.shape.join() || out.dtype !== s.dtype)) {
    throw new ShapeError(op, `out ${fmtShape(out.shape)} (${out.dtype}) must match the sparse values ${fmtShape(s.values.shape)} (${s.dtype})`);
  }
  if (opts.accumulate && !out) throw new ShapeError(op, "accumulate needs an `out` tensor to add into");
  return sddmmRaw(dY, x, s, numel(x.shape.slice(0, -1)), out, !!opts.accumulate, opts);
}
