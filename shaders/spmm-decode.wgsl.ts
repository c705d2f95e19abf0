// The decode kernel of 2:4 spmm (Y = X·S^T + b for M ≤ 16 rows of X, the serving / tiny-batch
// case), bound by weight bytes: every byte of S's values and meta is read once, coalesced.
//
// A workgroup of 256 invocations is 32 teams of 8 lanes; team t owns row o = 32·wid.x + t of S
// and lane l reads the vec4s l, l+8, l+16, … of that row's values (two 2:4 groups = 8 columns
// each), so the 8 lanes of a team read 128 consecutive bytes per step, and one byte of the meta
// word (four lanes share a word). X is staged per K sub-chunk into workgroup memory once for all
// 32 rows, transposed to one vec4 per k and 4 rows of X (C = ⌈M/4⌉ vec4s per k), and read at the
// kept columns: N/M of the multiply-adds, each a workgroup read (no transposed copy of X, no
// extra dispatch). Lanes of a team end with partial sums, added by lane 0 after one exchange.
//
// Split-K: when d_out alone gives too few workgroups, wid.y takes a K range of `len` columns and
// the kernel writes f32 partial sums P [splits, M, d_out]; spmmSplitSumKernel then adds the
// splits and the bias (two passes, no atomics). Only 2:4 with K a multiple of 8 (the vec4 values
// of a row); other patterns take the small kernel of spmm.wgsl.ts.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { kernelFamily } from "./kernel.ts";
import type { SpDType } from "./sparse24.wgsl.ts";

export const DECODE_MAX_ROWS = 16;
/** Rows of S per workgroup (teams) and lanes per row. */
export const DECODE_ROWS = 32;
export const DECODE_LANES = 8;
/** Workgroup bytes for the staged X sub-chunk (the exchange takes 4 KiB more). */
const XS_BYTES = 12288;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Columns of X staged per sub-chunk for C vec4s per k: a multiple of 64 (8 lanes × 8 columns). */
export function decodeChunk(c: number): number {
  return Math.floor(XS_BYTES / (16 * c) / 64) * 64;
}

/**
 * Bindings: X [M, K] (read), values [d_out, K/2] as vec4 (read), meta (read u32), out (rw):
 * Y [M, d_out] when `split` is false (then [bias]), else f32 partials [splits, M, d_out].
 * Params: [0]=M [1]=K [2]=d_out [3]=meta words/row [4]=values/row [5]=len (columns per split,
 * a multiple of 64). `c` = ⌈M/4⌉. Dispatch: [⌈d_out/32⌉, splits].
 */
export const spmmDecodeKernel = kernelFamily("spmm_decode", (dtype: SpDType, bias: boolean, c: number, split: boolean) => {
  const XC = decodeChunk(c), C = range(c);
  const g = bindGroup([
    { name: "X", access: "read", type: `array<${dtype}>` },
    { name: "values", access: "read", type: `array<vec4<${dtype}>>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "Y", access: "rw", type: split ? "array<f32>" : `array<${dtype}>` },
    !split && bias && { name: "bias", access: "read", type: `array<${dtype}>` },
  ]);
  const fma = C.map((i) => `      acc${i} = acc${i} + Xs[i0 * ${c}u + ${i}u] * v.x + Xs[i1 * ${c}u + ${i}u] * v.y + Xs[i2 * ${c}u + ${i}u] * v.z + Xs[i3 * ${c}u + ${i}u] * v.w;`).join("\n");
  const store = (i: number) => range(4).map((j) => {
    const r = 4 * i + j;
    return split
      ? `      if (${r}u < nX) { Y[(wid.y * nX + ${r}u) * dOut + o] = s.${"xyzw"[j]}; }`
      : `      if (${r}u < nX) { Y[${r}u * dOut + o] = ${dtype}(s.${"xyzw"[j]} + b); }`;
  }).join("\n");
  const reduce = C.map((i) => `  workgroupBarrier();
  red[tid] = acc${i};
  workgroupBarrier();
  if (lane == 0u && live) {
    let s = ${range(8).map((l) => `red[tid + ${l}u]`).join(" + ")};
${store(i)}
  }`).join("\n");
  const code = wgsl`${enables(dtype)}
${g.decls}
var<workgroup> Xs: array<vec4<f32>, ${XC * c}>;
var<workgroup> red: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let nX = pu(0u); let K = pu(1u); let dOut = pu(2u); let ws = pu(3u); let vpr = pu(4u); let len = pu(5u);
  let tid = lid.x; let lane = tid % ${DECODE_LANES}u;
  let o = wid.x * ${DECODE_ROWS}u + tid / ${DECODE_LANES}u;
  let live = o < dOut;
  let orow = min(o, dOut - 1u);
  let vrow = orow * (vpr / 4u); let mrow = orow * ws;
  let ks = wid.y * len; let ke = min(ks + len, K);
${C.map((i) => `  var acc${i} = vec4<f32>(0.0);`).join("\n")}
  for (var xc = ks; xc < ke; xc = xc + ${XC}u) {
    let n = min(ke - xc, ${XC}u);
    workgroupBarrier();
    // stage X[:, xc..xc+n) transposed: coalesced along k, one vec4 per (k, 4 rows)
    for (var e = tid; e < n * nX; e = e + 256u) {
      let i = e / n; let k = e % n;
      Xs[k * ${c}u + i / 4u][i % 4u] = f32(X[i * K + xc + k]);
    }
    workgroupBarrier();
    for (var p = lane; p < n / 8u; p = p + ${DECODE_LANES}u) {
      let kb = xc + p * 8u;
      let v = vec4<f32>(values[vrow + kb / 8u]);
      let byte = (mbits[mrow + kb / 32u] >> (kb % 32u)) & 255u;
      let g0 = byte & 15u; let g1 = byte >> 4u;
      let kl = p * 8u;
      let i0 = kl + min(countTrailingZeros(g0), 3u);
      let i1 = kl + min(countTrailingZeros(g0 & (g0 - 1u)), 3u);
      let i2 = kl + 4u + min(countTrailingZeros(g1), 3u);
      let i3 = kl + 4u + min(countTrailingZeros(g1 & (g1 - 1u)), 3u);
${fma}
    }
  }
#if ${!split && bias}
  let b = f32(bias[orow]);
#else
  let b = 0.0;
#endif
${reduce}
}
`;
  return { code, group: g };
});

/**
 * The second pass of split-K: Y[e] = Σ_s parts[s·M·d_out + e] (+ bias[e % d_out]).
 * Bindings: parts (read f32), Y (rw), [bias]. Params: [0]=M·d_out [1]=d_out [2]=splits.
 * Dispatch: grid1d(M·d_out, 256).
 */
export const spmmSplitSumKernel = kernelFamily("spmm_split_sum", (dtype: SpDType, bias: boolean) => {
  const g = bindGroup([
    { name: "parts", access: "read", type: "array<f32>" },
    { name: "Y", access: "rw", type: `array<${dtype}>` },
    bias && { name: "bias", access: "read", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(256)}

@compute @workgroup_size(256)
fn main(${MAIN_ARGS}) {
  let total = pu(0u); let dOut = pu(1u); let splits = pu(2u);
  let e = linearIndex(wid, nwg, lid);
  if (e >= total) { return; }
  var s = 0.0;
  for (var i = 0u; i < splits; i = i + 1u) { s = s + parts[i * total + e]; }
#if ${bias}
  s = s + f32(bias[e % dOut]);
#endif
  Y[e] = ${dtype}(s);
}
`;
  return { code, group: g };
});
