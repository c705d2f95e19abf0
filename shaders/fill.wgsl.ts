// Creation kernels: constant fill, arange, and counter-based random numbers (uniform and
// normal) from a two-word key, so the same seed gives the same tensor on every adapter.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";

export const FILL_WORKGROUP = 256;

/** Params: [0]=n [1]=value bits (f32 or i32) [2]=step bits (arange). */
export const fillKernel = kernelFamily("fill", (dtype: "f32" | "f16" | "i32", arange: boolean) => {
  const val = dtype === "i32" ? "pi" : "pf";
  const g = bindGroup([
    { name: "out", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(FILL_WORKGROUP)}
@compute @workgroup_size(${FILL_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
#if ${arange}
  out[i] = ${dtype}(${val}(1u) + ${dtype === "i32" ? "i32(i)" : "f32(i)"} * ${val}(2u));
#else
  out[i] = ${dtype}(${val}(1u));
#endif
}
`;
  return { code, group: g };
});

/** Hash-based counter RNG: the WGSL shared by random kernels (also dropout). */
export const RNG_WGSL = `
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
fn rand_u32(k0: u32, k1: u32, i: u32, stream: u32) -> u32 {
  return pcg(pcg(pcg(i ^ k0) + k1) ^ (stream * 0x9e3779b9u));
}
/** Uniform in (0, 1]: 24 random bits, never 0 (safe for log). */
fn rand_unit(k0: u32, k1: u32, i: u32, stream: u32) -> f32 {
  return (f32(rand_u32(k0, k1, i, stream) >> 8u) + 1.0) / 16777216.0;
}
`;

/** Params: [0]=n [1]=k0 [2]=k1 [3]=a bits [4]=b bits. normal: mean a, std b; uniform: [a, b). */
export const randomKernel = kernelFamily("random", (dtype: "f32" | "f16", normal: boolean) => {
  const g = bindGroup([
    { name: "out", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(FILL_WORKGROUP)}
${RNG_WGSL}
@compute @workgroup_size(${FILL_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  let u1 = rand_unit(pu(1u), pu(2u), i, 0u);
#if ${normal}
  let u2 = rand_unit(pu(1u), pu(2u), i, 1u);
  let z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
  out[i] = ${dtype}(pf(3u) + pf(4u) * z);
#else
  out[i] = ${dtype}(pf(3u) + (pf(4u) - pf(3u)) * (1.0 - u1));
#endif
}
`;
  return { code, group: g };
});
