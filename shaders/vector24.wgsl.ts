// The vector-wise 2:4 pattern (opt-in; DESIGN.md §8): one 2:4 mask shared by a block of `blk`
// consecutive output rows, chosen per block by the block's summed |W| per group of 4 columns. It
// is stored as an ordinary Sparse24 (values [d_out, K/2], meta per row, every row of a block with
// the same meta), so every per-element kernel (decompress, double prune, decode) still applies;
// the kernels here exploit the sharing:
//
// prune  one invocation per (block, meta word): the 8 groups' column sums over the block's rows,
//        top-2 per group (ties keep the lower index, as sp_prune), then the block's rows written.
// spmm   Y = X·W_Rᵀ + b as a dense GEMM over the gathered half of K on the GEMM core
//        (shaders/gemm.ts): every output column of a workgroup tile lies in one block (blk is a
//        multiple of the tile's N extent), so the A loader gathers X[:, idx(block, k)] with one
//        index for the whole tile (decoded from the block's first meta row), and B is the dense
//        values matrix [d_out, K/2]: half the multiply-adds and half the bytes of dense.
// sddmm  dValues = (dYᵀ·X_gathered) per block, a dense GEMM whose output is the values layout
//        itself; the gathered column of each invocation's B elements is loop-invariant (decoded
//        once, before the K loop). Tiles of 16·tm output rows, so blk is a multiple of those too.
//        Split-K over the rows as the per-element sddmm when the grid is small (sddmmPlan's rule).
// Only 2:4 (two slots per group): values slot j of a row is group j/2's (j%2)-th kept column.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { GEMM_THREADS, GEMM_TILES, type GemmSpec, type GemmTileName, gemmBody, gemmShared, tileExtent, tileOperand } from "./gemm.ts";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { SP_WORKGROUP, type SpDType } from "./sparse24.wgsl.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Tiles of the vector-wise GEMMs: the tile's block extent must divide the pattern's block. */
export type VectorTile = "64x64" | "128x128";
export const VECTOR_TILES = { "64x64": "64x64", "128x128": "128x128k8" } as const satisfies Record<VectorTile, GemmTileName>;

/** WGSL: `col` = the gathered column of slot `jj` in the meta row starting at word `mrow`. */
function slotColumn(jj: string, col: string): string {
  return `let ${col}w = mbits[mrow + ${jj} / 16u]; let ${col}g = ${jj} / 2u;
    var ${col}b = (${col}w >> ((${col}g % 8u) * 4u)) & 15u;
    if ((${jj} & 1u) == 1u) { ${col}b = ${col}b & (${col}b - 1u); }
    let ${col} = ${col}g * 4u + min(countTrailingZeros(${col}b), 3u);`;
}

/**
 * Vector-wise prune + compress. Bindings: W (read), values (rw), meta (rw u32).
 * Params: [0]=rows [1]=cols [2]=words/row [3]=values/row [4]=blk. Dispatch: grid1d(⌈rows/blk⌉·words, 256).
 */
export const vectorPruneKernel = kernelFamily("vector_prune", (dtype: SpDType) => {
  const g = bindGroup([
    { name: "W", access: "read", type: `array<${dtype}>` },
    { name: "values", access: "rw", type: `array<${dtype}>` },
    { name: "mbits", access: "rw", type: "array<u32>" },
  ]);
  const G = range(8);
  const rank = (s: string, j: number) => range(4).filter((i) => i !== j)
    .map((i) => `u32(${s}[${i}] ${i < j ? ">=" : ">"} ${s}[${j}])`).join(" + ");
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(SP_WORKGROUP)}
@compute @workgroup_size(${SP_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let idx = linearIndex(wid, nwg, lid);
  let rows = pu(0u); let cols = pu(1u); let ws = pu(2u); let vpr = pu(3u); let blk = pu(4u);
  let nb = (rows + blk - 1u) / blk;
  if (idx >= nb * ws) { return; }
  let b = idx / ws; let w = idx % ws;
  let r0 = b * blk; let r1 = min(r0 + blk, rows);
  let gpr = cols / 4u;
${G.map((i) => `  var s${i} = vec4<f32>(0.0);`).join("\n")}
  for (var r = r0; r < r1; r = r + 1u) {
${G.map((i) => `    { let gg = w * 8u + ${i}u; if (gg < gpr) { let a = r * cols + gg * 4u; s${i} = s${i} + abs(vec4<f32>(f32(W[a]), f32(W[a + 1u]), f32(W[a + 2u]), f32(W[a + 3u]))); } }`).join("\n")}
  }
  var word = 0u;
${G.map((i) => `  { var bits = 0u;
${range(4).map((j) => `    if (${rank(`s${i}`, j)} < 2u) { bits = bits | ${1 << j}u; }`).join("\n")}
    if (w * 8u + ${i}u < gpr) { word = word | (bits << ${4 * i}u); } }`).join("\n")}
  for (var r = r0; r < r1; r = r + 1u) {
    mbits[r * ws + w] = word;
${G.map((i) => `    { let gg = w * 8u + ${i}u;
      if (gg < gpr) {
        let bits = (word >> ${4 * i}u) & 15u; let lo = countTrailingZeros(bits); let hi = countTrailingZeros(bits & (bits - 1u));
        values[r * vpr + gg * 2u] = W[r * cols + gg * 4u + lo];
        values[r * vpr + gg * 2u + 1u] = W[r * cols + gg * 4u + hi];
      } }`).join("\n")}
  }
}
`;
  return { code, group: g };
});

/** Workgroup bytes of a vector-wise GEMM tile (both operands scattered: a vec4 of padding per k-row). */
export function vectorStorage(tile: VectorTile, kMajorA = false): number {
  const t = GEMM_TILES[VECTOR_TILES[tile]];
  const { bm, bn } = tileExtent(t);
  return t.bk * 16 * (bm / 4 + (kMajorA ? 0 : 1) + bn / 4 + 1);
}

/** Output rows (bm) and output columns (bn) of one workgroup of a vector-wise GEMM. */
export function vectorExtent(tile: VectorTile): { bm: number; bn: number } {
  return tileExtent(GEMM_TILES[VECTOR_TILES[tile]]);
}

/** A GEMM write hook's store of one 4-wide row segment at (row, col), skipping what lies past M rows or N columns; `store(o)` writes element o (column col + j). */
const boundedWrite = (row: string, col: string, store: (o: string) => string) => `  { let row = ${row}; let col = ${col};
    if (row < M) {
      for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + j < N) { let o = row * N + col + j; ${store("o")} }
      }
    } }`;

/** The entry point of a 16×16-invocation GEMM kernel up to its K loop: params, invocation and tile origin. */
const gemmMain = (bm: number, bn: number, params: string) => `@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${params}
  let tx = lid.x; let ty = lid.y; let tid = ty * 16u + tx;
  let row0 = wid.y * ${bm}u; let col0 = wid.x * ${bn}u;`;

/**
 * Y = X·W_Rᵀ (+ bias) for a vector-wise W_R. Bindings: X [M, KX] (read), values [d_out, K]
 * (read; vec4 with `vecB`, K = KX/2 a multiple of 4), meta (read u32), Y (rw), [bias].
 * Params: [0]=M [1]=KX [2]=d_out [3]=meta words/row [4]=K (values/row) [5]=blk.
 * Dispatch: [⌈d_out/bn⌉, ⌈M/bm⌉].
 */
export const vectorSpmmKernel = kernelFamily("vector_spmm", (dtype: SpDType, bias: boolean, tile: VectorTile, vecB: boolean) => {
  const t = GEMM_TILES[VECTOR_TILES[tile]];
  const { bm, bn } = tileExtent(t);
  const bk = t.bk, per = (bm * bk) / GEMM_THREADS, step = GEMM_THREADS / bk;
  const g = bindGroup([
    { name: "X", access: "read", type: `array<${dtype}>` },
    { name: "values", access: "read", type: vecB ? `array<vec4<${dtype}>>` : `array<${dtype}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "Y", access: "rw", type: `array<${dtype}>` },
    bias && { name: "bias", access: "read", type: `array<${dtype}>` },
  ]);
  // A: the gathered X tile, (row c, slot k) with k = tid % bk the same for all of an invocation's elements
  const A = {
    decl: range(per).map((j) => `var ar${j}: f32 = 0.0;`).join("\n  "),
    setup: [`let ak = tid % ${bk}u;`, ...range(per).map((j) => `let ac${j} = tid / ${bk}u + ${j * step}u; let aok${j} = row0 + ac${j} < M; let ag${j} = (row0 + ac${j}) * KX;`)].join("\n  "),
    fetch: (kk: string) => `{ let jj = ${kk} + ak;
    ${range(per).map((j) => `ar${j} = 0.0;`).join(" ")}
    if (jj < K) {
    ${slotColumn("jj", "col")}
    ${range(per).map((j) => `if (aok${j}) { ar${j} = f32(X[ag${j} + col]); }`).join("\n    ")}
    } }`,
    store: range(per).map((j) => `As[ak][ac${j} >> 2u][ac${j} & 3u] = ar${j};`).join("\n    "),
  };
  const B = tileOperand({
    prefix: "b", shared: "Bs", rows: bn, bk, kMajor: false, vec: vecB, extent: "N", row0: "col0",
    index: (c, k) => `(col0 + ${c}) * K + ${k}`,
    read: vecB ? (i) => `vec4<f32>(values[${i}])` : (i) => `f32(values[${i}])`,
  });
  const gemm: GemmSpec = {
    tile: t, a: { shared: "As", stride: bm / 4 + 1 }, b: { shared: "Bs", stride: bn / 4 + 1 }, row0: "row0", col0: "col0",
    loop: { k: "k0", bound: "K" },
    loads: { pipelined: [A, B] },
    write: (row, col, acc) => boundedWrite(row, col, (o) => `Y[${o}] = ${dtype}(${acc}[j]${bias ? " + f32(bias[col + j])" : ""});`),
  };
  const code = wgsl`${enables(dtype)}
${g.decls}
${gemmShared(gemm)}

${gemmMain(bm, bn, "let M = pu(0u); let KX = pu(1u); let N = pu(2u); let ws = pu(3u); let K = pu(4u); let blk = pu(5u);")}
  let mrow = (col0 / blk) * blk * ws;
  ${gemmBody(gemm)}
}
`;
  return { code, group: g };
});

/**
 * dValues [d_out, K] (K = KX/2) of a vector-wise W_R: dV[o, j] = Σ_r dY[r, o]·X[r, idx(block(o), j)].
 * Bindings: dY [R, d_out] (read), X [R, KX] (read), meta (read u32), dV (rw).
 * Params: [0]=d_out [1]=K [2]=R (rows of dY and X) [3]=KX [4]=meta words/row [5]=blk.
 * `accumulate` adds into dV. Dispatch: [⌈K/bn⌉, ⌈d_out/bm⌉].
 * `split` (split-K, as the per-element sddmm: shaders/sddmm.wgsl.ts): workgroup z reduces rows
 * [z·slice, min((z+1)·slice, R)) into slab z of the f32 partials dV [slices, d_out, K] (then
 * summed by sddmmSplitSumKernel); params [6]=rows per slice, dispatch z = slices.
 */
export const vectorSddmmKernel = kernelFamily("vector_sddmm", (dtype: SpDType, accumulate: boolean, tile: VectorTile, split: boolean) => {
  const t = GEMM_TILES[VECTOR_TILES[tile]];
  const { bm, bn } = tileExtent(t);
  const bk = t.bk, per = (bn * bk) / GEMM_THREADS, step = GEMM_THREADS / bn;
  const nS = split ? "nS + " : "";
  const g = bindGroup([
    { name: "dY", access: "read", type: `array<${dtype}>` },
    { name: "X", access: "read", type: `array<${dtype}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "dV", access: "rw", type: `array<${split ? "f32" : dtype}>` },
  ]);
  // A = dYᵀ: element (o, r) at dY[r·d_out + o], stored with the reduction (rows of dY) slow: k-major
  const A = tileOperand({
    prefix: "a", shared: "As", rows: bm, bk, kMajor: true, vec: false, extent: "M", row0: "row0",
    index: (c, k) => `(${nS}${k}) * M + row0 + ${c}`, read: (i) => `f32(dY[${i}])`,
  });
  // B = the gathered X: element (r, j) at X[r·KX + idx(j)]; an invocation's j is fixed (tid % bn)
  const B = {
    decl: range(per).map((j) => `var br${j}: f32 = 0.0;`).join("\n  "),
    setup: `let bc = tid % ${bn}u; let jj = col0 + bc; let bok = jj < N;
  ${slotColumn("min(jj, N - 1u)", "col")}
  ${range(per).map((j) => `let bk${j} = tid / ${bn}u + ${j * step}u;`).join(" ")}`,
    fetch: (kk: string) => `{ let kk = ${kk};
    ${range(per).map((j) => `br${j} = 0.0; if (bok && kk + bk${j} < K) { br${j} = f32(X[(${nS}kk + bk${j}) * KX + col]); }`).join("\n    ")} }`,
    store: range(per).map((j) => `Bs[bk${j}][bc >> 2u][bc & 3u] = br${j};`).join("\n    "),
  };
  const store = split ? (o: string, acc: string) => `dV[pz + ${o}] = ${acc}[j];`
    : (o: string, acc: string) => `dV[${o}] = ${dtype}(${acc}[j]${accumulate ? ` + f32(dV[${o}])` : ""});`;
  const gemm: GemmSpec = {
    tile: t, a: { shared: "As", stride: bm / 4 }, b: { shared: "Bs", stride: bn / 4 + 1 }, row0: "row0", col0: "col0",
    loop: { k: "k0", bound: "K" },
    loads: { pipelined: [A, B] },
    write: (row, col, acc) => boundedWrite(row, col, (o) => store(o, acc)),
  };
  // split: K is the slice's length (nS its first row); the loaders and the K loop are unchanged
  const rowsK = split ? "let nS = min(wid.z * pu(6u), pu(2u)); let K = min(pu(6u), pu(2u) - nS);" : "let K = pu(2u);";
  const code = wgsl`${enables(dtype)}
${g.decls}
${gemmShared(gemm)}

${gemmMain(bm, bn, `let M = pu(0u); let N = pu(1u); ${rowsK} let KX = pu(3u); let ws = pu(4u); let blk = pu(5u);`)}
  let mrow = (row0 / blk) * blk * ws;${split ? "\n  let pz = wid.z * M * N;" : ""}
  ${gemmBody(gemm)}
}
`;
  return { code, group: g };
});
