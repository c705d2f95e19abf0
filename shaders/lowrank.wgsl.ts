// The fused low-rank multiply-add of merged SLoPe inference (SLOPE.md §5.5-5.6):
//   out[n, j] = Y[n, j] + Σ_k Y[n, dOut + k] · Rs[k, j]
// where Y = [X·W_Rᵀ + b | X·L] is the merged spmm's [n, dOut + r] output (its first dOut columns
// already hold the bias, added in the spmm epilogue) and Rs = R/r. One pass: the n×dOut product
// (X·L)·R is never written and read back. Two kernels:
// - `lowRankAddKernel` (few rows, decode): each invocation owns 4 consecutive columns of one row
//   in a named vec4 accumulator; the thin-K loop reads A from the row and a vec4 of R.
// - `lowRankAddTiledKernel` (many rows): the dense matmul's register tiling (shaders/matmul.wgsl.ts)
//   with C = Y[:, :dOut] as the accumulators' initial value. 16×16 invocations each own a tm×tn
//   block of the output in named vec4 registers c<row>_<colgroup>; A = Y[:, dOut:] (row pitch
//   dOut + r, K contiguous: scattered k-major into workgroup memory with one vec4 of padding) and
//   Rs (k-major, contiguous along dOut) are staged over chunks of bk k's, software-pipelined (the
//   next chunk is fetched into named registers while the current one is multiplied out), and the
//   per-k body is unrolled in the emitted text (no loop-indexed local arrays, DESIGN.md §6). Every
//   invocation of a workgroup thus reuses each R value across tm rows and each A value across tn
//   columns, where the small kernel re-reads R from memory for every row.
//   Row tiles beyond the adapter's workgroups-per-dimension limit fold into the z axis.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { MATMUL_TILES, type MatmulTile } from "./matmul.wgsl.ts";
import { kernelFamily, paramsDecl, storage } from "./kernel.ts";

export const LOWRANK_WG = 64;

/** Params: [0]=rows [1]=dOut [2]=r. Bindings: Y [rows, dOut + r] (read), Rs [r, dOut] (read), out [rows, dOut] (rw). */
export const lowRankAddKernel = kernelFamily("lowrank_add", (vec4Cols: boolean) => {
  const code = wgsl`
${storage(0, "Y", "read", "array<f32>")}
${storage(1, "Rs", "read", "array<f32>")}
${storage(2, "O", "rw", "array<f32>")}
${paramsDecl(3)}
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
  return { code, bindings: ["read", "read", "rw"], params: true };
});

/** Work per invocation and k depth: the dense matmul's tile shapes, so both tile the same way. */
export type LowRankTile = MatmulTile;

/** The tiled kernel's shapes: the dense matmul's three front-end tiles. */
export const LOWRANK_TILES = {
  "64x64": MATMUL_TILES["64x64"],
  "128x64": MATMUL_TILES["128x64"],
  "128x128k8": MATMUL_TILES["128x128k8"],
} as const;
export type LowRankTileName = keyof typeof LOWRANK_TILES;

/** Invocations per workgroup of the tiled kernel (16 × 16). */
export const LOWRANK_THREADS = 256;

export interface LowRankVariant extends LowRankTile {
  /** Y read as vec4 (A fetched as vec4, C as vec4): dOut and r are multiples of 4. */
  vecY: boolean;
  /** Rs read and O written as vec4: dOut is a multiple of 4. */
  vecN: boolean;
}

/** Rows and columns of the output covered by one workgroup of the tiled kernel. */
export function lowRankTileExtent(t: LowRankTile): { bm: number; bn: number } {
  return { bm: 16 * t.tm, bn: 16 * t.tn };
}

/** Workgroup-memory bytes of a tile (A's padding included). */
export function lowRankSharedBytes(t: LowRankTile): number {
  const { bm, bn } = lowRankTileExtent(t);
  return 16 * t.bk * (bm / 4 + 1 + bn / 4);
}

const XYZW = ["x", "y", "z", "w"] as const;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Params: [0]=rows [1]=dOut [2]=r [3]=row tiles per z slice (the grid's y extent). Bindings as the
 * small kernel's. Grid: [ceil(dOut / bn), row tiles per z slice, z slices].
 */
export const lowRankAddTiledKernel = kernelFamily("lowrank_add_tiled", (v: LowRankVariant) => {
  const { bm, bn } = lowRankTileExtent(v);
  const bk = v.bk;
  if (v.vecY && !v.vecN) throw new Error("lowrank_add_tiled: vecY needs vecN");
  const T = LOWRANK_THREADS;
  if ((bm * bk) / 4 < T || (bn * bk) / 4 < T) throw new Error(`lowrank_add_tiled: tile ${bm}x${bn}x${bk} is too small for ${T} invocations`);
  const sa = bm / 4 + 1; // vec4s per k-row of As (one of padding: A is scattered)
  const sb = bn / 4;
  const YT = v.vecY ? "vec4<f32>" : "f32";
  const NT = v.vecN ? "vec4<f32>" : "f32";

  // A tile: rows row0.. of Y's last r columns, K contiguous → scattered into As[k][row/4][row%4].
  const aDecl: string[] = [], aSetup: string[] = [], aFetch: string[] = [], aStore: string[] = [];
  {
    const per = v.vecY ? bk / 4 : bk;
    const n = (bm * bk) / (v.vecY ? 4 : 1) / T;
    for (const j of range(n)) {
      const idx = `(tid + ${j * T}u)`;
      aDecl.push(`var ar${j}: ${YT} = ${YT}(0.0);`);
      aSetup.push(`let ac${j} = ${idx} / ${per}u; let ak${j} = (${idx} % ${per}u)${v.vecY ? " * 4u" : ""};`);
      aSetup.push(`let aok${j} = row0 + ac${j} < rows; let as${j} = ac${j} >> 2u; let am${j} = ac${j} & 3u;`);
      if (v.vecY) {
        aSetup.push(`let ag${j} = ((row0 + ac${j}) * ld + dOut + ak${j}) / 4u;`);
        aFetch.push(`ar${j} = vec4<f32>(0.0); if (aok${j} && kk + ak${j} < K) { ar${j} = Y[ag${j} + kk / 4u]; }`);
        for (const i of range(4)) aStore.push(`As[ak${j} + ${i}u][as${j}][am${j}] = ar${j}.${XYZW[i]};`);
      } else {
        aSetup.push(`let ag${j} = (row0 + ac${j}) * ld + dOut + ak${j};`);
        aFetch.push(`ar${j} = 0.0; if (aok${j} && kk + ak${j} < K) { ar${j} = Y[ag${j} + kk]; }`);
        aStore.push(`As[ak${j}][as${j}][am${j}] = ar${j};`);
      }
    }
  }
  // R tile: Rs[k][col0..], contiguous along dOut → straight into Bs[k][col/4].
  const bDecl: string[] = [], bSetup: string[] = [], bFetch: string[] = [], bStore: string[] = [];
  {
    const per = v.vecN ? bn / 4 : bn;
    const n = (bn * bk) / (v.vecN ? 4 : 1) / T;
    for (const j of range(n)) {
      const idx = `(tid + ${j * T}u)`;
      bDecl.push(`var br${j}: ${NT} = ${NT}(0.0);`);
      bSetup.push(`let bk${j} = ${idx} / ${per}u; let bc${j} = ${idx} % ${per}u;`);
      if (v.vecN) {
        bSetup.push(`let bok${j} = col0 + bc${j} * 4u < N; let bg${j} = bk${j} * (N / 4u) + col0 / 4u + bc${j};`);
        bFetch.push(`br${j} = vec4<f32>(0.0); if (bok${j} && kk + bk${j} < K) { br${j} = Rs[bg${j} + kk * (N / 4u)]; }`);
        bStore.push(`Bs[bk${j}][bc${j}] = br${j};`);
      } else {
        bSetup.push(`let bok${j} = col0 + bc${j} < N; let bg${j} = bk${j} * N + col0 + bc${j};`);
        bFetch.push(`br${j} = 0.0; if (bok${j} && kk + bk${j} < K) { br${j} = Rs[bg${j} + kk * N]; }`);
        bStore.push(`Bs[bk${j}][bc${j} >> 2u][bc${j} & 3u] = br${j};`);
      }
    }
  }
  const fetch = (kk: string) => `{ let kk = ${kk};\n    ${[...aFetch, ...bFetch].join("\n    ")} }`;

  const ga = v.tm / 4, gb = v.tn / 4; // vec4 groups per invocation along rows and columns
  // Row i of the invocation's block is tile row (i/4)·64 + ty·4 + i%4; column group h starts at h·64 + tx·4.
  const rowOf = (i: number) => `row0 + ${(i >> 2) * 64 + (i & 3)}u + ty * 4u`;
  const colOf = (h: number) => `col0 + ${h * 64}u + tx * 4u`;
  const accs = range(v.tm).flatMap((i) => range(gb).map((h) => `var c${i}_${h} = getC(${rowOf(i)}, ${colOf(h)}, rows, N, ld);`));
  const steps = range(bk).map((k) => {
    const loads = [
      ...range(ga).map((g) => `let a${g} = As[${k}][ty${g ? ` + ${g * 16}u` : ""}];`),
      ...range(gb).map((h) => `let b${h} = Bs[${k}][tx${h ? ` + ${h * 16}u` : ""}];`),
    ];
    const fmas = range(v.tm).flatMap((i) => range(gb).map((h) =>
      `c${i}_${h} = c${i}_${h} + a${i >> 2}.${XYZW[i & 3]} * b${h};`));
    return `    {\n      ${loads.join(" ")}\n      ${fmas.join("\n      ")}\n    }`;
  }).join("\n");
  const stores = range(v.tm).flatMap((i) => range(gb).map((h) =>
    `  put(${rowOf(i)}, ${colOf(h)}, c${i}_${h}, rows, N);`)).join("\n");

  const code = wgsl`
${storage(0, "Y", "read", `array<${YT}>`)}
${storage(1, "Rs", "read", `array<${NT}>`)}
${storage(2, "O", "rw", `array<${NT}>`)}
${paramsDecl(3)}
var<workgroup> As: array<array<vec4<f32>, ${sa}>, ${bk}>;
var<workgroup> Bs: array<array<vec4<f32>, ${sb}>, ${bk}>;

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
  ${aSetup.join("\n  ")}
  ${bSetup.join("\n  ")}
  ${aDecl.join("\n  ")}
  ${bDecl.join("\n  ")}
  ${accs.join("\n  ")}
  ${fetch("0u")}
  for (var k0 = 0u; k0 < K; k0 = k0 + ${bk}u) {
    workgroupBarrier();
    ${aStore.join("\n    ")}
    ${bStore.join("\n    ")}
    workgroupBarrier();
    if (k0 + ${bk}u < K) {
      ${fetch(`k0 + ${bk}u`)}
    }
${steps}
  }
${stores}
}
`;
  return { code, bindings: ["read", "read", "rw"], params: true };
});

