// sddmm: the weight gradient of a sparse layer at the kept positions only,
//   gW[o, slot] = Σ_n dY[n, o] · X[n, col(o, slot)]  =  (M_R ⊙ dYᵀX) compressed,
// in the layout of s.values (so it is the gradient of the compressed values and shares the
// layout of the optimizer state). Accumulates into an existing buffer for micro-batches.
// Two kernels (shaders/sddmm.wgsl.ts): dense register tiles with a masked store (default) and a
// gather kernel that does only the kept multiply-adds; and for 2:4, selectable (method "lanes" or
// setSddmmMethod), the warp-uniform-pattern kernel (shaders/sddmm-lanes.wgsl.ts): half the
// multiply-adds as straight-line code per pattern case. Either one splits the reduction over n
// (split-K) when its grid of output tiles is too small to fill the GPU (sddmmPlan); the rule,
// its validation and the sum of the partials (splitRows, checkSplitK, sumSplit) are shared with
// the vector-wise sddmm (vector24.ts). Where the
// dense product would run on the matrix units (f16, or f32 below "highest" precision with
// init({ matrixUnits: true })), the "matmul" method is the default instead: the whole dYᵀX on the
// matrix units (split-K included) and a gather of its kept entries — all the multiply-adds, but at
// tensor-core speed: on the H200 the shader-core sddmm took 13.1 ms of a 49 ms SLoPe mixed-f16
// step, the dense weight gradients of the same step 5.4 ms.
import { DTypeError, ShapeError, ValueError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { Tensor } from "../tensor.ts";
import type { SpDType } from "../../shaders/sparse24.wgsl.ts";
import { GEMM_TILES, chooseTile } from "../../shaders/gemm.ts";
import {
  SDDMM_ROWS, SDDMM_TILES, sddmmDenseTileKernel, sddmmExtent, sddmmKernel, sddmmSplitSumKernel, type SddmmTile,
} from "../../shaders/sddmm.wgsl.ts";
import { SDDMM_LANES, SDDMM_LANES_DEFAULT, type SddmmLanesVariant, lanesExtent, sddmmLanesKernel } from "../../shaders/sddmm-lanes.wgsl.ts";
import { gatherKeptKernel } from "../../shaders/sparse24.wgsl.ts";
import { matmulRaw } from "../ops/matmul.ts";
import { chooseMatrixUnitTile, getFloat32MatmulPrecision } from "../ops/raw/precision.ts";
import { checkLive, grid1d, numel } from "../ops/util.ts";
import { metaWords, type Sparse24, type SparseLike } from "./sparse24.ts";

/** Workgroups of 128×128 from which the dense-tile kernel takes that tile (fewer leave SMs idle). */
const BIG_GRID = 256;

/**
 * The split-K rule. gW is small (d_out × K/2) while n = B·T is large (16,384 rows in a training
 * step), so at GPT-2 shapes the output tiles make 9–144 workgroups on a GPU of 132 SMs, each
 * looping over all n rows. Below SPLIT_BELOW workgroups (about 2 per SM of an H200) the n range
 * is split into S slices, S the smallest power of two that brings the grid to SPLIT_TARGET
 * (about 4 per SM: a 256-invocation workgroup with 64–256 accumulators per invocation leaves
 * room for several per SM, and more hide the loads' latency), at most MAX_SPLIT, and only as far
 * as every slice keeps MIN_SLICE rows (shorter slices spend more on the f32 partials and their
 * sum than they gain). WebGPU does not report the SM count: these are H200 figures; a smaller
 * GPU only pays a little more for partials it did not need.
 */
export const SPLIT_BELOW = 256;
export const SPLIT_TARGET = 512;
export const MAX_SPLIT = 32;
export const MIN_SLICE = 256;
/** The largest `splitK` a caller may force. */
export const MAX_FORCED_SPLIT = 64;

export type SddmmMethod = "dense-tile" | "gather" | "matmul" | "lanes";
const METHODS: readonly SddmmMethod[] = ["dense-tile", "gather", "matmul", "lanes"];
/** setSddmmMethod's choice; null: automatic (matmul where the matrix units apply, else dense-tile). */
let defaultMethod: SddmmMethod | null = null;
let defaultLanes: SddmmLanesVariant = SDDMM_LANES_DEFAULT;

/**
 * The kernel (and lanes variant) of every sddmm call that does not name one, the sparseLinear
 * backward's included; null restores the automatic choice ("matmul" where the dense product runs
 * on the matrix units, else "dense-tile"). "lanes" applies to 2:4 weights (others keep
 * "dense-tile" under this default). Some lanes variants exhaust SwiftShader's shader compiler (over
 * 20 GiB under Node's Dawn; c4g2m4 and c4g2m4d compile): keep "lanes" for hardware adapters.
 */
export function setSddmmMethod(method: SddmmMethod | null, lanes: SddmmLanesVariant = SDDMM_LANES_DEFAULT): void {
  const op = "setSddmmMethod";
  if (method !== null && !METHODS.includes(method)) throw new ValueError(op, `method must be one of ${METHODS.map((x) => `"${x}"`).join(", ")} or null, got ${JSON.stringify(method)}`);
  checkLanes(op, lanes);
  defaultMethod = method;
  defaultLanes = lanes;
}

function checkLanes(op: string, v: string | undefined): void {
  if (v !== undefined && !Object.hasOwn(SDDMM_LANES, v)) {
    throw new ValueError(op, `lanes variant ${JSON.stringify(v)} is not one of ${Object.keys(SDDMM_LANES).join(", ")}`);
  }
}

/** How sddmm runs at one shape: its kernel, tile, and the n slices (1 = not split). */
export interface SddmmPlan {
  method: SddmmMethod;
  /** The dense-tile kernel's tile (null for the others). */
  tile: SddmmTile | null;
  /** The lanes kernel's variant (null for the others). */
  lanes: SddmmLanesVariant | null;
  /** Output-tile workgroups of one slice. */
  grid: number;
  /** Slices dispatched (≤ the split asked for: the last slices of a short n can be empty). */
  slices: number;
  /** Rows per slice, a multiple of the kernel's n step (the last slice may be shorter). */
  sliceRows: number;
}

export interface SddmmOptions {
  /** Write into this tensor (shape of s.values) instead of a new one. */
  out?: Tensor;
  /** Add to `out` instead of overwriting it (gradient accumulation over micro-batches). */
  accumulate?: boolean;
  /**
   * "dense-tile" (default): dense 64×64 register tiles of dYᵀX, only the kept entries stored
   * (fastest measured on the H200); "gather": N/M of the multiply-adds, x gathered per kept
   * position with loop-invariant columns decoded once per output; "matmul": the dense dYᵀX through
   * the matmul front-end (its kernels and split-K), then its kept entries gathered — the default
   * where that product runs on the matrix units (sddmmUsesMatmul); "lanes" (2:4 only): the kept
   * half of the multiply-adds with the pattern uniform across a warp (shaders/sddmm-lanes.wgsl.ts).
   * Default: setSddmmMethod's, else automatic (matmul where the matrix units apply, else dense-tile).
   */
  method?: SddmmMethod;
  /** The lanes kernel's variant (SDDMM_LANES; default c4g2m4, or setSddmmMethod's). */
  lanes?: SddmmLanesVariant;
  /** Tile of the dense-tile kernel (default: 128x128 when the grid has ≥ 256 such tiles). */
  tile?: SddmmTile;
  /**
   * Split the reduction over n into this many slices (an integer 1–64; 1 = off), summed in f32.
   * Default: automatic (see SPLIT_BELOW): only when the output's grid is small and n large.
   */
  splitK?: number;
}

/** Throws the ValueError of every split-K sddmm for a `splitK` that is not an integer in 1..MAX_FORCED_SPLIT. */
export function checkSplitK(op: string, f: number | undefined): void {
  if (f !== undefined && !(Number.isInteger(f) && f >= 1 && f <= MAX_FORCED_SPLIT)) {
    throw new ValueError(op, `splitK ${f} is not an integer from 1 to ${MAX_FORCED_SPLIT}; pass 1 to turn split-K off, or leave it out for the automatic choice`);
  }
}

/**
 * The split of a weight gradient's reduction over `rows` rows (see SPLIT_BELOW), shared by every
 * sddmm kernel: `grid` output-tile workgroups of one slice, slices a multiple of `step` rows (the
 * kernel's n step), `splitK` forced or undefined for the automatic choice (validated by checkSplitK).
 */
export function splitRows(rows: number, grid: number, step: number, splitK: number | undefined): { slices: number; sliceRows: number } {
  let split = splitK ?? 1;
  if (splitK === undefined && grid < SPLIT_BELOW) {
    while (split < MAX_SPLIT && grid * split < SPLIT_TARGET && rows >= 2 * split * MIN_SLICE) split *= 2;
  }
  const sliceRows = Math.ceil(Math.ceil(rows / split) / step) * step;
  const slices = split === 1 || rows === 0 ? 1 : Math.ceil(rows / sliceRows);
  return { slices, sliceRows: slices === 1 ? rows : sliceRows };
}

/** Sums the f32 partials [slices, count] of a split sddmm into gW (count values), adding when `accumulate`; disposes them. */
export function sumSplit(part: Tensor, gW: Tensor, count: number, slices: number, accumulate: boolean, op: string): void {
  gpu().launcher.dispatch(sddmmSplitSumKernel(gW.dtype as SpDType, accumulate), [part.buffer(op), gW.buffer(op)], grid1d(count, 256), [count, slices]);
  part.dispose();
}

/**
 * The kernel, tile and split for dW of a [d_out, K] sparse matrix over `rows` rows of dY and X.
 * Throws a ValueError for a `splitK` that is not an integer in 1..MAX_FORCED_SPLIT.
 */
export function sddmmPlan(rows: number, dOut: number, K: number, opts: SddmmOptions = {}, op = "sddmm", pattern: readonly [number, number] = [2, 4]): SddmmPlan {
  checkSplitK(op, opts.splitK);
  checkLanes(op, opts.lanes);
  if (opts.method !== undefined && !METHODS.includes(opts.method)) throw new ValueError(op, `method must be one of ${METHODS.map((x) => `"${x}"`).join(", ")}, got ${JSON.stringify(opts.method)}`);
  const is24 = pattern[0] === 2 && pattern[1] === 4;
  if (opts.method === "lanes" && !is24) throw new ValueError(op, `method "lanes" takes 2:4 weights, got ${pattern[0]}:${pattern[1]}; use "dense-tile" or "gather"`);
  // the plan of the shader-core kernels ("matmul" has none: its plan is dense-tile's, as validation)
  const asked = opts.method ?? defaultMethod;
  const method = asked === "gather" || (asked === "lanes" && is24) ? asked : "dense-tile";
  let tile: SddmmTile | null = null, lanes: SddmmLanesVariant | null = null, grid: number, step: number;
  if (method === "gather") {
    grid = metaWords(K) * Math.ceil(dOut / SDDMM_ROWS);
    step = 64;
  } else if (method === "lanes") {
    lanes = opts.lanes ?? defaultLanes;
    const { tn, tg, rows: r } = lanesExtent(lanes);
    grid = Math.ceil(K / 4 / tg) * Math.ceil(dOut / tn);
    step = r;
  } else {
    tile = opts.tile ?? (chooseTile(dOut, K, 1, [SDDMM_TILES["128x128"], SDDMM_TILES["64x64"]], BIG_GRID) === "64x64" ? "64x64" : "128x128");
    const { bo, bk } = sddmmExtent(tile);
    grid = Math.ceil(K / bk) * Math.ceil(dOut / bo);
    step = GEMM_TILES[SDDMM_TILES[tile]].bk;
  }
  return { method, tile, lanes, grid, ...splitRows(rows, grid, step, opts.splitK) };
}

/** Whether sddmm's automatic method is "matmul": the dense dYᵀX of this shape would run on the matrix units. */
export function sddmmUsesMatmul(rows: number, dOut: number, K: number, dtype: SpDType): boolean {
  return chooseMatrixUnitTile(dOut, K, rows, 1, dtype, gpu().matrixUnits.tiles) !== null;
}

/**
 * Measured choices (src/sparse/sddmm-tune.ts: tuneSddmm) by product shape: what a 2:4 sddmm that
 * names no kernel runs in place of its rule, while setSddmmMethod is at its default. Per adapter,
 * filled by measurement only.
 */
const tuned = new Map<string, SddmmOptions>();
/** While sddmmShapesOf() runs: the tuning keys of the sddmm calls the table would serve. */
let shapeLog: Set<string> | null = null;

/** The tuning key of an sddmm: rows, d_out, K, dtype and the f32 matmul precision then in force (it decides whether "matmul" takes the matrix units). */
export function sddmmTuneKey(rows: number, dOut: number, K: number, dtype: string): string {
  return `${rows}x${dOut}x${K}|${dtype}|${getFloat32MatmulPrecision()}`;
}

/** Internal (sddmm-tune.ts): sets or clears (null) the measured options for a key; the whole table with no key. */
export function setSddmmTuned(key: string | null, opts: SddmmOptions | null): void {
  if (key === null) { tuned.clear(); return; }
  if (opts) tuned.set(key, opts);
  else tuned.delete(key);
}

/** Internal (sddmm-tune.ts): starts (a set) or stops (null) logging the keys of tunable calls. */
export function setSddmmShapeLog(log: Set<string> | null): void {
  shapeLog = log;
}

/** Internal: the measured table's entries. */
export function sddmmTunedEntries(): [string, SddmmOptions][] {
  return [...tuned];
}

/** The product without validation, into `out` (new when omitted). dY [n, d_out], x [n, K]. */
export function sddmmRaw(dY: Tensor, x: Tensor, s: SparseLike, rows: number, out: Tensor | null = null, accumulate = false,
  opts: SddmmOptions = {}, op = "sddmm"): Tensor {
  if ((tuned.size || shapeLog) && s.n === 2 && s.m === 4 && defaultMethod === null && opts.method === undefined &&
      opts.tile === undefined && opts.splitK === undefined && opts.lanes === undefined) {
    const key = sddmmTuneKey(rows, s.rows, s.cols, dY.dtype);
    shapeLog?.add(key);
    opts = tuned.get(key) ?? opts;
  }
  const ws = metaWords(s.cols), vpr = (s.cols * s.n) / s.m, dtype = dY.dtype as SpDType;
  const forced = opts.method ?? defaultMethod;
  if (forced === "matmul" || (forced === null && opts.splitK === undefined && opts.tile === undefined && sddmmUsesMatmul(rows, s.rows, s.cols, dtype))) {
    checkSplitK(op, opts.splitK);
    return sddmmMatmul(dY, x, s, rows, out, accumulate, op);
  }
  const plan = sddmmPlan(rows, s.rows, s.cols, opts, op, [s.n, s.m]);
  const gW = out ?? Tensor.empty([s.rows, vpr], dtype, op);
  if (s.rows === 0 || ws === 0) return gW;
  const split = plan.slices > 1;
  const part = split ? Tensor.empty([plan.slices, s.rows, vpr], "f32", op) : null;
  const bufs = [dY.buffer(op), x.buffer(op), s.meta.buffer(op), (part ?? gW).buffer(op)];
  const params = [rows, s.cols, s.rows, ws, vpr, plan.sliceRows];
  const l = gpu().launcher;
  if (plan.lanes !== null) {
    const { tn, tg } = lanesExtent(plan.lanes);
    l.dispatch(sddmmLanesKernel(dtype, accumulate, plan.lanes, split), bufs, [Math.ceil(s.cols / 4 / tg), Math.ceil(s.rows / tn), plan.slices], params);
  } else if (plan.tile === null) {
    l.dispatch(sddmmKernel(s.n, s.m, dtype, accumulate, split), bufs, [ws, Math.ceil(s.rows / SDDMM_ROWS), plan.slices], params);
  } else {
    const { bo, bk } = sddmmExtent(plan.tile);
    const vec = s.rows % 4 === 0 && s.cols % 4 === 0;
    l.dispatch(sddmmDenseTileKernel(s.n, s.m, dtype, accumulate, plan.tile, split, vec), bufs, [Math.ceil(s.cols / bk), Math.ceil(s.rows / bo), plan.slices], params);
  }
  if (part) sumSplit(part, gW, s.rows * vpr, plan.slices, accumulate, op);
  return gW;
}

/** Validates dY [..., d_out] and x [..., K] (same leading axes, s's dtype) against s [d_out, K]; returns the folded row count. */
export function checkSddmm(op: string, dY: Tensor, x: Tensor, s: Sparse24): number {
  checkLive(op, dY, x, s.values, s.meta);
  if (dY.ndim < 1 || x.ndim < 1 || dY.shape.at(-1) !== s.rows || x.shape.at(-1) !== s.cols ||
      dY.shape.slice(0, -1).join() !== x.shape.slice(0, -1).join()) {
    throw new ShapeError(op, `dY ${fmtShape(dY.shape)} and x ${fmtShape(x.shape)} do not fit the sparse matrix ${fmtShape(s.shape)}: ` +
      `they need shapes [..., ${s.rows}] and [..., ${s.cols}] with the same leading axes`);
  }
  if (dY.dtype !== s.dtype || x.dtype !== s.dtype) {
    throw new DTypeError(op, `dY (${dY.dtype}), x (${x.dtype}) and the sparse values (${s.dtype}) must have one dtype`);
  }
  return numel(x.shape.slice(0, -1));
}

/**
 * dW at s's kept positions: dY [..., d_out], x [..., K] (same leading axes), s [d_out, K].
 * Returns a tensor shaped like s.values; with { out, accumulate: true } adds into out.
 */
export function sddmm(dY: Tensor, x: Tensor, s: Sparse24, opts: SddmmOptions = {}): Tensor {
  const op = "sddmm";
  const out = opts.out ?? null;
  checkLive(op, out);
  const rows = checkSddmm(op, dY, x, s);
  if (out && (out.shape.join() !== s.values.shape.join() || out.dtype !== s.dtype)) {
    throw new ShapeError(op, `out ${fmtShape(out.shape)} (${out.dtype}) must match the sparse values ${fmtShape(s.values.shape)} (${s.dtype})`);
  }
  if (opts.accumulate && !out) throw new ShapeError(op, "accumulate needs an `out` tensor to add into");
  sddmmPlan(rows, s.rows, s.cols, opts, op, [s.n, s.m]); // validates splitK, method and lanes before anything is allocated
  return sddmmRaw(dY, x, s, rows, out, !!opts.accumulate, opts);
}

/** sddmm as the dense dYᵀX (matmulRaw: matrix units and split-K where they apply) and a gather of its kept entries. */
function sddmmMatmul(dY: Tensor, x: Tensor, s: SparseLike, rows: number, out: Tensor | null, accumulate: boolean, op: string): Tensor {
  const ws = metaWords(s.cols), vpr = (s.cols * s.n) / s.m, dtype = dY.dtype as SpDType;
  const gW = out ?? Tensor.empty([s.rows, vpr], dtype, op);
  if (s.rows === 0 || ws === 0) return gW;
  const dY2 = dY.alias([rows, s.rows]), x2 = x.alias([rows, s.cols]);
  const [dense] = matmulRaw(dY2, x2, true, false);
  dY2.dispose(); x2.dispose();
  const count = s.rows * vpr;
  gpu().launcher.dispatch(gatherKeptKernel(s.n, s.m, dtype, accumulate), [dense.buffer(op), s.meta.buffer(op), gW.buffer(op)], grid1d(count, 256), [s.rows, s.cols, ws, vpr]);
  dense.dispose();
  return gW;
}
