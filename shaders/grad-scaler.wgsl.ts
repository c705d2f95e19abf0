// Dynamic loss scaling on the GPU (torch.cuda.amp.GradScaler's update, without a readback): one
// invocation reads Σg² of the scaled gradients, decides whether they overflowed (an inf or NaN
// sum is the flag), and writes what the optimizer kernels of the same step read — the skip flag
// and the gradient multiplier (1/S times the clip coefficient) — then backs the scale off or
// grows it. The state lives in one small f32 buffer; src/optim/grad-scaler.ts owns it.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, kernelFamily } from "./kernel.ts";

/** Slots of the scaler state buffer (f32 each). */
export const AMP = {
  /** The loss scale S the next backward is seeded with. */
  scale: 0,
  /** Good steps since the scale last changed (GradScaler's growth tracker). */
  tracker: 1,
  /** Steps skipped for overflow since the scaler was made. */
  skipped: 2,
  /** 1 when this step's gradients overflowed (the optimizers skip), else 0. */
  foundInf: 3,
  /** What the optimizers multiply this step's gradients by: 1/S · min(1, maxNorm / (norm + 1e-6)). */
  mult: 4,
  /** This step's unscaled global gradient norm (inf or NaN on overflow). */
  norm: 5,
} as const;
export const AMP_WORDS = 8;

/** WGSL: whether an f32 is finite, by its exponent bits (compilers may fold x != x away). */
export const IS_FINITE_FN = `
fn isFiniteF32(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
`;

/**
 * Params: [0]=maxNorm (0: no clipping) [1]=growth factor [2]=backoff factor [3]=growth interval.
 * Bindings: sumsq (read, Σg² of the scaled gradients in element 0), state (rw, AMP slots).
 */
export const gradScalerUpdateKernel = kernelFamily("grad_scaler_update", () => {
  const g = bindGroup([
    { name: "ss", access: "read", type: "array<f32>" },
    { name: "st", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`
${g.decls}
${IS_FINITE_FN}
@compute @workgroup_size(1)
fn main() {
  let maxNorm = pf(0u); let growth = pf(1u); let backoff = pf(2u); let interval = pf(3u);
  let s = st[${AMP.scale}];
  let sumsq = ss[0];
  let norm = sqrt(sumsq) / s;
  st[${AMP.norm}] = norm;
  if (!isFiniteF32(sumsq) || !isFiniteF32(norm)) {
    st[${AMP.foundInf}] = 1.0;
    st[${AMP.mult}] = 0.0;
    st[${AMP.scale}] = s * backoff;
    st[${AMP.tracker}] = 0.0;
    st[${AMP.skipped}] = st[${AMP.skipped}] + 1.0;
    return;
  }
  var coef = 1.0;
  if (maxNorm > 0.0) { coef = min(1.0, maxNorm / (norm + 1e-6)); }
  st[${AMP.foundInf}] = 0.0;
  st[${AMP.mult}] = coef / s;
  let good = st[${AMP.tracker}] + 1.0;
  if (good >= interval) {
    let grown = s * growth;
    if (isFiniteF32(grown)) { st[${AMP.scale}] = grown; }
    st[${AMP.tracker}] = 0.0;
  } else {
    st[${AMP.tracker}] = good;
  }
}
`;
  return { code, group: g };
});
