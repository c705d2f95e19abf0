// Dense matmul: C = act(op(A)·op(B) + bias), batched, with op() an optional transpose read in
// place (no materialised transpose). Tiled 64×64×16 in workgroup memory; each invocation keeps a
// 4×4 block in four named vec4 accumulators and the k loop is unrolled in the emitted text
// (no loop-indexed local arrays: wgpu compiles those badly on NVIDIA, DESIGN.md §6).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { enables, kernelFamily, paramsDecl, storage } from "./kernel.ts";

export const MM_TILE = 64;
export const MM_BK = 16;
export type MatmulAct = "none" | "relu" | "gelu";

export interface MatmulVariant {
  transA: boolean;
  transB: boolean;
  bias: boolean;
  act: MatmulAct;
  /** Also write the pre-activation (for the activation's backward). */
  aux: boolean;
  dtype: "f32" | "f16";
}

const ACT: Record<MatmulAct, (v: string) => string> = {
  none: (v) => v,
  relu: (v) => `max(${v}, vec4<f32>(0.0))`,
  gelu: (v) => `gelu4(${v})`,
};

/** Params: [0]=M [1]=N [2]=K [3]=batch stride A [4]=batch stride B [5]=batch stride C. */
export const matmulKernel = kernelFamily("matmul", (v: MatmulVariant) => {
  const T = v.dtype;
  const bindings: ("read" | "rw")[] = ["read", "read", "rw"];
  const decls = [
    storage(0, "A", "read", `array<${T}>`),
    storage(1, "B", "read", `array<${T}>`),
    storage(2, "C", "rw", `array<${T}>`),
  ];
  if (v.bias) { decls.push(storage(bindings.length, "bias", "read", `array<${T}>`)); bindings.push("read"); }
  if (v.aux) { decls.push(storage(bindings.length, "Z", "rw", `array<${T}>`)); bindings.push("rw"); }
  const kSteps = Array.from({ length: MM_BK }, (_, k) =>
    `    { let a = As[${k * 16}u + ty]; let b = Bs[${k * 16}u + tx];
      acc0 = acc0 + a.x * b; acc1 = acc1 + a.y * b; acc2 = acc2 + a.z * b; acc3 = acc3 + a.w * b; }`).join("\n");
  // A element (m, k) of the tile; B element (k, n).
  const loadA = v.transA
    ? `let k = idx / 64u; let m = idx % 64u; let gm = row0 + m; let gk = k0 + k;
       var val: f32 = 0.0; if (gm < M && gk < K) { val = f32(A[aBase + gk * M + gm]); }`
    : `let m = idx / 16u; let k = idx % 16u; let gm = row0 + m; let gk = k0 + k;
       var val: f32 = 0.0; if (gm < M && gk < K) { val = f32(A[aBase + gm * K + gk]); }`;
  const loadB = v.transB
    ? `let n = idx / 16u; let k = idx % 16u; let gn = col0 + n; let gk = k0 + k;
       var val: f32 = 0.0; if (gn < N && gk < K) { val = f32(B[bBase + gn * K + gk]); }`
    : `let k = idx / 64u; let n = idx % 64u; let gn = col0 + n; let gk = k0 + k;
       var val: f32 = 0.0; if (gn < N && gk < K) { val = f32(B[bBase + gk * N + gn]); }`;
  const stores = [0, 1, 2, 3].map((i) => `  storeRow(cBase, row0 + ty * 4u + ${i}u, col0 + tx * 4u, acc${i}, M, N);`).join("\n");
  const code = wgsl`${enables(T)}
${decls.join("\n")}
${paramsDecl(bindings.length)}
var<workgroup> As: array<vec4<f32>, ${MM_BK * 16}>;
var<workgroup> Bs: array<vec4<f32>, ${MM_BK * 16}>;

fn gelu4(x: vec4<f32>) -> vec4<f32> {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let t = exp(-2.0 * abs(u));
  return 0.5 * x * (1.0 + sign(u) * (1.0 - t) / (1.0 + t));
}

fn storeRow(cBase: u32, r: u32, c: u32, acc: vec4<f32>, M: u32, N: u32) {
  if (r >= M) { return; }
#if ${v.bias}
  var bv = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j = j + 1u) { if (c + j < N) { bv[j] = f32(bias[c + j]); } }
  let z = acc + bv;
#else
  let z = acc;
#endif
  let y = ${ACT[v.act]("z")};
  for (var j = 0u; j < 4u; j = j + 1u) {
    if (c + j < N) {
      C[cBase + r * N + c + j] = ${T}(y[j]);
#if ${v.aux}
      Z[cBase + r * N + c + j] = ${T}(z[j]);
#endif
    }
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = pu(0u); let N = pu(1u); let K = pu(2u);
  let tx = lid.x; let ty = lid.y;
  let tid = ty * 16u + tx;
  let row0 = wid.y * 64u; let col0 = wid.x * 64u;
  let aBase = wid.z * pu(3u); let bBase = wid.z * pu(4u); let cBase = wid.z * pu(5u);
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < K; k0 = k0 + ${MM_BK}u) {
    for (var i = 0u; i < 4u; i = i + 1u) {
      let idx = tid + i * 256u;
      { ${loadA}
        As[k * 16u + (m >> 2u)][m & 3u] = val; }
      { ${loadB}
        Bs[k * 16u + (n >> 2u)][n & 3u] = val; }
    }
    workgroupBarrier();
${kSteps}
    workgroupBarrier();
  }
${stores}
}
`;
  return { code, bindings, params: true };
});
