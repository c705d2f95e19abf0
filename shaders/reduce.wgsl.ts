// Reductions over one contiguous block of axes, seen as [outer, R, inner]. Three kernels, each
// with its per-invocation loop bounded by design (never by R), so a long reduction is a few
// passes of partials instead of one long loop (lavapipe stops loops after 65,535 iterations):
//  - reduceRows (inner = 1): a workgroup tree-reduces one chunk of one contiguous row;
//  - reduceColumns (inner > 1): a workgroup sums a block of rows for a strip of columns, reads
//    coalesced along inner (vec4 when inner % 4 == 0), and writes one partial row per block;
//  - reduceSmall (R tiny): one invocation per output looping over its few elements.
// The host (src/ops/reduce.ts) plans the chunking and chains the partial passes.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, MAIN_ARGS } from "./kernel.ts";

export const REDUCE_WORKGROUP = 256;
/** "sumsq" is Σx² (gradient norms): the first pass squares, later passes sum. */
export type ReduceOp = "sum" | "max" | "sumsq";
type F = "f32" | "f16";

/** Most elements one invocation of reduceRows combines (its loop runs at most this many times). */
export const ROWS_MAX_ITERS = 64;
/** Most rows one invocation of reduceColumns combines. */
export const COLUMNS_MAX_ITERS = 64;
/** reduceSmall handles R up to this (one invocation loops over R). */
export const SMALL_R = 16;

const initOf = (op: ReduceOp) => (op === "max" ? "-3.4028234663852886e38" : "0.0");
const combineOf = (op: ReduceOp) => (a: string, b: string) => (op === "max" ? `max(${a}, ${b})` : `${a} + ${b}`);
/** The value a raw element contributes (squared for sumsq). */
const loadOf = (op: ReduceOp) => (v: string) => (op === "sumsq" ? `(${v}) * (${v})` : v);

/**
 * Contiguous rows. Workgroup w (folded 2-D) handles chunk w % chunks of row w / chunks:
 * elements [chunk·chunkLen, min(R, (chunk+1)·chunkLen)), chunkLen ≤ 256·ROWS_MAX_ITERS.
 * Writes dst[row·chunks + chunk] (scaled by params[2] when `finish`).
 * Params: [0]=rows [1]=R [2]=scale bits [3]=chunkLen [4]=chunks.
 */
export const reduceRowsKernel = kernelFamily("reduceRows", (op: ReduceOp, src: F, dst: F) => {
  const wg = REDUCE_WORKGROUP;
  const combine = combineOf(op), load = loadOf(op);
  const g = bindGroup([
    { name: "src", access: "read", type: `array<${src}>` },
    { name: "dst", access: "rw", type: `array<${dst}>` },
  ]);
  const code = wgsl`${enables(src, dst)}
${g.decls}
var<workgroup> part: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let w = wid.y * nwg.x + wid.x;
  let chunks = pu(4u);
  let live = w < pu(0u) * chunks;
  let R = pu(1u);
  let row = w / chunks;
  let chunk = w % chunks;
  var acc: f32 = ${initOf(op)};
  if (live) {
    let k0 = chunk * pu(3u);
    let k1 = min(R, k0 + pu(3u));
    let base = row * R;
    for (var k = k0 + lid.x; k < k1; k = k + ${wg}u) {
      let v = f32(src[base + k]);
      acc = ${combine("acc", load("v"))};
    }
  }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid.x < s) { part[lid.x] = ${combine("part[lid.x]", "part[lid.x + s]")}; }
    workgroupBarrier();
  }
  if (live && lid.x == 0u) {
    let r = part[0];
    dst[w] = ${dst}(${op === "max" ? "r" : "r * pf(2u)"});
  }
}
`;
  return { code, group: g };
});

/** Column strip width (in vector units) by inner width: wide strips when inner allows. */
export function columnStrip(innerV: number): number {
  return innerV >= 48 ? 64 : innerV >= 12 ? 16 : 4;
}

/**
 * Columns. Workgroup (cx, ry) = (strip, 256/strip) invocations; workgroup (x, y) sums rows
 * [chunk·rowsPerChunk, min(R, …+rowsPerChunk)) of one outer slice for columns
 * [x·strip, (x+1)·strip) in vector units, where y (folded with z) = outer·chunks + chunk;
 * invocations of one column take every ry-th row, then a tree over ry. Writes
 * dst[(outer·chunks + chunk)·innerV + column]. Params: [0]=outer [1]=R [2]=innerV
 * [3]=scale bits [4]=rowsPerChunk [5]=chunks.
 */
export const reduceColumnsKernel = kernelFamily("reduceColumns", (op: ReduceOp, src: F, dst: F, vec: boolean, strip: number) => {
  const wg = REDUCE_WORKGROUP;
  const ry = wg / strip;
  const combine = combineOf(op), load = loadOf(op);
  const sv = vec ? `vec4<${src}>` : src, dv = vec ? `vec4<${dst}>` : dst, acc = vec ? "vec4<f32>" : "f32";
  const init = vec ? `vec4<f32>(${initOf(op)})` : initOf(op);
  const g = bindGroup([
    { name: "src", access: "read", type: `array<${sv}>` },
    { name: "dst", access: "rw", type: `array<${dv}>` },
  ]);
  const code = wgsl`${enables(src, dst)}
${g.decls}
var<workgroup> part: array<${acc}, ${wg}>;
@compute @workgroup_size(${strip}, ${ry})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let oc = wid.z * nwg.y + wid.y;
  let chunks = pu(5u);
  if (oc >= pu(0u) * chunks) { return; }
  let R = pu(1u);
  let innerV = pu(2u);
  let o = oc / chunks;
  let chunk = oc % chunks;
  let c = wid.x * ${strip}u + lid.x;
  var acc: ${acc} = ${init};
  if (c < innerV) {
    let r0 = chunk * pu(4u);
    let r1 = min(R, r0 + pu(4u));
    var idx = (o * R + r0 + lid.y) * innerV + c;
    let step = ${ry}u * innerV;
    for (var r = r0 + lid.y; r < r1; r = r + ${ry}u) {
      let v = ${acc}(src[idx]);
      acc = ${combine("acc", load("v"))};
      idx = idx + step;
    }
  }
  let slot = lid.y * ${strip}u + lid.x;
  part[slot] = acc;
  workgroupBarrier();
  for (var s = ${ry / 2}u; s > 0u; s = s >> 1u) {
    if (lid.y < s) { part[slot] = ${combine("part[slot]", `part[slot + s * ${strip}u]`)}; }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < innerV) {
    let r = part[lid.x];
    dst[oc * innerV + c] = ${dv}(${op === "max" ? "r" : "r * pf(3u)"});
  }
}
`;
  return { code, group: g };
});

/**
 * One invocation per output (outer·inner of them), looping over R ≤ SMALL_R elements strided by
 * inner (reads coalesce across neighbouring outputs). Params: [0]=outer [1]=R [2]=inner [3]=scale bits.
 */
export const reduceSmallKernel = kernelFamily("reduceSmall", (op: ReduceOp, src: F, dst: F) => {
  const wg = REDUCE_WORKGROUP;
  const combine = combineOf(op), load = loadOf(op);
  const g = bindGroup([
    { name: "src", access: "read", type: `array<${src}>` },
    { name: "dst", access: "rw", type: `array<${dst}>` },
  ]);
  const code = wgsl`${enables(src, dst)}
${g.decls}
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let o = (wid.y * nwg.x + wid.x) * ${wg}u + lid.x;
  let R = pu(1u);
  let inner = pu(2u);
  if (o >= pu(0u) * inner) { return; }
  let base = (o / inner) * R * inner + o % inner;
  var acc: f32 = ${initOf(op)};
  for (var k = 0u; k < R; k = k + 1u) {
    let v = f32(src[base + k * inner]);
    acc = ${combine("acc", load("v"))};
  }
  dst[o] = ${dst}(${op === "max" ? "acc" : "acc * pf(3u)"});
}
`;
  return { code, group: g };
});

/**
 * Argmax over contiguous rows of C (torch.argmax on the last axis): one workgroup per row, each
 * invocation keeps its best (value, index) over k ≡ lid (mod 256), merged in a tree; ties go to
 * the lowest index, as torch and a CPU scan do. Bindings: src (read), dst (rw, i32).
 * Params: [0]=rows [1]=C. NaN ordering is unspecified (WGSL may assume finite values).
 */
export const argmaxRowsKernel = kernelFamily("argmaxRows", (src: F) => {
  const wg = REDUCE_WORKGROUP;
  const g = bindGroup([
    { name: "src", access: "read", type: `array<${src}>` },
    { name: "dst", access: "rw", type: "array<i32>" },
  ]);
  const code = wgsl`${enables(src)}
${g.decls}
var<workgroup> bestV: array<f32, ${wg}>;
var<workgroup> bestI: array<u32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pu(0u)) { return; }
  let C = pu(1u);
  let base = row * C;
  var v: f32 = ${initOf("max")};
  var i: u32 = 0xffffffffu;
  for (var k = lid.x; k < C; k = k + ${wg}u) {
    let x = f32(src[base + k]);
    if (i == 0xffffffffu || x > v) { v = x; i = k; }
  }
  bestV[lid.x] = v;
  bestI[lid.x] = i;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid.x < s) {
      let ov = bestV[lid.x + s]; let oi = bestI[lid.x + s];
      let mi = bestI[lid.x];
      if (oi != 0xffffffffu && (mi == 0xffffffffu || ov > bestV[lid.x] || (ov == bestV[lid.x] && oi < mi))) {
        bestV[lid.x] = ov; bestI[lid.x] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) { dst[row] = i32(bestI[0]); }
}
`;
  return { code, group: g };
});
