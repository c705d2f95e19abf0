// Dropout: out = x·mask/(1 − p) with the mask drawn from the counter RNG (RNG_WGSL) at
// (key, element index). The mask is a pure function of the key, so the backward runs this
// same kernel on dy with the saved key: no mask is stored.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { RNG_WGSL } from "./fill.wgsl.ts";

export const DROPOUT_WORKGROUP = 256;

/**
 * An element is kept when its uniform draw in (0, 1] is above p (probability 1 − p).
 * Bindings: x (read), out (rw). Params: [0]=n [1]=k0 [2]=k1 [3]=p bits [4]=scale bits.
 */
export const dropoutKernel = kernelFamily("dropout", (dtype: "f32" | "f16") => {
  const g = bindGroup([
    { name: "x", access: "read", type: `array<${dtype}>` },
    { name: "out", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(DROPOUT_WORKGROUP)}
${RNG_WGSL}
@compute @workgroup_size(${DROPOUT_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  let u = rand_unit(pu(1u), pu(2u), i, 0u);
  var v: f32 = 0.0;
  if (u > pf(3u)) { v = f32(x[i]) * pf(4u); }
  out[i] = ${dtype}(v);
}
`;
  return { code, group: g };
});
