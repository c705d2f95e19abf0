// The matrix-unit kernels' own logic on adapters without the feature: the generated WGSL of each
// SG_TILES variant with its subgroup-matrix builtins emulated per invocation
// (test/lib/sgmat-emulate.ts), dispatched like matmul's launcher does and checked against the
// float64 reference of the f16-rounded inputs — staging (both stages of a double-buffered tile,
// odd and even K-step counts, partial slices), transposes, bounds at odd shapes, batches, bias,
// GELU and the pre-activation. The structure checks beside them need no GPU: workgroup memory
// as declared against sgSharedBytes, barriers per K step, uniform and 16-byte-aligned matrix
// offsets (Tint refuses non-uniform ones; Vulkan wants the alignment). The real builtins are
// checked on the H200 by matmul-units.ts.
import * as ws from "../../src/index.ts";
import { fromHalfBits, toHalfBits } from "../../src/dtype.ts";
import { Tensor } from "../../src/tensor.ts";
import { gpu } from "../../src/gpu/context.ts";
import { sgSharedBytesMax } from "../../src/gpu/matrix-units.ts";
import {
  SG_BK, SG_TILES, type SgMatmulVariant, type SgTile, type SgTileName, sgMatmulKernel, sgSharedBytes, sgStageLayout, sgTileExtent,
} from "../../shaders/matmul-subgroup.wgsl.ts";
import { operandWidths } from "../../shaders/gemm.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { emulateSubgroupMatrices, emulatedParams, findCalls } from "../lib/sgmat-emulate.ts";
import { type Arr, geluTanh, map, matmul as cpuMatmul, randArr } from "../ref/cpu.ts";
import { applyMask, nmMask } from "../ref/sparse.ts";

const H200_WORKGROUP_BYTES = 49152;
const toF16 = (a: Arr): Arr => map((v) => fromHalfBits(toHalfBits(v)), a);
const tileNames = Object.keys(SG_TILES) as SgTileName[];
const tileOf = (n: SgTileName) => SG_TILES[n] as SgTile;

function variant(name: SgTileName, o: Partial<SgMatmulVariant> = {}): SgMatmulVariant {
  const t = tileOf(name);
  return {
    ...t, transA: false, transB: true, bias: true, act: "gelu", aux: false, inType: "f32", outType: "f32", vec: true,
    subgroupSize: 32, prefetch: t.prefetch ?? true, sgSyntax: "majorness", ...o,
  };
}

/** Every layout a tile is built in: transposes × vec4/scalar × f32/f16 in and out, the 2:4 B where it applies, split-K's f16→f32. */
function* layouts(name: SgTileName): Generator<SgMatmulVariant> {
  const t = tileOf(name);
  for (const transA of [false, true]) for (const transB of [false, true]) for (const vec of [false, true]) for (const io of ["f32", "f16"] as const) {
    yield variant(name, { transA, transB, vec, inType: io, outType: io, aux: vec, act: vec ? "gelu" : "relu" });
    if (t.packedF16 && vec && io === "f16") yield variant(name, { transA, transB, vec, vec8: true, inType: io, outType: io, aux: true, act: "gelu" });
    if (transB && (t.bk ?? SG_BK) === 32 && (t.stages ?? 1) === 1 && !t.f16Staging) {
      yield variant(name, { transA, transB, vec, inType: io, outType: io, sparseB: true, act: "none" });
      if (vec) yield variant(name, { transA, transB, vec, inType: io, outType: io, sparseB: true, sparseVec4: true, act: "none" });
    }
  }
  // split-K's partials: f16 in, f32 out, Aᵀ·B
  for (const vec of [false, true]) yield variant(name, { transA: true, transB: false, vec, inType: "f16", outType: "f32", bias: false, act: "none" });
}

/** The text of the K loop: from `for (var k0` to its closing brace. */
function kLoop(code: string): string {
  const s = code.indexOf("for (var k0");
  assert(s >= 0, "the kernel has a K loop");
  let d = 0;
  for (let i = code.indexOf("{", s); i < code.length; i++) {
    if (code[i] === "{") d++;
    else if (code[i] === "}" && --d === 0) return code.slice(s, i + 1);
  }
  throw new Error("unbalanced K loop");
}

/** Identifiers an expression depends on, through the kernel's let/var definitions (all of them, conservatively). */
function dependsOn(kernel: string, expr: string): Set<string> {
  const code = kernel.replace(/\/\/[^\n]*/g, "");
  const defs = new Map<string, string[]>();
  for (const m of code.matchAll(/\b(?:let|var) (\w+)(?:\s*:\s*[\w<>, ]+)?\s*=\s*([^;{}]+);/g)) defs.set(m[1]!, [...(defs.get(m[1]!) ?? []), m[2]!]);
  // assignments, the for loops' increments among them
  for (const m of code.matchAll(/(?:^|[;{(]\s*)(\w+) = ([^;{}]+?)(?:;|\)\s*\{)/gm)) defs.set(m[1]!, [...(defs.get(m[1]!) ?? []), m[2]!]);
  const seen = new Set<string>();
  const todo = [...expr.matchAll(/\b[A-Za-z_]\w*\b/g)].map((m) => m[0]);
  while (todo.length) {
    const id = todo.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const d of defs.get(id) ?? []) todo.push(...[...d.matchAll(/\b[A-Za-z_]\w*\b/g)].map((m) => m[0]));
  }
  return seen;
}

test("matrix-unit kernels' generated code: workgroup memory as sgSharedBytes counts it and within the H200's, one barrier per K step with two stages, uniform 16-byte-aligned matrix offsets", () => {
  let checked = 0;
  for (const name of tileNames) {
    const t = tileOf(name);
    const stages = t.stages ?? 1;
    const bk = t.bk ?? SG_BK;
    assert(sgSharedBytesMax(t) <= H200_WORKGROUP_BYTES, `${name}: ${sgSharedBytesMax(t)} bytes of workgroup memory, over the H200's ${H200_WORKGROUP_BYTES}`);
    for (const v of layouts(name)) {
      const what = `${name} ${JSON.stringify({ tA: v.transA, tB: v.transB, vec: v.vec, io: v.inType, sparse: !!v.sparseB })}`;
      const code = sgMatmulKernel(v).code;
      // Workgroup memory: what the kernel declares is what the front-end and the probe count.
      const declared = [...code.matchAll(/var<workgroup> \w+: array<(f16|f32), (\d+)>;/g)].reduce((s, m) => s + (m[1] === "f16" ? 2 : 4) * Number(m[2]), 0);
      assertEquals(declared, sgSharedBytes(t, v.transA, v.transB), `${what}: declared workgroup bytes`);
      // Barriers in the K loop: two (before the stores, before the products) with one stage, one with two.
      const loop = kLoop(code);
      assertEquals(loop.match(/workgroupBarrier\(\)/g)?.length ?? 0, stages === 2 ? 1 : 2, `${what}: barriers per K step`);
      const mmas = findCalls(loop, "subgroupMatrixMultiplyAccumulate");
      assertEquals(mmas.length, v.fm * v.fn * (bk / 16), `${what}: products per K step`);
      if (stages === 2) {
        // Global reads before the products, workgroup stores after them (their latency hidden).
        const firstMma = mmas[0]!.start, lastMma = mmas.at(-1)!.end;
        const reads = [...loop.matchAll(/\b[AB]\[/g)].map((m) => m.index!), stores = [...loop.matchAll(/\b[AB]s\[[^\]]+\] =/g)].map((m) => m.index!);
        assert(reads.length > 0 && reads.every((i) => i < firstMma), `${what}: the next slice is fetched before this slice's products`);
        assert(stores.length > 0 && stores.every((i) => i > lastMma), `${what}: the next slice is stored after this slice's products`);
      }
      // Matrix offsets and strides: subgroup-uniform (never from the invocation index) and 16-byte aligned.
      const { aSize, bSize, lda, ldb } = sgStageLayout(t, v.transA, v.transB);
      for (const x of [aSize, bSize, lda, ldb]) assertEquals(x % 8, 0, `${what}: stage sizes and strides in whole 16-byte units (${x} halves)`);
      const calls = [...findCalls(code, "subgroupMatrixLoad"), ...findCalls(code, "subgroupMatrixStore")];
      assertEquals(findCalls(code, "subgroupMatrixLoad").length, (v.fm + v.fn) * (bk / 16), `${what}: matrix loads`);
      for (const c of calls) {
        assert(/^&(As|Bs|scratch)$/.test(c.args[0]!), `${what}: ${c.fn} reads workgroup memory (${c.args[0]})`);
        assertEquals(c.template.at(-1)!.endsWith("_major"), true, `${what}: ${c.fn} spells majorness as a template argument`);
        const deps = dependsOn(code, `${c.args[1]} ${c.args.at(-1)}`);
        for (const bad of ["tid", "lid", "ch", "ro", "co"]) assert(!deps.has(bad), `${what}: ${c.fn} offset ${c.args[1]} depends on ${bad}`);
      }
      checked++;
    }
  }
  console.log(`checked the generated code of ${checked} matrix-unit kernel layouts`);
});

interface Case { M: number; K: number; N: number; tA?: boolean; tB?: boolean; bias?: boolean; gelu?: boolean; aux?: boolean; dtype?: "f32" | "f16"; out?: "f32" | "f16"; batch?: number; seed?: number }

/** One product through the emulated kernel of `tile`, against float64. */
async function emulated(name: SgTileName, c: Case): Promise<void> {
  const tA = !!c.tA, tB = !!c.tB, dtype = c.dtype ?? "f32", outType = c.out ?? dtype, nb = c.batch ?? 1, seed = c.seed ?? 1;
  const { M, K, N } = c;
  const bt = nb > 1 ? [nb] : [];
  const a = toF16(randArr([...bt, ...(tA ? [K, M] : [M, K])], seed)), b = toF16(randArr([...bt, ...(tB ? [N, K] : [K, N])], seed + 1));
  const bias = c.bias ? toF16(randArr([N], seed + 2)) : null;
  let z = cpuMatmul(a, b, tA, tB);
  if (bias) z = map((v, x) => v + x, z, bias);
  const e = c.gelu ? map(geluTanh, z) : z;
  const { vec, vec8 } = operandWidths(M, N, K, tA, tB); // as src/ops/matmul.ts decides it
  const t = tileOf(name);
  const k = sgMatmulKernel({ ...variant(name), transA: tA, transB: tB, bias: !!bias, act: c.gelu ? "gelu" : "none", aux: !!c.aux, inType: dtype, outType, vec, vec8 });
  const kernel = { ...k, key: `emulated:${k.key}`, code: emulateSubgroupMatrices(k.code, 32) };
  const mk = (x: Arr) => ws.tensor(Float32Array.from(x.data), x.shape, { dtype });
  const A = mk(a), B = mk(b), Bias = bias ? mk(bias) : null;
  const C = Tensor.empty([...bt, M, N], outType, "matmul"), Z = c.aux ? Tensor.empty([...bt, M, N], outType, "matmul") : null;
  const bufs = [A.buffer("matmul"), B.buffer("matmul"), C.buffer("matmul")];
  if (Bias) bufs.push(Bias.buffer("matmul"));
  if (Z) bufs.push(Z.buffer("matmul"));
  const { bm, bn } = sgTileExtent(t);
  gpu().launcher.dispatch(kernel, bufs, [Math.ceil(N / bn), Math.ceil(M / bm), nb], emulatedParams([M, N, K, nb > 1 ? M * K : 0, nb > 1 ? K * N : 0, M * N], 32));
  const tol = outType === "f16" ? 2e-3 : 1e-5;
  const msg = `${name} emulated ${dtype}→${outType} ${nb > 1 ? `${nb}×` : ""}${M}x${K}x${N}${tA ? " Aᵀ" : ""}${tB ? " Bᵀ" : ""}${bias ? " +bias" : ""}${c.gelu ? " gelu" : ""}`;
  assertClose(await C.toArray(), e.data, { rtol: Math.max(tol, 1e-4), atol: 1e-4 * Math.sqrt(K) + tol, msg });
  if (Z) assertClose(await Z.toArray(), z.data, { rtol: Math.max(tol, 1e-4), atol: 1e-4 * Math.sqrt(K) + tol, msg: `${msg} (pre-activation)` });
  for (const x of [A, B, Bias, C, Z]) x?.dispose();
}

// Each emulated layout is a pipeline of its own, ~5 s to compile under lavapipe (later shapes of
// the same layout are fast): Deno only, for CI time, and a few layouts per tile.
const EMU = { needs: ["shader-f16" as const], runtimes: ["deno" as const] };
const twoStage = tileNames.filter((n) => tileOf(n).stages === 2 || tileOf(n).f16Staging);

test("matrix-unit kernels, emulated (Deno only: compile time): every double-buffered or f16-staged tile, row-major A and Bᵀ (vec4, f32, bias + gelu) and Aᵀ with B (scalar, f16, pre-activation; vec4 f16→f32 batched as split-K), odd and even K-step counts, batched", async () => {
  assert(twoStage.length > 1, "SG_TILES has double-buffered and f16-staged tiles");
  for (const [t, name] of twoStage.entries()) {
    const bk = tileOf(name).bk ?? SG_BK;
    // K = 72: 3 stages of 32 / 5 of 16 (the last partial); 300: ~10 / 19; one exact stage; 2·bk: an even count.
    for (const K of [72, 300, bk, 2 * bk]) await emulated(name, { M: 132, K, N: 136, tB: true, bias: true, gelu: true, seed: 10 * t + K });
    await emulated(name, { M: 67, K: 72, N: 68, tB: true, bias: true, gelu: true, batch: 2, seed: 5 });
    for (const [M, K, N] of [[67, 33, 129], [17, 1, 5], [150, 50, 260]] as const) await emulated(name, { M, K, N, tA: true, aux: true, dtype: "f16", seed: 20 * t + K });
    // The split-K weight-gradient layout: Aᵀ·B over a batch of K slices, f16 in, f32 partials out (vec4).
    await emulated(name, { M: 132, K: 72, N: 136, tA: true, batch: 3, dtype: "f16", out: "f32", seed: 30 + t });
    // packedF16 tiles: f16 operands read as u32 words, 8 halves a load (contiguous axes multiples of 8; batched, partial tiles) and 4 (K = 300; M = 132 with Aᵀ).
    if (tileOf(name).packedF16) {
      await emulated(name, { M: 67, K: 72, N: 136, tB: true, bias: true, gelu: true, dtype: "f16", batch: 2, seed: 40 + t });
      await emulated(name, { M: 136, K: 300, N: 68, dtype: "f16", out: "f32", seed: 50 + t });
      await emulated(name, { M: 132, K: 40, N: 264, tA: true, aux: true, dtype: "f16", seed: 60 + t });
      // The split-K weight-gradient layout as the chooser now sends it here: Aᵀ·B, 8 halves a load, f32 partials.
      await emulated(name, { M: 136, K: 72, N: 136, tA: true, batch: 3, dtype: "f16", out: "f32", seed: 70 + t });
    }
  }
}, EMU);

test("matrix-unit kernels, emulated (Deno only: compile time): the emulation itself, on 128x128s4 as it passes on the H200", async () => {
  await emulated("128x128s4", { M: 67, K: 72, N: 70, tB: true, bias: true, gelu: true, seed: 3 });
}, EMU);

/** One 2:4 spmm (Y = X·Sᵀ + b, S compressed) through the emulated sparse-B kernel of `tile`, against the masked-dense float64 product. */
async function emulatedSparse(name: SgTileName, c: { M: number; K: number; N: number; dtype: "f32" | "f16"; bias: boolean; seed: number; vec4?: boolean; gelu?: boolean }): Promise<void> {
  const { compress24 } = await import("../../src/sparse/index.ts");
  const { M, K, N, dtype } = c;
  const x = toF16(randArr([M, K], c.seed)), w = toF16(randArr([N, K], c.seed + 1)), b = c.bias ? toF16(randArr([N], c.seed + 2)) : null;
  let e = cpuMatmul(x, applyMask(w, nmMask(w, 2, 4)), false, true);
  if (b) e = map((v, bb) => v + bb, e, b);
  const mk = (a: Arr) => ws.tensor(Float32Array.from(a.data), a.shape, { dtype });
  const X = mk(x), W = mk(w), Bias = b ? mk(b) : null;
  const S = compress24(W);
  const vec = K % 4 === 0 && N % 4 === 0;
  const t = tileOf(name);
  const k = sgMatmulKernel({ ...variant(name), transA: false, transB: true, bias: !!b, act: c.gelu ? "gelu" : "none", aux: !!c.gelu, inType: dtype, outType: dtype, vec, sparseB: true, sparseVec4: c.vec4 });
  const kernel = { ...k, key: `emulated:${k.key}`, code: emulateSubgroupMatrices(k.code, 32) };
  const C = Tensor.empty([M, N], dtype, "matmul");
  const bufs = [X.buffer("matmul"), S.values.buffer("matmul"), S.meta.buffer("matmul"), C.buffer("matmul")];
  if (Bias) bufs.push(Bias.buffer("matmul"));
  const Z = c.gelu ? Tensor.empty([M, N], dtype, "matmul") : null;
  if (Z) bufs.push(Z.buffer("matmul"));
  const { bm, bn } = sgTileExtent(t);
  gpu().launcher.dispatch(kernel, bufs, [Math.ceil(N / bn), Math.ceil(M / bm), 1], emulatedParams([M, N, K, 0, 0, 0, Math.ceil(K / 32), K / 2], 32));
  const tol = dtype === "f16" ? 2e-3 : 1e-5;
  const msg = `${name} emulated 2:4${c.vec4 ? " vec4" : ""} ${dtype} ${M}x${K}x${N}${b ? " +bias" : ""}${c.gelu ? " gelu" : ""}`;
  const tolerance = { rtol: Math.max(tol, 1e-4), atol: 1e-4 * Math.sqrt(K) + tol };
  if (Z) {
    assertClose(await Z.toArray(), e.data, { ...tolerance, msg: `${msg}: the pre-activation` });
    assertClose(await C.toArray(), e.data.map(geluTanh), { ...tolerance, msg });
  } else {
    assertClose(await C.toArray(), e.data, { ...tolerance, msg });
  }
  for (const a of [X, W, Bias, C, Z, S.values, S.meta]) a?.dispose();
}

test("matrix-unit kernels, emulated (Deno only: compile time): the 2:4 B staged through prefetch registers — a row per invocation (128x256s8), rows in two parts (256x128s8, f16, scalar), two rows per invocation without prefetch (64x64s1); partial K slices, rows past N", async () => {
  await emulatedSparse("128x256s8", { M: 132, K: 100, N: 136, dtype: "f32", bias: true, seed: 61 });
  await emulatedSparse("128x256s8", { M: 40, K: 36, N: 300, dtype: "f32", bias: true, seed: 62 });
  await emulatedSparse("256x128s8", { M: 260, K: 260, N: 70, dtype: "f16", bias: true, seed: 63 });
  await emulatedSparse("64x64s1", { M: 67, K: 68, N: 65, dtype: "f32", bias: true, seed: 64 });
}, EMU);

test("matrix-unit kernels, emulated (Deno only: compile time): the 2:4 B read as vec4s, four invocations per row (K % 8 = 0) — 128x256s8, 256x128s8 and 128x128s4 (f16), 64x64s1 (eight rows per invocation); partial K slices, rows past N, no bias, GELU + pre-activation epilogue", async () => {
  await emulatedSparse("128x256s8", { M: 132, K: 72, N: 136, dtype: "f32", bias: true, seed: 71, vec4: true });
  await emulatedSparse("256x128s8", { M: 260, K: 264, N: 70, dtype: "f16", bias: true, seed: 72, vec4: true });
  await emulatedSparse("128x128s4", { M: 130, K: 40, N: 132, dtype: "f16", bias: false, seed: 73, vec4: true });
  await emulatedSparse("64x64s1", { M: 67, K: 104, N: 65, dtype: "f32", bias: true, seed: 74, vec4: true });
  // sparseLinear's fused activation: GELU in the epilogue, the pre-activation written beside it
  await emulatedSparse("128x128s4", { M: 70, K: 72, N: 68, dtype: "f16", bias: true, seed: 75, vec4: true, gelu: true });
}, EMU);
