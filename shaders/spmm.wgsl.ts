// Sparse × dense: Y = X·S^T (+ bias), S an N:M Sparse24 [d_out, K] along K (the layout of
// shaders/sparse24.wgsl.ts). The forward pass uses it with S = W_R; the input gradient with
// S = W_RC^T, since dY·W_RC = dY·(W_RC^T)^T. Three kernels:
//
// expand  (default from 17 rows of X) a dense register tile (64×64 or 128×128 per workgroup)
//         fed by decoding each S tile once per K step into a dense tile in workgroup memory:
//         half the weight bytes, all of the multiply-adds. Measured fastest on the H200.
// gather  64 or 128 rows of X × 64 rows of S, K in steps of 32 (one meta word per row of S). The
//         S tile stays compressed in workgroup memory: each (slot, row of S) is decoded once
//         into its value and its X-tile offset, and each invocation (4 or 8 rows × 4 outputs,
//         named vec4 registers) gathers one vec4 of X per kept weight: N/M of the multiply-adds,
//         but each one costs a 4-byte workgroup read (the dense tile needs 1), so it runs at
//         0.36–0.49× of the dense kernel on the H200. Kept for other hardware and as a baseline.
// small   n ≤ 16 rows of X (decoding, tiny batches): bound by weight bytes, so each row of S is
//         read once, coalesced, by IPR invocations that split its meta words (K spread over
//         invocations), one register per row of X (a vec4 per 4 rows, x transposed), then a
//         workgroup tree reduction. 2–6× faster than the dense kernel at 1–8 rows on the H200.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { GEMM_TILES, type GemmSpec, type GemmTileName, gemmBody, gemmShared, tileExtent } from "./gemm.ts";
import { bindGroup, enables, kernelFamily, MAIN_ARGS } from "./kernel.ts";
import { nmConsts, type SpDType } from "./sparse24.wgsl.ts";

export const SPMM_TILE = 64;
export const SPMM_SMALL_MAX_ROWS = 16;
export const SPMM_SMALL_WORKGROUP = 256;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Unrolled WGSL decoding slot q of a meta word `word`: `v${q}` (0 for unused slots), `k${q}` its column in the word. */
function decodeSlots(n: number, m: number, valueAt: (q: number) => string, valid: (q: number) => string): string {
  const s = (32 * n) / m, lines: string[] = [];
  for (let g = 0; g < 32 / m; g++) {
    lines.push(`      let b${g}_0 = (word >> ${g * m}u) & GMASK;`);
    for (let t = 1; t < n; t++) lines.push(`      let b${g}_${t} = b${g}_${t - 1} & (b${g}_${t - 1} - 1u);`);
  }
  for (let q = 0; q < s; q++) {
    const g = Math.floor(q / n), t = q % n;
    lines.push(`      let v${q} = select(0.0, f32(${valueAt(q)}), b${g}_${t} != 0u && ${valid(q)});`);
    lines.push(`      let k${q} = ${g * m}u + min(countTrailingZeros(b${g}_${t}), ${m - 1}u);`);
  }
  return lines.join("\n");
}

/** The bindings of every spmm kernel: X (read; its array type), values (read), meta (read u32), Y (rw), [bias (read)]. */
export function spmmBindings(dtype: SpDType, bias: boolean, xType = `array<${dtype}>`) {
  return bindGroup([
    { name: "X", access: "read", type: xType },
    { name: "values", access: "read", type: `array<${dtype}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "Y", access: "rw", type: `array<${dtype}>` },
    bias && { name: "bias", access: "read", type: `array<${dtype}>` },
  ]);
}

/** Workgroup storage of the gather kernel for `tileRows` rows of X: the X tile plus the S tile. */
export function spmmGatherStorage(n: number, m: number, tileRows: 64 | 128): number {
  return 32 * tileRows * 4 + 2 * ((32 * n) / m) * 16 * 16;
}

/**
 * Bindings: X (read), values (read), meta (read u32), Y (rw), [bias (read)].
 * Params: [0]=rows of X [1]=K [2]=d_out [3]=meta words/row [4]=values/row.
 * `tileRows` 64 (4 rows per invocation) or 128 (8 rows: two vec4 gathers per slot share one
 * read of the S tile; 16 KiB more workgroup memory). Dispatch: [ceil(d_out/64), ceil(rows/tileRows)].
 */
export const spmmGatherKernel = kernelFamily("spmm_gather", (n: number, m: number, dtype: SpDType, bias: boolean, tileRows: 64 | 128) => {
  const S = (32 * n) / m, BM = tileRows, Q = BM / 4; // Q: vec4s per k-row of the X tile
  const halves = range(BM / 64); // row blocks of 64 owned by one invocation (rows h·64 + tx·4 + 0..3)
  const chunks = 256 / BM, chunk = 32 / chunks; // X loader: k-chunks per row, k per chunk
  const g = spmmBindings(dtype, bias);
  const loadX = range(chunk).map((c) =>
    `      { let gk = k0 + xkc * ${chunk}u + ${c}u; var v = 0.0; if (xin && gk < K) { v = f32(X[xbase + gk]); } Xs[(xkc * ${chunk}u + ${c}u) * ${Q}u + xr / 4u][xr % 4u] = v; }`).join("\n");
  const acc = (h: number, j: number) => `acc${h}_${j}`;
  const slots = range(S).map((q) =>
    `      { let sw = ${q * 16}u + (ty ^ ${q & 15}u); let v = Wv[sw]; let kk = Wk[sw] + vec4<u32>(tx);
${halves.map((h) => `        ${range(4).map((j) => `${acc(h, j)} = ${acc(h, j)} + Xs[kk.${"xyzw"[j]}${h ? ` + ${h * 16}u` : ""}] * v.${"xyzw"[j]};`).join(" ")}`).join("\n")} }`).join("\n");
  const stores = halves.map((h) => range(4).map((r) => `
  { let row = m0 + ${h * 64}u + tx * 4u + ${r}u;
    if (row < nX) {
      let z = vec4<f32>(${range(4).map((j) => `${acc(h, j)}[${r}]`).join(", ")});
      for (var j = 0u; j < 4u; j = j + 1u) {
        let col = o0 + ty * 4u + j;
        if (col < dOut) { Y[row * dOut + col] = ${dtype}(z[j]${bias ? " + f32(bias[col])" : ""}); }
      }
    } }`).join("")).join("");
  const code = wgsl`${enables(dtype)}
${g.decls}
${nmConsts(n, m)}
const SLOTS = ${S}u;
var<workgroup> Xs: array<vec4<f32>, ${32 * Q}>;
var<workgroup> Wv: array<vec4<f32>, ${S * 16}>;
var<workgroup> Wk: array<vec4<u32>, ${S * 16}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let nX = pu(0u); let K = pu(1u); let dOut = pu(2u); let ws = pu(3u); let vpr = pu(4u);
  let tx = lid.x; let ty = lid.y; let tid = ty * 16u + tx;
  let o0 = wid.x * 64u; let m0 = wid.y * ${BM}u;
  // X loader: one row of the tile, ${chunk} consecutive k
  let xr = tid % ${BM}u; let xkc = tid / ${BM}u;
  let xin = m0 + xr < nX; let xbase = (m0 + xr) * K;
${halves.map((h) => range(4).map((j) => `  var ${acc(h, j)} = vec4<f32>(0.0);`).join("")).join("\n")}
  for (var w = 0u; w < ws; w = w + 1u) {
    let k0 = w * 32u;
${loadX}
    // S tile, decoded once: (slot q, row c) -> value and X-tile offset, column quads XOR-swizzled by q
    for (var e = tid; e < SLOTS * 64u; e = e + 256u) {
      let c = e / SLOTS; let q = e % SLOTS;
      let o = o0 + c;
      var v = 0.0; var kk = 0u;
      if (o < dOut) {
        let word = mbits[o * ws + w];
        let g = q / NN;
        var b = (word >> (g * MM)) & GMASK;
        for (var u = 0u; u < q % NN; u = u + 1u) { b = b & (b - 1u); }
        let slot = w * SLOTS + q;
        if (b != 0u && slot < vpr) {
          v = f32(values[o * vpr + slot]);
          kk = g * MM + countTrailingZeros(b);
        }
      }
      let sw = q * 16u + ((c / 4u) ^ (q & 15u));
      Wv[sw][c % 4u] = v;
      Wk[sw][c % 4u] = kk * ${Q}u;
    }
    workgroupBarrier();
${slots}
    workgroupBarrier();
  }
${stores}
}
`;
  return { code, group: g };
});

/** Tile shapes of the expand kernel, by their public names: tiles of GEMM_TILES (shaders/gemm.ts). */
export type ExpandTile = "64x64" | "128x128";
export const EXPAND_TILES = { "64x64": "64x64", "128x128": "128x128k8" } as const satisfies Record<ExpandTile, GemmTileName>;

/** Workgroup bytes of an expand tile (both operands, one vec4 of padding per k-row each). */
export function spmmExpandStorage(tile: ExpandTile): number {
  const { tm, tn, bk } = GEMM_TILES[EXPAND_TILES[tile]];
  return bk * 16 * ((16 * tm) / 4 + 1 + (16 * tn) / 4 + 1);
}

/** Rows of x and rows of S covered by one workgroup of the expand kernel. */
export function expandExtent(tile: ExpandTile): { bm: number; bn: number } {
  return tileExtent(GEMM_TILES[EXPAND_TILES[tile]]);
}

/**
 * The expand variant of the tiled kernel: (16·tm rows of X) × (16·tn rows of S) per workgroup, K
 * in steps of bk, on the GEMM core (shaders/gemm.ts) with direct loads: each step decodes the S
 * tile once from (values, meta) into a dense tile in workgroup memory (zeros at pruned
 * positions) and runs the core's register tile: all of the multiply-adds, but 1 byte of workgroup
 * traffic per multiply-add instead of the gather's 4, and half the weight bytes from memory.
 * Loads are coalesced along K (lanes along k) and scattered into k-major tiles with a vec4 of
 * padding per k-row.
 * Bindings and params as spmmGatherKernel. Dispatch: [ceil(d_out/bn), ceil(rows/bm)].
 */
export const spmmExpandKernel = kernelFamily("spmm_expand", (n: number, m: number, dtype: SpDType, bias: boolean, tile: ExpandTile) => {
  const t = GEMM_TILES[EXPAND_TILES[tile]];
  const { bm, bn } = tileExtent(t);
  const bk = t.bk, rowsPerPass = 256 / bk;
  const g = spmmBindings(dtype, bias);
  // loaders: element e = tid + 256·i of a (rows × bk) tile is (row e/bk, k e%bk)
  const loadX = range((bm * bk) / 256).map((i) => `    { let r = ${i * rowsPerPass}u + lr; var v = 0.0;
      if (m0 + r < nX && gk < K) { v = f32(X[(m0 + r) * K + gk]); }
      Xs[lk][r >> 2u][r & 3u] = v; }`).join("\n");
  const loadW = range((bn * bk) / 256).map((i) => `    { let c = ${i * rowsPerPass}u + lr; var v = 0.0;
      if (o0 + c < dOut) {
        let gbits = (mbits[(o0 + c) * ws + gw] >> gshift) & GMASK;
        if (((gbits >> gj) & 1u) != 0u) { v = f32(values[(o0 + c) * vpr + gg * NN + countOneBits(gbits & below)]); }
      }
      Ws[lk][c >> 2u][c & 3u] = v; }`).join("\n");
  const gemm: GemmSpec = {
    tile: t, a: { shared: "Xs", stride: bm / 4 + 1 }, b: { shared: "Ws", stride: bn / 4 + 1 }, row0: "m0", col0: "o0",
    loop: { k: "k0", bound: "ws * 32u" },
    loads: {
      direct: `    // this invocation's column k of the step: its meta word, group, position in the group
    let gk = k0 + lk; let gw = gk / 32u; let gg = gk / MM; let gj = gk % MM;
    let gshift = (gg * MM) % 32u; let below = (1u << gj) - 1u;
${loadX}
${loadW}`,
    },
    write: (row, col, acc) => `  { let row = ${row}; let col = ${col};
    if (row < nX) {
      for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + j < dOut) { Y[row * dOut + col + j] = ${dtype}(${acc}[j]${bias ? " + f32(bias[col + j])" : ""}); }
      }
    } }`,
  };
  const code = wgsl`${enables(dtype)}
${g.decls}
${nmConsts(n, m)}
${gemmShared(gemm)}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let nX = pu(0u); let K = pu(1u); let dOut = pu(2u); let ws = pu(3u); let vpr = pu(4u);
  let tx = lid.x; let ty = lid.y; let tid = ty * 16u + tx;
  let o0 = wid.x * ${bn}u; let m0 = wid.y * ${bm}u;
  let lk = tid % ${bk}u; let lr = tid / ${bk}u;
  ${gemmBody(gemm)}
}
`;
  return { code, group: g };
});

/**
 * Small-n path. Bindings as the gather kernel, except that with `vec` X is given transposed and
 * zero-padded, [K, ceil(rows/4)·4] read as vec4 (one load serves 4 rows of X).
 * Params as the gather kernel. `rows` = rows of X (1..16; one f32 register each, or one vec4 per
 * 4 rows with `vec`); `ipr` invocations per row of S (power of 2, ≤ 256).
 * Dispatch: grid1d(d_out · ipr, 256) workgroups.
 */
export const spmmSmallKernel = kernelFamily("spmm_small", (n: number, m: number, dtype: SpDType, bias: boolean, rows: number, ipr: number, vec: boolean) => {
  const S = (32 * n) / m, WG = SPMM_SMALL_WORKGROUP;
  const C = vec ? Math.ceil(rows / 4) : rows, A = vec ? "vec4<f32>" : "f32";
  const g = spmmBindings(dtype, bias, vec ? `array<vec4<${dtype}>>` : `array<${dtype}>`);
  const R = range(C);
  const load = (i: number) => (vec ? `vec4<f32>(X[k * ${C}u + ${i}u])` : `f32(X[${i}u * K + k])`);
  const fmas = range(S).map((q) =>
    `      { let k = min(kb + k${q}, K - 1u); ${R.map((i) => `acc${i} = acc${i} + ${load(i)} * v${q};`).join(" ")} }`).join("\n");
  const outs = vec
    ? range(rows).map((r) => `    Y[${r}u * dOut + o] = ${dtype}(red[${Math.floor(r / 4) * WG}u + lid.x][${r % 4}] + b);`)
    : R.map((r) => `    Y[${r}u * dOut + o] = ${dtype}(red[${r * WG}u + lid.x] + b);`);
  const code = wgsl`${enables(dtype)}
${g.decls}
${nmConsts(n, m)}
var<workgroup> red: array<${A}, ${C * WG}>;

@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let K = pu(1u); let dOut = pu(2u); let ws = pu(3u); let vpr = pu(4u);
  let part = lid.x % ${ipr}u;
  let o = (wid.y * nwg.x + wid.x) * ${WG / ipr}u + lid.x / ${ipr}u;
${R.map((i) => `  var acc${i} = ${A}(0.0);`).join("\n")}
  if (o < dOut) {
    for (var w = part; w < ws; w = w + ${ipr}u) {
      let word = mbits[o * ws + w];
      let vb = o * vpr + w * ${S}u; let kb = w * 32u;
      let lim = vpr - w * ${S}u;
${decodeSlots(n, m, (q) => `values[vb + ${q}u]`, (q) => `${q}u < lim`)}
${fmas}
    }
  }
${R.map((i) => `  red[${i * WG}u + lid.x] = acc${i};`).join("\n")}
  workgroupBarrier();
  for (var st = ${ipr / 2}u; st > 0u; st = st >> 1u) {
    if (part < st) {
${R.map((i) => `      red[${i * WG}u + lid.x] = red[${i * WG}u + lid.x] + red[${i * WG}u + lid.x + st];`).join("\n")}
    }
    workgroupBarrier();
  }
  if (part == 0u && o < dOut) {
#if ${bias}
    let b = f32(bias[o]);
#else
    let b = 0.0;
#endif
${outs.join("\n")}
  }
}
`;
  return { code, group: g };
});
