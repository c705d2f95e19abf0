// The matrix-unit (subgroup-matrix) matmul against the float64 reference. These cases need the
// adapter feature chromium-experimental-subgroup-matrix (with shader-f16): no software adapter
// has it, so they skip here and run on a GPU — in Node on NVIDIA, with Dawn made by
// create(dawnFlags()) (test/node/suite.test.ts does that when WEBSLOPE_DAWN_FLAGS=matrix).
// Operands are rounded to f16 on their way into the matrix units, so the reference multiplies the
// f16-rounded inputs in float64: what remains is f32 accumulation error.
import * as ws from "../../src/index.ts";
import { fromHalfBits, toHalfBits } from "../../src/dtype.ts";
import { SG_TILES, type SgTileName } from "../../shaders/matmul-subgroup.wgsl.ts";
import { getMatrixUnitRule, setMatmulSplitK, setMatmulTile, setMatrixUnitRule } from "../../src/ops/matmul.ts";
import { chooseMatrixUnitTile } from "../../src/ops/raw/precision.ts";
import { TILE_ORDER } from "../../src/gpu/matrix-units.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, geluTanh, map, matmul as cpuMatmul, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { applyMask, nmMask } from "../ref/sparse.ts";

const NEEDS = { needs: ["chromium-experimental-subgroup-matrix" as const, "shader-f16" as const] };
const toF16 = (a: Arr): Arr => map((v) => fromHalfBits(toHalfBits(v)), a);

function stored(M: number, K: number, N: number, tA: boolean, tB: boolean, batch: number[] = []): [number[], number[]] {
  return [[...batch, ...(tA ? [K, M] : [M, K])], [...batch, ...(tB ? [N, K] : [K, N])]];
}

async function check(M: number, K: number, N: number, o: { tA?: boolean; tB?: boolean; bias?: boolean; gelu?: boolean; tile?: SgTileName; dtype?: "f32" | "f16"; batch?: number[]; seed?: number }): Promise<void> {
  const tA = !!o.tA, tB = !!o.tB, seed = o.seed ?? 1, dtype = o.dtype ?? "f32";
  const [sa, sb] = stored(M, K, N, tA, tB, o.batch);
  const a = toF16(randArr(sa, seed)), b = toF16(randArr(sb, seed + 1)), bias = o.bias ? toF16(randArr([N], seed + 2)) : null;
  let e = cpuMatmul(a, b, tA, tB);
  if (bias) e = map((v, c) => v + c, e, bias);
  if (o.gelu) e = map(geluTanh, e);
  setMatmulTile(o.tile ?? null);
  const prev = ws.getFloat32MatmulPrecision();
  ws.setFloat32MatmulPrecision("medium");
  try {
    const f = (x: Arr) => dtype === "f16" ? ws.tensor(Float32Array.from(x.data), x.shape, { dtype: "f16" }) : fromArr(x);
    const y = ws.tidy(() => ws.matmul(f(a), f(b), { transA: tA, transB: tB, bias: bias ? f(bias) : null, activation: o.gelu ? "gelu" : "none" }));
    assertEquals([...y.shape], e.shape);
    const tol = dtype === "f16" ? 2e-3 : 1e-5;
    assertClose(await y.toArray(), e.data, { rtol: Math.max(tol, 1e-4), atol: 1e-4 * Math.sqrt(K) + tol, msg: `${o.tile ?? "auto"} ${dtype} ${M}x${K}x${N}${tA ? " Aᵀ" : ""}${tB ? " Bᵀ" : ""}${bias ? " +bias" : ""}${o.gelu ? " gelu" : ""}` });
    y.dispose();
  } finally {
    setMatmulTile(null);
    ws.setFloat32MatmulPrecision(prev);
  }
}

test("matrix units: init() found compiling subgroup-matrix kernels", () => {
  const mu = ws.gpu().matrixUnits;
  assert(mu.tiles.length > 0, `no matrix-unit kernel compiled: ${mu.note}`);
  console.log(`matrix units: tiles ${mu.tiles.join(", ")}, subgroup size ${mu.subgroupSize}; ${mu.note}`);
}, NEEDS);

test("matrix units: every tile at odd shapes, vec4 and scalar; the preferred tile in all four transposes, bias + gelu", async () => {
  // Each (tile, transposes, epilogue, vec4) is a pipeline to compile (~0.5 s each under Dawn on the
  // H200): the first tile, which the chooser prefers, gets every combination; the others the two
  // layouts a linear layer uses, at a vec4 and a scalar shape.
  const tiles = ws.gpu().matrixUnits.tiles;
  for (const [t, tile] of tiles.entries()) {
    let i = 0;
    const shapes = t === 0 ? [[130, 72, 136], [67, 33, 129], [200, 300, 100], [17, 1, 5]] as const : [[130, 72, 136], [67, 33, 129]] as const;
    const trans = t === 0 ? [[false, false], [false, true], [true, false], [true, true]] as const : [[false, false], [false, true]] as const;
    for (const [M, K, N] of shapes) {
      for (const [tA, tB] of trans) {
        await check(M, K, N, { tA, tB, bias: i % 2 === 0, gelu: i % 3 === 0, tile, seed: 7 * i++ });
      }
    }
  }
}, NEEDS);

test("matrix units: batched products, f16 tensors, and the automatic choice at a large shape", async () => {
  await check(64, 96, 80, { batch: [3], tB: true, seed: 3 });
  await check(133, 64, 72, { dtype: "f16", bias: true, gelu: true, seed: 4 });
  await check(512, 256, 384, { tB: true, bias: true, seed: 5 });
  const used = ws.gpu().pipelines.all().some((p) => p.kernel.key.startsWith("matmul_sgmat"));
  assert(used, "the automatic choice never picked a matrix-unit kernel");
}, NEEDS);

test("matrix units: split-K weight-gradient products (Aᵀ·B in K slices, f32 partials) at odd shapes, f16 and f32, every tile", async () => {
  await check(36, 2048, 52, { tA: true, dtype: "f16", seed: 11 });  // automatic: 4 slices of 512
  await check(37, 2048, 50, { tA: true, seed: 12 });
  setMatmulSplitK(3);
  try {
    for (const [i, tile] of ws.gpu().matrixUnits.tiles.entries()) await check(130, 24 * 9, 136, { tA: true, tile, dtype: i % 2 ? "f16" : "f32", seed: 13 + i });
  } finally {
    setMatmulSplitK(null);
  }
}, NEEDS);

test("matrix units: \"highest\" precision keeps f32 products off them; bad precision is refused", async () => {
  assertEquals(ws.getFloat32MatmulPrecision(), "highest");
  assert(Object.keys(SG_TILES).length > 0);
  let threw = false;
  try { ws.setFloat32MatmulPrecision("low" as never); } catch (e) { threw = e instanceof ws.WebslopeError && /highest/.test((e as Error).message); }
  assert(threw, "setFloat32MatmulPrecision(\"low\") must throw a typed error naming the choices");
  assertEquals(ws.getFloat32MatmulPrecision(), "highest");
});

test("matrix units: 2:4 spmm decoded to f16 tiles on subgroup matrices, odd shapes, bias", async () => {
  const { compress24, spmm } = await import("../../src/sparse/index.ts");
  const prev = ws.getFloat32MatmulPrecision();
  ws.setFloat32MatmulPrecision("medium");
  try {
    let seed = 40;
    for (const [M, K, dOut] of [[300, 96, 200], [129, 200, 72], [64, 36, 130], [1024, 256, 384]] as const) {
      const x = toF16(randArr([M, K], seed++)), w = toF16(randArr([dOut, K], seed++)), b = toF16(randArr([dOut], seed++));
      const mask = nmMask(w, 2, 4);
      let e = cpuMatmul(x, applyMask(w, mask), false, true);
      e = map((v, c) => v + c, e, b);
      const S = compress24(fromArr(w));
      const y = spmm(fromArr(x), S, fromArr(b));
      assertClose(await y.toArray(), e.data, { rtol: 1e-4, atol: 1e-4 * Math.sqrt(K) + 1e-5, msg: `spmm ${M}x${K}x${dOut}` });
      for (const t of [y, S.values, S.meta]) t.dispose();
    }
    const used = ws.gpu().pipelines.all().some((p) => p.kernel.key.startsWith("matmul_sgmat") && p.kernel.key.includes("\"sparseB\":true"));
    assert(used, "no 2:4 product ran on the matrix units");
  } finally {
    ws.setFloat32MatmulPrecision(prev);
  }
}, NEEDS);

test("matrix-unit tile chooser: the fill bound skips tiles mostly padding; grid bound; bad rules refused (pure logic, every adapter)", () => {
  const all = TILE_ORDER; // init()'s preference order, as if every tile compiled
  const prev = ws.getFloat32MatmulPrecision();
  ws.setFloat32MatmulPrecision("medium");
  try {
    // A 256×64 attention product over 156 heads: 128×256 covers it at a quarter useful work.
    setMatrixUnitRule({ bigGrid: 192, minFill: 0 });
    assertEquals(chooseMatrixUnitTile(256, 64, 128, 156, "f16", all), "128x256s8");
    setMatrixUnitRule({ bigGrid: 192, minFill: 0.85 });
    assertEquals(chooseMatrixUnitTile(256, 64, 128, 156, "f16", all), "128x64s4");
    // 16384×384: 128×256 is 3/4 useful, 256×128 is whole and has 64·3 = 192 workgroups.
    assertEquals(chooseMatrixUnitTile(16384, 384, 1536, 1, "f32", all), "256x128s8");
    // N = 2048 square: 128 workgroups of 128×256 are under the 192 bound, over a bound of 128.
    assertEquals(chooseMatrixUnitTile(2048, 2048, 2048, 1, "f16", all), "128x128s4");
    setMatrixUnitRule({ bigGrid: 128, minFill: 0.85 });
    assertEquals(chooseMatrixUnitTile(2048, 2048, 2048, 1, "f16", all), "128x256s8");
    // f16 operands with contiguous axes in multiples of 8: the packedF16 tiles first, by the same rule
    // (128x256s8p at 4096; at 2048 its 128 workgroups are under 192, 128x128s8d2p's 256 are not).
    setMatrixUnitRule(null);
    assertEquals(chooseMatrixUnitTile(4096, 4096, 4096, 1, "f16", all, true), "128x256s8p");
    assertEquals(chooseMatrixUnitTile(2048, 2048, 2048, 1, "f16", all, true), "128x128s8d2p");
    assertEquals(chooseMatrixUnitTile(16384, 384, 1536, 1, "f16", all, true), "256x128s8p");
    // Never for f32 operands, nor where a layout cannot take 8 halves a load, nor when they did not compile.
    assertEquals(chooseMatrixUnitTile(4096, 4096, 4096, 1, "f32", all, true), "128x256s8");
    assertEquals(chooseMatrixUnitTile(4096, 4096, 4096, 1, "f16", all, false), "128x256s8");
    assertEquals(chooseMatrixUnitTile(4096, 4096, 4096, 1, "f16", all.filter((t) => !t.endsWith("p")), true), "128x256s8");
    setMatrixUnitRule({ bigGrid: 128, minFill: 0.85 });
    // Nothing fills the GPU: the small general tile.
    assertEquals(chooseMatrixUnitTile(64, 64, 4096, 1, "f16", all), "64x64s4");
    // "highest" keeps f32 off the matrix units whatever the rule.
    ws.setFloat32MatmulPrecision("highest");
    assertEquals(chooseMatrixUnitTile(4096, 4096, 4096, 1, "f32", all), null);
    for (const bad of [{ bigGrid: 0, minFill: 0.5 }, { bigGrid: 1.5, minFill: 0 }, { bigGrid: 192, minFill: 1.5 }, { bigGrid: 192, minFill: Number.NaN }]) {
      let err: unknown = null;
      try { setMatrixUnitRule(bad); } catch (e) { err = e; }
      assert(err instanceof ws.ValueError && /setMatrixUnitRule/.test(String(err)), `rule ${JSON.stringify(bad)} refused with a ValueError, got ${String(err)}`);
    }
    // A refused rule changed nothing; null restores the measured default (grid 192, fill 0.85).
    assertEquals(getMatrixUnitRule().bigGrid, 128);
    setMatrixUnitRule(null);
    assertEquals({ ...getMatrixUnitRule() }, { bigGrid: 192, minFill: 0.85 });
  } finally {
    setMatrixUnitRule(null);
    ws.setFloat32MatmulPrecision(prev);
  }
});
