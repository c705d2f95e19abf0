// Dense matmul on the GPU's matrix units through WebGPU's subgroup matrices (Dawn's
// `chromium-experimental-subgroup-matrix`; on NVIDIA these are the tensor cores). Same contract as
// shaders/matmul.wgsl.ts — C = act(op(A)·op(B) + bias), batched, transposes read in place, the
// same params block — so the front-end can swap it in per product:
// - Operands are read as f32 or f16 and rounded to f16 when staged into workgroup memory (the
//   matrix units take f16); products accumulate in f32 `subgroup_matrix_result`s; C is f32 or f16.
// - A workgroup is `sgm × sgn` subgroups; each owns an (fm·16)×(fn·16) block of C held in fm·fn
//   named 16×16 accumulators (named, not an array: no dynamic indexing of matrices).
// - The K loop stages a bk = 32 deep slice of op(A) and op(B) into workgroup memory, keeping each
//   operand's contiguous axis contiguous there (so staging is a straight vec4 copy, and a
//   transposed operand is loaded as a column-major matrix), padded by 8 halves per row against
//   bank conflicts. With `prefetch` the next slice is fetched into named registers while this one
//   is multiplied (costs registers; measured per tile).
// - Results go through a small f32 scratch per subgroup so the epilogue (bias, ReLU/GELU, the
//   pre-activation for backward, bounds checks for any M, N) is ordinary per-element code.
// Subgroup-matrix builtins want subgroup-uniform offsets; with several subgroups per workgroup the
// offsets derive from the subgroup index, read from the `subgroup_id` builtin: the compiler knows
// it is subgroup-uniform. (Derived as tid / subgroupSize it is not, and Tint on the H200 refuses
// the kernel: "'subgroupMatrixStore' requires argument 1 to be uniform".)
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, kernelFamily } from "./kernel.ts";
import { epilogueFn } from "./matmul.wgsl.ts";

export type SgActivation = "none" | "relu" | "gelu";

/** A workgroup of sgm×sgn subgroups, each computing fm×fn result matrices of 16×16. */
export interface SgTile {
  sgm: 1 | 2 | 4;
  sgn: 1 | 2 | 4;
  fm: 1 | 2 | 4;
  fn: 1 | 2 | 4;
  /** K depth of one workgroup-memory stage (SG_BK when absent): deeper halves the barriers per K. */
  bk?: 32 | 64;
  /** Fetch the next K slice into registers during this one's products (default true); off where the registers would spill. */
  prefetch?: boolean;
}

export const SG_TILES = {
  /** One subgroup, 64×64 of C (offsets workgroup-uniform: needs no diagnostic override). */
  "64x64s1": { sgm: 1, sgn: 1, fm: 4, fn: 4, prefetch: false },
  /** 2×2 subgroups, 128×128 of C. */
  "128x128s4": { sgm: 2, sgn: 2, fm: 4, fn: 4 },
  /** 2×2 subgroups, 64×64 of C (small outputs: more workgroups). */
  "64x64s4": { sgm: 2, sgn: 2, fm: 2, fn: 2 },
  /** 2×2 subgroups of 64×32, 128×64 of C. */
  "128x64s4": { sgm: 2, sgn: 2, fm: 4, fn: 2 },
  /** 128×128 of C staged 64 deep: half the barriers per K of 128x128s4. */
  "128x128s4k64": { sgm: 2, sgn: 2, fm: 4, fn: 4, bk: 64, prefetch: false },
  /** 2×4 subgroups of 64×64, 128×256 of C (8 subgroups: more reuse of each staged A row). */
  "128x256s8": { sgm: 2, sgn: 4, fm: 4, fn: 4 },
  /** 4×2 subgroups of 64×64, 256×128 of C. */
  "256x128s8": { sgm: 4, sgn: 2, fm: 4, fn: 4 },
  /** 4×2 subgroups of 32×64, 128×128 of C (8 subgroups, fewer accumulators each). */
  "128x128s8": { sgm: 4, sgn: 2, fm: 2, fn: 4 },
} as const satisfies Record<string, SgTile>;
export type SgTileName = keyof typeof SG_TILES;

export interface SgMatmulVariant extends SgTile {
  transA: boolean;
  transB: boolean;
  bias: boolean;
  act: SgActivation;
  aux: boolean;
  /** Element type of A, B (and bias) in memory. */
  inType: "f32" | "f16";
  /** Element type of C (and the pre-activation Z). */
  outType: "f32" | "f16";
  /** vec4 loads of A and B: their contiguous dimensions are multiples of 4. */
  vec: boolean;
  /** Invocations per subgroup the kernel is built for (the adapter's subgroupMaxSize). */
  subgroupSize: number;
  /** Fetch the next K slice into registers while this one is multiplied (more registers). */
  prefetch: boolean;
  /** Load/store spelling: majorness as a template argument (current Tint) or as a bool argument (deprecated). */
  sgSyntax: SgSyntax;
  /**
   * B is a 2:4 Sparse24 [N, K] (shaders/sparse24.wgsl.ts: values [N, K/2], one u32 mask word per 32
   * columns) read as op(B) = Sᵀ: each K step decodes a row's mask word once into 32 f16 halves in
   * workgroup memory (zeros where pruned) — the spmm of the training path on the matrix units.
   * Needs transB and bk = 32 (one mask word per row per stage).
   */
  sparseB?: boolean;
}
export type SgSyntax = "majorness" | "bool";

/** K depth of one workgroup-memory stage (two 16-deep matrix steps). */
export const SG_BK = 32;
const PAD = 8;

export function sgTileExtent(t: SgTile): { bm: number; bn: number } {
  return { bm: t.sgm * t.fm * 16, bn: t.sgn * t.fn * 16 };
}

/** Workgroup-memory bytes of a variant (f16 operand stages plus the f32 epilogue scratch). */
export function sgSharedBytes(t: SgTile, transA: boolean, transB: boolean): number {
  const { bm, bn } = sgTileExtent(t);
  const bk = t.bk ?? SG_BK;
  const a = transA ? bk * (bm + PAD) : bm * (bk + PAD);
  const b = transB ? bn * (bk + PAD) : bk * (bn + PAD);
  return 2 * (a + b) + 4 * 256 * t.sgm * t.sgn;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const XYZW = ["x", "y", "z", "w"] as const;

/**
 * Staging code for one operand tile: `outer` rows of `inner` contiguous elements, read from global
 * `src` (row stride `ld`, valid extents `outerLim` × `innerLim`, origin `o0`, `i0`) and written to
 * workgroup array `dst` with row stride inner + PAD.
 */
function operand(name: string, src: string, dst: string, outer: number, inner: number, threads: number, vec: boolean,
  origin: { outer: string; inner: string }, lim: { outer: string; inner: string }, ld: string, base: string) {
  const per = vec ? 4 : 1;
  const chunks = (outer * inner) / per;
  const n = Math.ceil(chunks / threads);
  const full = chunks % threads === 0;
  const rowChunks = inner / per;
  const T = vec ? "vec4<f32>" : "f32";
  const regs = range(n).map((i) => `${name}${i}`);
  const decl = regs.map((r) => `var ${r}: ${T};`).join(" ");
  const fetch = (k: string) => range(n).map((i) => {
    const c = `(tid + ${i * threads}u)`;
    const body = [
      `{ let ch = ${c}; let ro = ch / ${rowChunks}u; let co = (ch % ${rowChunks}u) * ${per}u;`,
      `  let go = ${origin.outer.replace("$k", k)} + ro; let gi = ${origin.inner.replace("$k", k)} + co;`,
      `  if (go < ${lim.outer} && gi < ${lim.inner}${full ? "" : ` && ch < ${chunks}u`}) {`,
      vec ? `    ${regs[i]} = vec4<f32>(${src}[(${base} + go * ${ld} + gi) / 4u]);`
        : `    ${regs[i]} = f32(${src}[${base} + go * ${ld} + gi]);`,
      `  } else { ${regs[i]} = ${T}(0.0); } }`,
    ];
    return body.join("\n    ");
  }).join("\n    ");
  const store = range(n).map((i) => {
    const c = `(tid + ${i * threads}u)`;
    const lines = [`{ let ch = ${c}; let ro = ch / ${rowChunks}u; let co = (ch % ${rowChunks}u) * ${per}u; let s = ro * ${inner + PAD}u + co;`];
    const guard = full ? "" : `if (ch < ${chunks}u) `;
    if (vec) lines.push(`  ${guard}{ ${range(4).map((e) => `${dst}[s + ${e}u] = f16(${regs[i]}.${XYZW[e]});`).join(" ")} } }`);
    else lines.push(`  ${guard}{ ${dst}[s] = f16(${regs[i]}); } }`);
    return lines.join("\n    ");
  }).join("\n    ");
  return { decl, fetch, store };
}

/**
 * Stages rows col0 … col0 + bn of a 2:4 B for the K slice at k0: one mask word and its 16 values
 * per row, decoded into 32 halves of Bs (row stride ld). Params [6] = mask words per row, [7] =
 * values per row. Rows past N and columns past K decode to zeros (their mask bits are 0).
 */
function sparseStage(bn: number, threads: number, ld: number): string {
  const groups = range(8).map((g) => `      { let b0 = (word >> ${g * 4}u) & 15u; let b1 = b0 & (b0 - 1u); var q = vec4<f16>(0.0);
        if (b0 != 0u && s0 + ${2 * g}u < vpr) { q[countTrailingZeros(b0)] = f16(B[vb + ${2 * g}u]); }
        if (b1 != 0u && s0 + ${2 * g + 1}u < vpr) { q[countTrailingZeros(b1)] = f16(B[vb + ${2 * g + 1}u]); }
        Bs[dst + ${g * 4}u] = q.x; Bs[dst + ${g * 4 + 1}u] = q.y; Bs[dst + ${g * 4 + 2}u] = q.z; Bs[dst + ${g * 4 + 3}u] = q.w; }`).join("\n");
  return `for (var e = tid; e < ${bn}u; e = e + ${threads}u) {
      let n = col0 + e; let w = k0 / 32u; let dst = e * ${ld}u;
      let ws = pu(6u); let vpr = pu(7u);
      var word = 0u;
      if (n < N && w < ws) { word = mbits[n * ws + w]; }
      let s0 = w * 16u; let vb = n * vpr + s0;
${groups}
    }`;
}

/**
 * Bindings: A (read), B (read), [mbits (read) with sparseB], C (rw), [bias (read)], [Z (rw)].
 * Params as shaders/matmul.wgsl.ts: [0]=M [1]=N [2]=K [3]=A batch stride [4]=B batch stride
 * [5]=C batch stride; with sparseB [6]=mask words per row [7]=values per row.
 * Grid: (ceil(N/bn), ceil(M/bm), batch).
 */
export const sgMatmulKernel = kernelFamily("matmul_sgmat", (v: SgMatmulVariant) => {
  const { bm, bn } = sgTileExtent(v);
  const nsub = v.sgm * v.sgn;
  const threads = nsub * v.subgroupSize;
  const bk = v.bk ?? SG_BK;
  const I = v.inType, O = v.outType;
  const aType = v.vec ? `array<vec4<${I}>>` : `array<${I}>`;
  if (v.sparseB && (!v.transB || bk !== 32)) throw new Error(`sgMatmulKernel: a 2:4 B needs transB and bk 32 (got transB ${v.transB}, bk ${bk})`);
  const g = bindGroup([
    { name: "A", access: "read", type: aType },
    { name: "B", access: "read", type: v.sparseB ? `array<${I}>` : aType },
    v.sparseB && { name: "mbits", access: "read", type: "array<u32>" },
    { name: "C", access: "rw", type: v.vec ? `array<vec4<${O}>>` : `array<${O}>` },
    v.bias && { name: "bias", access: "read", type: `array<${I}>` },
    v.aux && { name: "Z", access: "rw", type: v.vec ? `array<vec4<${O}>>` : `array<${O}>` },
  ]);

  // op(A) tile: bm rows (m) × bk (k). Stored [m][k] (A row-major) or [k][m] (A stored transposed).
  const A = v.transA
    ? operand("ra", "A", "As", bk, bm, threads, v.vec, { outer: "$k", inner: "row0" }, { outer: "K", inner: "M" }, "M", "aBase")
    : operand("ra", "A", "As", bm, bk, threads, v.vec, { outer: "row0", inner: "$k" }, { outer: "M", inner: "K" }, "K", "aBase");
  // op(B) tile: bk (k) × bn (n). Stored [k][n] (B row-major) or [n][k] (B stored transposed).
  const dense = v.transB
    ? operand("rb", "B", "Bs", bn, bk, threads, v.vec, { outer: "col0", inner: "$k" }, { outer: "N", inner: "K" }, "K", "bBase")
    : operand("rb", "B", "Bs", bk, bn, threads, v.vec, { outer: "$k", inner: "col0" }, { outer: "K", inner: "N" }, "N", "bBase");
  const B = v.sparseB ? { decl: "", fetch: () => "", store: sparseStage(bn, threads, bk + PAD) } : dense;
  const aSize = v.transA ? bk * (bm + PAD) : bm * (bk + PAD);
  const bSize = v.transB ? bn * (bk + PAD) : bk * (bn + PAD);
  const lda = v.transA ? bm + PAD : bk + PAD;
  const ldb = v.transB ? bk + PAD : bn + PAD;
  // Offsets (in halves) of the 16×16 operand matrices of this subgroup at k step kk.
  const offA = (i: number, kk: number) => v.transA ? `${kk * lda}u + sr + ${i * 16}u` : `(sr + ${i * 16}u) * ${lda}u + ${kk}u`;
  const offB = (j: number, kk: number) => v.transB ? `(sc + ${j * 16}u) * ${ldb}u + ${kk}u` : `${kk * ldb}u + sc + ${j * 16}u`;
  const L = "subgroup_matrix_left<f16, 16, 16>", R = "subgroup_matrix_right<f16, 16, 16>", Res = "subgroup_matrix_result<f32, 16, 16>";
  const accs = range(v.fm).flatMap((i) => range(v.fn).map((j) => `c${i}_${j}`));
  const load = (T: string, src: string, off: string, colMajor: boolean, ld: number) => v.sgSyntax === "majorness"
    ? `subgroupMatrixLoad<${T}, ${colMajor ? "col_major" : "row_major"}>(${src}, ${off}, ${ld}u)`
    : `subgroupMatrixLoad<${T}>(${src}, ${off}, ${colMajor}, ${ld}u)`;
  const store = (c: string) => v.sgSyntax === "majorness"
    ? `subgroupMatrixStore<row_major>(&scratch, sg * 256u, ${c}, 16u)`
    : `subgroupMatrixStore(&scratch, sg * 256u, ${c}, false, 16u)`;
  const mma = range(bk / 16).map((s) => s * 16).map((kk) => [
    ...range(v.fm).map((i) => `let a${i} = ${load(L, "&As", offA(i, kk), v.transA, lda)};`),
    ...range(v.fn).map((j) => `let b${j} = ${load(R, "&Bs", offB(j, kk), v.transB, ldb)};`),
    ...range(v.fm).flatMap((i) => range(v.fn).map((j) => `c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}_${j});`)),
  ].join("\n      ")).map((s) => `    {\n      ${s}\n    }`).join("\n");

  // Epilogue: round (i, j) stores every subgroup's accumulator c_i_j into its 16×16 scratch, then
  // the whole workgroup writes those nsub·256 values out, 4 per invocation per pass.
  const groups4 = (nsub * 256) / 4;
  const passes = Math.ceil(groups4 / threads);
  const writeOut = range(passes).map((p) => {
    const g = `(tid + ${p * threads}u)`;
    return `{ let g = ${g};${groups4 % threads === 0 ? "" : ` if (g < ${groups4}u)`} {
      let s = g / 64u; let e = (g % 64u) * 4u; let r = e / 16u; let cc = e % 16u;
      let gr = row0 + (s / ${v.sgn}u) * ${v.fm * 16}u + I * 16u + r;
      let gc = col0 + (s % ${v.sgn}u) * ${v.fn * 16}u + J * 16u + cc;
      let acc = vec4<f32>(scratch[s * 256u + e], scratch[s * 256u + e + 1u], scratch[s * 256u + e + 2u], scratch[s * 256u + e + 3u]);
      put(cBase, gr, gc, acc, M, N);
    } }`;
  }).join("\n    ");
  const rounds = range(v.fm).flatMap((i) => range(v.fn).map((j) => `  workgroupBarrier();
  ${store(`c${i}_${j}`)};
  workgroupBarrier();
  { const I = ${i}u; const J = ${j}u;
    ${writeOut}
  }`)).join("\n");

  const code = wgsl`enable f16;
enable chromium_experimental_subgroup_matrix;
#if ${nsub > 1}
enable subgroups;
#endif
${g.decls}
var<workgroup> As: array<f16, ${aSize}>;
var<workgroup> Bs: array<f16, ${bSize}>;
var<workgroup> scratch: array<f32, ${256 * nsub}>;

fn gelu4(x: vec4<f32>) -> vec4<f32> {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let t = exp(-2.0 * abs(u));
  return 0.5 * x * (1.0 + sign(u) * (1.0 - t) / (1.0 + t));
}

${epilogueFn({ vec: v.vec, bias: v.bias ? "scalar" : "none", act: v.act, aux: v.aux, outType: O })}

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32${nsub > 1 ? ", @builtin(subgroup_id) sgid: u32" : ""}) {
  let M = pu(0u); let N = pu(1u); let K = pu(2u);
  let row0 = wid.y * ${bm}u; let col0 = wid.x * ${bn}u;
  let aBase = wid.z * pu(3u); let bBase = wid.z * pu(4u); let cBase = wid.z * pu(5u);
#if ${nsub > 1}
  let sg = sgid;
#else
  let sg = 0u;
#endif
  // This subgroup's block of the workgroup tile.
  let sr = (sg / ${v.sgn}u) * ${v.fm * 16}u;
  let sc = (sg % ${v.sgn}u) * ${v.fn * 16}u;
  ${A.decl}
  ${B.decl}
  ${accs.map((c) => `var ${c} = ${Res}();`).join(" ")}
#if ${v.prefetch}
  ${A.fetch("0u")}
  ${B.fetch("0u")}
#endif
  for (var k0 = 0u; k0 < K; k0 = k0 + ${bk}u) {
    workgroupBarrier();
#if ${!v.prefetch}
    ${A.fetch("k0")}
    ${B.fetch("k0")}
#endif
    ${A.store}
    ${B.store}
    workgroupBarrier();
#if ${v.prefetch}
    if (k0 + ${bk}u < K) {
      let kn = k0 + ${bk}u;
      ${A.fetch("kn")}
      ${B.fetch("kn")}
    }
#endif
${mma}
  }
${rounds}
}
`;
  return { code, group: g };
});
