// The fused attention forward on the GPU's matrix units (subgroup matrices; the tensor cores on
// NVIDIA): the same contract as attentionForwardKernel in ./attention.wgsl.ts — same bindings,
// params block, addressing (both layouts), causal skipping, dropout mask (the counter RNG at
// (key, b·h, i·T + j), so the backward regenerates the same one) — writing O and the per-row
// logsumexp L the backward uses. Its two products run on subgroup matrices (f16 operands, f32
// accumulation), the softmax on shader cores in f32:
// - A workgroup of `nsub` subgroups owns 16·nsub query rows of one (b, h); subgroup s owns rows
//   16s … 16s + 15. Q is staged once into workgroup memory as f16.
// - Per key block of `keys` keys: K and V staged as f16; S = Q·Kᵀ on the matrix units (K's rows
//   loaded as a column-major right operand) into an f32 scratch; one invocation per row runs the
//   online softmax there (scale, causal mask, keys past T, running max m and sum l), writes P
//   (dropped and scaled when dropout is on) rounded to f16 and the row's rescale factor α;
//   U = P·V on the matrix units into the same scratch (the scores are consumed by then); every
//   invocation updates its share of O, held in named f32 vec4 registers, as O·α + U. Keeping O on
//   the shader cores is what makes the per-row rescale exact and simple (a result matrix cannot be
//   scaled per row by a builtin).
// - Rows past T and keys past T are zeros in workgroup memory; only rows < T are written.
// The head dim D is a multiple of 16 (the matrix shape). Builtin spelling and subgroup-uniform
// offsets as in ./matmul-subgroup.wgsl.ts (offsets derive from the subgroup_id builtin).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { ATTN_COMMON, keepTest } from "./attention.wgsl.ts";
import { RNG_WGSL } from "./fill.wgsl.ts";
import { bindGroup, kernelFamily } from "./kernel.ts";
import { SG_LEFT, SG_RESULT, SG_RIGHT, type SgSyntax, sgLoad, sgStore } from "./matmul-subgroup.wgsl.ts";

/** A workgroup's shape: `nsub` subgroups of 16 query rows each, key blocks of `keys`. */
export interface AttentionUnitsTile {
  nsub: 1 | 2 | 4 | 8;
  keys: 16 | 32 | 64;
}

export interface AttentionUnitsVariant extends AttentionUnitsTile {
  /** Element type of q, k, v and o in memory. */
  dtype: "f32" | "f16";
  /** Head dim: a multiple of 16. */
  D: number;
  causal: boolean;
  dropout: boolean;
  /** Invocations per subgroup the kernel is built for (the adapter's subgroupMaxSize). */
  subgroupSize: number;
  sgSyntax: SgSyntax;
}

/** Tiles from the largest to the smallest; the front-end takes the first that fits the adapter's workgroup memory. */
export const ATTENTION_UNITS_TILES: readonly AttentionUnitsTile[] = [
  { nsub: 4, keys: 32 },
  { nsub: 2, keys: 32 },
  { nsub: 1, keys: 16 },
];

/** Largest head dim the matrix-unit forward is built for (registers and workgroup memory grow with D). */
export const UNITS_MAX_HEAD_DIM = 128;

/** Halves of padding per f16 row (bank conflicts; keeps every row 16-byte aligned), floats per f32 scratch row. */
const PAD16 = 8, PAD32 = 4;

function layout(t: AttentionUnitsTile, D: number) {
  const BR = 16 * t.nsub, BC = t.keys;
  const LQ = D + PAD16, LP = BC + PAD16, LS = Math.max(BC, D) + PAD32;
  return { BR, BC, LQ, LP, LS };
}

/** Workgroup-memory bytes of the kernel for tile `t` and head dim D (Qs, Ks, Vs, Ps in f16; the scratch and α in f32). */
export function attentionUnitsSharedBytes(t: AttentionUnitsTile, D: number): number {
  const { BR, BC, LQ, LP, LS } = layout(t, D);
  return 2 * (BR * LQ + 2 * BC * LQ + BR * LP) + 4 * (BR * LS + BR);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const XYZW = ["x", "y", "z", "w"] as const;

/**
 * Bindings: q, k, v (read; may be one buffer), o (rw), lse (rw, f32 [B·H, T]); the params of
 * attentionForwardKernel. Grid: [ceil(T / (16·nsub)), B·H folded into y, z].
 */
export const attentionUnitsForwardKernel = kernelFamily("attention_sgmat", (v: AttentionUnitsVariant) => {
  const { D, dtype, causal, dropout, nsub } = v;
  if (D % 16 !== 0 || D > UNITS_MAX_HEAD_DIM) throw new Error(`attentionUnitsForwardKernel: head dim ${D} is not a multiple of 16 up to ${UNITS_MAX_HEAD_DIM}`);
  const { BR, BC, LQ, LP, LS } = layout(v, D);
  const threads = nsub * v.subgroupSize;
  if (threads < BR) throw new Error(`attentionUnitsForwardKernel: subgroups of ${v.subgroupSize} are too small (one invocation per row)`);
  const DV = D / 4;
  const g = bindGroup([
    { name: "q", access: "read", type: `array<${dtype}>` },
    { name: "k", access: "read", type: `array<${dtype}>` },
    { name: "v", access: "read", type: `array<${dtype}>` },
    { name: "o", access: "rw", type: `array<${dtype}>` },
    { name: "lse", access: "rw", type: "array<f32>" },
  ]);
  const half = (x: string) => (dtype === "f16" ? x : `f16(${x})`);
  // Staging of `rows` rows of D from global (offset expression of row `r` valid when `ok`) into f16 `dst`.
  const stage = (rows: number, body: (store: (dst: string, off: string) => string) => string) => `  for (var e = tid; e < ${rows * DV}u; e = e + ${threads}u) {
    let r = e / ${DV}u;
    let c = (e % ${DV}u) * 4u;
    let s = r * ${LQ}u + c;
${body((dst, off) => `${range(4).map((x) => `${dst}[s + ${x}u] = ${half(`${off}${x ? ` + ${x}u` : ""}]`)};`).join(" ")}`)}
  }`;
  const zero = (dst: string) => range(4).map((x) => `${dst}[s + ${x}u] = f16(0.0);`).join(" ");
  // The O registers: vec4 chunk e = tid + n·threads of the [BR][D] block, row e / DV, column (e % DV)·4.
  const chunks = BR * DV, nreg = Math.ceil(chunks / threads), full = chunks % threads === 0;
  const regs = range(nreg);
  const place = (n: number) => `let e = tid + ${n * threads}u; let r = e / ${DV}u; let c = (e % ${DV}u) * 4u;`;
  const guard = full ? "" : `if (e < ${chunks}u) `;
  const L = SG_LEFT, R = SG_RIGHT, Res = SG_RESULT, sy = v.sgSyntax;
  const SJ = range(BC / 16), DJ = range(D / 16), KQ = range(D / 16), KP = range(BC / 16);
  // S = Q·Kᵀ: left Q rows (row-major, stride LQ), right Kᵀ (K's rows read column-major).
  const scores = [
    `var ${SJ.map((j) => `s${j} = ${Res}();`).join(" var ")}`,
    ...KQ.map((kk) => [
      `let qa${kk} = ${sgLoad(sy, L, "&Qs", `sr * ${LQ}u + ${kk * 16}u`, false, `${LQ}u`)};`,
      ...SJ.map((j) => `s${j} = subgroupMatrixMultiplyAccumulate(qa${kk}, ${sgLoad(sy, R, "&Ks", `${j * 16 * LQ + kk * 16}u`, true, `${LQ}u`)}, s${j});`),
    ].join("\n      ")),
    ...SJ.map((j) => `${sgStore(sy, "&Ss", `sr * ${LS}u + ${j * 16}u`, `s${j}`, false, `${LS}u`)};`),
  ].join("\n      ");
  // U = P·V: left P rows (row-major, stride LP), right V (row-major, stride LQ).
  const pv = [
    `var ${DJ.map((j) => `u${j} = ${Res}();`).join(" var ")}`,
    ...KP.map((kk) => [
      `let pa${kk} = ${sgLoad(sy, L, "&Ps", `sr * ${LP}u + ${kk * 16}u`, false, `${LP}u`)};`,
      ...DJ.map((j) => `u${j} = subgroupMatrixMultiplyAccumulate(pa${kk}, ${sgLoad(sy, R, "&Vs", `${kk * 16 * LQ + j * 16}u`, false, `${LQ}u`)}, u${j});`),
    ].join("\n      ")),
    ...DJ.map((j) => `${sgStore(sy, "&Ss", `sr * ${LS}u + ${j * 16}u`, `u${j}`, false, `${LS}u`)};`),
  ].join("\n      ");
  const sc = (r: string, c: string) => `Ss[${r} * ${LS}u + ${c}]`;
  const code = wgsl`enable f16;
enable chromium_experimental_subgroup_matrix;
#if ${nsub > 1}
enable subgroups;
#endif
${g.decls}
${ATTN_COMMON}
#if ${dropout}
${RNG_WGSL}
#endif
var<workgroup> Qs: array<f16, ${BR * LQ}>;
var<workgroup> Ks: array<f16, ${BC * LQ}>;
var<workgroup> Vs: array<f16, ${BC * LQ}>;
var<workgroup> Ps: array<f16, ${BR * LP}>;
var<workgroup> Ss: array<f32, ${BR * LS}>;
var<workgroup> rowF: array<f32, ${BR}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32${nsub > 1 ? ", @builtin(subgroup_id) sgid: u32" : ""}) {
  let bh = wid.z * nwg.y + wid.y;
  if (bh >= pu(16u)) { return; }
  let T = T_();
  let i0 = wid.x * ${BR}u;
#if ${nsub > 1}
  let sr = sgid * 16u;
#else
  let sr = 0u;
#endif
  let scale = pf(11u);
${stage(BR, (st) => `    let row = i0 + r;
    if (row < T) { let go = pu(5u) + inRow(bh, row) + c; ${st("Qs", "q[go")} } else { ${zero("Qs")} }`)}
${regs.map((n) => `  var o${n} = vec4<f32>(0.0);`).join("\n")}
  // The softmax state of row tid (invocations tid < ${BR}).
  var m: f32 = NEG;
  var l: f32 = 0.0;
#if ${causal}
  let kEnd = min(T, i0 + ${BR}u);
#else
  let kEnd = T;
#endif
  let nkb = (kEnd + ${BC - 1}u) / ${BC}u;
  for (var kb = 0u; kb < nkb; kb = kb + 1u) {
    let j0 = kb * ${BC}u;
    workgroupBarrier();
${stage(BC, (st) => `    let key = j0 + r;
    if (key < T) {
      let ro = inRow(bh, key);
      let ko = pu(6u) + ro + c;
      let vo = pu(7u) + ro + c;
      ${st("Ks", "k[ko")}
      ${st("Vs", "v[vo")}
    } else { ${zero("Ks")} ${zero("Vs")} }`)}
    workgroupBarrier();
    {
      ${scores}
    }
    workgroupBarrier();
    if (tid < ${BR}u) {
      let i = i0 + tid;
#if ${causal}
      let lim = min(T, i + 1u);
#else
      let lim = T;
#endif
      var mx = m;
      for (var c = 0u; c < ${BC}u; c = c + 1u) {
        if (j0 + c < lim) { mx = max(mx, ${sc("tid", "c")} * scale); }
      }
      var sum = 0.0;
      for (var c = 0u; c < ${BC}u; c = c + 1u) {
        var p = 0.0;
        if (j0 + c < lim) { p = exp(${sc("tid", "c")} * scale - mx); }
        sum = sum + p;
#if ${dropout}
        let pd = select(0.0, p * pf(15u), ${keepTest("i", "j0 + c")});
#else
        let pd = p;
#endif
        Ps[tid * ${LP}u + c] = f16(pd);
      }
      let alpha = exp(m - mx);
      l = l * alpha + sum;
      m = mx;
      rowF[tid] = alpha;
    }
    workgroupBarrier();
    {
      ${pv}
    }
    workgroupBarrier();
${regs.map((n) => `    { ${place(n)} ${guard}{ let so = r * ${LS}u + c; o${n} = o${n} * rowF[r] + vec4<f32>(Ss[so], Ss[so + 1u], Ss[so + 2u], Ss[so + 3u]); } }`).join("\n")}
  }
  workgroupBarrier();
  if (tid < ${BR}u) {
    let i = i0 + tid;
    if (i < T) { lse[bh * T + i] = m + log(l); }
    rowF[tid] = 1.0 / l;
  }
  workgroupBarrier();
${regs.map((n) => `  { ${place(n)} let row = i0 + r; ${guard.replace("if (", "if (row < T && ") || "if (row < T) "}{
    let oo = outRow(bh, row) + c; let x = o${n} * rowF[r];
    ${range(4).map((x) => `o[oo + ${x}u] = ${dtype}(x.${XYZW[x]});`).join(" ")}
  } }`).join("\n")}
}
`;
  return { code, group: g };
});
