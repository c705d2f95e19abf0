// The lanes kernel of 2:4 spmm (Y = X·S^T + b, S [N, K] 2:4 along K): half of the multiply-adds,
// like the gather kernel of spmm.wgsl.ts, but without its workgroup read per multiply-add.
//
// Why: the expand kernel (spmm.wgsl.ts) decodes S into a dense tile and does all the
// multiply-adds (0.62–0.83× of the dense kernel on the H200); the gather kernel does half but
// reads X from workgroup memory once per multiply-add (0.36–0.49×); choosing x[m, 4g + idx] per
// output with select() costs ≥ 2 instructions per kept weight. Here the sparsity pattern is made
// uniform across a subgroup instead: a warp of 32 invocations owns CW output columns (rows of S)
// and its lanes run over rows of X, TM rows each. For each group g of 4 columns of K, a lane
// holds x[m, 4g..4g+3] of its TM rows in named vec4 registers; then for each of the warp's
// columns it reads that column's pattern code and its two kept values (one broadcast read: every
// lane of the warp reads the same word) and branches on the code: a `switch` over the 6 ways to
// keep 2 of 4, each case straight-line code of 2·TM multiply-adds on the right two lanes of the
// vec4s. The branch is uniform over the warp, so it costs a few instructions per (column, group)
// against the 2·TM multiply-adds it selects, and the dense kernel's 4·TM.
//
// Layout: 256 invocations = 8 warps (local_invocation_index / 32: invocations 0–31 are one warp on
// NVIDIA; on a device whose subgroups are not 32 wide the result is the same, the branches are
// merely divergent). A workgroup covers BM = 32·TM rows of X × BN = 8·CW rows of S. Per K step of
// 4·GS columns (GS = 8 groups: one meta word per row of S; or 4: half of one) it stages
//   Xs[g][r]  the X tile, k-major as one vec4 per (group, row): lane l reads row t·32 + l, so a
//             warp's 32 reads of one register are consecutive (no bank conflicts);
//   Ws[g][c]  the S tile, decoded once per step: (v0, v1, code) of column c's group g, with code
//             0..5 = kept pair (0,1) (0,2) (0,3) (1,2) (1,3) (2,3), stored as the bits of a
//             normal f32 (CODE_BITS + code: a denormal could be flushed on the way). A group
//             keeping fewer than 2 (the double-pruned transpose W_RC^T, or groups past K, whose
//             mask bits are 0) is padded to a pair with value 0 at the positions it does not keep.
// Both inner indices of the workgroup arrays are loop-invariant (the engines' bounds clamps hoist
// out of the K loop). X is read as vec4 (K is a multiple of 4 for 2:4), zeros past the rows of X
// and past K. Same bindings and params as the other spmm kernels (spmmBindings), X typed vec4.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { enables, kernelFamily } from "./kernel.ts";
import type { SpDType } from "./sparse24.wgsl.ts";
import { spmmBindings } from "./spmm.wgsl.ts";

/**
 * Variants: TM rows of X per lane × CW rows of S per warp ("8x8" = TM 8, CW 8), staged GS groups of
 * 4 columns of K at a time (8: a whole meta word; 4: half of one, so that TM 8 fits 32 KiB);
 * "p": the next step's tiles are fetched into registers while this one is multiplied out (more
 * registers per invocation, the loads' latency hidden within the workgroup).
 */
export const LANES_VARIANTS = {
  "8x8": { tm: 8, cw: 8, gs: 4, prefetch: false }, "8x4": { tm: 8, cw: 4, gs: 4, prefetch: false },
  "4x8": { tm: 4, cw: 8, gs: 8, prefetch: false }, "4x4": { tm: 4, cw: 4, gs: 8, prefetch: false },
  "8x8p": { tm: 8, cw: 8, gs: 4, prefetch: true }, "4x8p": { tm: 4, cw: 8, gs: 8, prefetch: true },
} as const;
export type LanesVariant = keyof typeof LANES_VARIANTS;

const WARPS = 8, LANES = 32;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
/** The kept pair of each code 0..5 (lanes of the vec4 of X). */
const PAIRS = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]] as const;
const XYZW = "xyzw";
/** Code c is stored as the f32 whose bits are CODE_BITS + c (1.0 and up: a normal float, which no engine flushes). */
const CODE_BITS = 0x3f800000;

/** Rows of X (bm) and rows of S (bn) covered by one workgroup of a variant. */
export function lanesExtent(v: LanesVariant): { bm: number; bn: number } {
  const { tm, cw } = LANES_VARIANTS[v];
  return { bm: LANES * tm, bn: WARPS * cw };
}

/** Workgroup bytes of a variant: the X tile (BM × 4·GS f32) and the decoded S tile (GS groups × BN vec4). */
export function spmmLanesStorage(v: LanesVariant): number {
  const { bm, bn } = lanesExtent(v);
  return LANES_VARIANTS[v].gs * (bm + bn) * 16;
}

/**
 * Bindings as spmmGatherKernel (X typed array<vec4<dtype>>): X (read), values (read), meta (read
 * u32), Y (rw), [bias (read)]. Params: [0]=rows of X [1]=K (a multiple of 4) [2]=d_out [3]=meta
 * words/row [4]=values/row (K/2). 2:4 only. Dispatch: [ceil(d_out/bn), ceil(rows/bm)] (lanesExtent).
 */
export const spmmLanesKernel = kernelFamily("spmm_lanes", (dtype: SpDType, bias: boolean, variant: LanesVariant) => {
  const { tm, cw, gs, prefetch } = LANES_VARIANTS[variant];
  const { bm, bn } = lanesExtent(variant);
  const sub = 8 / gs; // steps per meta word
  const g = spmmBindings(dtype, bias, `array<vec4<${dtype}>>`);
  const T = range(tm), C = range(cw);
  const acc = (c: number, t: number) => `a${c}_${t}`;
  // loaders: element e = tid + 256·i of the X tile is (row e/GS, vec4 e%GS): GS invocations per
  // 16·GS bytes of a row. fetch* reads step `st` from memory into registers (px, pn, pv), store*
  // writes them into the workgroup tiles (decoding the S tile); the prefetching variants fetch
  // step st+1 while step st is multiplied out.
  const nx = (bm * gs) / 256, wEntries = bn * gs; // (column, group) entries of the S tile: 128, 256 or 512
  const nw = Math.ceil(wEntries / 256);
  const guard = wEntries < 256 ? `if (tid < ${wEntries}u) ` : "";
  const decl = [...range(nx).map((i) => `  var px${i} = vec4<f32>(0.0);`), ...range(nw).map((i) => `  var pn${i} = 0u; var pv${i} = vec2<f32>(0.0);`)].join("\n");
  const fetch = (st: string) => `    { let st = ${st}; let w = st / ${sub}u; let q0 = (st % ${sub}u) * ${gs}u; let kq0 = st * ${gs}u;
${range(nx).map((i) => `      { let e = tid + ${i * 256}u; let r = e / ${gs}u; let gq = kq0 + e % ${gs}u;
        px${i} = vec4<f32>(0.0);
        if (m0 + r < nX && gq < kq) { px${i} = vec4<f32>(X[(m0 + r) * kq + gq]); } }`).join("\n")}
${range(nw).map((i) => `      ${guard}{ let e = tid + ${i * 256}u; let o = o0 + e / ${gs}u; let q = e % ${gs}u;
        pn${i} = 0u; pv${i} = vec2<f32>(0.0);
        if (o < dOut) {
          pn${i} = (mbits[o * ws + w] >> (4u * (q0 + q))) & 15u;
          // a group past K keeps nothing (its mask bits are 0) and has no value slots
          if (pn${i} != 0u) { let vb = o * vpr + (kq0 + q) * 2u; pv${i} = vec2<f32>(f32(values[vb]), f32(values[vb + 1u])); }
        } }`).join("\n")}
    }`;
  const store = `${range(nx).map((i) => `    { let e = tid + ${i * 256}u; Xs[e % ${gs}u][e / ${gs}u] = px${i}; }`).join("\n")}
${range(nw).map((i) => `    ${guard}{ let e = tid + ${i * 256}u; let nib = pn${i};
      // pad a group keeping fewer than 2 with its lowest free positions (their values stay 0);
      // the kept values sit in slots 0, 1 in column order
      var pr = nib;
      if (countOneBits(pr) < 2u) { pr = pr | (~pr & (pr + 1u)); }
      if (countOneBits(pr) < 2u) { pr = pr | (~pr & (pr + 1u)); }
      let i0 = countTrailingZeros(pr); let i1 = countTrailingZeros(pr & (pr - 1u));
      let v0 = select(0.0, pv${i}.x, ((nib >> i0) & 1u) != 0u);
      let v1 = select(0.0, select(pv${i}.x, pv${i}.y, (nib & (1u << i0)) != 0u), ((nib >> i1) & 1u) != 0u);
      Ws[e % ${gs}u][e / ${gs}u] = vec4<f32>(v0, v1, bitcast<f32>(CODE0 + i0 * (7u - i0) / 2u + i1 - i0 - 1u), 0.0); }`).join("\n")}`;
  const cases = (c: number) => PAIRS.map(([i, j], code) => {
    const body = T.map((t) => `${acc(c, t)} = ${acc(c, t)} + w0 * x${t}.${XYZW[i]} + w1 * x${t}.${XYZW[j]};`).join(" ");
    return `        case ${code === PAIRS.length - 1 ? `CODE${code}, default` : `CODE${code}`}: { ${body} }`;
  }).join("\n");
  const columns = C.map((c) => `      { let e = Ws[q][wc + ${c}u]; let w0 = e.x; let w1 = e.y;
        switch bitcast<u32>(e.z) {
${cases(c)}
        } }`).join("\n");
  const stores = T.map((t) => `  { let row = m0 + ${t * LANES}u + lane;
    if (row < nX) {
${C.map((c) => `      if (o0 + wc + ${c}u < dOut) { Y[row * dOut + o0 + wc + ${c}u] = ${dtype}(${acc(c, t)}${bias ? ` + f32(bias[o0 + wc + ${c}u])` : ""}); }`).join("\n")}
    } }`).join("\n");
  const code = wgsl`${enables(dtype)}
${g.decls}
${PAIRS.map((_, code) => `const CODE${code} = ${CODE_BITS + code}u;`).join("\n")}
var<workgroup> Xs: array<array<vec4<f32>, ${bm}>, ${gs}>;
var<workgroup> Ws: array<array<vec4<f32>, ${bn}>, ${gs}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let nX = pu(0u); let K = pu(1u); let dOut = pu(2u); let ws = pu(3u); let vpr = pu(4u);
  let kq = K / 4u; // vec4s per row of X
  let lane = tid % ${LANES}u; let wc = (tid / ${LANES}u) * ${cw}u; // this warp's first column in the tile
  let o0 = wid.x * ${bn}u; let m0 = wid.y * ${bm}u;
${C.map((c) => `  ${T.map((t) => `var ${acc(c, t)} = 0.0;`).join(" ")}`).join("\n")}
${decl}
  let steps = ws * ${sub}u;
#if ${prefetch}
${fetch("0u")}
${store}
  workgroupBarrier();
#endif
  for (var st = 0u; st < steps; st = st + 1u) {
#if ${prefetch}
    if (st + 1u < steps) {
${fetch("st + 1u")}
    }
#else
${fetch("st")}
${store}
    workgroupBarrier();
#endif
    for (var q = 0u; q < ${gs}u; q = q + 1u) {
${T.map((t) => `      let x${t} = Xs[q][${t * LANES}u + lane];`).join("\n")}
${columns}
    }
    workgroupBarrier();
#if ${prefetch}
${store}
    workgroupBarrier();
#endif
  }
${stores}
}
`;
  return { code, group: g };
});
