// Embedding: a row gather forward and a deterministic scatter-add backward without float
// atomics. The backward sorts (index, position) pairs with a bitonic sort (a shared-memory
// kernel for blocks of 512 and a global compare-exchange step for larger strides), marks where
// each vocabulary row's run of positions starts and ends, then sums dY rows run by run in
// position order: the same bits on every run and adapter, O(N log² N + V·C + N·C) work.
// Out-of-range indices (< 0 or >= V) read as a zero row and contribute no gradient.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";

type F = "f32" | "f16";

export const EMB_WORKGROUP = 256;
/** Elements sorted in workgroup memory by one invocation group (two per invocation). */
export const SORT_BLOCK = 2 * EMB_WORKGROUP;

/** out[r, c] = W[idx[r], c], 0 for an out-of-range index. Bindings: idx, W (read), out (rw). Params: [0]=N·C [1]=C [2]=V. */
export const embeddingKernel = kernelFamily("embedding", (dtype: F) => {
  const g = bindGroup([
    { name: "idx", access: "read", type: "array<i32>" },
    { name: "W", access: "read", type: `array<${dtype}>` },
    { name: "out", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(EMB_WORKGROUP)}
@compute @workgroup_size(${EMB_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  let C = pu(1u);
  let v = idx[i / C];
  var val = ${dtype}(0.0);
  if (v >= 0 && u32(v) < pu(2u)) { val = W[u32(v) * C + i % C]; }
  out[i] = val;
}
`;
  return { code, group: g };
});

/**
 * Sort keys: keys[p] = (row, p) for p < N, with row = 0xffffffff for an out-of-range index and
 * for the padding up to Npad (sorted last). Bindings: idx (read), keys (rw). Params: [0]=N [1]=Npad [2]=V.
 */
export const sortKeysKernel = kernelFamily("embeddingSortKeys", () => {
  const g = bindGroup([
    { name: "idx", access: "read", type: "array<i32>" },
    { name: "keys", access: "rw", type: "array<vec2<u32>>" },
  ]);
  const code = wgsl`
${g.decls}
${linearIndexFn(EMB_WORKGROUP)}
@compute @workgroup_size(${EMB_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let p = linearIndex(wid, nwg, lid);
  if (p >= pu(1u)) { return; }
  var key = 0xffffffffu;
  if (p < pu(0u)) {
    let v = idx[p];
    if (v >= 0 && u32(v) < pu(2u)) { key = u32(v); }
  }
  keys[p] = vec2<u32>(key, p);
}
`;
  return { code, group: g };
});

/** Strict order of (row, position) pairs (positions are unique, so the order is total). */
const BEFORE = `fn before(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}`;

/** One global bitonic compare-exchange pass at stride j of stage k. Bindings: keys (rw). Params: [0]=Npad/2 [1]=k [2]=j. */
export const bitonicStepKernel = kernelFamily("bitonicStep", () => {
  const g = bindGroup([
    { name: "keys", access: "rw", type: "array<vec2<u32>>" },
  ]);
  const code = wgsl`
${g.decls}
${linearIndexFn(EMB_WORKGROUP)}
${BEFORE}
@compute @workgroup_size(${EMB_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let t = linearIndex(wid, nwg, lid);
  if (t >= pu(0u)) { return; }
  let k = pu(1u);
  let j = pu(2u);
  let lo = 2u * j * (t / j) + t % j;
  let hi = lo + j;
  let a = keys[lo];
  let b = keys[hi];
  let asc = (lo & k) == 0u;
  if (before(b, a) == asc) { keys[lo] = b; keys[hi] = a; }
}
`;
  return { code, group: g };
});

/**
 * Bitonic passes with strides below SORT_BLOCK, in workgroup memory, one block per workgroup.
 * full: every stage k = 2..SORT_BLOCK (sorts each block in the direction of the global stage);
 * else the strides SORT_BLOCK/2..1 of stage k = params[0]. Bindings: keys (rw). Params: [0]=k
 * [1]=blocks.
 */
export const bitonicLocalKernel = kernelFamily("bitonicLocal", (full: boolean) => {
  const wg = EMB_WORKGROUP;
  const g = bindGroup([
    { name: "keys", access: "rw", type: "array<vec2<u32>>" },
  ]);
  const code = wgsl`
${g.decls}
${BEFORE}
var<workgroup> sh: array<vec2<u32>, ${SORT_BLOCK}>;
fn exchange(t: u32, base: u32, k: u32, j: u32) {
  let lo = 2u * j * (t / j) + t % j;
  let hi = lo + j;
  let a = sh[lo];
  let b = sh[hi];
  let asc = ((base + lo) & k) == 0u;
  if (before(b, a) == asc) { sh[lo] = b; sh[hi] = a; }
}
@compute @workgroup_size(${wg})
fn main(${MAIN_ARGS}) {
  let block = wid.y * nwg.x + wid.x;
  if (block >= pu(1u)) { return; }
  let base = block * ${SORT_BLOCK}u;
  let t = lid.x;
  sh[t] = keys[base + t];
  sh[t + ${wg}u] = keys[base + t + ${wg}u];
  workgroupBarrier();
#if ${full}
  for (var k = 2u; k <= ${SORT_BLOCK}u; k = k << 1u) {
    for (var j = k >> 1u; j > 0u; j = j >> 1u) {
      exchange(t, base, k, j);
      workgroupBarrier();
    }
  }
#else
  let k = pu(0u);
  for (var j = ${SORT_BLOCK / 2}u; j > 0u; j = j >> 1u) {
    exchange(t, base, k, j);
    workgroupBarrier();
  }
#endif
  keys[base + t] = sh[t];
  keys[base + t + ${wg}u] = sh[t + ${wg}u];
}
`;
  return { code, group: g };
});

/**
 * Run bounds: bounds[2v] = first sorted position of row v, bounds[2v+1] = one past its last
 * (both 0, an empty run, for rows no index names: the buffer is zero-filled first).
 * Bindings: keys (read), bounds (rw). Params: [0]=N [1]=V.
 */
export const runBoundsKernel = kernelFamily("embeddingRunBounds", () => {
  const g = bindGroup([
    { name: "keys", access: "read", type: "array<vec2<u32>>" },
    { name: "bounds", access: "rw", type: "array<u32>" },
  ]);
  const code = wgsl`
${g.decls}
${linearIndexFn(EMB_WORKGROUP)}
@compute @workgroup_size(${EMB_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let p = linearIndex(wid, nwg, lid);
  let N = pu(0u);
  if (p >= N) { return; }
  let v = keys[p].x;
  if (v >= pu(1u)) { return; }
  if (p == 0u || keys[p - 1u].x != v) { bounds[2u * v] = p; }
  if (p + 1u == N || keys[p + 1u].x != v) { bounds[2u * v + 1u] = p + 1u; }
}
`;
  return { code, group: g };
});

/**
 * Positions one pass of the gradient sums per row: far below lavapipe's 65,535-iteration loop
 * limit, so a token seen more often than that is summed over several passes, never truncated.
 */
export const EMB_GRAD_CHUNK = 16384;

/**
 * dW[v, c] = Σ dY[pos, c] over the run of row v, in position order; one pass takes the run's
 * positions [offset, offset + EMB_GRAD_CHUNK). accumulate: starts from dW (an f32 accumulator,
 * so several passes add up to the same bits as one long loop), else from 0.
 * Bindings: keys, bounds, dY (read), dW (rw). Params: [0]=V·C [1]=C [2]=offset.
 */
export const embeddingGradKernel = kernelFamily("embeddingGrad", (dtype: F, outDtype: F, accumulate: boolean) => {
  const g = bindGroup([
    { name: "keys", access: "read", type: "array<vec2<u32>>" },
    { name: "bounds", access: "read", type: "array<u32>" },
    { name: "dY", access: "read", type: `array<${dtype}>` },
    { name: "dW", access: "rw", type: `array<${outDtype}>` },
  ]);
  const code = wgsl`${enables(dtype === "f16" || outDtype === "f16" ? "f16" : "f32")}
${g.decls}
${linearIndexFn(EMB_WORKGROUP)}
@compute @workgroup_size(${EMB_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  let C = pu(1u);
  let v = i / C;
  let c = i % C;
  let first = bounds[2u * v] + pu(2u);
  let end = min(bounds[2u * v + 1u], first + ${EMB_GRAD_CHUNK}u);
#if ${accumulate}
  if (first >= end) { return; }
  var acc: f32 = f32(dW[i]);
#else
  var acc: f32 = 0.0;
#endif
  for (var p = first; p < end; p = p + 1u) {
    acc = acc + f32(dY[keys[p].y * C + c]);
  }
  dW[i] = ${outDtype}(acc);
}
`;
  return { code, group: g };
});
