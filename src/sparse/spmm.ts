// spmm: Y = X·S^T (+ bias) with S an N:M Sparse24 [d_out, K] — the forward GEMM of a sparse
// layer (S = W_R) and its input gradient (S = W_RC^T, so dX = dY·W_RC). No autograd here: the
// differentiable op is sparseLinear (ops.ts). Picks the small-n kernel (weight-bandwidth bound)
// for n ≤ 16 rows and the expand kernel otherwise; the gather kernel on request
// (shaders/spmm.wgsl.ts says what each costs). For n ≤ 16 with 2:4 and K a multiple of 8 the
// decode kernel (shaders/spmm-decode.wgsl.ts: coalesced, K split across workgroups) replaces small.
// The lanes kernel (shaders/spmm-lanes.wgsl.ts: half the multiply-adds, warp-uniform patterns) is
// taken on request, or by "auto" for 2:4 above 16 rows once setSpmmKernel("lanes") is called.
import { DTypeError, ResourceLimitError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { Tensor } from "../tensor.ts";
import type { SpDType } from "../../shaders/sparse24.wgsl.ts";
import { chooseTile } from "../../shaders/gemm.ts";
import { kernelMemo } from "../../shaders/kernel.ts";
import { SG_TILES, type SgTile, sgMatmulKernel, sgTileExtent } from "../../shaders/matmul-subgroup.wgsl.ts";
import { chooseMatrixUnitTile, getFloat32MatmulPrecision } from "../ops/raw/precision.ts";
import { EXPAND_TILES, SPMM_SMALL_MAX_ROWS, SPMM_SMALL_WORKGROUP, SPMM_TILE, expandExtent, type ExpandTile, spmmExpandKernel, spmmExpandStorage, spmmSmallKernel, spmmGatherKernel, spmmGatherStorage } from "../../shaders/spmm.wgsl.ts";
import { LANES_VARIANTS, type LanesVariant, lanesExtent, spmmLanesKernel, spmmLanesStorage } from "../../shaders/spmm-lanes.wgsl.ts";
import { DECODE_MAX_ROWS, DECODE_ROWS, spmmDecodeKernel, spmmSplitSumKernel } from "../../shaders/spmm-decode.wgsl.ts";
import { ACTIVATION_MAP, fill, mapOp } from "../ops/raw/map.ts";
import type { Activation } from "../autograd/ops.ts";
import { stridedCopy } from "../ops/raw/copy.ts";
import { checkLive, grid1d, numel } from "../ops/util.ts";
import { metaWords, type Sparse24, type SparseLike } from "./sparse24.ts";

/** Matrix-unit kernels by variant (their options object is built once, not per call). */
const memo = kernelMemo();

export interface SpmmOptions {
  /**
   * Kernel: "auto" (default) takes "small" for n ≤ 16 rows of x, else "expand". "expand" decodes
   * each S tile into a dense tile in workgroup memory and runs a dense register tile (all
   * multiply-adds, fastest measured on the H200); "gather" keeps the tile compressed and gathers
   * x per kept weight (N/M of the multiply-adds, 4× the workgroup traffic per multiply-add);
   * "small" splits K over invocations (weight-bandwidth bound decoding); "decode" (the default
   * for n ≤ 16 rows with 2:4 and K a multiple of 8) reads each weight byte once, coalesced, with K
   * split across workgroups when d_out gives too few. Under "auto", a 2:4
   * product that a matmul of its shape would send to the matrix units (init({ matrixUnits: true })
   * and setFloat32MatmulPrecision below "highest", or f16) runs there instead of "expand": each
   * tile is decoded to f16 in workgroup memory and multiplied by the subgroup matrices (with
   * K % 8 = 0, four invocations read a row's values as vec4s: 0.86–0.96× of the dense matrix-unit
   * product on the H200 at M = 16384, where one invocation per row read them one by one at
   * 0.15–0.45×).
   *
   * "lanes" (2:4 only): the sparsity pattern is uniform over a warp, which owns a few rows of S
   * while its lanes run over rows of x, so which 2 of 4 columns of x to use is a uniform branch:
   * half the multiply-adds without a workgroup read per multiply-add. Not the default yet (the
   * H200 decides); setSpmmKernel("lanes") makes "auto" take it above 16 rows.
   */
  path?: "auto" | "expand" | "gather" | "small" | "decode" | "lanes";
  /** K splits of the decode kernel (default: one pass up to K = 1024, else enough for ~1024 workgroups, each split ≥ 256 columns). */
  splits?: number;
  /** Tile of the expand kernel (default: 128x128 when the workgroup memory allows, the grid has ≥ 256 such tiles and the engine is not Deno's wgpu; else 64x64). */
  expandTile?: ExpandTile;
  /** Variant of the lanes kernel, "TMxCW": rows of x per lane × rows of S per warp (default: see lanesVariant). */
  lanesVariant?: LanesVariant;
  /** Rows of x per workgroup of the gather kernel (default: 128 where the workgroup memory allows and x has over 64 rows). */
  tileRows?: 64 | 128;
}

/** Validates x [..., K] against s [d_out, K] (and bias [d_out]); returns the folded row count. */
export function checkSpmm(op: string, x: Tensor, s: Sparse24, bias: Tensor | null): number {
  checkLive(op, x, s.values, s.meta, bias);
  if (x.ndim < 1) throw new ShapeError(op, `x must have at least 1 axis [..., K], got ${fmtShape(x.shape)}`);
  const K = x.shape.at(-1)!;
  if (K !== s.cols) {
    throw new ShapeError(op, `x ${fmtShape(x.shape)} has K=${K} but the sparse matrix ${fmtShape(s.shape)} (${s.pattern}) has ` +
      `K=${s.cols} columns; x's last axis must equal the sparse matrix's columns`);
  }
  if (x.dtype !== s.dtype) throw new DTypeError(op, `x is ${x.dtype} but the sparse values are ${s.dtype}; they must match`);
  if (bias) {
    if (bias.ndim !== 1 || bias.shape[0] !== s.rows) {
      throw new ShapeError(op, `bias ${fmtShape(bias.shape)} must have shape [${s.rows}] for x ${fmtShape(x.shape)} and the sparse matrix ${fmtShape(s.shape)}`);
    }
    if (bias.dtype !== x.dtype) throw new DTypeError(op, `bias is ${bias.dtype}, x is ${x.dtype}; they must match`);
  }
  return numel(x.shape.slice(0, -1));
}

let kernelOverride: "expand" | "gather" | "lanes" | null = null;
let variantOverride: LanesVariant | null = null;

/**
 * The kernel "auto" takes for 2:4 products above 16 rows of x (benchmarks and tests; the lead
 * flips the default after measuring): "lanes" (optionally one variant), "expand" (never the matrix
 * units) or "gather". null restores the rule. Other patterns and ≤ 16 rows keep their kernels.
 */
export function setSpmmKernel(kernel: "expand" | "gather" | "lanes" | null, variant: LanesVariant | null = null): void {
  if (kernel !== null && kernel !== "expand" && kernel !== "gather" && kernel !== "lanes") {
    throw new ShapeError("setSpmmKernel", `unknown kernel "${String(kernel)}"; one of expand, gather, lanes, or null for the automatic rule`);
  }
  if (variant !== null && !(variant in LANES_VARIANTS)) {
    throw new ShapeError("setSpmmKernel", `unknown lanes variant "${String(variant)}"; one of ${Object.keys(LANES_VARIANTS).join(", ")}`);
  }
  if (variant !== null && kernel !== "lanes") throw new ShapeError("setSpmmKernel", `a lanes variant (${variant}) needs kernel "lanes", got ${String(kernel)}`);
  kernelOverride = kernel;
  variantOverride = variant;
}

/**
 * Measured choices (src/sparse/spmm-tune.ts: tuneSpmm) by product shape: what "auto" runs for a
 * 2:4 product above 16 rows of x in place of its rule. Per adapter, filled by measurement only.
 */
const tuned = new Map<string, SpmmOptions>();

/**
 * The tuning key of a product: rows of x, d_out, K, dtype, bias, and the f32 matmul precision
 * then in force (below "highest" the rule may send the product to the matrix units, so the
 * fastest kernel differs: the mixed-f16 step sets "medium" around its products).
 */
export function spmmTuneKey(rows: number, dOut: number, K: number, dtype: string, bias: boolean): string {
  return `${rows}x${dOut}x${K}|${dtype}|${bias ? "bias" : "nobias"}|${getFloat32MatmulPrecision()}`;
}

/** Internal (spmm-tune.ts): sets or clears (null) the measured options for a key; the whole table with no key. */
export function setSpmmTuned(key: string | null, opts: SpmmOptions | null): void {
  if (key === null) { tuned.clear(); return; }
  if (opts) tuned.set(key, opts);
  else tuned.delete(key);
}

/** While spmmShapesOf() runs: the tuning keys of the products "auto" would choose a kernel for. */
let shapeLog: Set<string> | null = null;

/** Internal (spmm-tune.ts): starts (a set) or stops (null) logging the keys of tunable products. */
export function setSpmmShapeLog(log: Set<string> | null): void {
  shapeLog = log;
}

/** Internal: the measured table's entries. */
export function spmmTunedEntries(): [string, SpmmOptions][] {
  return [...tuned];
}

/** Workgroups from which the lanes kernel takes its widest variant (H200: 132 SMs, two workgroups each). */
const LANES_BIG_GRID = 256;

/**
 * The lanes variant for `rows` × `dOut`: the first of 8x8, 8x4, 4x8 that fits the workgroup
 * memory and gives ≥ LANES_BIG_GRID workgroups, else 4x4 (unmeasured guess: bench/sparse.ts
 * --lanes compares them all).
 */
export function lanesVariant(rows: number, dOut: number, maxShared: number): LanesVariant {
  for (const v of ["8x8", "8x4", "4x8"] as const) {
    const { bm, bn } = lanesExtent(v);
    if (spmmLanesStorage(v) <= maxShared && Math.ceil(rows / bm) * Math.ceil(dOut / bn) >= LANES_BIG_GRID) return v;
  }
  return "4x4";
}

/** Workgroups of 128×128 from which the expand kernel takes that tile (fewer leave SMs idle). */
const EXPAND_BIG_GRID = 256;

/** Smallest power of two ≥ the meta words per row, in [8, 64]: invocations per row of S. */
function invocationsPerRow(words: number): number {
  let p = 8;
  while (p < words && p < 64) p *= 2;
  return p;
}

/** The product without validation or autograd, into a new [rows, d_out] tensor. */
export function spmmRaw(x: Tensor, s: SparseLike, bias: Tensor | null, rows: number, opts: SpmmOptions = {}, op = "spmm"): Tensor {
  return spmmActRaw(x, s, bias, rows, "none", false, opts, op)[0];
}

/**
 * act(x·sᵀ + bias) without validation or autograd, and with `aux` the pre-activation z (for the
 * activation's backward). On the matrix units the activation is the kernel's epilogue, as in the
 * dense matmul (one pass over the output); the other kernels have a bias epilogue only, so the
 * activation is a map over their output.
 */
export function spmmActRaw(x: Tensor, s: SparseLike, bias: Tensor | null, rows: number, act: Activation, aux: boolean, opts: SpmmOptions = {}, op = "spmm"): [Tensor, Tensor | null] {
  const is24 = s.n === 2 && s.m === 4;
  if ((tuned.size || shapeLog) && is24 && rows > SPMM_SMALL_MAX_ROWS && kernelOverride === null && (opts.path ?? "auto") === "auto" && !opts.expandTile && !opts.lanesVariant && !opts.tileRows) {
    const key = spmmTuneKey(rows, s.rows, s.cols, s.values.dtype, !!bias);
    shapeLog?.add(key);
    opts = tuned.get(key) ?? opts;
  }
  const overridden = (opts.path ?? "auto") === "auto" && kernelOverride !== null && is24 && rows > SPMM_SMALL_MAX_ROWS;
  const path = overridden ? kernelOverride! : opts.path ?? "auto";
  const K = s.cols, dOut = s.rows, ws = metaWords(K), dtype = s.values.dtype as SpDType;
  if (path === "lanes" && !is24) throw new ShapeError(op, `the lanes path is 2:4 only, got ${s.n}:${s.m}; use path "auto"`);
  if (opts.lanesVariant !== undefined && !(opts.lanesVariant in LANES_VARIANTS)) {
    throw new ShapeError(op, `unknown lanesVariant "${String(opts.lanesVariant)}"; one of ${Object.keys(LANES_VARIANTS).join(", ")}`);
  }
  const maxShared = gpu().limits.maxComputeWorkgroupStorageSize;
  const variant = path !== "lanes" ? null : opts.lanesVariant ?? (overridden ? variantOverride : null) ?? lanesVariant(rows, dOut, maxShared);
  if (variant && spmmLanesStorage(variant) > maxShared) {
    throw new ResourceLimitError(op, `lanes variant ${variant} needs ${spmmLanesStorage(variant)} bytes of workgroup memory, over this adapter's maxComputeWorkgroupStorageSize (${maxShared}); use lanesVariant "4x4"`);
  }
  const out = Tensor.empty([rows, dOut], x.dtype, op);
  if (rows === 0 || dOut === 0) return activate(out, act, aux, op);
  const bufs = [x.buffer(op), s.values.buffer(op), s.meta.buffer(op), out.buffer(op)];
  if (bias) bufs.push(bias.buffer(op));
  const params = [rows, K, dOut, ws, (K * s.n) / s.m];
  const decodable = s.n === 2 && s.m === 4 && K % 8 === 0;
  if (path === "decode" || (path === "auto" && rows <= DECODE_MAX_ROWS && decodable)) {
    decode(x, s, bias, rows, out, opts.splits, op);
    return activate(out, act, aux, op);
  }
  const small = path === "small" || (path === "auto" && rows <= SPMM_SMALL_MAX_ROWS);
  const mu = gpu().matrixUnits;
  const sgName = path === "auto" && !small && !opts.expandTile && s.n === 2 && s.m === 4
    ? chooseMatrixUnitTile(rows, dOut, K, 1, dtype, mu.tiles.filter((t) => ((SG_TILES[t] as SgTile).bk ?? 32) === 32 && ((SG_TILES[t] as SgTile).stages ?? 1) === 1 && !(SG_TILES[t] as SgTile).f16Staging)) : null;
  if (variant) {
    const { bm, bn } = lanesExtent(variant);
    gpu().launcher.dispatch(spmmLanesKernel(dtype, !!bias, variant), bufs, [Math.ceil(dOut / bn), Math.ceil(rows / bm)], params);
  } else if (sgName) {
    const t = SG_TILES[sgName] as SgTile;
    const vec = K % 4 === 0 && dOut % 4 === 0, vec4 = K % 8 === 0, withZ = aux && act !== "none";
    const kernel = memo(`sg|${sgName}|${+!!bias}|${act}${+withZ}|${dtype}|${+vec}${+vec4}|${mu.subgroupSize}|${mu.sgSyntax}`, () => sgMatmulKernel({ ...t, transA: false, transB: true,
      bias: !!bias, act, aux: withZ, inType: dtype, outType: dtype, vec, subgroupSize: mu.subgroupSize, prefetch: t.prefetch ?? true, sgSyntax: mu.sgSyntax,
      sparseB: true, sparseVec4: vec4 }));
    const { bm, bn } = sgTileExtent(t);
    const z = withZ ? Tensor.empty([rows, dOut], x.dtype, op) : null;
    if (z) bufs.push(z.buffer(op));
    gpu().launcher.dispatch(kernel, bufs, [Math.ceil(dOut / bn), Math.ceil(rows / bm), 1], [rows, dOut, K, 0, 0, 0, ws, (K * s.n) / s.m]);
    return [out, z];
  } else if (path === "expand" || (path === "auto" && !small)) {
    // 128×128 measured faster under Dawn (Node, Chrome) on the H200 but 4× slower under Deno's
    // wgpu, which takes 64×64 (scratch numbers in the sparse-core report; bench/ measures both)
    const candidates: readonly ExpandTile[] = gpu().info.runtime === "Deno" ? ["64x64"] : ["128x128", "64x64"];
    const chosen = chooseTile(rows, dOut, 1, candidates.map((t) => EXPAND_TILES[t]), EXPAND_BIG_GRID,
      (t) => spmmExpandStorage(t === "64x64" ? "64x64" : "128x128") <= maxShared);
    const tile = opts.expandTile ?? (chosen === "64x64" ? "64x64" : "128x128");
    if (spmmExpandStorage(tile) > gpu().limits.maxComputeWorkgroupStorageSize) {
      throw new ResourceLimitError(op, `expand tile ${tile} needs ${spmmExpandStorage(tile)} bytes of workgroup memory, over this adapter's maxComputeWorkgroupStorageSize`);
    }
    const { bm, bn } = expandExtent(tile);
    gpu().launcher.dispatch(spmmExpandKernel(s.n, s.m, dtype, !!bias, tile), bufs, [Math.ceil(dOut / bn), Math.ceil(rows / bm)], params);
  } else if (small) {
    if (rows > SPMM_SMALL_MAX_ROWS) throw new ShapeError(op, `the small path takes at most ${SPMM_SMALL_MAX_ROWS} rows, x has ${rows}`);
    const ipr = invocationsPerRow(ws);
    // from 4 rows on, x goes transposed and padded to [K, rows rounded up to 4] so one vec4 load
    // serves 4 rows (the kernel is bound by its loads of x, not by the weight bytes, past 1 row)
    const vec = rows >= 4;
    let xt: Tensor | null = null;
    if (vec) {
      const rp = Math.ceil(rows / 4) * 4;
      xt = fill([K, rp], 0, x.dtype, op);
      stridedCopy(op, x, xt, [rows, K], [K, 1], [1, rp]);
      bufs[0] = xt.buffer(op);
    }
    gpu().launcher.dispatch(spmmSmallKernel(s.n, s.m, dtype, !!bias, rows, ipr, vec), bufs, grid1d(dOut * ipr, SPMM_SMALL_WORKGROUP), params);
    xt?.dispose();
  } else {
    const fits = spmmGatherStorage(s.n, s.m, 128) <= gpu().limits.maxComputeWorkgroupStorageSize;
    const tileRows = opts.tileRows ?? (fits && rows > 64 ? 128 : 64);
    if (tileRows === 128 && !fits) throw new ResourceLimitError(op, `tileRows 128 needs ${spmmGatherStorage(s.n, s.m, 128)} bytes of workgroup memory, over this adapter's maxComputeWorkgroupStorageSize`);
    gpu().launcher.dispatch(spmmGatherKernel(s.n, s.m, dtype, !!bias, tileRows), bufs, [Math.ceil(dOut / SPMM_TILE), Math.ceil(rows / tileRows)], params);
  }
  return activate(out, act, aux, op);
}

/** act(y) as a map (sparseLinear's vector-wise path too); with `aux` y is kept as the pre-activation, else disposed. */
export function activate(y: Tensor, act: Activation, aux: boolean, op: string): [Tensor, Tensor | null] {
  if (act === "none") return [y, null];
  const a = mapOp(op, ACTIVATION_MAP[act].forward, [y], y.dtype);
  if (aux) return [a, y];
  y.dispose();
  return [a, null];
}

/** Workgroups the decode kernel aims for before it stops splitting K (H200: 132 SMs). */
const DECODE_TARGET_GROUPS = 1024;
/** Fewest columns per K split of the decode kernel (below that the second pass costs more). */
const DECODE_MIN_SPLIT = 256;
/** Up to this K the decode kernel runs one pass (no split-K partials, no second dispatch): H200, d = 768. */
const DECODE_ONE_PASS_K = 1024;

/** The decode path (2:4, K % 8 = 0, ≤ 16 rows): one pass, or split-K partials and their sum. */
function decode(x: Tensor, s: SparseLike, bias: Tensor | null, rows: number, out: Tensor, splitsOpt: number | undefined, op: string): void {
  const K = s.cols, dOut = s.rows, dtype = s.values.dtype as SpDType;
  if (rows > DECODE_MAX_ROWS) throw new ShapeError(op, `the decode path takes at most ${DECODE_MAX_ROWS} rows, x has ${rows}; use path "auto"`);
  if (s.n !== 2 || s.m !== 4 || K % 8 !== 0) {
    throw new ShapeError(op, `the decode path needs 2:4 and K a multiple of 8, got ${s.n}:${s.m} with K=${K}; use path "small"`);
  }
  if (splitsOpt !== undefined && !(Number.isInteger(splitsOpt) && splitsOpt >= 1)) {
    throw new ShapeError(op, `splits must be a positive integer, got ${splitsOpt}`);
  }
  const blocks = Math.ceil(dOut / DECODE_ROWS);
  const want = splitsOpt ?? (K <= DECODE_ONE_PASS_K ? 1 : Math.max(1, Math.min(Math.ceil(DECODE_TARGET_GROUPS / blocks), Math.floor(K / DECODE_MIN_SPLIT))));
  const len = Math.ceil(K / want / 64) * 64, splits = Math.ceil(K / len);
  const c = Math.ceil(rows / 4);
  const params = [rows, K, dOut, metaWords(K), K / 2, len, 0];
  const xb = x.buffer(op), vb = s.values.buffer(op), mb = s.meta.buffer(op);
  if (splits === 1) {
    const bufs = [xb, vb, mb, out.buffer(op)];
    if (bias) bufs.push(bias.buffer(op));
    gpu().launcher.dispatch(spmmDecodeKernel({ dtype, c, mode: "one", bias: !!bias, rounds: 1, act: "none" }), bufs, [blocks, 1], params);
    return;
  }
  const part = Tensor.empty([splits, rows, dOut], "f32", op);
  gpu().launcher.dispatch(spmmDecodeKernel({ dtype, c, mode: "split", bias: false, rounds: 1, act: "none" }), [xb, vb, mb, part.buffer(op)], [blocks, splits], params);
  const bufs = [part.buffer(op), out.buffer(op)];
  if (bias) bufs.push(bias.buffer(op));
  gpu().launcher.dispatch(spmmSplitSumKernel(dtype, !!bias), bufs, grid1d(rows * dOut, 256), [rows * dOut, dOut, splits]);
  part.dispose();
}

/**
 * Y = X·S^T + bias for x [..., K] and s [d_out, K] (N:M along K); returns [..., d_out].
 * With s = compress24(W) this is x·W_Rᵀ; with s = doublePrune(W) and x = dY it is dY·W_RC.
 */
export function spmm(x: Tensor, s: Sparse24, bias: Tensor | null = null, opts: SpmmOptions = {}): Tensor {
  const rows = checkSpmm("spmm", x, s, bias);
  const y = spmmRaw(x, s, bias, rows, opts);
  if (x.ndim === 2) return y;
  const out = y.alias([...x.shape.slice(0, -1), s.rows]);
  y.dispose();
  return out;
}
