// Row softmax / log-softmax, forward and backward: one workgroup per row of C elements. The
// forward keeps a running (max, sum of exp) per invocation (online softmax: one read of the row
// for both statistics, one for the output) and merges the pairs in a workgroup tree; the
// backward reduces Σ dy·y (softmax) or Σ dy (log-softmax). An optional causal mask keeps only
// the first (row mod T) + 1 columns of each row. The row helpers are shared with layerNorm and
// crossEntropy.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, MAIN_ARGS } from "./kernel.ts";

type F = "f32" | "f16";

/** Largest finite f32: the neutral start of a running max (a literal -inf is not WGSL). */
export const NEG_BIG = "-3.4028234663852886e38";

/** The u32 bits of -Infinity, passed in a params word (WGSL has no infinite literal). */
export const NEG_INF_BITS = 0xff800000;

/** Workgroup size for a row of C elements: the smallest of 32/64/128/256 that covers it. */
export function rowWorkgroup(C: number): number {
  return C <= 32 ? 32 : C <= 64 ? 64 : C <= 128 ? 128 : 256;
}

/**
 * A workgroup tree reduction, emitted unrolled (one barrier per halving): `step(w)` is the WGSL
 * that folds element lid.x + w into element lid.x of the workgroup arrays, run by invocations
 * lid.x < w. The result is in element 0 of each array after the final barrier.
 */
export function treeReduce(wg: number, step: (w: number) => string): string {
  const out: string[] = ["  workgroupBarrier();"];
  for (let w = wg / 2; w >= 1; w /= 2) {
    out.push(`  if (lid.x < ${w}u) {\n${step(w)}\n  }`, "  workgroupBarrier();");
  }
  return out.join("\n");
}

/** Sum-reduction of the named workgroup arrays (each holding one partial per invocation). */
export function sumReduce(wg: number, ...arrays: string[]): string {
  return treeReduce(wg, (w) => arrays.map((a) => `    ${a}[lid.x] = ${a}[lid.x] + ${a}[lid.x + ${w}u];`).join("\n"));
}

/**
 * Online (max, Σexp) of `load(k)` for k in [0, n) strided by the workgroup, merged across the
 * workgroup into `mx` and `tot` (both f32 lets). Needs workgroup arrays redM, redS of size wg.
 */
export function rowLogSumExp(wg: number, load: (k: string) => string, n: string): string {
  return `
  var m: f32 = ${NEG_BIG};
  var s: f32 = 0.0;
  for (var k = lid.x; k < ${n}; k = k + ${wg}u) {
    let v = ${load("k")};
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s = s + exp(v - m); }
  }
  redM[lid.x] = m;
  redS[lid.x] = s;
${treeReduce(wg, (w) => `    let m1 = redM[lid.x]; let m2 = redM[lid.x + ${w}u]; let mm = max(m1, m2);
    redS[lid.x] = redS[lid.x] * exp(m1 - mm) + redS[lid.x + ${w}u] * exp(m2 - mm);
    redM[lid.x] = mm;`)}
  let mx = redM[0];
  let tot = redS[0];`;
}

export const LSE_SHARED = (wg: number) => `var<workgroup> redM: array<f32, ${wg}>;
var<workgroup> redS: array<f32, ${wg}>;`;

/**
 * Forward. Bindings: x (read), y (rw). Params: [0]=rows [1]=C [2]=T (causal period; 0 = no
 * mask) [3]=-inf bits (masked log-softmax value).
 */
export const softmaxKernel = kernelFamily("softmax", (log: boolean, dtype: F, wg: number) => {
  const g = bindGroup([
    { name: "x", access: "read", type: `array<${dtype}>` },
    { name: "y", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${LSE_SHARED(wg)}
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pu(0u)) { return; }
  let C = pu(1u);
  let T = pu(2u);
  var n = C;
  if (T > 0u) { n = min(C, row % T + 1u); }
  let base = row * C;
${rowLogSumExp(wg, (k) => `f32(x[base + ${k}])`, "n")}
#if ${log}
  let lse = mx + log(tot);
  let masked = pf(3u);
#else
  let inv = 1.0 / tot;
  let masked = 0.0;
#endif
  for (var k = lid.x; k < C; k = k + ${wg}u) {
    var v = masked;
    if (k < n) {
#if ${log}
      v = f32(x[base + k]) - lse;
#else
      v = exp(f32(x[base + k]) - mx) * inv;
#endif
    }
    y[base + k] = ${dtype}(v);
  }
}
`;
  return { code, group: g };
});

/**
 * Backward from the saved output y. softmax: dx = y·(dy − Σ dy·y); log-softmax: dx = dy −
 * exp(y)·Σ dy. Masked positions get 0. Bindings: y, dy (read), dx (rw). Params: [0]=rows [1]=C [2]=T.
 */
export const softmaxBackwardKernel = kernelFamily("softmaxBackward", (log: boolean, dtype: F, wg: number) => {
  const g = bindGroup([
    { name: "y", access: "read", type: `array<${dtype}>` },
    { name: "dy", access: "read", type: `array<${dtype}>` },
    { name: "dx", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
var<workgroup> red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pu(0u)) { return; }
  let C = pu(1u);
  let T = pu(2u);
  var n = C;
  if (T > 0u) { n = min(C, row % T + 1u); }
  let base = row * C;
  var acc: f32 = 0.0;
  for (var k = lid.x; k < n; k = k + ${wg}u) {
#if ${log}
    acc = acc + f32(dy[base + k]);
#else
    acc = acc + f32(dy[base + k]) * f32(y[base + k]);
#endif
  }
  red[lid.x] = acc;
${sumReduce(wg, "red")}
  let dot = red[0];
  for (var k = lid.x; k < C; k = k + ${wg}u) {
    var v = 0.0;
    if (k < n) {
#if ${log}
      v = f32(dy[base + k]) - exp(f32(y[base + k])) * dot;
#else
      let yk = f32(y[base + k]);
      v = yk * (f32(dy[base + k]) - dot);
#endif
    }
    dx[base + k] = ${dtype}(v);
  }
}
`;
  return { code, group: g };
});
