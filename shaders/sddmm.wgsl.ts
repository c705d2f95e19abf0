// Sampled dense × dense for the weight gradient: only at S's kept positions,
//   gW[o, slot] = Σ_n dY[n, o] · X[n, col(o, slot)],
// written compressed in the layout of S's values (shaders/sparse24.wgsl.ts). Two kernels:
//
// dense-tile (default) dense register tiles of dYᵀ·X with a masked, compressed store: all of the
//         multiply-adds, no gathers, both operands pipelined as in the dense matmul; it writes
//         half the bytes (and no dense d_out×K buffer plus a gather pass, as the original does).
// gather  N/M of the multiply-adds. A workgroup owns 16 rows of S × one meta word (32 columns
//         of K, S slots per row) and loops over n in steps of 64. Each invocation owns one row o
//         and all of its slots in the word; the slot columns are loop-invariant, decoded once
//         into registers before the n loop. Tiles are n-contiguous in workgroup memory (a vec4
//         holds 4 values of n) and the 16 lanes along n read consecutive vec4s, so gathers by
//         column do not conflict; the partial sums of the 16 lanes are reduced through
//         workgroup memory at the end. Each kept multiply-add needs a gathered 4-byte read,
//         which makes it slower than dense-tile on the H200 (0.23–0.38×; far slower on wgpu).
//
// Split-K (both kernels, `split`): the weight gradient reduces over n = B·T rows (16,384 in a
// training step) into a small output, so its grid of output tiles leaves most of a large GPU
// idle. A split kernel takes the n range [z·slice, min((z+1)·slice, n)) for z = workgroup_id.z
// and writes its f32 partial, compressed like gW, into slab z of a [slices, d_out, vpr] buffer;
// sddmmSplitSumKernel then sums the slabs into gW (converting, or adding when accumulating).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { GEMM_TILES, type GemmSpec, type GemmTileName, gemmBody, gemmShared, tileExtent, tileOperand } from "./gemm.ts";
import { MAIN_ARGS, bindGroup, enables, kernelFamily, linearIndexFn } from "./kernel.ts";
import { nmConsts, type SpDType } from "./sparse24.wgsl.ts";

export const SDDMM_ROWS = 16;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * What `split` changes in a kernel: the head reading the params (a split kernel's n range is its
 * slice: nS its first row, nB its length, never past n), the row offset of its loads, the
 * offset pz of its slab of partials, the output type and its store. Unsplit, the text is as before.
 */
export function splitParts(split: boolean, accumulate: boolean, dtype: SpDType) {
  const dims = "let K = pu(1u); let dOut = pu(2u); let ws = pu(3u); let vpr = pu(4u);";
  if (!split) {
    return {
      head: `let nB = pu(0u); ${dims}`, nS: "", pz: "", outType: dtype as string, accumulate,
      store: (at: string, v: string) => (accumulate ? `gW[${at}] = ${dtype}(f32(gW[${at}]) + ${v});` : `gW[${at}] = ${dtype}(${v});`),
    };
  }
  return {
    head: `${dims}
  let nS = min(wid.z * pu(5u), pu(0u)); let nB = min(pu(5u), pu(0u) - nS); let pz = wid.z * dOut * vpr;`,
    nS: "nS + ", pz: "pz + ", outType: "f32", accumulate: false,
    store: (at: string, v: string) => `gW[${at}] = ${v};`,
  };
}

/**
 * Bindings: dY (read), X (read), meta (read u32), gW (rw).
 * Params: [0]=n (rows of dY and X) [1]=K [2]=d_out [3]=meta words/row [4]=values/row.
 * Dispatch: [words/row, ceil(d_out/16)]. `accumulate` adds into gW instead of overwriting it.
 * `split`: gW is the f32 partials [slices, d_out, vpr], params [5]=rows per slice, dispatch z = slices.
 */
export const sddmmKernel = kernelFamily("sddmm", (n: number, m: number, dtype: SpDType, accumulate: boolean, split: boolean) => {
  const sp = splitParts(split, accumulate, dtype);
  const S = (32 * n) / m;
  const decode: string[] = [];
  for (let g = 0; g < 32 / m; g++) {
    decode.push(`  let b${g}_0 = (word >> ${g * m}u) & GMASK;`);
    for (let t = 1; t < n; t++) decode.push(`  let b${g}_${t} = b${g}_${t - 1} & (b${g}_${t - 1} - 1u);`);
  }
  for (let q = 0; q < S; q++) {
    const g = Math.floor(q / n), t = q % n;
    decode.push(`  let c${q} = (${g * m}u + min(countTrailingZeros(b${g}_${t}), ${m - 1}u)) * 17u + tx; let ok${q} = b${g}_${t} != 0u;`);
    decode.push(`  var a${q} = vec4<f32>(0.0);`);
  }
  const fmas = range(S).map((q) => `    a${q} = a${q} + Xs[c${q}] * d;`).join("\n");
  const rounds = range(Math.ceil(S / 8)).map((r) => {
    const qs = range(8).map((qq) => r * 8 + qq).filter((q) => q < S);
    return `
  ${qs.map((q) => `{ let i = (ty * 8u + ${q - r * 8}u) * 17u + tx; Xs[i / 4u][i % 4u] = select(0.0, dot(a${q}, vec4<f32>(1.0)), ok${q}); }`).join("\n  ")}
  workgroupBarrier();
  if (tid < 128u) {
    let q = ${r * 8}u + tid % 8u;
    let o = wid.y * 16u + tid / 8u;
    let slot = wid.x * ${S}u + q;
    if (q < ${S}u && o < dOut && slot < vpr) {
      var s = 0.0;
      for (var l = 0u; l < 16u; l = l + 1u) { let i = tid * 17u + l; s = s + Xs[i / 4u][i % 4u]; }
      ${sp.store(`${sp.pz}o * vpr + slot`, "s")}
    }
  }
  workgroupBarrier();`;
  }).join("");
  const g = bindGroup([
    { name: "dY", access: "read", type: `array<${dtype}>` },
    { name: "X", access: "read", type: `array<${dtype}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "gW", access: "rw", type: `array<${sp.outType}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${nmConsts(n, m)}
var<workgroup> Ds: array<vec4<f32>, 272>;
var<workgroup> Xs: array<vec4<f32>, 544>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${sp.head}
  let tx = lid.x; let ty = lid.y; let tid = ty * 16u + tx;
  let w = wid.x; let o0 = wid.y * 16u; let k0 = w * 32u;
  var word = 0u;
  if (o0 + ty < dOut) { word = mbits[(o0 + ty) * ws + w]; }
${decode.join("\n")}
  for (var n0 = 0u; n0 < nB; n0 = n0 + 64u) {
    for (var i = 0u; i < 4u; i = i + 1u) {
      let e = tid + i * 256u; let oo = e % 16u; let nn = e / 16u;
      var v = 0.0;
      if (n0 + nn < nB && o0 + oo < dOut) { v = f32(dY[(${sp.nS}n0 + nn) * dOut + o0 + oo]); }
      Ds[oo * 17u + nn / 4u][nn % 4u] = v;
    }
    for (var i = 0u; i < 8u; i = i + 1u) {
      let e = tid + i * 256u; let kk = e % 32u; let nn = e / 32u;
      var v = 0.0;
      if (n0 + nn < nB && k0 + kk < K) { v = f32(X[(${sp.nS}n0 + nn) * K + k0 + kk]); }
      Xs[kk * 17u + nn / 4u][nn % 4u] = v;
    }
    workgroupBarrier();
    let d = Ds[ty * 17u + tx];
${fmas}
    workgroupBarrier();
  }
${rounds}
}
`;
  return { code, group: g };
});

/**
 * Tile shapes of the dense-tile kernel, by their public names: tiles of GEMM_TILES
 * (shaders/gemm.ts), M = rows o of S, N = columns k, the reduction over n in steps of bk.
 */
export type SddmmTile = "64x64" | "128x128";
export const SDDMM_TILES = { "64x64": "64x64", "128x128": "128x128k8" } as const satisfies Record<SddmmTile, GemmTileName>;

/** Rows of S (o) and columns (k) covered by one workgroup of the dense-tile kernel. */
export function sddmmExtent(tile: SddmmTile): { bo: number; bk: number } {
  const { bm, bn } = tileExtent(GEMM_TILES[SDDMM_TILES[tile]]);
  return { bo: bm, bk: bn };
}

/**
 * The dense-tile variant: each workgroup computes a dense (16·tm)×(16·tn) tile of dYᵀ·X (rows o
 * of S × columns k) on the GEMM core (shaders/gemm.ts), n in steps of bk, and its write hook stores
 * only the kept entries, compressed. All of the multiply-adds but no gathers: on the H200 it is
 * faster than the gather kernel above, and it never writes the dense d_out×K product.
 * Both operands are pipelined like the dense matmul's (tileOperand: the next n step fetched into
 * registers during this one's multiply-adds; `vec`: vec4 reads, d_out and K multiples of 4). The
 * first version loaded each step directly, one scalar per element and no prefetch, and ran
 * 0.71–0.78× of the dense dYᵀX at d = 2048 on the H200 for the same multiply-adds.
 * Unused slots of a group (fewer than N kept) are written 0 unless accumulating.
 * Bindings and params as sddmmKernel (dY and X typed vec4 with `vec`). Dispatch: [ceil(K/(16·tn)), ceil(d_out/(16·tm))], z = slices when split.
 */
export const sddmmDenseTileKernel = kernelFamily("sddmm_dense_tile", (n: number, m: number, dtype: SpDType, accumulate: boolean, tile: SddmmTile, split: boolean, vec: boolean) => {
  const sp = splitParts(split, accumulate, dtype);
  const t = GEMM_TILES[SDDMM_TILES[tile]];
  const { bm: bo, bn: bkk } = tileExtent(t);
  const bk = t.bk;
  // dY [n, d_out] and X [n, K] are both k-major here (n is the reduction): rows o and columns k are contiguous
  const operand = (name: "dY" | "X", prefix: "a" | "b", shared: string, rows: number, extent: string, row0: string) => tileOperand({
    prefix, shared, rows, bk, kMajor: true, vec, extent, row0, bound: "nB",
    index: vec ? (c, k) => `(${sp.nS}${k}) * (${extent} / 4u) + ${row0} / 4u + ${c}` : (c, k) => `(${sp.nS}${k}) * ${extent} + ${row0} + ${c}`,
    read: vec ? (i) => `vec4<f32>(${name}[${i}])` : (i) => `f32(${name}[${i}])`,
  });
  const gemm: GemmSpec = {
    tile: t, a: { shared: "As", stride: bo / 4 }, b: { shared: "Bs", stride: bkk / 4 }, row0: "o0", col0: "k0",
    loop: { k: "n0", bound: "nB" },
    loads: { pipelined: [operand("dY", "a", "As", bo, "dOut", "o0"), operand("X", "b", "Bs", bkk, "K", "k0")] },
    write: (row, col, acc) => `  { let o = ${row}; let kb = ${col};
    if (o < dOut && kb < K) { put(o, kb, ${acc}, K, ws, vpr${split ? ", pz" : ""}); } }`,
  };
  const el = vec ? `vec4<${dtype}>` : dtype;
  const g = bindGroup([
    { name: "dY", access: "read", type: `array<${el}>` },
    { name: "X", access: "read", type: `array<${el}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "gW", access: "rw", type: `array<${sp.outType}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${nmConsts(n, m)}
${gemmShared(gemm)}

// Stores the kept entries among columns kb..kb+3 of row o (kb a multiple of 4: one meta word).
fn put(o: u32, kb: u32, acc: vec4<f32>, K: u32, ws: u32, vpr: u32${split ? ", pz: u32" : ""}) {
  let word = mbits[o * ws + kb / 32u];
  for (var j = 0u; j < 4u; j = j + 1u) {
    let k = kb + j;
    if (k < K) {
      let g = k / MM; let jj = k % MM;
      let gbits = (word >> ((g * MM) % 32u)) & GMASK;
      let base = ${sp.pz}o * vpr + g * NN;
      if (((gbits >> jj) & 1u) != 0u) {
        let at = base + countOneBits(gbits & ((1u << jj) - 1u));
        ${sp.store("at", "acc[j]")}
      }
      ${sp.accumulate ? "" : `if (jj == 0u) { for (var t = countOneBits(gbits); t < NN; t = t + 1u) { gW[base + t] = ${sp.outType}(0.0); } }`}
    }
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${sp.head}
  let tx = lid.x; let ty = lid.y; let tid = ty * 16u + tx;
  let k0 = wid.x * ${bkk}u; let o0 = wid.y * ${bo}u;
  ${gemmBody(gemm)}
}
`;
  return { code, group: g };
});

/**
 * Sums the f32 partials [slices, count] of a split sddmm into gW (count = d_out·vpr values),
 * converting to gW's dtype, or adding to it when `accumulate`.
 * Bindings: partials (read f32), gW (rw). Params: [0]=count [1]=slices. Dispatch: grid1d(count, 256).
 */
export const sddmmSplitSumKernel = kernelFamily("sddmm_split_sum", (dtype: SpDType, accumulate: boolean) => {
  const g = bindGroup([
    { name: "part", access: "read", type: "array<f32>" },
    { name: "gW", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(256)}
@compute @workgroup_size(256)
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  let count = pu(0u); let slices = pu(1u);
  if (i >= count) { return; }
  var s = 0.0;
  for (var z = 0u; z < slices; z = z + 1u) { s = s + part[z * count + i]; }
  ${accumulate ? `gW[i] = ${dtype}(f32(gW[i]) + s);` : `gW[i] = ${dtype}(s);`}
}
`;
  return { code, group: g };
});
