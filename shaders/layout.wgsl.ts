// Strided copy: out[dstOffset + Σ idx·dstStride] = in[srcOffset + Σ idx·srcStride] over an N-d
// index space. One kernel serves permute/transpose, slice, expand (0 strides), concat and the
// gradient of slice (copy into a region of zeros).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";

export const COPY_WORKGROUP = 256;
export const COPY_MAX_RANK = 6;
/** Params: [0]=n [1]=rank [2]=srcOffset [3]=dstOffset [4..10) shape [10..16) src strides [16..22) dst strides. */
export const stridedCopyKernel = kernelFamily("stridedCopy", (dtype: "f32" | "f16" | "i32") => {
  const g = bindGroup([
    { name: "src", access: "read", type: `array<${dtype}>` },
    { name: "dst", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(COPY_WORKGROUP)}
@compute @workgroup_size(${COPY_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  var rem = i;
  var so = pu(2u);
  var dO = pu(3u);
  for (var d = i32(pu(1u)) - 1; d >= 0; d = d - 1) {
    let dim = pu(4u + u32(d));
    let idx = rem % dim;
    rem = rem / dim;
    so = so + idx * pu(10u + u32(d));
    dO = dO + idx * pu(16u + u32(d));
  }
  dst[dO] = src[so];
}
`;
  return { code, group: g };
});
