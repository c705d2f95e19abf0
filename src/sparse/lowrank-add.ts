// lowRankAdd: launches the fused multiply-add of merged inference on the merged spmm output.
// Inference only (no autograd): merged layers refuse training. Few rows (decode) take the
// one-row kernel; more take the register-tiled one, its tile chosen like the dense matmul's.
import { ResourceLimitError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { checkLive } from "../ops/util.ts";
import { Tensor } from "../tensor.ts";
import { GEMM_TILES, chooseTile, tileExtent } from "../../shaders/gemm.ts";
import {
  LOWRANK_TILE_NAMES, LOWRANK_WG, type LowRankTileName, lowRankAddKernel, lowRankAddTiledKernel, lowRankSharedBytes,
} from "../../shaders/lowrank.wgsl.ts";

/** Up to this many rows the one-row kernel wins: the tiled one would leave most of its tile idle. */
export const LOWRANK_SMALL_ROWS = 16;

/** Outputs of at least this many workgroups of a larger tile keep every SM of a big GPU busy (as matmul's). */
const BIG_GRID = 192;

/** The tiled kernel's tile for a rows×dOut output: the largest that still fills the GPU and fits (as matmul's). */
export function chooseLowRankTile(rows: number, dOut: number, maxShared: number): LowRankTileName {
  return chooseTile(rows, dOut, 1, LOWRANK_TILE_NAMES, BIG_GRID, (t) => lowRankSharedBytes(GEMM_TILES[t]) <= maxShared);
}

/**
 * y [rows, dOut + r] = [C | A], rs [r, dOut] → C + A·rs as a new [rows, dOut] tensor. `kernel`
 * forces the one-row kernel ("small") or a tile of the tiled one (tests and benchmarks).
 */
export function lowRankAdd(y: Tensor, rs: Tensor, kernel?: "small" | LowRankTileName): Tensor {
  checkLive("lowRankAdd", y, rs);
  const [r, dOut] = rs.shape as [number, number];
  const rows = y.shape[0]!;
  if (y.ndim !== 2 || rs.ndim !== 2 || y.shape[1] !== dOut + r || y.dtype !== "f32" || rs.dtype !== "f32") {
    throw new ShapeError("lowRankAdd", `y ${fmtShape(y.shape)} must be [rows, ${dOut} + ${r}] for R ${fmtShape(rs.shape)} (f32)`);
  }
  const g = gpu();
  const maxDim = g.limits.maxComputeWorkgroupsPerDimension;
  const bufs = (out: Tensor) => [y.buffer("lowRankAdd"), rs.buffer("lowRankAdd"), out.buffer("lowRankAdd")];
  if (kernel === "small" || (kernel === undefined && rows <= LOWRANK_SMALL_ROWS)) {
    if (rows > maxDim) throw new ShapeError("lowRankAdd", `${rows} rows exceed the adapter's ${maxDim} workgroups per dimension; split the batch`);
    const out = Tensor.empty([rows, dOut], "f32", "lowRankAdd");
    g.launcher.dispatch(lowRankAddKernel(dOut % 4 === 0), bufs(out), [Math.ceil(dOut / 4 / LOWRANK_WG), rows], [rows, dOut, r]);
    return out;
  }
  // Variant and grid first, so a refusal allocates nothing.
  const maxShared = g.limits.maxComputeWorkgroupStorageSize;
  const tileName = kernel ?? chooseLowRankTile(rows, dOut, maxShared);
  const tile = GEMM_TILES[tileName];
  const shared = lowRankSharedBytes(tile);
  if (shared > maxShared) {
    throw new ResourceLimitError("lowRankAdd", `tile ${tileName} needs ${shared} bytes of workgroup memory, over this adapter's ${maxShared}`);
  }
  const { bm, bn } = tileExtent(tile);
  const colTiles = Math.ceil(dOut / bn), rowTiles = Math.ceil(rows / bm);
  // Row tiles past the per-dimension limit fold into z (the kernel skips the overhang of the last slice).
  const perZ = Math.min(rowTiles, maxDim), zs = Math.ceil(rowTiles / perZ);
  if (colTiles > maxDim || zs > maxDim) {
    throw new ShapeError("lowRankAdd", `[${rows}, ${dOut}] output exceeds the adapter's ${maxDim} workgroups per dimension; split the batch`);
  }
  const vecN = dOut % 4 === 0, vecY = vecN && r % 4 === 0;
  const k = lowRankAddTiledKernel({ ...tile, vecY, vecN });
  const out = Tensor.empty([rows, dOut], "f32", "lowRankAdd");
  g.launcher.dispatch(k, bufs(out), [colTiles, perZ, zs], [rows, dOut, r, perZ]);
  return out;
}
