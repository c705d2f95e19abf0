// The fused low-rank multiply-add of merged SLoPe inference (docs/slope.md §5.5–5.6):
//   out[n, j] = Y[n, j] + Σ_k Y[n, dOut + k] · Rs[k, j]
// where Y = [X·W_Rᵀ + b | X·L] is the merged spmm's [n, dOut + r] output (its first dOut columns
// already hold the bias, added in the spmm epilogue) and Rs = R/r. One pass: the n×dOut product
// (X·L)·R is never written and read back. Two kernels:
// - `lowRankAddKernel` (few rows, decode): each invocation owns 4 consecutive columns of one row
//   in a named vec4 accumulator; the thin-K loop reads A from the row and a vec4 of R.
// - `lowRankAddTiledKernel` (many rows): the tiled GEMM core (shaders/gemm.ts), pipelined, with
//   C = Y[:, :dOut] as the accumulators' initial value (its readC hook); A = Y[:, dOut:] (row
//   pitch dOut + r, K contiguous: scattered k-major into workgroup memory with one vec4 of
//   padding) and Rs (k-major, contiguous along dOut). Every invocation of a workgroup thus reuses
//   each R value across tm rows and each A value across tn columns, where the small kernel
//   re-reads R from memory for every row.
//   Row tiles beyond the adapter's workgroups-per-dimension limit fold into the z axis.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { GEMM_THREADS, type GemmSpec, type GemmTile, type GemmTileName, gemmBody, gemmShared, tileExtent, tileOperand } from "./gemm.ts";
import { bindGroup, kernelFamily } from "./kernel.ts";

export const LOWRANK_WG = 64;

/** Params: [0]=rows [1]=dOut [2]=r. Bindings: Y [rows, dOut + r] (read), Rs [r, dOut] (read), out [rows, dOut] (rw). */
export const lowRankAddKernel = kernelFamily("lowrank_add", (vec4Cols: boolean) => {
  const g = bindGroup([
    { name: "Y", access: "read", type: "array<f32>" },
    { name: "Rs", access: "read", type: "array<f32>" },
    { name: "O", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`
${g.decls}
@compute @workgroup_size(${LOWRANK_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let rows = pu(0u); let dOut = pu(1u); let r = pu(2u);
  let row = wid.y;
  let c = (wid.x * ${LOWRANK_WG}u + lid.x) * 4u;
  if (row >= rows || c >= dOut) { return; }
  let ld = dOut + r;
  let yBase = row * ld;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < r; k = k + 1u) {
    let a = Y[yBase + dOut + k];
#if ${vec4Cols}
    let rb = k * dOut + c;
    acc = acc + a * vec4<f32>(Rs[rb], Rs[rb + 1u], Rs[rb + 2u], Rs[rb + 3u]);
#else
    let rb = k * dOut + c;
    var rv = vec4<f32>(0.0);
    rv.x = Rs[rb];
    if (c + 1u < dOut) { rv.y = Rs[rb + 1u]; }
    if (c + 2u < dOut) { rv.z = Rs[rb + 2u]; }
    if (c + 3u < dOut) { rv.w = Rs[rb + 3u]; }
    acc = acc + a * rv;
#endif
  }
  let o = row * dOut + c;
  O[o] = Y[yBase + c] + acc.x;
  if (c + 1u < dOut) { O[o + 1u] = Y[yBase + c + 1u] + acc.y; }
  if (c + 2u < dOut) { O[o + 2u] = Y[yBase + c + 2u] + acc.z; }
  if (c + 3u < dOut) { O[o + 3u] = Y[yBase + c + 3u] + acc.w; }
}
`;
  return { code, group: g };
});

/** The tiled kernel's shapes: the dense matmul's three front-end tiles of GEMM_TILES. */
export const LOWRANK_TILE_NAMES = ["128x128k8", "128x64", "64x64"] as const satisfies readonly GemmTileName[];
export type LowRankTileName = (typeof LOWRANK_TILE_NAMES)[number];

export interface LowRankVariant extends GemmTile {
  /** Y read as vec4 (A fetched as vec4, C as vec4): dOut and r are multiples of 4. */
  vecY: boolean;
  /** Rs read and O written as vec4: dOut is a multiple of 4. */
  vecN: boolean;
}

/** Workgroup-memory bytes of a tile (A's padding included). */
export function lowRankSharedBytes(t: GemmTile): number {
  const { bm, bn } = tileExtent(t);
  return 16 * t.bk * (bm / 4 + 1 + bn / 4);
}

/**
 * Params: [0]=rows [1]=dOut [2]=r [3]=row tiles per z slice (the grid's y extent). Bindings as the
 * small kernel's. Grid: [ceil(dOut / bn), row tiles per z slice, z slices].
 */
export const lowRankAddTiledKernel = kernelFamily("lowrank_add_tiled", (v: LowRankVariant) => {
  const { bm, bn } = tileExtent(v);
  const bk = v.bk;
  if (v.vecY && !v.vecN) throw new Error("lowrank_add_tiled: vecY needs vecN");
  const T = GEMM_THREADS;
  if ((bm * bk) / 4 < T || (bn * bk) / 4 < T) throw new Error(`lowrank_add_tiled: tile ${bm}x${bn}x${bk} is too small for ${T} invocations`);
  const YT = v.vecY ? "vec4<f32>" : "f32";
  const NT = v.vecN ? "vec4<f32>" : "f32";
  const gemm: GemmSpec = {
    tile: v,
    // As: one vec4 of padding per k-row (A is scattered); Bs: none (R is k-major).
    a: { shared: "As", stride: bm / 4 + 1 }, b: { shared: "Bs", stride: bn / 4 }, row0: "row0", col0: "col0",
    loop: { k: "k0", bound: "K" },
    loads: {
      pipelined: [
        // A tile: rows row0.. of Y's last r columns, K contiguous → scattered into As[k][row/4][row%4].
        tileOperand({
          prefix: "a", shared: "As", rows: bm, bk, kMajor: false, vec: v.vecY, extent: "rows", row0: "row0",
          index: (c, k) => `(row0 + ${c}) * ld + dOut + ${k}`, read: (i) => `Y[${i}]`,
        }),
        // R tile: Rs[k][col0..], contiguous along dOut → straight into Bs[k][col/4].
        tileOperand({
          prefix: "b", shared: "Bs", rows: bn, bk, kMajor: true, vec: v.vecN, extent: "N", row0: "col0",
          index: (c, k) => (v.vecN ? `${k} * (N / 4u) + col0 / 4u + ${c}` : `${k} * N + col0 + ${c}`), read: (i) => `Rs[${i}]`,
        }),
      ],
    },
    // The accumulators start at C = Y[:, :dOut] (the spmm output with its bias).
    readC: (row, col) => `getC(${row}, ${col}, rows, N, ld)`,
    write: (row, col, acc) => `  put(${row}, ${col}, ${acc}, rows, N);`,
  };

  const g = bindGroup([
    { name: "Y", access: "read", type: `array<${YT}>` },
    { name: "Rs", access: "read", type: `array<${NT}>` },
    { name: "O", access: "rw", type: `array<${NT}>` },
  ]);
  const code = wgsl`
${g.decls}
${gemmShared(gemm)}

// C block (row, col..col+3) = Y[row, col..], zeros out of range.
fn getC(row: u32, col: u32, rows: u32, N: u32, ld: u32) -> vec4<f32> {
  if (row >= rows || col >= N) { return vec4<f32>(0.0); }
  let o = row * ld + col;
#if ${v.vecY}
  return Y[o / 4u];
#else
  var c = vec4<f32>(Y[o], 0.0, 0.0, 0.0);
  if (col + 1u < N) { c.y = Y[o + 1u]; }
  if (col + 2u < N) { c.z = Y[o + 2u]; }
  if (col + 3u < N) { c.w = Y[o + 3u]; }
  return c;
#endif
}

fn put(row: u32, col: u32, v: vec4<f32>, rows: u32, N: u32) {
  if (row >= rows || col >= N) { return; }
  let o = row * N + col;
#if ${v.vecN}
  O[o / 4u] = v;
#else
  O[o] = v.x;
  if (col + 1u < N) { O[o + 1u] = v.y; }
  if (col + 2u < N) { O[o + 2u] = v.z; }
  if (col + 3u < N) { O[o + 3u] = v.w; }
#endif
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let rows = pu(0u); let N = pu(1u); let K = pu(2u);
  let ld = N + K;
  let rowTile = wid.z * pu(3u) + wid.y;
  let row0 = rowTile * ${bm}u; let col0 = wid.x * ${bn}u;
  if (row0 >= rows) { return; }
  let dOut = N;
  let tx = lid.x; let ty = lid.y;
  let tid = ty * 16u + tx;
  ${gemmBody(gemm)}
}
`;
  return { code, group: g };
});

