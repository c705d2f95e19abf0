// The N:M (2:4 by default) storage kernels: magnitude prune + compress, decompress, and the
// double-pruned transpose W_RC^T built straight from (values, meta), plus its value refresh.
//
// Layout (docs/design.md §4, docs/slope.md §3), for a rows×cols matrix N:M along cols:
//   values  rows × cols·N/M, group g's kept values at [g·N, g·N+N) in increasing column order;
//   meta    u32, rows × ceil(cols/32) words: group g's M-bit keep mask at bits (g·M) mod 32 of
//           word g·M/32 (2:4: 8 groups per word). Bit c of a row's bit string = column c kept,
//           whatever M is; bits past cols in a row's last word are 0.
// A group keeps at most N (exactly N after prune; the double-pruned transpose may keep fewer,
// see double-prune.ts); unused slots hold 0 after the used ones.
// Ties in magnitude keep the lower index: rank_j = #{i<j: |a_i| >= |a_j|} + #{i>j: |a_i| > |a_j|}.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";

export const SP_WORKGROUP = 256;
export type SpDType = "f32" | "f16";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** WGSL constants of a pattern: N, M, the group mask and groups per meta word. */
export function nmConsts(n: number, m: number): string {
  return `const NN = ${n}u; const MM = ${m}u; const GMASK = ${(2 ** m - 1) >>> 0}u; const GPW = ${32 / m}u;`;
}

/** Unrolled WGSL: `rank${j}` of magnitudes `mag0..mag{M-1}` (ties keep the lower index). */
function rankLines(m: number): string {
  return range(m).map((j) => {
    const terms = range(m).filter((i) => i !== j).map((i) => `u32(mag${i} ${i < j ? ">=" : ">"} mag${j})`);
    return `    let rank${j} = ${terms.join(" + ")};`;
  }).join("\n");
}

/**
 * The frame every kernel here shares: its bindings, the pattern's constants, one invocation per
 * linear index `idx` of SP_WORKGROUP-wide workgroups; `helpers` (WGSL functions over the
 * bindings) go before main, `body` is main's text after `idx`.
 */
function nmKernel(dtype: SpDType, n: number, m: number, bindings: Parameters<typeof bindGroup>[0], body: string, helpers = "") {
  const g = bindGroup(bindings);
  const code = `${enables(dtype)}
${g.decls}
${nmConsts(n, m)}
${linearIndexFn(SP_WORKGROUP)}
${helpers}
@compute @workgroup_size(${SP_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let idx = linearIndex(wid, nwg, lid);
${body}}
`;
  return { code, group: g };
}

/**
 * Prune + compress: one invocation per meta word (32 columns of one row). Keeps the top-N
 * magnitudes of each group of M consecutive columns.
 * Bindings: W (read), values (rw), meta (rw u32). Params: [0]=rows [1]=cols [2]=words/row [3]=values/row.
 */
export const pruneKernel = kernelFamily("sp_prune", (n: number, m: number, dtype: SpDType) => {
  return nmKernel(dtype, n, m, [
    { name: "W", access: "read", type: `array<${dtype}>` },
    { name: "values", access: "rw", type: `array<${dtype}>` },
    { name: "mbits", access: "rw", type: "array<u32>" },
  ], wgsl`  let rows = pu(0u); let cols = pu(1u); let ws = pu(2u); let vpr = pu(3u);
  if (idx >= rows * ws) { return; }
  let r = idx / ws; let w = idx % ws;
  let gpr = cols / MM;
  var word = 0u;
  for (var gi = 0u; gi < GPW; gi = gi + 1u) {
    let g = w * GPW + gi;
    if (g >= gpr) { break; }
    let src = r * cols + g * MM;
${range(m).map((j) => `    let a${j} = W[src + ${j}u]; let mag${j} = abs(f32(a${j}));`).join("\n")}
${rankLines(m)}
    let vb = r * vpr + g * NN;
    var t = 0u; var bits = 0u;
${range(m).map((j) => `    if (rank${j} < NN) { values[vb + t] = a${j}; t = t + 1u; bits = bits | ${(1 << j) >>> 0}u; }`).join("\n")}
    word = word | (bits << (gi * MM));
  }
  mbits[idx] = word;
`);
});

/**
 * Decompress: one invocation per dense element; pruned positions read 0.
 * Bindings: values (read), meta (read u32), out (rw). Params: [0]=rows [1]=cols [2]=words/row [3]=values/row.
 */
export const decompressKernel = kernelFamily("sp_decompress", (n: number, m: number, dtype: SpDType) => {
  return nmKernel(dtype, n, m, [
    { name: "values", access: "read", type: `array<${dtype}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "dense", access: "rw", type: `array<${dtype}>` },
  ], wgsl`  let rows = pu(0u); let cols = pu(1u);
  if (idx >= rows * cols) { return; }
  let r = idx / cols; let c = idx % cols;
  let word = mbits[r * pu(2u) + c / 32u];
  let g = c / MM; let j = c % MM;
  let gb = (word >> ((g * MM) % 32u)) & GMASK;
  var v = ${dtype}(0.0);
  if (((gb >> j) & 1u) != 0u) {
    v = values[r * pu(3u) + g * NN + countOneBits(gb & ((1u << j) - 1u))];
  }
  dense[idx] = v;
`);
});

/**
 * Gather at the kept positions: values[r, g·N + t] = dense[r, group g's t-th kept column] (added
 * to values with `accumulate`), 0 for a slot its group does not use — the compressed form of
 * M ⊙ D for a dense D of the same dtype. sddmm on the matrix units (src/sparse/sddmm.ts) takes the
 * dense dYᵀX from the matmul and this. One invocation per value.
 * Bindings: dense (read), meta (read u32), values (rw). Params: [0]=rows [1]=cols [2]=words/row [3]=values/row.
 */
export const gatherKeptKernel = kernelFamily("sp_gather_kept", (n: number, m: number, dtype: SpDType, accumulate: boolean) => {
  return nmKernel(dtype, n, m, [
    { name: "dense", access: "read", type: `array<${dtype}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "values", access: "rw", type: `array<${dtype}>` },
  ], wgsl`  let rows = pu(0u); let cols = pu(1u); let vpr = pu(3u);
  if (idx >= rows * vpr) { return; }
  let r = idx / vpr; let q = idx % vpr;
  let grp = q / NN; let t = q % NN;
  var b = (mbits[r * pu(2u) + (grp * MM) / 32u] >> ((grp * MM) % 32u)) & GMASK;
${range(n - 1).map((i) => `  if (t > ${i}u) { b = b & (b - 1u); }`).join("\n")}
  var v = ${dtype}(0.0);
  if (b != 0u) { v = dense[r * cols + grp * MM + countTrailingZeros(b)]; }
#if ${accumulate}
  values[idx] = values[idx] + v;
#else
  values[idx] = v;
#endif
`);
});

/**
 * The double-pruned transpose. W is dOut×dIn, N:M along dIn (values, meta); W_RC^T is dIn×dOut,
 * N:M along dOut: for column i of W and each group of M consecutive rows, keep the top-N of
 * |W_R[o, i]| (an entry pruned in W counts as 0, ties keep the lower o), intersected with W's
 * mask, so meta(W_RC^T) ⊆ meta(W_R) and a group may keep fewer than N.
 * One invocation per metaT word (row i of W^T, 32 rows of W), i fastest so neighbours share W's
 * meta words. mode "prune" writes valsT and metaT; "refresh" reads metaT (the mask stays) and
 * regathers valsT from W's current values.
 * Bindings: values, meta (W, read), valsT (rw), metaT (rw or read).
 * Params: [0]=dOut [1]=dIn [2]=W words/row [3]=W values/row [4]=W^T words/row [5]=W^T values/row.
 */
export const transposeKernel = kernelFamily("sp_double_prune", (n: number, m: number, dtype: SpDType, mode: "prune" | "refresh") => {
  const prune = mode === "prune";
  const helpers = `// W_R[o, i] as (value, kept).
fn wAt(o: u32, i: u32) -> vec2<f32> {
  let word = mbits[o * pu(2u) + i / 32u];
  let g = i / MM; let j = i % MM;
  let gb = (word >> ((g * MM) % 32u)) & GMASK;
  if (((gb >> j) & 1u) == 0u) { return vec2<f32>(0.0, 0.0); }
  return vec2<f32>(f32(values[o * pu(3u) + g * NN + countOneBits(gb & ((1u << j) - 1u))]), 1.0);
}
`;
  return nmKernel(dtype, n, m, [
    { name: "values", access: "read", type: `array<${dtype}>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "valsT", access: "rw", type: `array<${dtype}>` },
    { name: "mbitsT", access: prune ? "rw" : "read", type: "array<u32>" },
  ], wgsl`  let dOut = pu(0u); let dIn = pu(1u); let wsT = pu(4u); let vprT = pu(5u);
  if (idx >= dIn * wsT) { return; }
  let i = idx % dIn; let w = idx / dIn;
  let gpr = dOut / MM;
#if ${prune}
  var word = 0u;
#else
  let word = mbitsT[i * wsT + w];
#endif
  for (var gi = 0u; gi < GPW; gi = gi + 1u) {
    let g = w * GPW + gi;
    if (g >= gpr) { break; }
    let o0 = g * MM;
    let vb = i * vprT + g * NN;
    var t = 0u;
#if ${prune}
${range(m).map((j) => `    let e${j} = wAt(o0 + ${j}u, i); let mag${j} = abs(e${j}.x);`).join("\n")}
${rankLines(m)}
    var bits = 0u;
${range(m).map((j) => `    if (rank${j} < NN && e${j}.y > 0.5) { valsT[vb + t] = ${dtype}(e${j}.x); t = t + 1u; bits = bits | ${(1 << j) >>> 0}u; }`).join("\n")}
    word = word | (bits << (gi * MM));
#else
    let gb = (word >> (gi * MM)) & GMASK;
${range(m).map((j) => `    if (((gb >> ${j}u) & 1u) != 0u) { valsT[vb + t] = ${dtype}(wAt(o0 + ${j}u, i).x); t = t + 1u; }`).join("\n")}
#endif
    for (var q = t; q < NN; q = q + 1u) { valsT[vb + q] = ${dtype}(0.0); }
  }
#if ${prune}
  mbitsT[i * wsT + w] = word;
#endif
`, helpers);
});
