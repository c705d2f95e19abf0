// The "lanes" sddmm for 2:4 (a selectable kernel of src/sparse/sddmm.ts, not the default): the
// weight gradient at the kept positions doing only the kept half of the multiply-adds, without
// the per-weight select() or gather that made the older kernels no faster than the dense tile.
//
//   gW[n, 2g + s] = Σ_m dY[m, n] · X[m, 4g + col_s(n, g)]
//
// The trick: make the sparsity pattern uniform across a warp. A warp (32 invocations) owns CW
// rows n × GW groups g of 4 columns and its 32 lanes split the reduction over m (lane l takes rows
// t·32 + l of each step of R = 32·TM rows); every lane of the warp sees the same (n, g) and so the
// same pattern code (which 2 of the 4 columns are kept: 6 cases, decoded once from the meta before
// the m loop, since it is constant over the whole reduction). Each step then runs, per (n, g), a
// `switch` on that code, a warp-uniform branch with straight-line code per case: 2·TM
// multiply-adds against the 4·TM of a dense tile. 8 warps per workgroup as WN × (8/WN), so a
// workgroup owns Tn = WN·CW rows × Tg = (8/WN)·GW groups. At the end the 32 lanes' partial sums
// are added through workgroup memory (the portable path), PR pairs per round.
//
// Loads ("stage"): "shared" stages the step's dY and X slices in workgroup memory (coalesced from
// global, stored column-major with a rotation so that both the stores and the lanes' reads by row
// are free of bank conflicts); "direct" reads them from global memory per lane (no barriers in the
// loop; relies on the caches, each X row segment being read by the WN warps of a workgroup).
// Split-K as the other sddmm kernels (shaders/sddmm.wgsl.ts: splitParts).
// Cost model (for reading the H200 figures): the 32 lanes share their outputs, so a workgroup owns
// only 8·CW·GW (row, group) pairs, a Tn × 4·Tg dense extent (16×16 to 32×32): per row of m it
// loads Tn + 4·Tg values for Tn·Tg·2 multiply-adds: 1 byte per multiply-add from L2 for c4g2m4,
// 0.5 for c8g4m2 (a 128×128 GEMM tile: 0.06), and each lane reads 2/GW + 8/CW bytes per multiply-add from
// workgroup memory (1.5 for c8g4m2, 3 for c4g2m4; the 8×8 GEMM core: 1). c8g4m2 has the largest
// workgroup extent; the direct variants trade the stage's barriers for uncoalesced per-lane rows.
// Groups keeping fewer than 2 (a double-pruned W_RC^T) take a pair containing the kept column and
// store 0 in the unused slot (unless accumulating, where 0 is added).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily } from "./kernel.ts";
import { splitParts } from "./sddmm.wgsl.ts";
import type { SpDType } from "./sparse24.wgsl.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** One variant: rows n (cw) and groups (gw) per warp, rows of m per lane and step (tm), warps along n (wn of 8), loads. */
export interface LanesShape {
  cw: 2 | 4 | 8;
  gw: 2 | 4 | 8;
  tm: 2 | 4;
  wn: 1 | 2 | 4 | 8;
  stage: "shared" | "direct";
}

/** The variants by name (bench/sparse.ts --sddmm-lanes selects them; ≤ 6). */
export const SDDMM_LANES = {
  "c4g2m4": { cw: 4, gw: 2, tm: 4, wn: 4, stage: "shared" },
  "c4g4m2": { cw: 4, gw: 4, tm: 2, wn: 4, stage: "shared" },
  "c2g8m2": { cw: 2, gw: 8, tm: 2, wn: 8, stage: "shared" },
  "c8g4m2": { cw: 8, gw: 4, tm: 2, wn: 4, stage: "shared" },
  "c4g2m4d": { cw: 4, gw: 2, tm: 4, wn: 4, stage: "direct" },
  "c4g4m2d": { cw: 4, gw: 4, tm: 2, wn: 4, stage: "direct" },
} as const satisfies Record<string, LanesShape>;
export type SddmmLanesVariant = keyof typeof SDDMM_LANES;
export const SDDMM_LANES_DEFAULT: SddmmLanesVariant = "c4g2m4";

const WARPS = 8;

/**
 * The workgroup's extent: rows n (tn), groups (tg), rows of m per step (rows), its workgroup
 * memory in bytes (every variant fits the 16 KiB all WebGPU adapters give) and the pairs of the
 * cross-lane sum per round. Shared: X as vec4 [tg][rows] and dY [tn][rows], the sum reusing X's
 * array (8 warps × 2·PR values × 33 lanes); direct: only the sum's array, 4 pairs per round.
 */
export function lanesExtent(v: SddmmLanesVariant): { tn: number; tg: number; rows: number; bytes: number; pairsPerRound: number } {
  const s: LanesShape = SDDMM_LANES[v];
  const tn = s.wn * s.cw, tg = (WARPS / s.wn) * s.gw, rows = 32 * s.tm, pairs = s.cw * s.gw;
  const sumFloats = (pr: number) => WARPS * 2 * pr * 33;
  if (s.stage === "direct") {
    const pr = Math.min(pairs, 4);
    return { tn, tg, rows, bytes: sumFloats(pr) * 4, pairsPerRound: pr };
  }
  let pr = pairs;
  while (sumFloats(pr) > tg * rows * 4) pr--;
  return { tn, tg, rows, bytes: (tg * rows * 4 + tn * rows) * 4, pairsPerRound: pr };
}

/** The 2 kept columns (x, y, z, w of a group's vec4) of each pattern code 0..5. */
const CASES: [string, string][] = [["x", "y"], ["x", "z"], ["x", "w"], ["y", "z"], ["y", "w"], ["z", "w"]];

/**
 * Bindings: dY (read), X (read, vec4: K is a multiple of 4), meta (read u32), gW (rw).
 * Params as sddmmKernel: [0]=n rows [1]=K [2]=d_out [3]=meta words/row [4]=values/row (K/2), [5]=rows per slice (split).
 * Dispatch: [⌈(K/4)/tg⌉, ⌈d_out/tn⌉, slices] (lanesExtent). `accumulate` adds into gW.
 */
export const sddmmLanesKernel = kernelFamily("sddmm_lanes", (dtype: SpDType, accumulate: boolean, variant: SddmmLanesVariant, split: boolean) => {
  const sp = splitParts(split, accumulate, dtype);
  const s: LanesShape = SDDMM_LANES[variant];
  const { cw, gw, tm } = s;
  const { tn, tg, rows: R, pairsPerRound: PR } = lanesExtent(variant);
  const shared = s.stage === "shared";
  const pairs = range(cw).flatMap((c) => range(gw).map((g) => ({ c, g, p: c * gw + g })));
  const g = bindGroup([
    { name: "dY", access: "read", type: `array<${dtype}>` },
    { name: "X", access: "read", type: `array<vec4<${dtype}>>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "gW", access: "rw", type: `array<${sp.outType}>` },
  ]);
  // the pattern code of each (c, g) of the warp, uniform across it (0 where the output lies outside)
  const codes = pairs.map(({ c, g: gg, p }) => `  let code${p} = patternCode(n0 + ${c}u, g0 + ${gg}u, dOut, G, ws);`).join("\n");
  const accs = pairs.map(({ p }) => `var a${p}_0 = 0.0; var a${p}_1 = 0.0;`).join(" ");
  // per step: the lane's dY (TM rows × CW columns) and X (TM rows × GW vec4 groups) into named registers
  const loadsShared = range(tm).flatMap((t) => [
    ...range(cw).map((c) => `let d${t}_${c} = Ds[dr${t}_${c}];`),
    ...range(gw).map((gg) => `let x${t}_${gg} = Xs[xr${t}_${gg}];`),
  ]);
  const loadsDirect = range(tm).flatMap((t) => [
    `let mm${t} = m0 + ${t * 32}u + lane; let in${t} = mm${t} < nB; let row${t} = ${sp.nS}min(mm${t}, max(nB, 1u) - 1u);`,
    ...range(cw).map((c) => `let d${t}_${c} = select(0.0, f32(dY[row${t} * dOut + min(n0 + ${c}u, dOut - 1u)]), in${t});`),
    ...range(gw).map((gg) => `let x${t}_${gg} = select(vec4<f32>(0.0), vec4<f32>(X[row${t} * G + min(g0 + ${gg}u, G - 1u)]), in${t});`),
  ]);
  const switches = pairs.map(({ c, g: gg, p }) => `    switch code${p} {
${CASES.map(([u, v], k) => `      ${k === 5 ? "default" : `case ${k}u`}: {
${range(tm).map((t) => `        a${p}_0 = a${p}_0 + d${t}_${c} * x${t}_${gg}.${u}; a${p}_1 = a${p}_1 + d${t}_${c} * x${t}_${gg}.${v};`).join("\n")}
      }`).join("\n")}
    }`).join("\n");
  // staging: X tile rows × tg vec4 and dY tile rows × tn, consecutive invocations along the row (coalesced);
  // stored column-major, element (col, r) at col·R + (r + col) % R: the stores of one row and the lanes' reads of one column hit distinct banks
  const xPer = Math.ceil((R * tg) / 256), dPer = Math.ceil((R * tn) / 256);
  const stage = `${range(xPer).map((i) => `    { let e = tid + ${i * 256}u; let col = e % ${tg}u; let r = e / ${tg}u;
      if (r < ${R}u) { var v = vec4<f32>(0.0);
        if (m0 + r < nB && wg0 + col < G) { v = vec4<f32>(X[(${sp.nS}m0 + r) * G + wg0 + col]); }
        Xs[col * ${R}u + (r + col) % ${R}u] = v; } }`).join("\n")}
${range(dPer).map((i) => `    { let e = tid + ${i * 256}u; let col = e % ${tn}u; let r = e / ${tn}u;
      if (r < ${R}u) { var v = 0.0;
        if (m0 + r < nB && wn0 + col < dOut) { v = f32(dY[(${sp.nS}m0 + r) * dOut + wn0 + col]); }
        Ds[col * ${R}u + (r + col) % ${R}u] = v; } }`).join("\n")}`;
  // where the lane's rows of each of its warp's columns lie in Ds and Xs (loop-invariant)
  const rowIdx = shared ? range(tm).map((t) => [
    ...range(cw).map((c) => `  let dr${t}_${c} = (nl + ${c}u) * ${R}u + (${t * 32}u + lane + nl + ${c}u) % ${R}u;`),
    ...range(gw).map((gg) => `  let xr${t}_${gg} = (gl + ${gg}u) * ${R}u + (${t * 32}u + lane + gl + ${gg}u) % ${R}u;`),
  ].join("\n")).join("\n") : "";
  const loop = shared ? `  for (var m0 = 0u; m0 < nB; m0 = m0 + ${R}u) {
${stage}
    workgroupBarrier();
    ${loadsShared.join("\n    ")}
${switches}
    workgroupBarrier();
  }` : `  for (var m0 = 0u; m0 < nB; m0 = m0 + ${R}u) {
    ${loadsDirect.join("\n    ")}
${switches}
  }`;
  // the cross-lane sum, PR pairs per round: lane l < PR of each warp adds pair (round·PR + l) over its 32 lanes
  const at = (q: string, j: string) => `(warp * ${2 * PR}u + ${q}) * 33u + ${j}`;
  const rounds = range(Math.ceil(pairs.length / PR)).map((r) => {
    const ps = pairs.slice(r * PR, (r + 1) * PR);
    return `
  workgroupBarrier();
  ${ps.map(({ p }, q) => `rset(${at(`${2 * q}u`, "lane")}, a${p}_0); rset(${at(`${2 * q + 1}u`, "lane")}, a${p}_1);`).join("\n  ")}
  workgroupBarrier();
  if (lane < ${ps.length}u) {
    var s0 = 0.0; var s1 = 0.0;
    for (var j = 0u; j < 32u; j = j + 1u) { s0 = s0 + rget(${at("lane * 2u", "j")}); s1 = s1 + rget(${at("lane * 2u + 1u", "j")}); }
    put(n0 + (${r * PR}u + lane) / ${gw}u, g0 + (${r * PR}u + lane) % ${gw}u, s0, s1, dOut, G, ws, vpr${split ? ", pz" : ""});
  }`;
  }).join("");
  // shared: the reduction reuses the X stage (vec4, written by component); direct: its own array
  const memory = shared ? `var<workgroup> Xs: array<vec4<f32>, ${tg * R}>;
var<workgroup> Ds: array<f32, ${tn * R}>;
fn rget(i: u32) -> f32 { return Xs[i / 4u][i % 4u]; }
fn rset(i: u32, v: f32) { Xs[i / 4u][i % 4u] = v; }` : `var<workgroup> Rs: array<f32, ${WARPS * 2 * PR * 33}>;
fn rget(i: u32) -> f32 { return Rs[i]; }
fn rset(i: u32, v: f32) { Rs[i] = v; }`;
  const code = wgsl`${enables(dtype)}
${g.decls}
${memory}

// The pattern code of group gg of row n: 0..5 for kept columns (0,1) (0,2) (0,3) (1,2) (1,3) (2,3);
// a group keeping one column a takes a pair starting at a ((2,3) for a = 3: put swaps); 0 outside.
fn patternCode(n: u32, gg: u32, dOut: u32, G: u32, ws: u32) -> u32 {
  if (n >= dOut || gg >= G) { return 0u; }
  let bits = (mbits[n * ws + gg / 8u] >> ((gg % 8u) * 4u)) & 15u;
  let a = countTrailingZeros(bits); let b = countTrailingZeros(bits & (bits - 1u));
  if (b < 4u) { return select(select(5u, b + 1u, a == 1u), b - 1u, a == 0u); }
  return select(select(5u, 3u, a == 1u), 0u, a == 0u);
}

// Stores the two slots of group gg of row n from the sums of the pair's two columns (s0, s1).
fn put(n: u32, gg: u32, s0: f32, s1: f32, dOut: u32, G: u32, ws: u32, vpr: u32${split ? ", pz: u32" : ""}) {
  if (n >= dOut || gg >= G) { return; }
  let bits = (mbits[n * ws + gg / 8u] >> ((gg % 8u) * 4u)) & 15u;
  let cnt = countOneBits(bits);
  let v0 = select(select(s0, s1, cnt == 1u && countTrailingZeros(bits) == 3u), 0.0, cnt == 0u);
  let v1 = select(0.0, s1, cnt == 2u);
  let at = ${sp.pz}n * vpr + gg * 2u;
  ${sp.store("at", "v0")}
  ${sp.store("at + 1u", "v1")}
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${sp.head}
  let G = K / 4u;
  let tid = lid.x; let lane = tid % 32u; let warp = tid / 32u;
  let nl = (warp % ${s.wn}u) * ${cw}u; let gl = (warp / ${s.wn}u) * ${gw}u;
  let wn0 = wid.y * ${tn}u; let wg0 = wid.x * ${tg}u;
  let n0 = wn0 + nl; let g0 = wg0 + gl;
${codes}
  ${accs}
${rowIdx}
${loop}
${rounds}
}
`;
  return { code, group: g };
});
