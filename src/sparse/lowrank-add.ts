// lowRankAdd: launches the fused multiply-add of merged inference on the merged spmm output.
// Inference only (no autograd): merged layers refuse training.
import { ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { checkLive } from "../ops/util.ts";
import { Tensor } from "../tensor.ts";
import { LOWRANK_WG, lowRankAddKernel } from "../../shaders/lowrank.wgsl.ts";

/** y [rows, dOut + r] = [C | A], rs [r, dOut] → C + A·rs as a new [rows, dOut] tensor. */
export function lowRankAdd(y: Tensor, rs: Tensor): Tensor {
  checkLive("lowRankAdd", y, rs);
  const [r, dOut] = rs.shape as [number, number];
  const rows = y.shape[0]!;
  if (y.ndim !== 2 || rs.ndim !== 2 || y.shape[1] !== dOut + r || y.dtype !== "f32" || rs.dtype !== "f32") {
    throw new ShapeError("lowRankAdd", `y ${fmtShape(y.shape)} must be [rows, ${dOut} + ${r}] for R ${fmtShape(rs.shape)} (f32)`);
  }
  const out = Tensor.empty([rows, dOut], "f32", "lowRankAdd");
  const maxY = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (rows > maxY) throw new ShapeError("lowRankAdd", `${rows} rows exceed the adapter's ${maxY} workgroups per dimension; split the batch`);
  gpu().launcher.dispatch(lowRankAddKernel(dOut % 4 === 0), [y.buffer("lowRankAdd"), rs.buffer("lowRankAdd"), out.buffer("lowRankAdd")],
    [Math.ceil(dOut / 4 / LOWRANK_WG), rows], [rows, dOut, r]);
  return out;
}
