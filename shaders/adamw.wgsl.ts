// The fused AdamW update: decoupled weight decay, both moments and the bias-corrected step in
// one pass over (param, grad, m, v). Two eps forms: PyTorch's (eps added to √v̂) and the
// SLoPe sparse optimizer's (eps added to √v before bias correction, docs/slope.md §4).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";

export const ADAMW_WORKGROUP = 256;

/**
 * Params: [0]=n [1]=lr [2]=beta1 [3]=beta2 [4]=eps [5]=weight decay [6]=1−beta1^t [7]=1−beta2^t.
 * Bindings: param (rw), grad (read), m (rw), v (rw).
 */
export const adamwKernel = kernelFamily("adamw", (epsForm: "torch" | "slope") => {
  const g = bindGroup([
    { name: "p", access: "rw", type: "array<f32>" },
    { name: "g", access: "read", type: "array<f32>" },
    { name: "m", access: "rw", type: "array<f32>" },
    { name: "v", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`
${g.decls}
${linearIndexFn(ADAMW_WORKGROUP)}
@compute @workgroup_size(${ADAMW_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  let lr = pf(1u); let b1 = pf(2u); let b2 = pf(3u); let eps = pf(4u); let wd = pf(5u);
  let bc1 = pf(6u); let bc2 = pf(7u);
  let gi = g[i];
  var w = p[i] * (1.0 - lr * wd);
  let mi = b1 * m[i] + (1.0 - b1) * gi;
  let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
#if ${epsForm === "torch"}
  w = w - (lr / bc1) * mi / (sqrt(vi) / sqrt(bc2) + eps);
#else
  w = w - lr * sqrt(bc2) / bc1 * mi / (sqrt(vi) + eps);
#endif
  p[i] = w;
}
`;
  return { code, group: g };
});
