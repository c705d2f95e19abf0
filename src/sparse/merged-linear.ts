// mergedLinear: the forward of a merged SLoPe layer (docs/slope.md §5), act(X·Wᵀ + b + (X·L)·Rs)
// from the merged storage S = [W; Lᵀ] (d_out + r rows, N:M along K), [b; 0] and Rs = R/r.
// At decode sizes (≤ 16 rows, 2:4, K a multiple of 8, r ≤ 16) it is one dispatch of the fused decode
// kernel (shaders/spmm-decode.wgsl.ts, "fused"): decoding is bound by dispatches, and the unfused
// form takes three (spmm, its split-K sum, the low-rank add) plus the activation. Larger inputs
// take spmm over [W; Lᵀ] with the bias in its epilogue, the tiled low-rank add
// (lowrank-add.ts) and the activation. Inference only: no autograd.
import { ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { gelu, relu } from "../ops/elementwise.ts";
import { Tensor } from "../tensor.ts";
import type { Activation } from "../../shaders/matmul.wgsl.ts";
import { DECODE_MAX_ROWS, FUSED_MAX_RANK, FUSED_ROWS, fusedRounds, spmmDecodeKernel } from "../../shaders/spmm-decode.wgsl.ts";
import type { SpDType } from "../../shaders/sparse24.wgsl.ts";
import { lowRankAdd } from "./lowrank-add.ts";
import { checkSpmm, spmmRaw } from "./spmm.ts";
import { metaWords, type Sparse24 } from "./sparse24.ts";

export interface MergedLinearOptions {
  /** The one-dispatch fused decode kernel: "auto" (default) where it wins (fusedDecodeWins), true to require it (a ShapeError where it cannot run), false never. */
  fused?: "auto" | boolean;
}

/** Whether the fused decode kernel can take this product: ≤ 16 rows, 2:4, K % 8 = 0, rank ≤ FUSED_MAX_RANK. */
export function fusedDecodeApplies(rows: number, s: Sparse24, rank: number): boolean {
  return rows >= 1 && rows <= DECODE_MAX_ROWS && s.n === 2 && s.m === 4 && s.cols % 8 === 0 && rank >= 1 && rank <= FUSED_MAX_RANK;
}

/**
 * Whether "auto" takes it: only with one round of Z rows (r ≤ 16). On the H200 (bench/lowrank.ts,
 * results/2026-12-03/n2-, n3-) it won at r = 12 (d = 768) and tied or lost at r = 32, 48 and 128,
 * where every workgroup recomputing Z = X·L costs more than the dispatches it saves.
 */
export function fusedDecodeWins(rows: number, s: Sparse24, rank: number): boolean {
  return fusedDecodeApplies(rows, s, rank) && fusedRounds(rank) === 1;
}

/**
 * x [rows, K], s = [W; Lᵀ] compressed ([d_out + r, K]), bias [d_out + r] (its last r entries
 * zero), rs = R/r [r, d_out] f32 → act(x·Wᵀ + b + (x·L)·rs) as a new [rows, d_out] tensor.
 */
export function mergedLinear(x: Tensor, s: Sparse24, bias: Tensor, rs: Tensor, act: Activation = "none", opts: MergedLinearOptions = {}): Tensor {
  const op = "mergedLinear";
  if (x.ndim !== 2) throw new ShapeError(op, `x must be [rows, K], got ${fmtShape(x.shape)}; reshape it first`);
  const rows = checkSpmm(op, x, s, bias);
  if (rs.ndim !== 2 || rs.dtype !== "f32" || rs.shape[0]! + rs.shape[1]! !== s.rows) {
    throw new ShapeError(op, `Rs ${fmtShape(rs.shape)} (${rs.dtype}) must be f32 [r, d_out] with r + d_out = ${s.rows}, the rows of [W; Lᵀ]`);
  }
  const [r, dOut] = rs.shape as [number, number];
  if (act !== "none" && act !== "relu" && act !== "gelu") throw new ShapeError(op, `unknown activation "${String(act)}"; one of none, relu, gelu`);
  const fused = opts.fused ?? "auto";
  if (fused !== "auto" && fused !== true && fused !== false) throw new ShapeError(op, `fused must be "auto", true or false, got ${String(fused)}`);
  if (fused === true && !fusedDecodeApplies(rows, s, r)) {
    throw new ShapeError(op, `the fused decode kernel takes 1–${DECODE_MAX_ROWS} rows, 2:4, K a multiple of 8 and rank ≤ ${FUSED_MAX_RANK}; ` +
      `got ${rows} rows, ${s.n}:${s.m}, K=${s.cols}, rank ${r}; use fused: "auto"`);
  }
  if (fused === true || (fused === "auto" && fusedDecodeWins(rows, s, r))) {
    const blocks = Math.ceil(dOut / FUSED_ROWS);
    if (blocks > gpu().limits.maxComputeWorkgroupsPerDimension) throw new ShapeError(op, `d_out=${dOut} needs ${blocks} workgroups, over the adapter's per-dimension limit; use fused: false`);
    const out = Tensor.empty([rows, dOut], x.dtype, op);
    const K = s.cols;
    const k = spmmDecodeKernel({ dtype: s.values.dtype as SpDType, c: Math.ceil(rows / 4), mode: "fused", bias: true, rounds: fusedRounds(r), act });
    const bufs = [x.buffer(op), s.values.buffer(op), s.meta.buffer(op), out.buffer(op), bias.buffer(op), rs.buffer(op)];
    gpu().launcher.dispatch(k, bufs, [blocks, 1], [rows, K, dOut, metaWords(K), K / 2, K, r]);
    return out;
  }
  const y = spmmRaw(x, s, bias, rows, {}, op);
  const sum = lowRankAdd(y, rs);
  y.dispose();
  if (act === "none") return sum;
  const a = act === "gelu" ? gelu(sum) : relu(sum);
  sum.dispose();
  return a;
}
