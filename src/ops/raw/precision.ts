// The f32 matmul precision (torch.set_float32_matmul_precision) and the choice of a matrix-unit
// tile for a product: below the matmul front-end, so every launcher that can run on the matrix
// units (matmul, the 2:4 spmm) asks the same question the same way.
import { ValueError } from "../../errors.ts";
import { SG_TILES, type SgTile, type SgTileName, sgTileExtent } from "../../../shaders/matmul-subgroup.wgsl.ts";

/** torch.set_float32_matmul_precision's levels. */
export type MatmulPrecision = "highest" | "high" | "medium";
let f32Precision: MatmulPrecision = "highest";

/**
 * As torch.set_float32_matmul_precision: "highest" (the default) keeps f32 products on f32
 * arithmetic; "high" and "medium" let f32 products run on the GPU's matrix units when
 * init({ matrixUnits: true }) found them (gpu().matrixUnits), with operands rounded to f16 (WGSL
 * has neither tf32 nor bf16) and f32 accumulation. f16 products use the matrix units whenever
 * they were found.
 */
export function setFloat32MatmulPrecision(p: MatmulPrecision): void {
  if (p !== "highest" && p !== "high" && p !== "medium") {
    throw new ValueError("setFloat32MatmulPrecision", `precision "${String(p)}" is not one of "highest", "high", "medium"`);
  }
  f32Precision = p;
}

export function getFloat32MatmulPrecision(): MatmulPrecision {
  return f32Precision;
}

/** Below this many multiply-adds a product is launch-bound and stays on the shader-core kernel. */
const MU_MIN_WORK = 1 << 18;

/**
 * How the chooser picks a matrix-unit tile: the first tile of the measured preference order
 * (src/gpu/matrix-units.ts) whose grid has at least `bigGrid` workgroups (enough to keep every SM
 * of a big GPU busy) and whose tiles are at least `minFill` useful work — M·N over the area of
 * the tiles covering it. Without the fill bound a 128×256 tile covers a 256×64 attention product
 * with three quarters of its multiply-adds on padding.
 */
export interface MatrixUnitRule {
  bigGrid: number;
  minFill: number;
}
/**
 * Measured in training on the H200 (bench/results/2026-12-02/j-train-dawn-rules.json, mixed-f16 step
 * ms under rules 192:0 / 192:0.85 / 128:0.85): small dense 31.6 / 30.8 / 33.9, small SLoPe 40.6 /
 * 37.5 / 39.3, gpt2 dense 145.1 / 125.7 / 123.5, gpt2 SLoPe 178.7 / 159.5 / 157.7. The fill bound
 * is worth 3–13%; lowering the grid bound to 128 (one 128×256 wave at N = 2048) costs the small
 * config 10% for 2% at gpt2, so it stays at 192.
 */
export const DEFAULT_MATRIX_UNIT_RULE: Readonly<MatrixUnitRule> = { bigGrid: 192, minFill: 0.85 };
let muRule: MatrixUnitRule = { ...DEFAULT_MATRIX_UNIT_RULE };

/** Sets the tile chooser's rule (benchmarks; null restores the default). */
export function setMatrixUnitRule(r: MatrixUnitRule | null): void {
  if (r !== null && !(Number.isInteger(r.bigGrid) && r.bigGrid >= 1 && Number.isFinite(r.minFill) && r.minFill >= 0 && r.minFill <= 1)) {
    throw new ValueError("setMatrixUnitRule", `rule ${JSON.stringify(r)} needs an integer bigGrid ≥ 1 and minFill in [0, 1], or null for the default`);
  }
  muRule = r ? { ...r } : { ...DEFAULT_MATRIX_UNIT_RULE };
}

export function getMatrixUnitRule(): Readonly<MatrixUnitRule> {
  return muRule;
}

/**
 * Tried first for f16 operands whose contiguous axes are multiples of 8 (`packable`): the tiles
 * that read them as u32 words, 8 halves a load (packedF16). On the H200 under Dawn, square f16
 * products in one run (bench/results/2026-12-02/l-matmul-units-packed.json), TFLOP/s at N = 2048 /
 * 4096 / 8192: 128x256s8p 146.2 / 146.8 / 144.9 against 128x256s8 94.3 / 100.8 / 99.7;
 * 256x128s8p 131.4 / 139.2 / 144.6; 128x128s8d2p 125.9 / 109.5 / 107.4 (256 workgroups at 2048,
 * where 128×256 tiles give 128). With f32 operands the packed tiles are slower (they stage as
 * 128x256s8h does): never chosen for them.
 */
const PACKED_FIRST: readonly SgTileName[] = ["128x256s8p", "256x128s8p", "128x128s8d2p"];

/** The matrix-unit tile for an M×N output (nb products) among those that compiled, or null. */
export function chooseMatrixUnitTile(M: number, N: number, K: number, nb: number, dtype: "f32" | "f16", available: readonly SgTileName[], packable = false): SgTileName | null {
  if (!available.length) return null;
  if (dtype === "f32" && f32Precision === "highest") return null;
  if (M * N * K * nb < MU_MIN_WORK) return null;
  const fits = (t: SgTileName) => {
    const { bm, bn } = sgTileExtent(SG_TILES[t]);
    const gm = Math.ceil(M / bm), gn = Math.ceil(N / bn);
    return gm * gn * nb >= muRule.bigGrid && (M * N) / (gm * bm * gn * bn) >= muRule.minFill;
  };
  if (dtype === "f16" && packable) for (const t of PACKED_FIRST) if (available.includes(t) && fits(t)) return t;
  for (const t of available) if (!(SG_TILES[t] as SgTile).packedF16 && fits(t)) return t;
  return available.includes("64x64s4") ? "64x64s4" : available[available.length - 1]!;
}
