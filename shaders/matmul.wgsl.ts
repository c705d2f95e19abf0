// Dense matmul: C = act(op(A)·op(B) + bias), batched, with op() an optional transpose read in
// place (no materialised transpose), on the tiled GEMM core (shaders/gemm.ts). One template emits
// every variant: a tile of GEMM_TILES; a load mode (`vec` reads A, B and writes C as vec4 when
// every contiguous dimension is a multiple of 4; the general mode reads scalars with bounds checks,
// for any M, N, K); the pipelined K loop of the core. Rows written by a scatter (an operand whose
// contiguous axis is K) get one vec4 of padding per k-row to spread the scatter over memory banks.
// The write hook adds the bias and the activation (and writes the pre-activation for its
// backward). f16 variants read f16 and accumulate in f32.
// Measured on an H200 (bench/README.md): 128×128 k8 reaches 33–38 TFLOP/s from N = 2048 in both
// Dawn and wgpu, 64×64 wins below ~200 workgroups.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { GEMM_THREADS, type GemmSpec, type GemmTile, gemmBody, gemmShared, tileExtent, tileOperand } from "./gemm.ts";
import { bindGroup, enables, kernelFamily } from "./kernel.ts";

/** The epilogue activation of a product (the public name: src/autograd/ops.ts re-exports it). */
export type Activation = "none" | "relu" | "gelu";

export interface MatmulVariant extends GemmTile {
  transA: boolean;
  transB: boolean;
  bias: boolean;
  act: Activation;
  /** Also write the pre-activation (for the activation's backward). */
  aux: boolean;
  dtype: "f32" | "f16";
  /** vec4 global loads and stores: A's and B's contiguous dims and N are multiples of 4. */
  vec: boolean;
}

/** Workgroup-memory bytes a variant needs (padding included), to check against the adapter limit. */
export function matmulSharedBytes(t: GemmTile, transA: boolean, transB: boolean): number {
  const { bm, bn } = tileExtent(t);
  return 16 * t.bk * (bm / 4 + (transA ? 0 : 1) + bn / 4 + (transB ? 1 : 0));
}

/** WGSL gelu4 (tanh form, overflow-safe), needed by the "gelu" activation of ACT. */
export const GELU4_FN = `fn gelu4(x: vec4<f32>) -> vec4<f32> {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let t = exp(-2.0 * abs(u));
  return 0.5 * x * (1.0 + sign(u) * (1.0 - t) / (1.0 + t));
}`;

/** The activations as WGSL expressions on a vec4<f32> (gelu needs GELU4_FN), shared by the product kernels' epilogues. */
export const ACT: Record<Activation, (v: string) => string> = {
  none: (v) => v,
  relu: (v) => `max(${v}, vec4<f32>(0.0))`,
  gelu: (v) => `gelu4(${v})`,
};

/**
 * The epilogue of a product, shared with the subgroup-matrix kernel: WGSL `fn put(cBase, r, c,
 * acc, M, N)` storing the 4-wide block acc (+ bias, then the activation) at row r, columns c..c+3
 * of C (and the pre-activation into Z with `aux`). `vec`: C (and Z) are vec4 arrays; `bias`: none,
 * read as one vec4 ("vec4", with vec) or as four guarded scalars ("scalar"). Needs gelu4 for gelu.
 */
export function epilogueFn(o: { vec: boolean; bias: "none" | "vec4" | "scalar"; act: Activation; aux: boolean; outType: string }): string {
  const T = o.outType;
  const bias = o.bias === "vec4" ? "let z = acc + vec4<f32>(bias[c / 4u]);"
    : o.bias === "scalar" ? `var bv = vec4<f32>(f32(bias[c]), 0.0, 0.0, 0.0);
  if (c + 1u < N) { bv.y = f32(bias[c + 1u]); }
  if (c + 2u < N) { bv.z = f32(bias[c + 2u]); }
  if (c + 3u < N) { bv.w = f32(bias[c + 3u]); }
  let z = acc + bv;`
    : "let z = acc;";
  const store = (name: string, val: string) => o.vec ? `${name}[o / 4u] = vec4<${T}>(${val});`
    : `${name}[o] = ${T}(${val}.x);
  if (c + 1u < N) { ${name}[o + 1u] = ${T}(${val}.y); }
  if (c + 2u < N) { ${name}[o + 2u] = ${T}(${val}.z); }
  if (c + 3u < N) { ${name}[o + 3u] = ${T}(${val}.w); }`;
  return `fn put(cBase: u32, r: u32, c: u32, acc: vec4<f32>, M: u32, N: u32) {
  if (r >= M || c >= N) { return; }
  let o = cBase + r * N + c;
  ${bias}
  let y = ${ACT[o.act]("z")};
  ${store("C", "y")}${o.aux ? `
  ${store("Z", "z")}` : ""}
}`;
}

/** Params: [0]=M [1]=N [2]=K [3]=batch stride A [4]=batch stride B [5]=batch stride C (elements). */
export const matmulKernel = kernelFamily("matmul", (v: MatmulVariant) => {
  const T = v.dtype;
  const { bm, bn } = tileExtent(v);
  const bk = v.bk;
  if ((bm * bk) / 4 < GEMM_THREADS || (bn * bk) / 4 < GEMM_THREADS) throw new Error(`matmul: tile ${bm}x${bn}x${bk} is too small for ${GEMM_THREADS} invocations`);
  // vec4s per k-row of As / Bs (one of padding where the operand is scattered)
  const sa = bm / 4 + (v.transA ? 0 : 1);
  const sb = bn / 4 + (v.transB ? 1 : 0);
  const ET = v.vec ? `vec4<${T}>` : T;
  const g = bindGroup([
    { name: "A", access: "read", type: `array<${ET}>` },
    { name: "B", access: "read", type: `array<${ET}>` },
    { name: "C", access: "rw", type: `array<${ET}>` },
    v.bias && { name: "bias", access: "read", type: `array<${ET}>` },
    v.aux && { name: "Z", access: "rw", type: `array<${ET}>` },
  ]);

  // A is "k-major" when transposed (stored [K][M]); B when plain (stored [K][N]).
  const read = (name: string) => (i: string) => `vec4<f32>(${name}[${i}])`;
  const readS = (name: string) => (i: string) => `f32(${name}[${i}])`;
  const operand = (name: "A" | "B", kMajor: boolean, rows: number, extent: string, row0: string, base: string) => tileOperand({
    prefix: name === "A" ? "a" : "b", shared: `${name}s`, rows, bk, kMajor, vec: v.vec, extent, row0,
    index: kMajor
      ? (c, k) => (v.vec ? `${base} / 4u + ${k} * (${extent} / 4u) + ${row0} / 4u + ${c}` : `${base} + ${k} * ${extent} + ${row0} + ${c}`)
      : (c, k) => `${base} + (${row0} + ${c}) * K + ${k}`,
    read: v.vec ? read(name) : readS(name),
  });
  const gemm: GemmSpec = {
    tile: v, a: { shared: "As", stride: sa }, b: { shared: "Bs", stride: sb }, row0: "row0", col0: "col0",
    loop: { k: "k0", bound: "K" },
    loads: { pipelined: [operand("A", v.transA, bm, "M", "row0", "aBase"), operand("B", !v.transB, bn, "N", "col0", "bBase")] },
    write: (row, col, acc) => `  put(cBase, ${row}, ${col}, ${acc}, M, N);`,
  };

  const code = wgsl`${enables(T)}
${g.decls}
${gemmShared(gemm)}

${GELU4_FN}

${epilogueFn({ vec: v.vec, bias: v.bias ? (v.vec ? "vec4" : "scalar") : "none", act: v.act, aux: v.aux, outType: T })}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = pu(0u); let N = pu(1u); let K = pu(2u);
  let tx = lid.x; let ty = lid.y;
  let tid = ty * 16u + tx;
  let row0 = wid.y * ${bm}u; let col0 = wid.x * ${bn}u;
  let aBase = wid.z * pu(3u); let bBase = wid.z * pu(4u); let cBase = wid.z * pu(5u);
  ${gemmBody(gemm)}
}
`;
  return { code, group: g };
});
