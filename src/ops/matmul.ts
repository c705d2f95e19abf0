// Matmul front-end: 2-D and batched products with broadcast batch axes, transposed operands
// read in place (transA / transB), and a fused bias + activation epilogue. It picks the kernel
// variant (vec4 or scalar loads, tile shape by output size and the adapter's workgroup memory);
// the backward rule reuses the same kernel with the transpose flags flipped, so no transpose is
// materialised. Tensor.matmul and the rule are registered when this module loads.
import { record } from "../autograd/graph.ts";
import { registerRules, type Rules } from "../autograd/rules.ts";
import type { Activation } from "../autograd/ops.ts";
import { type Kernel, kernelMemo } from "../../shaders/kernel.ts";
import { DTypeError, ResourceLimitError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { isGradEnabled } from "../scope.ts";
import { defineTensorMethods, Tensor } from "../tensor.ts";
import { GEMM_TILES, type GemmTileName, chooseTile, operandWidths, tileExtent } from "../../shaders/gemm.ts";
import { matmulKernel, matmulSharedBytes } from "../../shaders/matmul.wgsl.ts";
import { SG_TILES, type SgTile, type SgTileName, sgMatmulKernel, sgSharedBytes, sgTileExtent } from "../../shaders/matmul-subgroup.wgsl.ts";
import { expandRaw } from "./raw/copy.ts";
import { chooseMatrixUnitTile } from "./raw/precision.ts";
export { getFloat32MatmulPrecision, getMatrixUnitRule, type MatmulPrecision, type MatrixUnitRule, setFloat32MatmulPrecision, setMatrixUnitRule } from "./raw/precision.ts";
import { ACTIVATION_MAP, mapOp } from "./raw/map.ts";
import { reduceInto, reduceRaw, sumToShape } from "./raw/reduce.ts";
import { broadcastShapes, checkLive, numel, sameShape } from "./util.ts";

export interface MatmulOptions {
  /** Read A as its transpose (A stored [..., K, M]). */
  transA?: boolean;
  /** Read B as its transpose (B stored [..., N, K]), e.g. x.matmul(W, { transB: true }) for x·Wᵀ. */
  transB?: boolean;
  /** Added to every row of the result, shape [N]. */
  bias?: Tensor | null;
  /** Applied after the bias in the same kernel. */
  activation?: Activation;
}

interface Dims { batch: number[]; M: number; N: number; K: number }

function dims(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Dims {
  if (a.ndim < 2 || b.ndim < 2) {
    throw new ShapeError("matmul", `both operands need at least 2 axes, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}; reshape vectors to [1, n] or [n, 1]`);
  }
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const M = transA ? ac : ar, K = transA ? ar : ac;
  const Kb = transB ? bc : br, N = transB ? br : bc;
  if (K !== Kb) {
    throw new ShapeError("matmul", `inner dimensions differ: A ${fmtShape(a.shape)}${transA ? "ᵀ" : ""} has K=${K}, ` +
      `B ${fmtShape(b.shape)}${transB ? "ᵀ" : ""} has K=${Kb}`);
  }
  let batch: number[];
  try {
    batch = broadcastShapes("matmul", a.shape.slice(0, -2), b.shape.slice(0, -2));
  } catch (e) {
    if (!(e instanceof ShapeError)) throw e;
    throw new ShapeError("matmul", `batch axes of A ${fmtShape(a.shape)} and B ${fmtShape(b.shape)} do not broadcast (${e.message.replace(/^matmul: /, "")})`);
  }
  return { batch, M, N, K };
}

let tileOverride: GemmTileName | SgTileName | null = null;

/**
 * Forces one tile shape for every product (benchmarks and tests); null restores the automatic
 * choice. A matrix-unit tile (shaders/matmul-subgroup.wgsl.ts) forces the matrix units.
 */
export function setMatmulTile(name: GemmTileName | SgTileName | null): void {
  if (name !== null && !(name in GEMM_TILES) && !(name in SG_TILES)) {
    throw new ShapeError("setMatmulTile", `unknown tile "${String(name)}"; one of ${[...Object.keys(GEMM_TILES), ...Object.keys(SG_TILES)].join(", ")}`);
  }
  tileOverride = name;
}

/** Products of at least this many workgroups of a larger tile keep every SM of a big GPU busy. */
const BIG_GRID = 192;
/** The tiles the front-end chooses from, largest first (128×128 with k-depth 16 is for benchmarks). */
const MATMUL_CANDIDATES = ["128x128k8", "128x64", "64x64"] as const;

/**
 * The tile shape for an M×N output (nb products): the largest tile that still gives a full grid
 * of workgroups and fits the adapter's workgroup memory; 64×64 for small outputs. Measured on an
 * H200 (bench/README.md): 128×128 with k-depth 8 is the fastest from 2048² up in both Dawn and
 * wgpu (k-depth 16 is slower there, so it is left to benchmarks); below ~200 workgroups the GPU
 * is not filled and 64×64 wins (26 vs 14 TFLOP/s at 1024²).
 */
export function chooseMatmulTile(M: number, N: number, nb: number, maxShared: number, transA = false, transB = false): GemmTileName {
  return chooseTile(M, N, nb, MATMUL_CANDIDATES, BIG_GRID, (t) => matmulSharedBytes(GEMM_TILES[t], transA, transB) <= maxShared);
}

/** Split-K aims at this many 64×64 workgroups (about two per SM of a big GPU). */
const SPLIT_TARGET = 256;
/** Each K slice keeps at least this many rows of the reduction (fewer: the partials cost more than they save). */
const SPLIT_MIN_K = 512;
const SPLIT_MAX = 16;
let splitOverride: number | null = null;

/** Forces the split-K factor of weight-gradient products (benchmarks and tests); null restores the rule. */
export function setMatmulSplitK(s: number | null): void {
  if (s !== null && !(Number.isInteger(s) && s >= 1 && s <= 64)) {
    throw new ShapeError("setMatmulSplitK", `split ${String(s)} must be an integer in [1, 64], or null for the automatic rule`);
  }
  splitOverride = s;
}

/**
 * Split-K for the weight-gradient shape: one product (no batch), both operands stored K-major
 * (A [K, M] read transposed, B [K, N]), no epilogue. Its output is small (d_in × d_out) and its K
 * is the batch's rows (B·T, thousands), so its output tiles alone give a few dozen workgroups on
 * a GPU that wants hundreds: the H200 profile of a small-config step had matmul.backward at 2×
 * the forward's time for the same FLOPs. Slices of K run as a batch of S products (batch strides
 * of K/S rows, so no copy) into f32 partials [S, M, N], summed by one small reduction. S: the
 * smallest power of two giving SPLIT_TARGET 64×64 workgroups, with K/S ≥ SPLIT_MIN_K rows and
 * K divisible by S (a slice never reads past K); 1 when the product already fills the GPU.
 */
export function matmulSplitK(M: number, N: number, K: number, nb: number, transA: boolean, transB: boolean, epilogue: boolean): number {
  if (nb !== 1 || !transA || transB || epilogue) return 1;
  if (splitOverride !== null) return K % splitOverride === 0 ? splitOverride : 1;
  const grid = Math.ceil(M / 64) * Math.ceil(N / 64);
  let s = 1;
  while (grid * s < SPLIT_TARGET && s < SPLIT_MAX && K % (2 * s) === 0 && K / (2 * s) >= SPLIT_MIN_K) s *= 2;
  return s;
}

const memo = kernelMemo();

/** The product without autograd. `aux` (pre-activation output) is written when given. */
export function matmulRaw(a: Tensor, b: Tensor, transA = false, transB = false, bias: Tensor | null = null, act: Activation = "none", aux = false): [Tensor, Tensor | null] {
  const g = gpu();
  const { batch, M, N, K } = dims(a, b, transA, transB);
  const nb = numel(batch);
  const split = matmulSplitK(M, N, K, nb, transA, transB, !!bias || act !== "none" || aux);
  const parts = split > 1 ? splitK(a, b, M, N, K, split) : null;
  if (parts) return [parts, null];
  // Kernel variant first, so a refusal allocates nothing.
  const maxZ = g.limits.maxComputeWorkgroupsPerDimension;
  if (nb > maxZ) throw new ShapeError("matmul", `batch of ${nb} products is over the adapter's ${maxZ} per dispatch; reshape the batch`);
  const maxShared = g.limits.maxComputeWorkgroupStorageSize;
  const dtype = a.dtype as "f32" | "f16";
  const { vec, vec8 } = operandWidths(M, N, K, transA, transB);
  const mu = g.matrixUnits;
  const sgName = tileOverride && tileOverride in SG_TILES ? tileOverride as SgTileName
    : tileOverride ? null : chooseMatrixUnitTile(M, N, K, nb, dtype, mu.tiles, vec8);
  if (sgName) {
    if (!mu.tiles.includes(sgName)) throw new ResourceLimitError("matmul", `matrix-unit tile ${sgName} is not available on this device (${mu.note})`);
    const t = SG_TILES[sgName];
    const shared = sgSharedBytes(t, transA, transB);
    if (shared > maxShared) throw new ResourceLimitError("matmul", `tile ${sgName} needs ${shared} bytes of workgroup memory, over this adapter's ${maxShared}`);
    const kernel = memo(`sg|${sgName}|${+transA}${+transB}${+!!bias}${+aux}|${act}|${dtype}|${vec},${vec8}|${mu.subgroupSize}|${mu.sgSyntax}`,
      () => sgMatmulKernel({ ...t, transA, transB, bias: !!bias, act, aux, inType: dtype, outType: dtype, vec, vec8, subgroupSize: mu.subgroupSize, prefetch: (t as SgTile).prefetch ?? true, sgSyntax: mu.sgSyntax }));
    const { bm, bn } = sgTileExtent(t);
    return launch(kernel, bm, bn, a, b, { batch, M, N, K }, bias, aux);
  }
  const tileName = (tileOverride as GemmTileName | null) ?? chooseMatmulTile(M, N, nb, maxShared, transA, transB);
  const tile = GEMM_TILES[tileName];
  const shared = matmulSharedBytes(tile, transA, transB);
  if (shared > maxShared) {
    throw new ResourceLimitError("matmul", `tile ${tileName} needs ${shared} bytes of workgroup memory, over this adapter's ${maxShared}`);
  }
  const kernel = memo(`mm|${tileName}|${+transA}${+transB}${+!!bias}${+aux}|${act}|${dtype}|${vec}`,
    () => matmulKernel({ ...tile, transA, transB, bias: !!bias, act, aux, dtype, vec }));
  const { bm, bn } = tileExtent(tile);
  return launch(kernel, bm, bn, a, b, { batch, M, N, K }, bias, aux);
}

/**
 * op(A)·B with A [K, M] read transposed and B [K, N], as S products over K slices into f32
 * partials, then their sum (in the operands' dtype). The partials are f32 on the matrix units
 * (f16 operands, f32 results); the shader-core kernel writes its dtype, so it splits f32 only.
 */
function splitK(a: Tensor, b: Tensor, M: number, N: number, K: number, S: number): Tensor | null {
  const g = gpu(), mu = g.matrixUnits, dtype = a.dtype as "f32" | "f16";
  const Ks = K / S;
  const { vec, vec8 } = operandWidths(M, N, Ks, true, false);
  const sgName = tileOverride && tileOverride in SG_TILES ? tileOverride as SgTileName
    : tileOverride ? null : chooseMatrixUnitTile(M, N, Ks, S, dtype, mu.tiles, vec8);
  let kernel: Kernel, bm: number, bn: number;
  if (sgName && mu.tiles.includes(sgName) && sgSharedBytes(SG_TILES[sgName], true, false) <= g.limits.maxComputeWorkgroupStorageSize) {
    const t = SG_TILES[sgName];
    kernel = memo(`sgsplit|${sgName}|${dtype}|${vec},${vec8}|${mu.subgroupSize}|${mu.sgSyntax}`,
      () => sgMatmulKernel({ ...t, transA: true, transB: false, bias: false, act: "none", aux: false, inType: dtype, outType: "f32", vec, vec8, subgroupSize: mu.subgroupSize, prefetch: (t as SgTile).prefetch ?? true, sgSyntax: mu.sgSyntax }));
    ({ bm, bn } = sgTileExtent(t));
  } else {
    if (dtype !== "f32") return null;
    const tileName = (tileOverride && tileOverride in GEMM_TILES ? tileOverride as GemmTileName : null) ?? chooseMatmulTile(M, N, S, g.limits.maxComputeWorkgroupStorageSize, true, false);
    kernel = memo(`mmsplit|${tileName}|${vec}`, () => matmulKernel({ ...GEMM_TILES[tileName], transA: true, transB: false, bias: false, act: "none", aux: false, dtype: "f32", vec }));
    ({ bm, bn } = tileExtent(GEMM_TILES[tileName]));
  }
  const partial = Tensor.empty([S, M, N], "f32", "matmul");
  g.launcher.dispatch(kernel, [a.buffer("matmul"), b.buffer("matmul"), partial.buffer("matmul")], [Math.ceil(N / bn), Math.ceil(M / bm), S], [M, N, Ks, Ks * M, Ks * N, M * N]);
  const out = Tensor.empty([M, N], dtype, "matmul");
  reduceInto("matmul", partial, 1, S, M * N, "sum", 1, out);
  partial.dispose();
  return out;
}

/** Broadcasts batch operands where needed, allocates C (and Z), and records the dispatch. */
function launch(kernel: Kernel, bm: number, bn: number, a: Tensor, b: Tensor, d: Dims, bias: Tensor | null, aux: boolean): [Tensor, Tensor | null] {
  const { batch, M, N, K } = d;
  const nb = numel(batch);
  const prep = (t: Tensor, rows: number, cols: number): [Tensor, number] => {
    const tb = numel(t.shape.slice(0, -2));
    if (tb === nb) return [t, rows * cols];
    if (tb === 1) return [t, 0];
    return [expandRaw("matmul", t, [...batch, rows, cols]), rows * cols];
  };
  const [A, sa] = prep(a, a.shape.at(-2)!, a.shape.at(-1)!);
  const [B, sb] = prep(b, b.shape.at(-2)!, b.shape.at(-1)!);
  const out = Tensor.empty([...batch, M, N], a.dtype, "matmul");
  const z = aux ? Tensor.empty([...batch, M, N], a.dtype, "matmul") : null;
  const bufs = [A.buffer("matmul"), B.buffer("matmul"), out.buffer("matmul")];
  if (bias) bufs.push(bias.buffer("matmul"));
  if (z) bufs.push(z.buffer("matmul"));
  gpu().launcher.dispatch(kernel, bufs, [Math.ceil(N / bn), Math.ceil(M / bm), nb], [M, N, K, sa, sb, M * N]);
  if (A !== a) A.dispose();
  if (B !== b) B.dispose();
  return [out, z];
}

declare module "../autograd/ops.ts" {
  interface OpSaved {
    /** The operands and, with an activation epilogue, the pre-activation z. */
    matmul: { a: Tensor; b: Tensor; z?: Tensor };
  }
}

/**
 * op(A)·op(B) (+ bias, then activation). Batch axes broadcast like torch.matmul. A batched A times
 * a 2-D B is computed as one 2-D product over the folded rows.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = !!opts.transA, transB = !!opts.transB;
  const bias = opts.bias ?? null, act = opts.activation ?? "none";
  checkLive("matmul", a, b, bias);
  if (a.dtype !== b.dtype || (bias && bias.dtype !== a.dtype)) {
    throw new DTypeError("matmul", `operands have dtypes ${a.dtype}, ${b.dtype}${bias ? `, bias ${bias.dtype}` : ""}; they must match`);
  }
  if (a.dtype === "i32") throw new DTypeError("matmul", "i32 operands are not supported; convert with .to(\"f32\")");
  if (a.dtype === "f16" && !gpu().hasF16()) throw new DTypeError("matmul", "f16 needs the adapter feature shader-f16");
  const { N } = dims(a, b, transA, transB);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== N)) {
    throw new ShapeError("matmul", `bias ${fmtShape(bias.shape)} must have shape [${N}] for a product of ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  }
  if (a.ndim > 2 && b.ndim === 2 && !transA) {
    const rows = numel(a.shape.slice(0, -1));
    const a2 = a.alias([rows, a.shape.at(-1)!]);
    if (isGradEnabled() && a.requiresGrad) record("reshape", [a], a2, {});
    const y2 = matmul(a2, b, opts);
    a2.dispose();
    const y = y2.alias([...a.shape.slice(0, -1), y2.shape[1]!]);
    if (isGradEnabled() && y2.requiresGrad) record("reshape", [y2], y, {});
    y2.dispose();
    return y;
  }
  const wantAux = isGradEnabled() && act !== "none" && (a.requiresGrad || b.requiresGrad || !!bias?.requiresGrad);
  const [out, z] = matmulRaw(a, b, transA, transB, bias, act, wantAux);
  if (isGradEnabled()) {
    record("matmul", [a, b, bias], out, { transA, transB, activation: act, hasBias: !!bias }, { a, b, z: z ?? undefined });
  }
  z?.dispose();
  return out;
}

export const matmulRules: Rules<"matmul"> = {
  matmul: (g, c) => {
    const { transA, transB, activation } = c.attrs;
    const { a, b, z } = c.saved;
    const dz = activation === "none" ? g
      : mapOp("matmul", ACTIVATION_MAP[activation].grad, [g, z!], g.dtype);
    let da: Tensor | null = null, db: Tensor | null = null, dbias: Tensor | null = null;
    if (c.needsGrad[0]) {
      const [r] = transA ? matmulRaw(b, dz, transB, true) : matmulRaw(dz, b, false, !transB);
      da = fitTo(r, c.inputShapes[0]!);
    }
    if (c.needsGrad[1]) {
      const [r] = transB ? matmulRaw(dz, a, true, transA) : matmulRaw(a, dz, !transA, false);
      db = fitTo(r, c.inputShapes[1]!);
    }
    if (c.needsGrad[2]) {
      const n = dz.shape.at(-1)!;
      const flat = dz.alias([dz.size / n, n]);
      const r = reduceRaw("matmul", flat, [0], "sum", false);
      dbias = r.alias([n]);
      flat.dispose(); r.dispose();
    }
    if (dz !== g) dz.dispose();
    return [da, db, dbias];
  },
};

function fitTo(t: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(t.shape, shape)) return t;
  const r = sumToShape(t, shape);
  t.dispose();
  return r;
}

registerRules(matmulRules);

declare module "../tensor.ts" {
  interface Tensor {
    matmul(o: Tensor, opts?: MatmulOptions): Tensor;
  }
}

defineTensorMethods({
  matmul(o, opts) { return matmul(this, o, opts); },
});
