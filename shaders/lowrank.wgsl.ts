// The fused low-rank multiply-add of merged SLoPe inference (SLOPE.md §5.5-5.6):
//   out[n, j] = Y[n, j] + Σ_k Y[n, dOut + k] · Rs[k, j]
// where Y = [X·W_Rᵀ + b | X·L] is the merged spmm's [n, dOut + r] output (its first dOut columns
// already hold the bias, added in the spmm epilogue) and Rs = R/r. One pass: the n×dOut product
// (X·L)·R is never written and read back. Each invocation owns 4 consecutive columns of one row
// in a named vec4 accumulator; the thin-K loop reads A from the row and a vec4 of R.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { kernelFamily, paramsDecl, storage } from "./kernel.ts";

export const LOWRANK_WG = 64;

/** Params: [0]=rows [1]=dOut [2]=r. Bindings: Y [rows, dOut + r] (read), Rs [r, dOut] (read), out [rows, dOut] (rw). */
export const lowRankAddKernel = kernelFamily("lowrank_add", (vec4Cols: boolean) => {
  const code = wgsl`
${storage(0, "Y", "read", "array<f32>")}
${storage(1, "Rs", "read", "array<f32>")}
${storage(2, "O", "rw", "array<f32>")}
${paramsDecl(3)}
@compute @workgroup_size(${LOWRANK_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let rows = pu(0u); let dOut = pu(1u); let r = pu(2u);
  let row = wid.y;
  let c = (wid.x * ${LOWRANK_WG}u + lid.x) * 4u;
  if (row >= rows || c >= dOut) { return; }
  let ld = dOut + r;
  let yBase = row * ld;
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < r; k = k + 1u) {
    let a = Y[yBase + dOut + k];
#if ${vec4Cols}
    let rb = k * dOut + c;
    acc = acc + a * vec4<f32>(Rs[rb], Rs[rb + 1u], Rs[rb + 2u], Rs[rb + 3u]);
#else
    let rb = k * dOut + c;
    var rv = vec4<f32>(0.0);
    rv.x = Rs[rb];
    if (c + 1u < dOut) { rv.y = Rs[rb + 1u]; }
    if (c + 2u < dOut) { rv.z = Rs[rb + 2u]; }
    if (c + 3u < dOut) { rv.w = Rs[rb + 3u]; }
    acc = acc + a * rv;
#endif
  }
  let o = row * dOut + c;
  O[o] = Y[yBase + c] + acc.x;
  if (c + 1u < dOut) { O[o + 1u] = Y[yBase + c + 1u] + acc.y; }
  if (c + 2u < dOut) { O[o + 2u] = Y[yBase + c + 2u] + acc.z; }
  if (c + 3u < dOut) { O[o + 3u] = Y[yBase + c + 3u] + acc.w; }
}
`;
  return { code, bindings: ["read", "read", "rw"], params: true };
});
