// The opt-in vector-wise 2:4 pattern (never the default): one 2:4 mask shared by each block of
// `block` consecutive output rows, chosen by the block's summed |W| per group of 4 columns. The
// result is an ordinary Sparse24 (every row of a block has the same meta), so the double-pruned
// transpose, decompress and the decode kernel apply unchanged; spmmVector and sddmmVector are its
// dense GEMMs over the gathered half of K (shaders/vector24.wgsl.ts). The block must be a
// multiple of 64, the N extent of the smallest GEMM tile, so that a workgroup's outputs share one
// block and its gather is uniform. sddmmVector splits its reduction over the rows (split-K) by
// the per-element sddmm's rule, validation and partial sum (sddmm.ts: splitRows).
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { Tensor } from "../tensor.ts";
import type { SpDType } from "../../shaders/sparse24.wgsl.ts";
import { SP_WORKGROUP } from "../../shaders/sparse24.wgsl.ts";
import { chooseTile, GEMM_TILES } from "../../shaders/gemm.ts";
import { VECTOR_TILES, type VectorTile, vectorExtent, vectorPruneKernel, vectorSddmmKernel, vectorSpmmKernel, vectorStorage } from "../../shaders/vector24.wgsl.ts";
import { checkLive, grid1d } from "../ops/util.ts";
import { checkSplitK, splitRows, sumSplit } from "./sddmm.ts";
import { checkCompressible, metaWords, Sparse24, type SparseLike } from "./sparse24.ts";

/** Default rows per mask block of the vector-wise pattern. */
export const VECTOR_BLOCK = 64;

/** Throws unless `block` is a positive multiple of 64. */
export function checkVectorBlock(op: string, block: number): void {
  if (!Number.isInteger(block) || block <= 0 || block % 64 !== 0) {
    throw new ShapeError(op, `vector-wise block ${block} must be a positive multiple of 64 (the N extent of a GEMM tile), e.g. 64 or 128`);
  }
}

/**
 * Prunes a [d_out, K] weight to the vector-wise 2:4 pattern (each block of `block` rows keeps,
 * per group of 4 columns, the 2 columns of largest summed |W| over the block; ties keep the
 * lower index) and compresses it: a Sparse24 whose rows share their meta within a block.
 */
export function compressVector(w: Tensor, opts: { block?: number } = {}): Sparse24 {
  const op = "compressVector", block = opts.block ?? VECTOR_BLOCK;
  checkVectorBlock(op, block);
  checkCompressible(op, w, { n: 2, m: 4 });
  const [rows, cols] = w.shape as [number, number];
  const ws = metaWords(cols), vpr = cols / 2;
  const values = Tensor.empty([rows, vpr], w.dtype, op);
  const meta = Tensor.empty([rows, ws], "i32", op);
  gpu().launcher.dispatch(vectorPruneKernel(w.dtype as SpDType), [w.buffer(op), values.buffer(op), meta.buffer(op)],
    grid1d(Math.ceil(rows / block) * ws, SP_WORKGROUP), [rows, cols, ws, vpr, block]);
  return new Sparse24(values, meta, rows, cols, "2:4");
}

/** Workgroups from which the 128×128 tile is taken (fewer leave SMs idle). */
const BIG_GRID = 256;

/** The tile for an M×N output whose block axis is N (spmm) or M (sddmm). */
function chooseVectorTile(M: number, N: number, block: number, blockAxis: "m" | "n", kMajorA: boolean, forced?: VectorTile): VectorTile {
  const fits = (t: VectorTile) => vectorStorage(t, kMajorA) <= gpu().limits.maxComputeWorkgroupStorageSize;
  const ext = (t: VectorTile) => blockAxis === "n" ? vectorExtent(t).bn : vectorExtent(t).bm;
  if (forced) {
    if (block % ext(forced) !== 0) throw new ShapeError("vector-wise 2:4", `tile ${forced} spans ${ext(forced)} rows of W, which does not divide the block ${block}`);
    return forced;
  }
  // 128×128 only where Dawn runs it (Deno's wgpu runs the large tile slower, as for the expand kernel)
  const all: VectorTile[] = gpu().info.runtime === "Deno" ? ["64x64"] : ["128x128", "64x64"];
  const ok = all.filter((t) => block % ext(t) === 0 && fits(t));
  const pick = chooseTile(M, N, 1, ok.map((t) => VECTOR_TILES[t]), BIG_GRID);
  return pick === "64x64" ? "64x64" : "128x128";
}

export interface VectorOptions {
  /** Rows per mask block (must equal the block the weight was pruned with). Default 64. */
  block?: number;
  /** GEMM tile (default: 128x128 where the grid is large and the engine is not Deno's wgpu). */
  tile?: VectorTile;
}

/** Y = X·W_Rᵀ (+ bias) for x [rows, K] and a vector-wise s; no validation, no autograd. */
export function spmmVectorRaw(x: Tensor, s: SparseLike, bias: Tensor | null, rows: number, block: number, opts: VectorOptions = {}, op = "spmmVector"): Tensor {
  const K = s.cols, dOut = s.rows, vpr = K / 2, dtype = s.values.dtype as SpDType;
  const out = Tensor.empty([rows, dOut], x.dtype, op);
  if (rows === 0 || dOut === 0) return out;
  const tile = chooseVectorTile(rows, dOut, block, "n", false, opts.tile);
  const { bm, bn } = vectorExtent(tile);
  const bufs = [x.buffer(op), s.values.buffer(op), s.meta.buffer(op), out.buffer(op)];
  if (bias) bufs.push(bias.buffer(op));
  gpu().launcher.dispatch(vectorSpmmKernel(dtype, !!bias, tile, vpr % 4 === 0), bufs, [Math.ceil(dOut / bn), Math.ceil(rows / bm)],
    [rows, K, dOut, metaWords(K), vpr, block]);
  return out;
}

export interface VectorSddmmOptions extends VectorOptions {
  /** Write into this tensor (shape of s.values) instead of a new one. */
  out?: Tensor;
  /** Add to `out` instead of overwriting it (gradient accumulation over micro-batches). */
  accumulate?: boolean;
  /**
   * Split the reduction over the rows into this many slices (an integer 1–64; 1 = off), summed
   * in f32. Default: automatic, the rule of the per-element sddmm (sddmm.ts, SPLIT_BELOW).
   */
  splitK?: number;
}

/** The tile and split of sddmmVector at one shape (slices 1 = not split). */
export function sddmmVectorPlan(rows: number, dOut: number, K: number, block: number, opts: VectorSddmmOptions = {}, op = "sddmmVector"):
  { tile: VectorTile; grid: number; slices: number; sliceRows: number } {
  checkSplitK(op, opts.splitK);
  const tile = chooseVectorTile(dOut, K / 2, block, "m", true, opts.tile);
  const { bm, bn } = vectorExtent(tile);
  const grid = Math.ceil(K / 2 / bn) * Math.ceil(dOut / bm);
  return { tile, grid, ...splitRows(rows, grid, GEMM_TILES[VECTOR_TILES[tile]].bk, opts.splitK) };
}

/** dValues of a vector-wise s from dY [rows, d_out] and x [rows, K], into `out` (new when null). */
export function sddmmVectorRaw(dY: Tensor, x: Tensor, s: SparseLike, rows: number, block: number, out: Tensor | null = null, accumulate = false,
  opts: VectorSddmmOptions = {}, op = "sddmmVector"): Tensor {
  const K = s.cols, dOut = s.rows, vpr = K / 2, dtype = dY.dtype as SpDType;
  const gV = out ?? Tensor.empty([dOut, vpr], dtype, op);
  if (dOut === 0 || vpr === 0) return gV;
  const plan = sddmmVectorPlan(rows, dOut, K, block, opts, op);
  const split = plan.slices > 1;
  const part = split ? Tensor.empty([plan.slices, dOut, vpr], "f32", op) : null;
  const { bm, bn } = vectorExtent(plan.tile);
  gpu().launcher.dispatch(vectorSddmmKernel(dtype, accumulate, plan.tile, split), [dY.buffer(op), x.buffer(op), s.meta.buffer(op), (part ?? gV).buffer(op)],
    [Math.ceil(vpr / bn), Math.ceil(dOut / bm), plan.slices], [dOut, vpr, rows, K, metaWords(K), block, plan.sliceRows]);
  if (part) sumSplit(part, gV, dOut * vpr, plan.slices, accumulate, op);
  return gV;
}

function checkVectorWeight(op: string, s: Sparse24, block: number): void {
  checkVectorBlock(op, block);
  if (s.n !== 2 || s.m !== 4) throw new ShapeError(op, `the vector-wise kernels take 2:4, got ${s.pattern}; build the weight with compressVector`);
}

/**
 * Y = X·W_Rᵀ + bias for x [..., K] and s = compressVector(W, { block }) [d_out, K]; returns
 * [..., d_out]. The result is undefined for a weight whose rows do not share meta per block.
 */
export function spmmVector(x: Tensor, s: Sparse24, bias: Tensor | null = null, opts: VectorOptions = {}): Tensor {
  const op = "spmmVector", block = opts.block ?? VECTOR_BLOCK;
  checkLive(op, x, s.values, s.meta, bias);
  checkVectorWeight(op, s, block);
  if (x.ndim < 1 || x.shape.at(-1) !== s.cols) throw new ShapeError(op, `x ${fmtShape(x.shape)} must end in K=${s.cols}, the columns of the sparse matrix ${fmtShape(s.shape)}`);
  if (x.dtype !== s.dtype) throw new DTypeError(op, `x is ${x.dtype} but the sparse values are ${s.dtype}; they must match`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== s.rows || bias.dtype !== x.dtype)) {
    throw new ShapeError(op, `bias ${fmtShape(bias.shape)} (${bias.dtype}) must be [${s.rows}] ${x.dtype}`);
  }
  const rows = x.size / s.cols;
  const y = spmmVectorRaw(x, s, bias, rows, block, opts, op);
  if (x.ndim === 2) return y;
  const out = y.alias([...x.shape.slice(0, -1), s.rows]);
  y.dispose();
  return out;
}

/**
 * dValues at a vector-wise s's kept positions: dY [..., d_out], x [..., K]; shaped like s.values.
 * With { out, accumulate: true } adds into out.
 */
export function sddmmVector(dY: Tensor, x: Tensor, s: Sparse24, opts: VectorSddmmOptions = {}): Tensor {
  const op = "sddmmVector", block = opts.block ?? VECTOR_BLOCK, out = opts.out ?? null;
  checkLive(op, dY, x, s.values, s.meta, out);
  checkVectorWeight(op, s, block);
  if (dY.shape.at(-1) !== s.rows || x.shape.at(-1) !== s.cols || dY.shape.slice(0, -1).join() !== x.shape.slice(0, -1).join()) {
    throw new ShapeError(op, `dY ${fmtShape(dY.shape)} and x ${fmtShape(x.shape)} must be [..., ${s.rows}] and [..., ${s.cols}] with the same leading axes`);
  }
  if (dY.dtype !== s.dtype || x.dtype !== s.dtype) throw new DTypeError(op, `dY (${dY.dtype}), x (${x.dtype}) and the sparse values (${s.dtype}) must have one dtype`);
  if (out && (out.shape.join() !== s.values.shape.join() || out.dtype !== s.dtype)) {
    throw new ShapeError(op, `out ${fmtShape(out.shape)} (${out.dtype}) must match the sparse values ${fmtShape(s.values.shape)} (${s.dtype})`);
  }
  if (opts.accumulate && !out) throw new ShapeError(op, "accumulate needs an `out` tensor to add into");
  const rows = x.size / s.cols;
  sddmmVectorPlan(rows, s.rows, s.cols, block, opts, op); // validates splitK and the tile before anything is allocated
  return sddmmVectorRaw(dY, x, s, rows, block, out, !!opts.accumulate, opts, op);
}
