// Elementwise map kernels: one template for unary, binary and ternary ops with N-d broadcasting
// (per-input strides, 0 on broadcast axes) and a contiguous fast path. Each op supplies a WGSL
// expression over a, b, c (the inputs, in the compute type) and s, s2 (scalar params).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";

export const EW_WORKGROUP = 256;
export const EW_MAX_RANK = 6;
/** Params layout: [0]=n [1]=rank [2]=s [3]=s2 [4..10) out shape [10..16) a strides [16..22) b [22..28) c. */
export const EW_SHAPE = 4, EW_STRIDES = 10;

type D = "f32" | "f16" | "i32";

/** WGSL helpers usable in expressions (f32). */
const HELPERS = `
fn safe_tanh(x: f32) -> f32 {
  let t = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - t) / (1.0 + t);
}
fn gelu_tanh(x: f32) -> f32 {
  return 0.5 * x * (1.0 + safe_tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
fn gelu_tanh_grad(x: f32) -> f32 {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let t = safe_tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}
fn spow(x: f32, p: f32) -> f32 {
  if (p == 0.0) { return 1.0; }
  if (p == 1.0) { return x; }
  if (p == 2.0) { return x * x; }
  if (x >= 0.0) { return pow(x, p); }
  let r = pow(-x, p);
  if (p == floor(p)) {
    if (abs(p % 2.0) == 1.0) { return -r; }
    return r;
  }
  var nanBits = 0x7fc00000u; // a runtime value: Tint rejects NaN in constant expressions
  return bitcast<f32>(nanBits);
}
`;

/**
 * A map kernel. `inTypes` are the input dtypes, `outType` the output dtype; values are loaded
 * as the compute type (f32 for float inputs, i32 for i32 inputs). `inPlace` reads a from out.
 */
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export const mapKernel = kernelFamily("map", (expr: string, inTypes: D[], outType: D, broadcast: boolean, inPlace: boolean) => {
  const arity = inTypes.length;
  const ct = inTypes.every((t) => t === "i32") && arity > 0 ? "i32" : "f32";
  const names = ["a", "b", "c"];
  const firstInput = inPlace ? 1 : 0;
  const g = bindGroup([
    { name: "out", access: "rw", type: `array<${outType}>` },
    ...range(arity).slice(firstInput).map((k) => ({ name: `in${k}`, access: "read", type: `array<${inTypes[k]}>` } as const)),
  ]);
  const offsets = names.slice(0, arity).map((_, k) => `o${k}`);
  const loads = names.slice(0, arity).map((n, k) =>
    k === 0 && inPlace ? `let ${n} = ${ct}(out[i]);` : `let ${n} = ${ct}(in${k}[${broadcast ? offsets[k] : "i"}]);`
  ).join("\n  ");
  const scalar = ct === "i32" ? "pi" : "pf";
  const code = wgsl`${enables(outType, ...inTypes)}
${g.decls}
${linearIndexFn(EW_WORKGROUP)}
${HELPERS}
@compute @workgroup_size(${EW_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let i = linearIndex(wid, nwg, lid);
  if (i >= pu(0u)) { return; }
  let s = ${scalar}(2u);
  let s2 = ${scalar}(3u);
#if ${broadcast}
  var rem = i;
  ${offsets.map((o) => `var ${o} = 0u;`).join(" ")}
  for (var d = i32(pu(1u)) - 1; d >= 0; d = d - 1) {
    let dim = pu(${EW_SHAPE}u + u32(d));
    let idx = rem % dim;
    rem = rem / dim;
    ${offsets.map((o, k) => `${o} = ${o} + idx * pu(${EW_STRIDES + k * EW_MAX_RANK}u + u32(d));`).join("\n    ")}
  }
#endif
  ${loads}
  out[i] = ${outType}(${expr});
}
`;
  return { code, group: g };
});
