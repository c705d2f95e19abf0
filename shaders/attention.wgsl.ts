// Fused causal attention in the flash-attention manner (FlashAttention-2's algorithm, our WGSL):
// O = softmax(scale·Q·Kᵀ [+ causal mask]) [∘ dropout] · V without ever materialising the
// [T, T] scores. Four kernels share one addressing scheme and one params block:
// - forward: a workgroup per (query block, b·h), one query row per invocation (q and the output
//   accumulator in named vec4 registers); key/value blocks staged in workgroup memory; online
//   softmax (running max m and sum l); key blocks above the causal diagonal are never visited.
//   Writes O and the per-row logsumexp (the only thing the backward keeps besides O).
// - rowDot: Δ_i = rowsum(dO_i ∘ O_i), one invocation per row.
// - dK/dV: a workgroup per (key block, b·h), one key per invocation, looping over query tiles
//   (from the block's diagonal on when causal) and recomputing P from Q, K and the logsumexp.
// - dQ: a workgroup per (query block, b·h), one query per invocation, looping over key blocks.
// dK/dV and dQ are two passes so that no float atomics are needed. Dropout (when compiled in)
// regenerates its mask from the counter RNG at (key, b·h, i·T + j) in every kernel: no mask is
// stored. Q, K, V, O are addressed as base + (bh / H)·sB + (bh % H)·sH + t·sT + d, which covers
// both contiguous [..., T, D] tensors (H = 1) and the packed [B, T, 3C] output of the qkv
// projection (head h of q at column h·D, of k at C + h·D, of v at 2C + h·D), whose gradient is
// written in the same layout. The head dim D is a template parameter, padded to a multiple of 4
// (DV vec4 registers); every loop over D, a block or a tile is unrolled with named registers.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily } from "./kernel.ts";
import { RNG_WGSL } from "./fill.wgsl.ts";
import { NEG_BIG } from "./softmax.wgsl.ts";

type F = "f32" | "f16";

/**
 * Params words, shared by the four kernels: [0]=T [1]=H [2]=sB [3]=sH [4]=sT (Q/K/V and their
 * gradients) [5]=qBase [6]=kBase [7]=vBase [8]=oSB [9]=oSH [10]=oST (O, dO) [11]=scale bits
 * [12]=k0 [13]=k1 (dropout key) [14]=p bits [15]=1/(1 − p) bits [16]=B·H.
 */
export const ATTN_PARAMS = 17;

/** Tile sizes: the forward's query rows × key block, dQ's rows × key block, dK/dV's keys × query tile. */
export interface AttentionTiles {
  fwdRows: number;
  fwdKeys: number;
  dqRows: number;
  dqKeys: number;
  dkvKeys: number;
  dkvRows: number;
}

/** Tile sets from the largest to the smallest; the front-end takes the first that fits. */
export const ATTENTION_TILES: readonly AttentionTiles[] = [
  { fwdRows: 64, fwdKeys: 16, dqRows: 64, dqKeys: 16, dkvKeys: 32, dkvRows: 16 },
  { fwdRows: 64, fwdKeys: 8, dqRows: 32, dqKeys: 8, dkvKeys: 16, dkvRows: 8 },
  { fwdRows: 32, fwdKeys: 4, dqRows: 16, dqKeys: 4, dkvKeys: 8, dkvRows: 4 },
];

/** vec4 registers per row of head dim D. */
export const headVecs = (D: number) => Math.ceil(D / 4);

/** Workgroup-memory bytes of each kernel for head dim D (own rows padded by one vec4). */
export function attentionSharedBytes(t: AttentionTiles, D: number): { fwd: number; dq: number; dkv: number } {
  const dv = headVecs(D);
  return {
    fwd: 16 * 2 * t.fwdKeys * dv,
    dq: 16 * (t.dqRows * (dv + 1) + 2 * t.dqKeys * dv),
    dkv: 16 * (2 * t.dkvKeys * (dv + 1) + 2 * t.dkvRows * dv) + 8 * t.dkvRows,
  };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const XYZW = ["x", "y", "z", "w"] as const;

/** Addressing and params helpers of every kernel (the chunked backward's gather/scatter share them). */
export const ATTN_COMMON = `
const NEG: f32 = ${NEG_BIG};
fn T_() -> u32 { return pu(0u); }
/** Offset of row t of head bh in Q/K/V (and their gradients), before the q/k/v base. */
fn inRow(bh: u32, t: u32) -> u32 { let H = pu(1u); return (bh / H) * pu(2u) + (bh % H) * pu(3u) + t * pu(4u); }
/** Offset of row t of head bh in O and dO. */
fn outRow(bh: u32, t: u32) -> u32 { let H = pu(1u); return (bh / H) * pu(8u) + (bh % H) * pu(9u) + t * pu(10u); }
`;

/** The b·h of this workgroup (folded over y and z past the per-dimension limit). */
const BH = `let bh = wid.z * nwg.y + wid.y;
  if (bh >= pu(16u)) { return; }
  let T = T_();`;

const MAIN = `@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>`;

/** WGSL reading vec4 number c of a row at `off` of buffer `buf` (zero past D). */
function loadVec(buf: string, off: string, c: string | number, D: number, cst: boolean): string {
  const comps = range(4).map((e) => {
    const d = typeof c === "number" ? `${4 * c + e}u` : `${c} * 4u + ${e}u`;
    const rd = `f32(${buf}[${off} + ${d}])`;
    if (cst && typeof c === "number") return 4 * c + e < D ? rd : "0.0";
    return D % 4 === 0 ? rd : `select(0.0, ${rd}, ${d} < ${D}u)`;
  });
  return `vec4<f32>(${comps.join(", ")})`;
}

/** Stores the first D components of the named vec4 registers `<name><c>`·`mul` at `off` of `buf`. */
function storeRow(buf: string, off: string, name: string, D: number, mul: string, dtype: F): string {
  return range(D).map((d) => `    ${buf}[${off} + ${d}u] = ${dtype}(${name}${d >> 2}.${XYZW[d & 3]} * ${mul});`).join("\n");
}

/** Staging loop: `n` vec4s of a [rows][DV] tile by `threads` invocations; body gets (e, r, c). */
function stageLoop(n: number, threads: number, body: string): string {
  return `  for (var e = lid.x; e < ${n}u; e = e + ${threads}u) {\n${body}\n  }`;
}

/** Dropout WGSL: the keep test of element (i, j) of head bh (needs `bh` and `T` in scope). */
export const keepTest = (i: string, j: string) => `(rand_unit(pu(12u), pu(13u), (${i}) * T + (${j}), bh) > pf(14u))`;

/**
 * Forward. Bindings: q, k, v (read; may be one buffer), o (rw), lse (rw, f32 [B·H, T]).
 * Grid: [ceil(T / rows), B·H folded into y, z].
 */
export const attentionForwardKernel = kernelFamily("attentionForward",
  (dtype: F, D: number, rows: number, keys: number, causal: boolean, dropout: boolean) => {
  const DV = headVecs(D);
  const R = range(DV), J = range(keys);
  const g = bindGroup([
    { name: "q", access: "read", type: `array<${dtype}>` },
    { name: "k", access: "read", type: `array<${dtype}>` },
    { name: "v", access: "read", type: `array<${dtype}>` },
    { name: "o", access: "rw", type: `array<${dtype}>` },
    { name: "lse", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ATTN_COMMON}
#if ${dropout}
${RNG_WGSL}
#endif
var<workgroup> Ks: array<vec4<f32>, ${keys * DV}>;
var<workgroup> Vs: array<vec4<f32>, ${keys * DV}>;
@compute @workgroup_size(${rows})
fn main(${MAIN}) {
  ${BH}
  let i0 = wid.x * ${rows}u;
  let i = i0 + lid.x;
  let qo = pu(5u) + inRow(bh, min(i, T - 1u));
  let scale = pf(11u);
${R.map((c) => `  let q${c} = ${loadVec("q", "qo", c, D, true)} * scale;`).join("\n")}
${R.map((c) => `  var o${c} = vec4<f32>(0.0);`).join("\n")}
  var m: f32 = NEG;
  var l: f32 = 0.0;
#if ${causal}
  let lim = min(T, i + 1u);
  let kEnd = min(T, i0 + ${rows}u);
#else
  let lim = T;
  let kEnd = T;
#endif
  let nkb = (kEnd + ${keys - 1}u) / ${keys}u;
  for (var kb = 0u; kb < nkb; kb = kb + 1u) {
    let j0 = kb * ${keys}u;
    workgroupBarrier();
${stageLoop(keys * DV, rows, `    let key = j0 + e / ${DV}u;
    let c = e % ${DV}u;
    var kv = vec4<f32>(0.0);
    var vv = vec4<f32>(0.0);
    if (key < T) {
      let ro = inRow(bh, key);
      let ko = pu(6u) + ro;
      let vo = pu(7u) + ro;
      kv = ${loadVec("k", "ko", "c", D, false)};
      vv = ${loadVec("v", "vo", "c", D, false)};
    }
    Ks[e] = kv;
    Vs[e] = vv;`)}
    workgroupBarrier();
${J.map((j) => `    let s${j} = ${R.map((c) => `dot(q${c}, Ks[${j * DV + c}u])`).join(" + ")};`).join("\n")}
${J.map((j) => `    let ok${j} = j0 + ${j}u < lim;`).join("\n")}
    var mx = m;
${J.map((j) => `    mx = select(mx, max(mx, s${j}), ok${j});`).join("\n")}
${J.map((j) => `    let p${j} = select(0.0, exp(s${j} - mx), ok${j});`).join("\n")}
    let alpha = exp(m - mx);
    l = l * alpha + ${J.map((j) => `p${j}`).join(" + ")};
    m = mx;
#if ${dropout}
${J.map((j) => `    let pd${j} = select(0.0, p${j} * pf(15u), ${keepTest("i", `j0 + ${j}u`)});`).join("\n")}
#else
${J.map((j) => `    let pd${j} = p${j};`).join("\n")}
#endif
${R.map((c) => `    o${c} = o${c} * alpha + ${J.map((j) => `pd${j} * Vs[${j * DV + c}u]`).join(" + ")};`).join("\n")}
  }
  if (i < T) {
    let oo = outRow(bh, i);
    let inv = 1.0 / l;
${storeRow("o", "oo", "o", D, "inv", dtype)}
    lse[bh * T + i] = m + log(l);
  }
}
`;
  return { code, group: g };
});

export const ROWDOT_WORKGROUP = 64;

/**
 * Δ = rowsum(dO ∘ O) per row. Bindings: o, dO (read), delta (rw, f32 [B·H, T]).
 * Grid: [ceil(T / 64), B·H folded into y, z].
 */
export const attentionRowDotKernel = kernelFamily("attentionRowDot", (dtype: F, D: number) => {
  const DV = headVecs(D);
  const g = bindGroup([
    { name: "o", access: "read", type: `array<${dtype}>` },
    { name: "g", access: "read", type: `array<${dtype}>` },
    { name: "delta", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ATTN_COMMON}
@compute @workgroup_size(${ROWDOT_WORKGROUP})
fn main(${MAIN}) {
  ${BH}
  let i = wid.x * ${ROWDOT_WORKGROUP}u + lid.x;
  if (i >= T) { return; }
  let oo = outRow(bh, i);
  delta[bh * T + i] = ${range(DV).map((c) => `dot(${loadVec("o", "oo", c, D, true)}, ${loadVec("g", "oo", c, D, true)})`).join("\n    + ")};
}
`;
  return { code, group: g };
});

/**
 * dK and dV. Bindings: q, k, v (read), dO (read), lse, delta (read, f32), then dk and dv (rw),
 * or one dkv (rw) when `packed` (dK and dV are columns of one [B, T, 3C] gradient).
 * Grid: [ceil(T / keys), B·H folded into y, z].
 */
export const attentionBackwardKVKernel = kernelFamily("attentionBackwardKV",
  (dtype: F, D: number, keys: number, rows: number, causal: boolean, dropout: boolean, packed: boolean) => {
  const DV = headVecs(D), P = DV + 1;
  const R = range(DV), I = range(rows);
  const dkBuf = packed ? "dkv" : "dk", dvBuf = packed ? "dkv" : "dv";
  const g = bindGroup([
    { name: "q", access: "read", type: `array<${dtype}>` },
    { name: "k", access: "read", type: `array<${dtype}>` },
    { name: "v", access: "read", type: `array<${dtype}>` },
    { name: "g", access: "read", type: `array<${dtype}>` },
    { name: "lse", access: "read", type: "array<f32>" },
    { name: "delta", access: "read", type: "array<f32>" },
    ...(packed ? [{ name: "dkv", access: "rw", type: `array<${dtype}>` } as const]
      : [{ name: "dk", access: "rw", type: `array<${dtype}>` } as const, { name: "dv", access: "rw", type: `array<${dtype}>` } as const]),
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ATTN_COMMON}
#if ${dropout}
${RNG_WGSL}
#endif
var<workgroup> Kown: array<vec4<f32>, ${keys * P}>;
var<workgroup> Vown: array<vec4<f32>, ${keys * P}>;
var<workgroup> Qs: array<vec4<f32>, ${rows * DV}>;
var<workgroup> Gs: array<vec4<f32>, ${rows * DV}>;
var<workgroup> Ls: array<f32, ${rows}>;
var<workgroup> Ds: array<f32, ${rows}>;
@compute @workgroup_size(${keys})
fn main(${MAIN}) {
  ${BH}
  let j0 = wid.x * ${keys}u;
  let j = j0 + lid.x;
  let ro = inRow(bh, min(j, T - 1u));
  let ko = pu(6u) + ro;
  let vo = pu(7u) + ro;
  let own = lid.x * ${P}u;
${R.map((c) => `  Kown[own + ${c}u] = ${loadVec("k", "ko", c, D, true)};\n  Vown[own + ${c}u] = ${loadVec("v", "vo", c, D, true)};`).join("\n")}
${R.map((c) => `  var dk${c} = vec4<f32>(0.0);\n  var dv${c} = vec4<f32>(0.0);`).join("\n")}
  let scale = pf(11u);
#if ${causal}
  let iStart = j0;
#else
  let iStart = 0u;
#endif
  let nt = (T - iStart + ${rows - 1}u) / ${rows}u;
  for (var t = 0u; t < nt; t = t + 1u) {
    let i0 = iStart + t * ${rows}u;
    workgroupBarrier();
${stageLoop(rows * DV, keys, `    let row = i0 + e / ${DV}u;
    let c = e % ${DV}u;
    var qv = vec4<f32>(0.0);
    var gv = vec4<f32>(0.0);
    if (row < T) {
      let qo = pu(5u) + inRow(bh, row);
      let go = outRow(bh, row);
      qv = ${loadVec("q", "qo", "c", D, false)} * scale;
      gv = ${loadVec("g", "go", "c", D, false)};
    }
    Qs[e] = qv;
    Gs[e] = gv;`)}
    if (lid.x < ${rows}u) {
      let row = i0 + lid.x;
      var lv = 0.0;
      var dl = 0.0;
      if (row < T) { lv = lse[bh * T + row]; dl = delta[bh * T + row]; }
      Ls[lid.x] = lv;
      Ds[lid.x] = dl;
    }
    workgroupBarrier();
${I.map((r) => `    var s${r} = 0.0;\n    var dp${r} = 0.0;`).join("\n")}
${R.map((c) => `    {
      let kk = Kown[own + ${c}u];
      let vv = Vown[own + ${c}u];
${I.map((r) => `      s${r} = s${r} + dot(kk, Qs[${r * DV + c}u]);\n      dp${r} = dp${r} + dot(vv, Gs[${r * DV + c}u]);`).join("\n")}
    }`).join("\n")}
${I.map((r) => {
  // bool & (not &&): short-circuit branches per row blow up some compilers (Dawn on SwiftShader)
  const ok = causal ? `(j < T) & (i0 + ${r}u < T) & (j <= i0 + ${r}u)` : `(j < T) & (i0 + ${r}u < T)`;
  return `    let p${r} = select(0.0, exp(s${r} - Ls[${r}u]), ${ok});`;
}).join("\n")}
#if ${dropout}
${I.map((r) => `    let kp${r} = ${keepTest(`i0 + ${r}u`, "j")};
    let pd${r} = select(0.0, p${r} * pf(15u), kp${r});
    let dpd${r} = select(0.0, dp${r} * pf(15u), kp${r});`).join("\n")}
#else
${I.map((r) => `    let pd${r} = p${r};\n    let dpd${r} = dp${r};`).join("\n")}
#endif
${I.map((r) => `    let ds${r} = p${r} * (dpd${r} - Ds[${r}u]);`).join("\n")}
${R.map((c) => `    dv${c} = dv${c} + ${I.map((r) => `pd${r} * Gs[${r * DV + c}u]`).join(" + ")};
    dk${c} = dk${c} + ${I.map((r) => `ds${r} * Qs[${r * DV + c}u]`).join(" + ")};`).join("\n")}
  }
  if (j < T) {
    let dko = pu(6u) + inRow(bh, j);
    let dvo = pu(7u) + inRow(bh, j);
${storeRow(dkBuf, "dko", "dk", D, "1.0", dtype)}
${storeRow(dvBuf, "dvo", "dv", D, "1.0", dtype)}
  }
}
`;
  return { code, group: g };
});

/**
 * dQ. Bindings: q, k, v (read), dO (read), lse, delta (read, f32), dq (rw).
 * Grid: [ceil(T / rows), B·H folded into y, z].
 */
export const attentionBackwardQKernel = kernelFamily("attentionBackwardQ",
  (dtype: F, D: number, rows: number, keys: number, causal: boolean, dropout: boolean) => {
  const DV = headVecs(D), P = DV + 1;
  const R = range(DV), J = range(keys);
  const g = bindGroup([
    { name: "q", access: "read", type: `array<${dtype}>` },
    { name: "k", access: "read", type: `array<${dtype}>` },
    { name: "v", access: "read", type: `array<${dtype}>` },
    { name: "g", access: "read", type: `array<${dtype}>` },
    { name: "lse", access: "read", type: "array<f32>" },
    { name: "delta", access: "read", type: "array<f32>" },
    { name: "dq", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ATTN_COMMON}
#if ${dropout}
${RNG_WGSL}
#endif
var<workgroup> Gown: array<vec4<f32>, ${rows * P}>;
var<workgroup> Ks: array<vec4<f32>, ${keys * DV}>;
var<workgroup> Vs: array<vec4<f32>, ${keys * DV}>;
@compute @workgroup_size(${rows})
fn main(${MAIN}) {
  ${BH}
  let i0 = wid.x * ${rows}u;
  let i = i0 + lid.x;
  let ir = min(i, T - 1u);
  let qo = pu(5u) + inRow(bh, ir);
  let go = outRow(bh, ir);
  let scale = pf(11u);
  let own = lid.x * ${P}u;
${R.map((c) => `  let q${c} = ${loadVec("q", "qo", c, D, true)} * scale;\n  Gown[own + ${c}u] = ${loadVec("g", "go", c, D, true)};`).join("\n")}
${R.map((c) => `  var dq${c} = vec4<f32>(0.0);`).join("\n")}
  let L = lse[bh * T + ir];
  let Di = delta[bh * T + ir];
#if ${causal}
  let lim = min(T, i + 1u);
  let kEnd = min(T, i0 + ${rows}u);
#else
  let lim = T;
  let kEnd = T;
#endif
  let nkb = (kEnd + ${keys - 1}u) / ${keys}u;
  for (var kb = 0u; kb < nkb; kb = kb + 1u) {
    let j0 = kb * ${keys}u;
    workgroupBarrier();
${stageLoop(keys * DV, rows, `    let key = j0 + e / ${DV}u;
    let c = e % ${DV}u;
    var kv = vec4<f32>(0.0);
    var vv = vec4<f32>(0.0);
    if (key < T) {
      let ro = inRow(bh, key);
      let ko = pu(6u) + ro;
      let vo = pu(7u) + ro;
      kv = ${loadVec("k", "ko", "c", D, false)};
      vv = ${loadVec("v", "vo", "c", D, false)};
    }
    Ks[e] = kv;
    Vs[e] = vv;`)}
    workgroupBarrier();
${J.map((j) => `    let s${j} = ${R.map((c) => `dot(q${c}, Ks[${j * DV + c}u])`).join(" + ")};`).join("\n")}
${J.map((j) => `    var dp${j} = 0.0;`).join("\n")}
${R.map((c) => `    {
      let gg = Gown[own + ${c}u];
${J.map((j) => `      dp${j} = dp${j} + dot(gg, Vs[${j * DV + c}u]);`).join("\n")}
    }`).join("\n")}
${J.map((j) => `    let p${j} = select(0.0, exp(s${j} - L), j0 + ${j}u < lim);`).join("\n")}
#if ${dropout}
${J.map((j) => `    let dpd${j} = select(0.0, dp${j} * pf(15u), ${keepTest("i", `j0 + ${j}u`)});`).join("\n")}
#else
${J.map((j) => `    let dpd${j} = dp${j};`).join("\n")}
#endif
${J.map((j) => `    let ds${j} = p${j} * (dpd${j} - Di);`).join("\n")}
${R.map((c) => `    dq${c} = dq${c} + ${J.map((j) => `ds${j} * Ks[${j * DV + c}u]`).join(" + ")};`).join("\n")}
  }
  if (i < T) {
    let dqo = pu(5u) + inRow(bh, i);
${storeRow("dq", "dqo", "dq", D, "scale", dtype)}
  }
}
`;
  return { code, group: g };
});
