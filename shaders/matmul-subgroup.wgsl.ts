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
//   is multiplied (costs registers; measured per tile). With `stages: 2` (the …d2 tiles) there are
//   two such buffers: the next slice is fetched into f16 registers before this slice's products
//   and stored into the other buffer after them — one barrier per K step instead of two, and
//   twice the operand memory (sgSharedBytes counts both). Those registers are f16 (rounded at the
//   fetch, so f16 operands are copied as they are); `f16Staging` stages a one-stage kernel so too.
//   With `packedF16` (the …p tiles) f16 operands are read as u32 words, 8 or 4 halves a load, and
//   split with bitcast at the store: 1.5× the f16 kernel that reads vec4<f16> on the H200.
// - Results go through a small f32 scratch per subgroup so the epilogue (bias, ReLU/GELU, the
//   pre-activation for backward, bounds checks for any M, N) is ordinary per-element code.
// Subgroup-matrix builtins want subgroup-uniform offsets; with several subgroups per workgroup the
// offsets derive from the subgroup index, read from the `subgroup_id` builtin: the compiler knows
// it is subgroup-uniform. (Derived as tid / subgroupSize it is not, and Tint on the H200 refuses
// the kernel: "'subgroupMatrixStore' requires argument 1 to be uniform".)
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, kernelFamily } from "./kernel.ts";
import { epilogueFn, GELU4_FN } from "./matmul.wgsl.ts";

export type SgActivation = "none" | "relu" | "gelu";

/** A workgroup of sgm×sgn subgroups, each computing fm×fn result matrices of 16×16. */
export interface SgTile {
  sgm: 1 | 2 | 4;
  sgn: 1 | 2 | 4;
  fm: 1 | 2 | 4;
  fn: 1 | 2 | 4;
  /** K depth of one workgroup-memory stage (SG_BK when absent): deeper halves the barriers per K. */
  bk?: 16 | 32 | 64;
  /**
   * Workgroup-memory stages (1 when absent). With 2, the K loop alternates between two As/Bs
   * buffers: the next slice is fetched into f16 registers before this slice's products and stored
   * into the other buffer after them, so a K step needs one workgroupBarrier instead of two (and
   * twice the operand memory; `prefetch` is implied).
   */
  stages?: 1 | 2;
  /**
   * One-stage kernels staged as the two-stage ones are: f16 registers (half the registers; an f16
   * operand never goes through f32) and each invocation's tile position computed once. Implies
   * `prefetch`. (Two-stage kernels always stage this way.)
   */
  f16Staging?: boolean;
  /** Fetch the next K slice into registers during this one's products (default true); off where the registers would spill. */
  prefetch?: boolean;
  /**
   * f16 operands read from storage as u32 words — 8 halves a 16-byte load where the variant's
   * `vec8` holds, else 4 halves an 8-byte load — and split into halves with bitcast at the store
   * (f16 staging only). f32 operands and scalar layouts read as without it. On the H200 it lifts
   * the f16 kernel from about 95 to 146 TFLOP/s (l-matmul-units-packed): the vec4<f16> storage
   * loads, not the products, had held it below the f32-operand kernels.
   */
  packedF16?: boolean;
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
  // Double-buffered (stages 2): one barrier per K step. Workgroup memory at the probe's layout
  // (A row-major, Bᵀ): 45,056 / 49,152 / 32,768 / 45,056 bytes — within the H200's 49,152; the
  // third also within WebGPU's default 32 KiB.
  /** 128x128s4 double-buffered: 256 workgroups at N = 2048 (fills 132 SMs where 128x256 cannot). */
  "128x128s4d2": { sgm: 2, sgn: 2, fm: 4, fn: 4, stages: 2 },
  /** 128x128s8 double-buffered: 8 subgroups of 32×64, exactly the H200's 48 KiB of workgroup memory. */
  "128x128s8d2": { sgm: 4, sgn: 2, fm: 2, fn: 4, stages: 2 },
  /** 128x128s8 double-buffered 16 deep: a quarter less memory than 128x128s8, fits 32 KiB. */
  "128x128s8k16d2": { sgm: 4, sgn: 2, fm: 2, fn: 4, bk: 16, stages: 2 },
  /** 128x256s8 double-buffered 16 deep (32 deep would need 60 KiB): the fastest tile's shape, one barrier per 16 of K. */
  "128x256s8k16d2": { sgm: 2, sgn: 4, fm: 4, fn: 4, bk: 16, stages: 2 },
  /** 128x256s8 as it is (one stage, two barriers per K step) but with the f16 staging registers: what the staging rewrite alone gives. */
  "128x256s8h": { sgm: 2, sgn: 4, fm: 4, fn: 4, f16Staging: true },
  /** 128x256s8h reading f16 operands as u32 words (packedF16). */
  "128x256s8p": { sgm: 2, sgn: 4, fm: 4, fn: 4, f16Staging: true, packedF16: true },
  /** 256x128s8 with f16 staging and f16 operands read as u32 words (packedF16). */
  "256x128s8p": { sgm: 4, sgn: 2, fm: 4, fn: 4, f16Staging: true, packedF16: true },
  /** 128x128s8d2 (double-buffered) reading f16 operands as u32 words (packedF16). */
  "128x128s8d2p": { sgm: 4, sgn: 2, fm: 2, fn: 4, stages: 2, packedF16: true },
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
  /** A's and B's contiguous dimensions (and so their batch strides) are multiples of 8: a packedF16 tile reads 8 halves a load. */
  vec8?: boolean;
  /** Invocations per subgroup the kernel is built for (the adapter's subgroupMaxSize). */
  subgroupSize: number;
  /** Fetch the next K slice into registers while this one is multiplied (more registers). */
  prefetch: boolean;
  /** Load/store spelling: majorness as a template argument (current Tint) or as a bool argument (deprecated). */
  sgSyntax: SgSyntax;
  /**
   * B is a 2:4 Sparse24 [N, K] (shaders/sparse24.wgsl.ts: values [N, K/2], one u32 mask word per 32
   * columns) read as op(B) = Sᵀ: each K step's mask words and values are fetched into registers in
   * the prefetch slot (sparseOperand) and decoded into 32 f16 halves per row in workgroup memory
   * (zeros where pruned) — the spmm of the training path on the matrix units.
   * Needs transB and bk = 32 (one mask word per row per stage).
   */
  sparseB?: boolean;
  /** With sparseB: the values per row are a multiple of 4 (K % 8 = 0), so each is read as vec4s, four invocations per row (sparseOperand). */
  sparseVec4?: boolean;
}
export type SgSyntax = "majorness" | "bool";

/** The subgroup-matrix types every matrix-unit kernel uses: f16 operands, f32 results, 16×16×16. */
export const SG_LEFT = "subgroup_matrix_left<f16, 16, 16>";
export const SG_RIGHT = "subgroup_matrix_right<f16, 16, 16>";
export const SG_RESULT = "subgroup_matrix_result<f32, 16, 16>";

/**
 * A subgroupMatrixLoad of matrix type `T` from workgroup array pointer `src` at element `off`
 * (row stride `ld`), spelled as this compiler accepts (`syntax`, chosen at init by
 * src/gpu/matrix-units.ts): majorness as a template argument, or the older bool argument.
 * The one place the builtin's spelling lives (the matmul and attention kernels share it).
 */
export function sgLoad(syntax: SgSyntax, T: string, src: string, off: string, colMajor: boolean, ld: string): string {
  return syntax === "majorness"
    ? `subgroupMatrixLoad<${T}, ${colMajor ? "col_major" : "row_major"}>(${src}, ${off}, ${ld})`
    : `subgroupMatrixLoad<${T}>(${src}, ${off}, ${colMajor}, ${ld})`;
}

/** A subgroupMatrixStore of matrix `value` into `dst` at element `off` (row stride `ld`), spelled as sgLoad. */
export function sgStore(syntax: SgSyntax, dst: string, off: string, value: string, colMajor: boolean, ld: string): string {
  return syntax === "majorness"
    ? `subgroupMatrixStore<${colMajor ? "col_major" : "row_major"}>(${dst}, ${off}, ${value}, ${ld})`
    : `subgroupMatrixStore(${dst}, ${off}, ${value}, ${colMajor}, ${ld})`;
}

/** K depth of one workgroup-memory stage (two 16-deep matrix steps). */
export const SG_BK = 32;
const PAD = 8;

export function sgTileExtent(t: SgTile): { bm: number; bn: number } {
  return { bm: t.sgm * t.fm * 16, bn: t.sgn * t.fn * 16 };
}

/** Halves of one stage of op(A) and of op(B) in workgroup memory, and their row strides. */
export function sgStageLayout(t: SgTile, transA: boolean, transB: boolean): { aSize: number; bSize: number; lda: number; ldb: number } {
  const { bm, bn } = sgTileExtent(t);
  const bk = t.bk ?? SG_BK;
  const lda = transA ? bm + PAD : bk + PAD;
  const ldb = transB ? bk + PAD : bn + PAD;
  return { aSize: (transA ? bk : bm) * lda, bSize: (transB ? bn : bk) * ldb, lda, ldb };
}

/** Workgroup-memory bytes of a variant (f16 operand stages, each of them, plus the f32 epilogue scratch). */
export function sgSharedBytes(t: SgTile, transA: boolean, transB: boolean): number {
  const { aSize, bSize } = sgStageLayout(t, transA, transB);
  return (t.stages ?? 1) * 2 * (aSize + bSize) + 4 * 256 * t.sgm * t.sgn;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const XYZW = ["x", "y", "z", "w"] as const;

/**
 * Staging code for one operand tile: `outer` rows of `inner` contiguous elements, read from global
 * `src` (row stride `ld`, valid extents `outerLim` × `innerLim`, origin `o0`, `i0`) and written to
 * workgroup array `dst` with row stride inner + PAD.
 */
/**
 * How one operand tile is cut into per-invocation chunks (a vec4 or a scalar each) and the named
 * staging registers that hold them, of element type `el` — shared by operand() and operand2().
 */
function stagingChunks(name: string, outer: number, inner: number, threads: number, vec: boolean, el: "f32" | "f16", words = 0) {
  const per = words || (vec ? 4 : 1);
  const chunks = (outer * inner) / per;
  const n = Math.ceil(chunks / threads);
  const T = words ? `vec${words / 2}<u32>` : vec ? `vec4<${el}>` : el;
  const regs = range(n).map((i) => `${name}${i}`);
  return { per, chunks, n, full: chunks % threads === 0, rowChunks: inner / per, T, regs, decl: regs.map((r) => `var ${r}: ${T};`).join(" ") };
}

function operand(name: string, src: string, dst: string, outer: number, inner: number, threads: number, vec: boolean,
  origin: { outer: string; inner: string }, lim: { outer: string; inner: string }, ld: string, base: string) {
  const { per, chunks, n, full, rowChunks, T, regs, decl } = stagingChunks(name, outer, inner, threads, vec, "f32");
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
 * Staging code for one operand tile of a double-buffered (stages 2) kernel: as operand(), but the
 * registers hold f16 — converted once at the fetch, so an f16 operand is copied as it is and an
 * f32 one is rounded there, with half the registers an f32 hold takes — each invocation's row and
 * column in the tile are computed once (`setup`), and `store(buf)` writes into the stage buffer
 * that starts at half `buf` of `dst`.
 */
function operand2(name: string, src: string, dst: string, outer: number, inner: number, threads: number, vec: boolean, inType: "f32" | "f16",
  origin: { outer: string; inner: string }, lim: { outer: string; inner: string }, ld: string, base: string, words: 0 | 4 | 8 = 0) {
  const { per, chunks, n, full, rowChunks, T, regs, decl } = stagingChunks(name, outer, inner, threads, vec, "f16", words);
  // Chunk i of this invocation is tid + i·threads; where threads is a multiple of a row's chunks it
  // sits `i · threads / rowChunks` rows below the first, in the same column.
  const hoist = threads % rowChunks === 0;
  const setup = hoist ? `let ${name}Ro = tid / ${rowChunks}u; let ${name}Co = (tid % ${rowChunks}u) * ${per}u;` : "";
  const place = (i: number) => hoist
    ? `let ro = ${name}Ro + ${i * (threads / rowChunks)}u; let co = ${name}Co;`
    : `let ch = tid + ${i * threads}u; let ro = ch / ${rowChunks}u; let co = (ch % ${rowChunks}u) * ${per}u;`;
  const inChunk = (i: number) => full ? "" : hoist ? ` && ro < ${outer}u` : ` && ch < ${chunks}u`;
  const read = (idx: string) => words ? `${src}[(${idx}) / ${words}u]` : vec
    ? (inType === "f16" ? `${src}[(${idx}) / 4u]` : `vec4<f16>(${src}[(${idx}) / 4u])`)
    : (inType === "f16" ? `${src}[${idx}]` : `f16(${src}[${idx}])`);
  const fetch = (k: string) => range(n).map((i) => [
    `{ ${place(i)}`,
    `  let go = ${origin.outer.replace("$k", k)} + ro; let gi = ${origin.inner.replace("$k", k)} + co;`,
    `  if (go < ${lim.outer} && gi < ${lim.inner}${inChunk(i)}) { ${regs[i]} = ${read(`${base} + go * ${ld} + gi`)}; } else { ${regs[i]} = ${T}(); } }`,
  ].join("\n    ")).join("\n    ");
  const store = (buf: string) => range(n).map((i) => {
    const guard = full ? "" : hoist ? `if (ro < ${outer}u) ` : `if (ch < ${chunks}u) `;
    // Packed words: word w holds halves 2w (low 16 bits) and 2w + 1, as the bytes lie in memory.
    const body = words ? range(words / 2).map((w) => `{ let h = bitcast<vec2<f16>>(${regs[i]}.${XYZW[w]}); ${dst}[s + ${2 * w}u] = h.x; ${dst}[s + ${2 * w + 1}u] = h.y; }`).join(" ")
      : vec ? range(4).map((e) => `${dst}[s + ${e}u] = ${regs[i]}.${XYZW[e]};`).join(" ") : `${dst}[s] = ${regs[i]};`;
    return `{ ${place(i)} let s = ${buf} + ro * ${inner + PAD}u + co;\n      ${guard}{ ${body} } }`;
  }).join("\n    ");
  return { setup, decl, fetch, store };
}

/**
 * Staging of a 2:4 B (rows col0 … col0 + bn, the K slice at k): each row's mask word and its 16
 * values are fetched into named registers — in the K loop's prefetch slot, like a dense operand,
 * so their latency hides behind the previous slice's products — and decoded into 32 halves of Bs
 * (row stride ld, zeros where pruned) at the store. Params [6] = mask words per row, [7] = values
 * per row. Rows past N and columns past K decode to zeros (their mask bits are 0, and values past
 * the row read as 0).
 *
 * Two layouts. `vec4` (values per row a multiple of 4, i.e. K % 8 = 0): four invocations per row,
 * each reading one vec4 of values (two groups of 4 columns) and its byte of the mask word, so the
 * four cover a row's 16 values in one coalesced read and a warp reads 8 rows with 8 instructions'
 * worth of lines. The scalar layout (any K) gives each invocation a whole row or a half of one, and
 * each of its loads touches as many lines as the warp has lanes: in the H200's mixed-f16 step this
 * spmm ran about 1.5× the time of the dense product of the same shape (bench/README.md).
 * The decode is branch-free: the kept values sit in slots 0, 1 in column order, so column j of a
 * group is 0 if its bit is clear, else slot 0 when no lower bit is set and slot 1 otherwise.
 */
function sparseOperand(bn: number, threads: number, ld: number, I: "f32" | "f16", vec4: boolean) {
  if (vec4) return sparseOperandVec4(bn, threads, ld, I);
  const P = Math.min(8, 2 ** Math.floor(Math.log2(Math.max(1, threads / bn))));
  const G = 8 / P, items = bn * P, n = Math.ceil(items / threads), full = items % threads === 0;
  const place = (i: number) => `let it = tid + ${i * threads}u; let e = it / ${P}u; let p = it % ${P}u;`;
  const vals = (i: number) => range(2 * G).map((j) => `sv${i}_${j}`);
  const decl = range(n).map((i) => `var sw${i}: u32; ${vals(i).map((r) => `var ${r}: ${I};`).join(" ")}`).join("\n  ");
  const fetch = (k: string) => range(n).map((i) => `{ ${place(i)}
      let nn = col0 + e; let w = ${k} / 32u; let wpr = pu(6u); let vpr = pu(7u);
      sw${i} = 0u; ${vals(i).map((r) => `${r} = ${I}(0.0);`).join(" ")}
      if (nn < N && w < wpr${full ? "" : ` && it < ${items}u`}) {
        sw${i} = mbits[nn * wpr + w]${G < 8 ? ` >> (p * ${4 * G}u)` : ""};
        let s0 = w * 16u + p * ${2 * G}u; let vb = nn * vpr + s0;
        ${vals(i).map((r, j) => `if (s0 + ${j}u < vpr) { ${r} = B[vb + ${j}u]; }`).join("\n        ")}
      } }`).join("\n    ");
  const store = range(n).map((i) => `{ ${place(i)} let dst = e * ${ld}u + p * ${4 * G}u;
      ${full ? "" : `if (it < ${items}u) `}{
${range(G).map((g) => `        ${decodeGroup(`(sw${i} >> ${g * 4}u) & 15u`, `sv${i}_${2 * g}`, `sv${i}_${2 * g + 1}`, `dst + ${g * 4}u`)}`).join("\n")}
      } }`).join("\n    ");
  return { decl, fetch, store };
}

/** One group's 4 halves into Bs[at …]: nibble `nib`, kept values `v0`, `v1` (slots 0, 1 in column order). */
function decodeGroup(nib: string, v0: string, v1: string, at: string): string {
  return `{ let b = ${nib}; let h0 = f16(${v0}); let h1 = f16(${v1}); let z = f16(0.0);
          Bs[${at}] = select(z, h0, (b & 1u) != 0u);
          Bs[${at} + 1u] = select(z, select(h0, h1, (b & 1u) != 0u), (b & 2u) != 0u);
          Bs[${at} + 2u] = select(z, select(h0, h1, (b & 3u) != 0u), (b & 4u) != 0u);
          Bs[${at} + 3u] = select(z, select(h0, h1, (b & 7u) != 0u), (b & 8u) != 0u); }`;
}

/** sparseOperand's vec4 layout: B bound as array<vec4<I>>, four invocations per row of the tile. */
function sparseOperandVec4(bn: number, threads: number, ld: number, I: "f32" | "f16") {
  const items = bn * 4, n = Math.ceil(items / threads), full = items % threads === 0;
  // item i of this invocation: row tid/4 + i·threads/4 of the tile, part tid % 4 (threads is a multiple of 4)
  const place = (i: number) => `let e = (tid / 4u) + ${(i * threads) / 4}u; let p = tid % 4u;`;
  const decl = range(n).map((i) => `var sw${i}: u32; var sv${i}: vec4<${I}>;`).join(" ");
  const fetch = (k: string) => range(n).map((i) => `{ ${place(i)}
      let nn = col0 + e; let w = ${k} / 32u; let wpr = pu(6u); let vpr = pu(7u); let s0 = w * 16u + p * 4u;
      sw${i} = 0u; sv${i} = vec4<${I}>();
      if (nn < N && w < wpr && s0 < vpr${full ? "" : ` && e < ${bn}u`}) {
        sw${i} = mbits[nn * wpr + w] >> (p * 8u);
        sv${i} = B[(nn * vpr + s0) / 4u];
      } }`).join("\n    ");
  const store = range(n).map((i) => `{ ${place(i)} let dst = e * ${ld}u + p * 8u;
      ${full ? "" : `if (e < ${bn}u) `}{
        ${decodeGroup(`sw${i} & 15u`, `sv${i}.x`, `sv${i}.y`, "dst")}
        ${decodeGroup(`(sw${i} >> 4u) & 15u`, `sv${i}.z`, `sv${i}.w`, "dst + 4u")}
      } }`).join("\n    ");
  return { decl, fetch, store };
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
  const stages = v.stages ?? 1;
  // packedF16: halves per u32-word load of A and B (0: read as their element type).
  const words: 0 | 4 | 8 = v.packedF16 && I === "f16" && v.vec && (stages === 2 || v.f16Staging) && !v.sparseB ? (v.vec8 ? 8 : 4) : 0;
  const aType = words ? `array<vec${words / 2}<u32>>` : v.vec ? `array<vec4<${I}>>` : `array<${I}>`;
  if (v.sparseB && (!v.transB || bk !== 32 || stages !== 1)) throw new Error(`sgMatmulKernel: a 2:4 B needs transB, bk 32 and one stage (got transB ${v.transB}, bk ${bk}, stages ${stages})`);
  const g = bindGroup([
    { name: "A", access: "read", type: aType },
    { name: "B", access: "read", type: v.sparseB ? (v.sparseVec4 ? `array<vec4<${I}>>` : `array<${I}>`) : aType },
    v.sparseB && { name: "mbits", access: "read", type: "array<u32>" },
    { name: "C", access: "rw", type: v.vec ? `array<vec4<${O}>>` : `array<${O}>` },
    v.bias && { name: "bias", access: "read", type: `array<${I}>` },
    v.aux && { name: "Z", access: "rw", type: v.vec ? `array<vec4<${O}>>` : `array<${O}>` },
  ]);

  // op(A) tile: bm rows (m) × bk (k). Stored [m][k] (A row-major) or [k][m] (A stored transposed).
  const A1 = v.transA
    ? operand("ra", "A", "As", bk, bm, threads, v.vec, { outer: "$k", inner: "row0" }, { outer: "K", inner: "M" }, "M", "aBase")
    : operand("ra", "A", "As", bm, bk, threads, v.vec, { outer: "row0", inner: "$k" }, { outer: "M", inner: "K" }, "K", "aBase");
  // op(B) tile: bk (k) × bn (n). Stored [k][n] (B row-major) or [n][k] (B stored transposed).
  const dense = v.transB
    ? operand("rb", "B", "Bs", bn, bk, threads, v.vec, { outer: "col0", inner: "$k" }, { outer: "N", inner: "K" }, "K", "bBase")
    : operand("rb", "B", "Bs", bk, bn, threads, v.vec, { outer: "$k", inner: "col0" }, { outer: "K", inner: "N" }, "N", "bBase");
  const B1 = v.sparseB ? sparseOperand(bn, threads, bk + PAD, I, !!v.sparseVec4) : dense;
  const { aSize, bSize, lda, ldb } = sgStageLayout(v, v.transA, v.transB);
  // Double-buffered staging (stages 2): the same tiles, f16 registers, stores into either buffer.
  const A2 = v.transA
    ? operand2("ra", "A", "As", bk, bm, threads, v.vec, I, { outer: "$k", inner: "row0" }, { outer: "K", inner: "M" }, "M", "aBase", words)
    : operand2("ra", "A", "As", bm, bk, threads, v.vec, I, { outer: "row0", inner: "$k" }, { outer: "M", inner: "K" }, "K", "aBase", words);
  const B2 = v.transB
    ? operand2("rb", "B", "Bs", bn, bk, threads, v.vec, I, { outer: "col0", inner: "$k" }, { outer: "N", inner: "K" }, "K", "bBase", words)
    : operand2("rb", "B", "Bs", bk, bn, threads, v.vec, I, { outer: "$k", inner: "col0" }, { outer: "K", inner: "N" }, "N", "bBase", words);
  if (v.f16Staging && (stages !== 1 || v.sparseB || !v.prefetch)) throw new Error("sgMatmulKernel: f16Staging is for one-stage dense kernels with prefetch");
  // The one-stage kernel's staging: as it was, or (f16Staging) the two-stage kernels' into stage 0.
  const A = v.f16Staging ? { ...A2, store: A2.store("0u") } : A1;
  const B = v.f16Staging ? { ...B2, store: B2.store("0u") } : B1;
  // Offsets (in halves) of the 16×16 operand matrices of this subgroup at k step kk (with two
  // stages, within the stage buffer at aCur / bCur: derived from k0, uniform like the rest).
  const a0 = stages === 2 ? "aCur + " : "", b0 = stages === 2 ? "bCur + " : "";
  const offA = (i: number, kk: number) => a0 + (v.transA ? `${kk * lda}u + sr + ${i * 16}u` : `(sr + ${i * 16}u) * ${lda}u + ${kk}u`);
  const offB = (j: number, kk: number) => b0 + (v.transB ? `(sc + ${j * 16}u) * ${ldb}u + ${kk}u` : `${kk * ldb}u + sc + ${j * 16}u`);
  const L = SG_LEFT, R = SG_RIGHT, Res = SG_RESULT;
  const accs = range(v.fm).flatMap((i) => range(v.fn).map((j) => `c${i}_${j}`));
  const load = (T: string, src: string, off: string, colMajor: boolean, ld: number) => sgLoad(v.sgSyntax, T, src, off, colMajor, `${ld}u`);
  const store = (c: string) => sgStore(v.sgSyntax, "&scratch", "sg * 256u", c, false, "16u");
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
var<workgroup> As: array<f16, ${stages * aSize}>;
var<workgroup> Bs: array<f16, ${stages * bSize}>;
var<workgroup> scratch: array<f32, ${256 * nsub}>;

${GELU4_FN}

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
#if ${stages === 1}
#if ${!!v.f16Staging}
  ${A2.setup}
  ${B2.setup}
#endif
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
#else
  ${A2.setup}
  ${B2.setup}
  ${A2.decl}
  ${B2.decl}
  ${accs.map((c) => `var ${c} = ${Res}();`).join(" ")}
  ${A2.fetch("0u")}
  ${B2.fetch("0u")}
  ${A2.store("0u")}
  ${B2.store("0u")}
  for (var k0 = 0u; k0 < K; k0 = k0 + ${bk}u) {
    // The one barrier of a K step: stage cur is complete, and every subgroup is done reading the
    // other stage (the previous step's products), which this step's stores overwrite.
    workgroupBarrier();
    let cur = (k0 / ${bk}u) % 2u;
    let aCur = cur * ${aSize}u; let bCur = cur * ${bSize}u;
    let more = k0 + ${bk}u < K;
    if (more) {
      let kn = k0 + ${bk}u;
      ${A2.fetch("kn")}
      ${B2.fetch("kn")}
    }
${mma}
    if (more) {
      let aNxt = ${aSize}u - aCur; let bNxt = ${bSize}u - bCur;
      ${A2.store("aNxt")}
      ${B2.store("bNxt")}
    }
  }
#endif
${rounds}
}
`;
  return { code, group: g };
});
