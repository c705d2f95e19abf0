// The fused AdamW update: decoupled weight decay, both moments and the bias-corrected step in
// one pass over (param, grad, m, v). Two eps forms: PyTorch's (eps added to √v̂) and the
// SLoPe sparse optimizer's (eps added to √v before bias correction, docs/slope.md §4).
// The scaled variant is the mixed-precision one (src/optim/grad-scaler.ts): it reads the loss
// scaler's skip flag and gradient multiplier from the GPU, and keeps its own step count on the
// GPU too (so a skipped step does not advance the bias correction), all without a readback.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { AMP } from "./grad-scaler.wgsl.ts";

export const ADAMW_WORKGROUP = 256;

/**
 * Params: [0]=n [1]=lr [2]=beta1 [3]=beta2 [4]=eps [5]=weight decay, then
 *   plain:  [6]=1−beta1^t [7]=1−beta2^t;
 *   scaled: [6]=ln beta1 [7]=ln beta2 [8]=the step-count slot read this step (0 or 1).
 * Bindings: param (rw), grad (read), m (rw), v (rw); scaled adds the scaler state (read, AMP
 * slots) and the step count (rw, two f32 slots: read one, write the other, so no workgroup reads
 * a count another has already advanced).
 */
export const adamwKernel = kernelFamily("adamw", (epsForm: "torch" | "slope", scaled: boolean = false) => {
  const g = bindGroup([
    { name: "p", access: "rw", type: "array<f32>" },
    { name: "g", access: "read", type: "array<f32>" },
    { name: "m", access: "rw", type: "array<f32>" },
    { name: "v", access: "rw", type: "array<f32>" },
    scaled && { name: "amp", access: "read", type: "array<f32>" },
    scaled && { name: "steps", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`
${g.decls}
${linearIndexFn(ADAMW_WORKGROUP)}
#if ${scaled}
// 1 − e^x without the cancellation of 1 − exp(x) near 0 (bias corrections of early steps).
fn oneMinusExp(x: f32) -> f32 {
  if (abs(x) < 0.25) {
    return -x * (1.0 + x / 2.0 * (1.0 + x / 3.0 * (1.0 + x / 4.0 * (1.0 + x / 5.0 * (1.0 + x / 6.0 * (1.0 + x / 7.0))))));
  }
  return 1.0 - exp(x);
}
#endif
@compute @workgroup_size(${ADAMW_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
#if ${scaled}
  let skip = amp[${AMP.foundInf}] != 0.0;
  let slot = pu(8u);
  let t = steps[slot] + select(1.0, 0.0, skip);
  if (i == 0u) { steps[1u - slot] = t; }
  if (skip || i >= pu(0u)) { return; }
  let bc1 = oneMinusExp(t * pf(6u)); let bc2 = oneMinusExp(t * pf(7u));
  let gi = g[i] * amp[${AMP.mult}];
#else
  if (i >= pu(0u)) { return; }
  let bc1 = pf(6u); let bc2 = pf(7u);
  let gi = g[i];
#endif
  let lr = pf(1u); let b1 = pf(2u); let b2 = pf(3u); let eps = pf(4u); let wd = pf(5u);
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
