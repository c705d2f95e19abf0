// Layer normalisation over the last axis: a row-per-workgroup forward (two-pass mean and
// variance, saving mean and 1/std per row for the backward), a row-per-workgroup backward for
// dx, and a deterministic column reduction for dweight / dbias: per-(chunk of rows, column)
// partial sums here, summed over the chunks by the reduce kernel.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { sumReduce } from "./softmax.wgsl.ts";

type F = "f32" | "f16";

export const LN_COLUMN_WORKGROUP = 256;

/**
 * Forward. Bindings: x, [r], [weight], [bias] (read), y, mean, rstd (rw; mean and rstd f32 per
 * row), [sum] (rw). With `residual` the row normalised is x + r (rounded to the dtype, as a
 * separate add would), written to sum as well: a residual add and the next norm in one pass.
 * Params: [0]=rows [1]=C [2]=eps bits.
 */
export const layerNormKernel = kernelFamily("layerNorm", (dtype: F, hasWeight: boolean, hasBias: boolean, wg: number, residual: boolean) => {
  const g = bindGroup([
    { name: "x", access: "read", type: `array<${dtype}>` },
    residual && { name: "r", access: "read", type: `array<${dtype}>` },
    hasWeight && { name: "w", access: "read", type: `array<${dtype}>` },
    hasBias && { name: "b", access: "read", type: `array<${dtype}>` },
    { name: "y", access: "rw", type: `array<${dtype}>` },
    { name: "meanOut", access: "rw", type: "array<f32>" },
    { name: "rstdOut", access: "rw", type: "array<f32>" },
    residual && { name: "sumOut", access: "rw", type: `array<${dtype}>` },
  ]);
  // the row's element k after the first pass (which writes x + r to sumOut with residual)
  const xv = (k: string) => (residual ? `f32(sumOut[base + ${k}])` : `f32(x[base + ${k}])`);
  const first = residual
    ? `let sv = ${dtype}(f32(x[base + k]) + f32(r[base + k])); sumOut[base + k] = sv; acc = acc + f32(sv);`
    : "acc = acc + f32(x[base + k]);";
  const code = wgsl`${enables(dtype)}
${g.decls}
var<workgroup> red1: array<f32, ${wg}>;
var<workgroup> red2: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pu(0u)) { return; }
  let C = pu(1u);
  let base = row * C;
  var acc: f32 = 0.0;
  for (var k = lid.x; k < C; k = k + ${wg}u) { ${first} }
  red1[lid.x] = acc;
${sumReduce(wg, "red1")}
  let mean = red1[0] / f32(C);
  var acc2: f32 = 0.0;
  for (var k = lid.x; k < C; k = k + ${wg}u) { let d = ${xv("k")} - mean; acc2 = acc2 + d * d; }
  red2[lid.x] = acc2;
${sumReduce(wg, "red2")}
  let rstd = inverseSqrt(red2[0] / f32(C) + pf(2u));
  if (lid.x == 0u) { meanOut[row] = mean; rstdOut[row] = rstd; }
  for (var k = lid.x; k < C; k = k + ${wg}u) {
    var v = (${xv("k")} - mean) * rstd;
#if ${hasWeight}
    v = v * f32(w[k]);
#endif
#if ${hasBias}
    v = v + f32(b[k]);
#endif
    y[base + k] = ${dtype}(v);
  }
}
`;
  return { code, group: g };
});

/**
 * dx per row: with g = dy·w and x̂ = (x − mean)·rstd, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
 * Bindings: dy, x, mean, rstd, [weight] (read), dx (rw). Params: [0]=rows [1]=C.
 */
export const layerNormBackwardKernel = kernelFamily("layerNormBackward", (dtype: F, hasWeight: boolean, wg: number) => {
  const g = bindGroup([
    { name: "dy", access: "read", type: `array<${dtype}>` },
    { name: "x", access: "read", type: `array<${dtype}>` },
    { name: "meanIn", access: "read", type: "array<f32>" },
    { name: "rstdIn", access: "read", type: "array<f32>" },
    hasWeight && { name: "w", access: "read", type: `array<${dtype}>` },
    { name: "dx", access: "rw", type: `array<${dtype}>` },
  ]);
  const gOf = (k: string) => (hasWeight ? `f32(dy[base + ${k}]) * f32(w[${k}])` : `f32(dy[base + ${k}])`);
  const code = wgsl`${enables(dtype)}
${g.decls}
var<workgroup> redA: array<f32, ${wg}>;
var<workgroup> redB: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pu(0u)) { return; }
  let C = pu(1u);
  let base = row * C;
  let mean = meanIn[row];
  let rstd = rstdIn[row];
  var a: f32 = 0.0;
  var b: f32 = 0.0;
  for (var k = lid.x; k < C; k = k + ${wg}u) {
    let g = ${gOf("k")};
    let xh = (f32(x[base + k]) - mean) * rstd;
    a = a + g;
    b = b + g * xh;
  }
  redA[lid.x] = a;
  redB[lid.x] = b;
${sumReduce(wg, "redA", "redB")}
  let invC = 1.0 / f32(C);
  let ma = redA[0] * invC;
  let mb = redB[0] * invC;
  for (var k = lid.x; k < C; k = k + ${wg}u) {
    let g = ${gOf("k")};
    let xh = (f32(x[base + k]) - mean) * rstd;
    dx[base + k] = ${dtype}(rstd * (g - ma - xh * mb));
  }
}
`;
  return { code, group: g };
});

/**
 * Partial dweight / dbias sums: invocation (chunk, c) sums dy·x̂ and dy over rows
 * [chunk·chunkRows, min(rows, (chunk+1)·chunkRows)) in row order (deterministic).
 * Bindings: dy, x, mean, rstd (read), part (rw, f32 [2, chunks, C]: dweight's partials, then
 * dbias's, so one column reduction finishes both). Params: [0]=rows [1]=C [2]=chunkRows [3]=chunks.
 */
export const layerNormParamGradKernel = kernelFamily("layerNormParamGrad", (dtype: F) => {
  const wg = LN_COLUMN_WORKGROUP;
  const g = bindGroup([
    { name: "dy", access: "read", type: `array<${dtype}>` },
    { name: "x", access: "read", type: `array<${dtype}>` },
    { name: "meanIn", access: "read", type: "array<f32>" },
    { name: "rstdIn", access: "read", type: "array<f32>" },
    { name: "part", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(wg)}
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  let C = pu(1u);
  if (i >= pu(3u) * C) { return; }
  let chunk = i / C;
  let c = i % C;
  let r0 = chunk * pu(2u);
  let r1 = min(pu(0u), r0 + pu(2u));
  var sw: f32 = 0.0;
  var sb: f32 = 0.0;
  for (var r = r0; r < r1; r = r + 1u) {
    let g = f32(dy[r * C + c]);
    sw = sw + g * (f32(x[r * C + c]) - meanIn[r]) * rstdIn[r];
    sb = sb + g;
  }
  part[i] = sw;
  part[pu(3u) * C + i] = sb;
}
`;
  return { code, group: g };
});
