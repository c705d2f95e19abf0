// Matmul against the float64 reference: random shapes with every edge (K = 1, M = 1, N = 1,
// non-multiples of every tile), the four transpose combinations, batching with broadcast, the
// bias + activation epilogues, every kernel variant the front-end can pick (tile shapes × vec4 /
// scalar loads × f32 / f16), finite-difference gradients, and the typed shape / dtype errors.
import * as ws from "../../src/index.ts";
import { fromHalfBits, toHalfBits } from "../../src/dtype.ts";
import { GEMM_TILES as MATMUL_TILES, type GemmTileName as MatmulTileName } from "../../shaders/gemm.ts";
import { matmulSharedBytes } from "../../shaders/matmul.wgsl.ts";
import { chooseMatmulTile, matmulSplitK, setMatmulSplitK, setMatmulTile } from "../../src/ops/matmul.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, geluTanh, map, matmul as cpuMatmul, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";

type Act = "none" | "relu" | "gelu";

/** Stored shapes of A and B for op(A) = M×K and op(B) = K×N, with batch prefixes. */
function stored(M: number, K: number, N: number, tA: boolean, tB: boolean, ba: number[] = [], bb: number[] = []): [number[], number[]] {
  return [[...ba, ...(tA ? [K, M] : [M, K])], [...bb, ...(tB ? [N, K] : [K, N])]];
}

/** The reference act(op(A)·op(B) + bias). */
function ref(a: Arr, b: Arr, tA: boolean, tB: boolean, bias: Arr | null = null, act: Act = "none"): Arr {
  let y = cpuMatmul(a, b, tA, tB);
  if (bias) y = map((v, c) => v + c, y, bias);
  if (act === "relu") y = map((v) => Math.max(v, 0), y);
  if (act === "gelu") y = map(geluTanh, y);
  return y;
}

/** Runs one product on the GPU and compares it with the reference. */
async function check(sa: number[], sb: number[], o: { tA?: boolean; tB?: boolean; bias?: boolean; act?: Act; seed?: number; rtol?: number; atol?: number; tile?: MatmulTileName; msg?: string } = {}): Promise<void> {
  const tA = !!o.tA, tB = !!o.tB, act = o.act ?? "none", seed = o.seed ?? 1;
  const a = randArr(sa, seed), b = randArr(sb, seed + 1000);
  const N = tB ? sb.at(-2)! : sb.at(-1)!;
  const bias = o.bias ? randArr([N], seed + 2000) : null;
  setMatmulTile(o.tile ?? null);
  try {
    const y = ws.tidy(() => ws.matmul(fromArr(a), fromArr(b), { transA: tA, transB: tB, bias: bias ? fromArr(bias) : null, activation: act }));
    const e = ref(a, b, tA, tB, bias, act);
    assertEquals([...y.shape], e.shape, `shape ${o.msg ?? ""}`);
    const K = tA ? sa.at(-2)! : sa.at(-1)!;
    // f32 accumulation over K terms of size ≤ 1: error grows like sqrt(K)·eps
    assertClose(await y.toArray(), e.data, { rtol: o.rtol ?? 1e-5, atol: o.atol ?? 2e-6 * Math.sqrt(K + 1), msg: `${o.msg ?? ""} A${JSON.stringify(sa)}${tA ? "ᵀ" : ""} B${JSON.stringify(sb)}${tB ? "ᵀ" : ""} ${act}${bias ? "+bias" : ""}` });
    y.dispose();
  } finally {
    setMatmulTile(null);
  }
}

// [M, K, N]: edges of every tile (64, 128), K = 1, vectors, odd sizes, vec4-friendly and not.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 1], [3, 1, 5], [1, 16, 9], [9, 16, 1], [2, 3, 4], [4, 4, 4], [5, 17, 3],
  [16, 16, 16], [63, 15, 65], [64, 16, 64], [65, 17, 63], [67, 33, 129], [128, 4, 128],
  [129, 31, 67], [31, 100, 33], [100, 8, 12], [12, 260, 8], [7, 64, 130], [130, 1, 66],
  [1, 129, 257], [257, 13, 1], [40, 36, 44], [33, 48, 96],
];

test(`matmul: forward at ${SHAPES.length} shapes (K = 1, M = 1, N = 1, non-multiples of every tile)`, async () => {
  for (const [i, [M, K, N]] of SHAPES.entries()) {
    const [sa, sb] = stored(M, K, N, false, false);
    await check(sa, sb, { seed: 10 + i, msg: `${M}x${K}x${N}` });
  }
});

test("matmul: all four transA / transB combinations, vec4 and scalar paths", async () => {
  for (const [M, K, N] of [[67, 33, 129], [36, 20, 44], [1, 8, 12], [13, 4, 1], [64, 64, 64]] as const) {
    for (const tA of [false, true]) for (const tB of [false, true]) {
      const [sa, sb] = stored(M, K, N, tA, tB);
      await check(sa, sb, { tA, tB, seed: M + K + N, msg: `${M}x${K}x${N}` });
    }
  }
});

// Every tile shape (the front-end picks 64x64, 128x64 and 128x128k8; 128x128 is a benchmark
// option), at sizes that cross the tile's edge in M, N and K. The load code of an operand depends
// on the tile, on vec4 vs scalar, and on whether K is its slow or fast axis: the four
// (transA, transB) pairs below give each operand both axes in both modes; 64x64 (also the tile of
// every small product in the other tests) gets all eight, and the epilogues.
for (const tile of Object.keys(MATMUL_TILES) as MatmulTileName[]) {
  test(`matmul: tile ${tile}, vec4 and scalar loads, K as slow and fast axis, ragged edges`, async () => {
    const all = tile === "64x64";
    const vecPairs: [boolean, boolean][] = all ? [[false, false], [false, true], [true, false], [true, true]] : [[false, false], [true, true]];
    const scalarPairs: [boolean, boolean][] = all ? vecPairs : [[false, true], [true, false]];
    const runs: [[number, number, number], [boolean, boolean][]][] = [[[136, 40, 132], vecPairs], [[131, 37, 133], scalarPairs]];
    for (const [[M, K, N], pairs] of runs) {
      for (const [tA, tB] of pairs) {
        await check(...stored(M, K, N, tA, tB), { tA, tB, tile, seed: M + K, msg: `${tile} ${M}x${K}x${N}` });
      }
    }
    if (all) {
      await check(...stored(132, 24, 136, false, false), { tile, bias: true, act: "gelu", msg: tile });
      await check(...stored(129, 9, 131, false, true), { tB: true, tile, bias: true, act: "relu", msg: tile });
    }
  });
}

test("matmul: the tile choice follows the output size and the workgroup-memory limit", () => {
  assertEquals(chooseMatmulTile(64, 64, 1, 32768), "64x64");
  assertEquals(chooseMatmulTile(300, 300, 1, 32768), "64x64");
  assertEquals(chooseMatmulTile(2048, 2048, 1, 32768), "128x128k8");
  assertEquals(chooseMatmulTile(8192, 8192, 1, 32768), "128x128k8");
  assertEquals(chooseMatmulTile(2048, 768, 1, 32768), "128x64");
  assertEquals(chooseMatmulTile(512, 512, 64, 32768), "128x128k8");
  assertEquals(chooseMatmulTile(100, 8192, 1, 32768), "64x64");
  // every tile the front-end picks fits WebGPU's default 16 KiB of workgroup memory
  for (const t of ["64x64", "128x64", "128x128k8"] as const) {
    for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
      assert(matmulSharedBytes(MATMUL_TILES[t], tA, tB) <= 16384, `${t} fits 16 KiB`);
    }
  }
  // a limit below a tile's need makes the choice fall back to a smaller tile
  assertEquals(chooseMatmulTile(4096, 4096, 1, 8192), "64x64");
  assert(matmulSharedBytes(MATMUL_TILES["128x128"], false, false) > 16384, "the padded 128x128x16 tile needs > 16 KiB");
});

test("matmul: batched 3-D and 4-D with broadcast batch axes", async () => {
  const M = 5, K = 7, N = 6;
  await check([2, 1, M, K], [3, K, N], { msg: "[2,1,M,K]x[3,K,N]" });
  await check([4, M, K], [4, K, N], { msg: "[4,M,K]x[4,K,N]" });
  await check([M, K], [3, K, N], { msg: "[M,K]x[3,K,N]" });
  await check([2, 3, 8, 12], [1, 3, 12, 16], { msg: "4-D vec4" });
  await check([3, 1, K, M], [2, N, K], { tA: true, tB: true, msg: "broadcast, both transposed" });
  await check([2, 3, 4, 20, 8], [3, 1, 8, 20], { msg: "5-D" });
});

test("matmul: a batched A times a 2-D B (folded into one product), also transposed", async () => {
  await check([2, 3, 5, 7], [7, 9], { msg: "fold" });
  await check([2, 3, 5, 8], [12, 8], { tB: true, bias: true, act: "relu", msg: "fold, Bᵀ, bias" });
  await check([4, 7, 5], [7, 9], { tA: true, msg: "Aᵀ batched × 2-D" });
});

test("matmul: bias and relu / gelu epilogues, vec4 and scalar stores", async () => {
  for (const act of ["none", "relu", "gelu"] as const) {
    await check([37, 21], [21, 23], { bias: true, act, msg: "scalar" });
    await check([36, 20], [20, 24], { bias: true, act, msg: "vec4" });
    await check([9, 16], [16, 12], { act, msg: "no bias" });
  }
});

test("matmul: backward of A, B and bias matches finite differences (plain and transposed)", async () => {
  for (const tA of [false, true]) for (const tB of [false, true]) {
    const [sa, sb] = stored(3, 5, 4, tA, tB);
    await gradCheck({
      inputs: [randArr(sa, 1), randArr(sb, 2), randArr([4], 3)],
      gpu: ([a, b, c]) => ws.matmul(a!, b!, { transA: tA, transB: tB, bias: c! }),
      ref: ([a, b, c]) => ref(a!, b!, tA, tB, c!),
    });
  }
});

test("matmul: backward through the relu / gelu epilogue (saved pre-activation), vec4 and scalar", async () => {
  for (const act of ["relu", "gelu"] as const) {
    for (const [M, K, N, tB] of [[3, 5, 3, false], [4, 4, 8, true]] as const) {
      // keep relu's finite differences away from its kink: a large bias margin for half the columns
      const bias = act === "relu" ? map((v) => (v > 0 ? 2 : -2), randArr([N], 7)) : randArr([N], 7);
      const [sa, sb] = stored(M, K, N, false, tB);
      await gradCheck({
        inputs: [randArr(sa, 5, -0.3, 0.3), randArr(sb, 6, -0.3, 0.3), bias],
        gpu: ([a, b, c]) => ws.matmul(a!, b!, { transB: tB, bias: c!, activation: act }),
        ref: ([a, b, c]) => ref(a!, b!, false, tB, c!, act),
      });
    }
  }
});

test("matmul: backward with broadcast batches sums the gradient over the broadcast axes", async () => {
  await gradCheck({
    inputs: [randArr([2, 1, 3, 4], 11), randArr([3, 4, 2], 12)],
    gpu: ([a, b]) => ws.matmul(a!, b!),
    ref: ([a, b]) => cpuMatmul(a!, b!),
  });
  await gradCheck({
    inputs: [randArr([2, 3, 4], 13), randArr([5, 4], 14), randArr([5], 15)],
    gpu: ([a, b, c]) => ws.matmul(a!, b!, { transB: true, bias: c!, activation: "gelu" }),
    ref: ([a, b, c]) => ref(a!, b!, false, true, c!, "gelu"),
  });
  await gradCheck({
    inputs: [randArr([4, 3], 16), randArr([2, 4, 3], 17)],
    gpu: ([a, b]) => ws.matmul(a!, b!, { transA: true }),
    ref: ([a, b]) => cpuMatmul(a!, b!, true),
  });
});

/** Rounds to the nearest f16 (what the GPU sees of an f16 input). */
const toF16 = (a: Arr): Arr => map((v) => fromHalfBits(toHalfBits(v)), a);

test("matmul: split-K weight-gradient products (Aᵀ·B, K cut into slices summed in f32) match the reference, forced, automatic and in backward", async () => {
  // The rule: only Aᵀ·B unbatched without epilogue; a power of two dividing K, slices of ≥ 512 rows.
  assertEquals(matmulSplitK(37, 50, 2048, 1, true, false, false), 4, "2048 rows, 1 workgroup: 4 slices of 512");
  assertEquals(matmulSplitK(37, 50, 2048, 1, false, false, false), 1, "A not K-major: no split");
  assertEquals(matmulSplitK(37, 50, 2048, 2, true, false, false), 1, "batched: no split");
  assertEquals(matmulSplitK(37, 50, 2048, 1, true, false, true), 1, "epilogue: no split");
  assertEquals(matmulSplitK(1024, 1024, 16384, 1, true, false, false), 1, "a full grid: no split");
  assertEquals(matmulSplitK(384, 1152, 16384, 1, true, false, false), 4, "small config's qkv weight gradient");
  assertEquals(matmulSplitK(37, 50, 1030, 1, true, false, false), 2, "1030 = 2·515: 4 slices do not divide it, so 2");
  // Automatic (K = 2048 → 4 slices), vec4 and scalar, and forced splits of odd slice lengths.
  await check(...stored(36, 2048, 52, true, false), { tA: true, msg: "auto split vec4" });
  await check(...stored(37, 2048, 50, true, false), { tA: true, msg: "auto split scalar" });
  for (const sp of [2, 3, 8]) {
    setMatmulSplitK(sp);
    try { await check(...stored(65, 24 * 7, 67, true, false), { tA: true, msg: `split ${sp}` }); } finally { setMatmulSplitK(null); }
  }
  // Backward of x·Wᵀ: dW = dyᵀ·x is the split product.
  assertEquals(matmulSplitK(5, 3, 1024, 1, true, false, false), 2, "the backward below splits dW");
  await gradCheck({
    inputs: [randArr([1024, 5], 7), randArr([3, 5], 8)], wrt: [1],
    gpu: ([x, w]) => ws.matmul(x!, w!, { transB: true }),
    ref: ([x, w]) => ref(x!, w!, false, true),
  });
  let threw = false;
  try { setMatmulSplitK(0); } catch (e) { threw = e instanceof ws.WebslopeError && /setMatmulSplitK/.test((e as Error).message); }
  assert(threw, "setMatmulSplitK(0) throws a typed error naming the op");
});

test("matmul: f16 operands (f32 accumulation) against the reference, vec4 and scalar, bias + gelu", async () => {
  const shapes: [number, number, number, boolean, boolean][] = [
    [36, 40, 44, false, false], [37, 41, 43, false, false], [20, 24, 28, true, true], [131, 37, 133, true, false], [1, 9, 1, false, true],
  ];
  for (const [i, [M, K, N, tA, tB]] of shapes.entries()) {
    const [sa, sb] = stored(M, K, N, tA, tB);
    const a = toF16(randArr(sa, 40 + i)), b = toF16(randArr(sb, 50 + i)), bias = toF16(randArr([N], 60 + i));
    const act: Act = i % 2 ? "gelu" : "none";
    const y = ws.tidy(() => {
      const f = (x: Arr) => ws.tensor(Float32Array.from(x.data), x.shape, { dtype: "f16" });
      return ws.matmul(f(a), f(b), { transA: tA, transB: tB, bias: f(bias), activation: act });
    });
    assertEquals(y.dtype, "f16");
    const e = ref(a, b, tA, tB, bias, act);
    // inputs are exact in f16; the error is the final rounding to f16 (2^-11 relative) plus the f32 sum
    assertClose(await y.toArray(), e.data, { rtol: 2e-3, atol: 2e-3, msg: `f16 ${M}x${K}x${N}` });
    y.dispose();
  }
  for (const tile of Object.keys(MATMUL_TILES) as MatmulTileName[]) {
    setMatmulTile(tile);
    try {
      const a = toF16(randArr([130, 20], 70)), b = toF16(randArr([20, 132], 71));
      const f = (x: Arr) => ws.tensor(Float32Array.from(x.data), x.shape, { dtype: "f16" });
      const y = ws.tidy(() => ws.matmul(f(a), f(b)));
      assertClose(await y.toArray(), cpuMatmul(a, b).data, { rtol: 2e-3, atol: 2e-3, msg: `f16 ${tile}` });
      y.dispose();
    } finally {
      setMatmulTile(null);
    }
  }
}, { needs: ["shader-f16"] });

test("matmul: shape errors name the op and both shapes", async () => {
  const a = ws.zeros([3, 4]), b = ws.zeros([5, 6]);
  await assertThrows(() => ws.matmul(a, b), ws.ShapeError, "matmul", "[3, 4]", "[5, 6]");
  await assertThrows(() => ws.matmul(a, b, { transA: true }), ws.ShapeError, "matmul", "[3, 4]", "[5, 6]");
  const v = ws.zeros([4]);
  await assertThrows(() => ws.matmul(v, ws.zeros([4, 2])), ws.ShapeError, "matmul", "[4]");
  await assertThrows(() => ws.matmul(ws.zeros([2, 4]), v), ws.ShapeError, "matmul", "[4]");
  const w = ws.zeros([4, 6]);
  await assertThrows(() => ws.matmul(a, w, { bias: ws.zeros([4]) }), ws.ShapeError, "matmul", "bias", "[4]", "[6]");
  await assertThrows(() => ws.matmul(a, w, { bias: ws.zeros([1, 6]) }), ws.ShapeError, "matmul", "bias", "[1, 6]");
  await assertThrows(() => ws.matmul(ws.zeros([2, 3, 4]), ws.zeros([3, 4, 5])), ws.ShapeError, "matmul", "[2, 3, 4]", "[3, 4, 5]");
  for (const t of [a, b, v, w]) t.dispose();
});

test("matmul: dtype errors (f32 × i32, i32 × i32, f32 bias on f32 is fine)", async () => {
  const a = ws.zeros([2, 3]);
  const i = ws.tensor(new Int32Array(6), [3, 2]);
  await assertThrows(() => ws.matmul(a, i), ws.DTypeError, "matmul", "f32", "i32");
  await assertThrows(() => ws.matmul(ws.tensor(new Int32Array(6), [2, 3]), i), ws.DTypeError, "matmul", "i32");
  await assertThrows(() => ws.matmul(a, ws.zeros([3, 2]), { bias: ws.tensor(new Int32Array(2), [2]) }), ws.DTypeError, "matmul");
  const y = ws.matmul(a, ws.ones([3, 2]), { bias: ws.ones([2]) });
  assertClose(await y.toArray(), [1, 1, 1, 1]);
});
