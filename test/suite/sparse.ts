// Test cases for sparse (see test/lib/harness.ts); registered on import by test/suite/index.ts.
// SLoPe's sparse core against a float64 masked-dense simulation (test/ref/sparse.ts): N:M
// compression and its mask rules, the double-pruned transpose and its refresh, spmm (tiled and
// small-n paths), sddmm, and the sparseLinear autograd op.
import * as ws from "../../src/index.ts";
import {
  compress24, compressVector, decompress24, doublePrune, type LanesVariant, refreshTranspose, repruneTranspose, sddmm, sddmmVector, SDDMM_LANES, setSddmmMethod,
  setSpmmKernel, Sparse24, sparseLinear, spmm, spmmVector, type SddmmLanesVariant, type SddmmOptions, type SpmmOptions, type VectorTile,
} from "../../src/sparse/index.ts";
import { maskedLinear } from "../../src/sparse/masked-linear.ts";
import { LANES_VARIANTS } from "../../shaders/spmm-lanes.wgsl.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, arr, map, matmul, randArr, reduce } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { sddmmPlan } from "../../src/sparse/sddmm.ts";
import { sddmmVectorPlan } from "../../src/sparse/vector24.ts";
import { lanesExtent } from "../../shaders/sddmm-lanes.wgsl.ts";
import { applyMask, decodeMeta, expand, gather, groupCounts, nmMask, slopeMasks, spareMetaBits, transpose2d, vectorMask } from "../ref/sparse.ts";

/** Random values rounded to f32, so the reference ranks exactly what the GPU sees. */
const rand32 = (shape: number[], seed: number, lo = -1, hi = 1): Arr => map(Math.fround, randArr(shape, seed, lo, hi));

const i32 = async (t: ws.Tensor) => (await t.toArray()) as Int32Array;
const f32 = async (t: ws.Tensor) => (await t.toArray()) as Float32Array;

const PATTERNS: [string, number, number][] = [["2:4", 2, 4], ["1:2", 1, 2], ["2:8", 2, 8], ["4:8", 4, 8], ["2:16", 2, 16]];

for (const [pattern, n, m] of PATTERNS) {
  test(`compress24 ${pattern}: exactly N kept per group, top-N by magnitude, values in column order, round trip`, async () => {
    for (const [rows, cols, seed] of [[5, 64, 1], [3, 32 + 2 * m, 2], [33, 96, 3]] as const) {
      const w = rand32([rows, cols], seed);
      const s = compress24(fromArr(w), { pattern: pattern as "2:4" });
      assertEquals(s.values.shape, [rows, (cols * n) / m]);
      assertEquals(s.meta.shape, [rows, Math.ceil(cols / 32)]);
      const meta = await i32(s.meta);
      const mask = decodeMeta(meta, rows, cols);
      assertEquals(spareMetaBits(meta, rows, cols), 0, "bits past cols");
      assert(groupCounts(mask, rows, cols, m).every((k) => k === n), `every group keeps exactly ${n}`);
      assertEquals(Array.from(mask), Array.from(nmMask(w, n, m)), `mask ${rows}×${cols}`);
      const { dense } = expand(await f32(s.values), mask, rows, cols, n, m);
      assertEquals(Array.from(dense.data), Array.from(applyMask(w, mask).data), "values in increasing column order");
      const d = decompress24(s);
      assertEquals(Array.from(await f32(d)), Array.from(applyMask(w, mask).data), "decompress(compress(W)) = M_R ⊙ W");
      d.dispose(); s.dispose();
    }
  });
}

test("compress24: ties keep the lower index (zeros keep 0,1; equal magnitudes of either sign)", async () => {
  const rows = [
    [0, 0, 0, 0, 1, -1, 1, -1, 0.5, 2, 2, 0.5, -3, 3, 3, 3],
    [0, 0, 0, 7, 5, 0, 0, 5, -2, 2, -2, 2, 1, 2, 3, 4],
  ].map((r) => [...r, ...r]); // 32 columns
  const w = arr([2, 32], rows.flat());
  const s = compress24(fromArr(w));
  const mask = decodeMeta(await i32(s.meta), 2, 32);
  const groups = (r: number) => Array.from({ length: 4 }, (_, g) => Array.from(mask.slice(r * 32 + g * 4, r * 32 + g * 4 + 4)).join(""));
  assertEquals(groups(0), ["1100", "1100", "0110", "1100"]);
  assertEquals(groups(1), ["1001", "1001", "1100", "0011"]);
  assertEquals(Array.from(await f32(s.values)).slice(0, 8), [0, 0, 1, -1, 2, 2, -3, 3]);
  s.dispose();
});

test("compress24: f16 weights compress and round trip", async () => {
  const w = rand32([4, 64], 7);
  const wh = fromArr(w).to("f16");
  const ref = map(Math.fround, await ws.tidy(() => wh.to("f32")).toArray().then((a) => arr([4, 64], a)));
  const s = compress24(wh);
  assertEquals(s.values.dtype, "f16");
  const mask = decodeMeta(await i32(s.meta), 4, 64);
  assertEquals(Array.from(mask), Array.from(nmMask(ref, 2, 4)));
  assertEquals(Array.from(await f32(decompress24(s))), Array.from(applyMask(ref, mask).data));
  s.dispose(); wh.dispose();
}, { needs: ["shader-f16"] });

// ---- the double-pruned transpose ----------------------------------------------------------------

for (const [pattern, n, m] of PATTERNS.slice(0, 4)) {
  test(`doublePrune ${pattern}: meta(W_RC^T) ⊆ meta(W_R), at most N per column group, equals the masked-dense W_RC^T`, async () => {
    for (const [dOut, dIn, seed] of [[32, 64, 11], [24, 40, 12], [64, 96, 13]] as const) {
      if (dOut % m || dIn % m) continue;
      const w = rand32([dOut, dIn], seed);
      const s = compress24(fromArr(w), { pattern: pattern as "2:4" });
      const t = doublePrune(s);
      assertEquals([t.rows, t.cols, t.n, t.m], [dIn, dOut, n, m]);
      const metaT = await i32(t.meta);
      assertEquals(spareMetaBits(metaT, dIn, dOut), 0, "bits past d_out");
      const maskT = decodeMeta(metaT, dIn, dOut);
      const mR = decodeMeta(await i32(s.meta), dOut, dIn);
      const ref = slopeMasks(w, n, m);
      assertEquals(Array.from(maskT), Array.from(ref.mRCt), `M_RC ${dOut}×${dIn}`);
      for (let o = 0; o < dOut; o++) for (let i = 0; i < dIn; i++) if (maskT[i * dOut + o]) assert(mR[o * dIn + i], `(${o}, ${i}) kept in W_RC but not in W_R`);
      assert(groupCounts(maskT, dIn, dOut, m).every((k) => k <= n), "at most N per group");
      const { dense, badSlots } = expand(await f32(t.values), maskT, dIn, dOut, n, m);
      assertEquals(badSlots, 0, "unused slots hold 0");
      assertEquals(Array.from(dense.data), Array.from(transpose2d(applyMask(w, ref.mRC)).data), "W_RC^T values");
      s.dispose(); t.dispose();
    }
  });
}

test("doublePrune: density of W_RC for random 2:4 weights at 1024×1024 is 0.406 ± 0.01", async () => {
  const w = ws.randn([1024, 1024], { seed: 5 });
  const s = compress24(w);
  const t = doublePrune(s);
  const metaR = await i32(s.meta), metaT = await i32(t.meta);
  const pop = (a: Int32Array) => { let c = 0; for (let x of a) { x >>>= 0; while (x) { x &= x - 1; c++; } } return c; };
  assertEquals(pop(metaR) / (1024 * 1024), 0.5, "density of W_R");
  const density = pop(metaT) / (1024 * 1024);
  assert(Math.abs(density - 0.40625) < 0.01, `density of W_RC ${density}`);
  w.dispose(); s.dispose(); t.dispose();
}, { browser: false });

test("refreshTranspose regathers W's new values at the old W_RC positions; repruneTranspose equals a fresh double prune", async () => {
  const [dOut, dIn] = [32, 64];
  const w = rand32([dOut, dIn], 21);
  const s = compress24(fromArr(w));
  const t = doublePrune(s);
  const oldMaskT = decodeMeta(await i32(t.meta), dIn, dOut);
  // an optimizer step: new values at W's fixed mask (big enough changes to move the column top-N)
  const mR = decodeMeta(await i32(s.meta), dOut, dIn);
  const w2 = rand32([dOut, dIn], 22);
  ws.noGrad(() => ws.tidy(() => {
    const nv = fromArr(arr(s.values.shape as number[], gather(w2, mR, 2, 4)));
    ws.gpu().launcher.copy(nv.buffer(), 0, s.values.buffer(), 0, nv.size * 4);
  }));
  refreshTranspose(s, t);
  assertEquals(Array.from(decodeMeta(await i32(t.meta), dIn, dOut)), Array.from(oldMaskT), "metaT unchanged by refresh");
  const w2R = applyMask(w2, mR);
  const fresh = doublePrune(s);
  const freshMaskT = decodeMeta(await i32(fresh.meta), dIn, dOut);
  assert(freshMaskT.some((v, i) => v !== oldMaskT[i]), "the new values move the double-pruned mask (test precondition)");
  const expected = gather(transpose2d(w2R), oldMaskT, 2, 4);
  assertEquals(Array.from(await f32(t.values)), Array.from(expected), "valsT = W_R'^T at the old mask");
  // the fresh double prune's values at the old mask are the same numbers wherever both keep them
  const freshDense = expand(await f32(fresh.values), freshMaskT, dIn, dOut, 2, 4).dense;
  const refreshed = expand(await f32(t.values), oldMaskT, dIn, dOut, 2, 4).dense;
  for (let k = 0; k < freshDense.data.length; k++) if (freshMaskT[k] && oldMaskT[k]) assertEquals(refreshed.data[k], freshDense.data[k]);
  repruneTranspose(s, t);
  assertEquals(Array.from(await i32(t.meta)), Array.from(await i32(fresh.meta)), "re-pruned metaT");
  assertEquals(Array.from(await f32(t.values)), Array.from(await f32(fresh.values)), "re-pruned valsT");
  assertEquals(Array.from(freshMaskT), Array.from(slopeMasks(w2R, 2, 4).mRCt), "fresh mask = masked-dense reference");
  s.dispose(); t.dispose(); fresh.dispose();
});

// ---- spmm, sddmm --------------------------------------------------------------------------------

const addBias = (y: Arr, b: Arr | null) => (b ? map((v, c) => v + c, y, b) : y);

/** Builds W (dOut × K), its compressed form and the reference masks. */
function sparseWeight(dOut: number, K: number, seed: number, n = 2, m = 4) {
  const w = rand32([dOut, K], seed);
  const s = compress24(fromArr(w), { pattern: `${n}:${m}` });
  return { w, s, mR: nmMask(w, n, m) };
}

for (const [pattern, n, m] of PATTERNS) {
  test(`spmm ${pattern}: expand, gather and small kernels equal X·(M_R⊙W)ᵀ + b at odd n, partial tiles and partial meta words`, async () => {
    const shapes: [number, number, number][] = [[1, 64, 37], [3, 96, 40], [16, 32 + m, 9], [67, 96, 70], [67, 32 + m, 33], [130, 160, 65]];
    for (const [i, [rows, K, dOut]] of shapes.entries()) {
      const { w, s, mR } = sparseWeight(dOut, K, 40 + i, n, m);
      const x = rand32([rows, K], 50 + i), b = rand32([dOut], 60 + i);
      const wR = applyMask(w, mR);
      // every kernel variant compiles separately (slow on software adapters): both tile heights
      // for 2:4, and bias on/off alternating over the shapes
      const variants: SpmmOptions[] = [{ path: "auto" }, { path: "expand", expandTile: "64x64" }, { path: "gather", tileRows: 64 }];
      if (pattern === "2:4" || pattern === "2:8") variants.push({ path: "expand", expandTile: "128x128" }, { path: "gather", tileRows: 128 });
      if (rows <= 16) variants.push({ path: "small" });
      for (const opts of variants) {
        for (const withBias of pattern === "2:4" ? [true, false] : [i % 2 === 0]) {
          const y = ws.tidy(() => spmm(fromArr(x), s, withBias ? fromArr(b) : null, opts));
          assertEquals(y.shape, [rows, dOut]);
          assertClose(await f32(y), addBias(matmul(x, wR, false, true), withBias ? b : null).data,
            { rtol: 1e-4, atol: 1e-5, msg: `${pattern} ${JSON.stringify(opts)} n=${rows} K=${K} d_out=${dOut} bias=${withBias}` });
          y.dispose();
        }
      }
      s.dispose();
    }
  });
}

test("spmm small path: long rows split over 16, 32 and 64 invocations", async () => {
  for (const [i, [rows, K]] of ([[1, 512], [4, 544], [2, 2560], [16, 2080]] as const).entries()) {
    const { w, s, mR } = sparseWeight(24, K, 70 + i);
    const x = rand32([rows, K], 80 + i);
    const y = ws.tidy(() => spmm(fromArr(x), s, null, { path: "small" }));
    assertClose(await f32(y), matmul(x, applyMask(w, mR), false, true).data, { rtol: 1e-4, atol: 3e-5, msg: `n=${rows} K=${K}` });
    y.dispose(); s.dispose();
  }
});

test("spmm decode path (2:4, ≤ 16 rows): equals X·(M_R⊙W)ᵀ + b for M = 1..16, bias on/off, one pass and split-K at K not a multiple of the split", async () => {
  // [rows, K, d_out, splits]: partial row blocks of 32, K of one vec4 up to several sub-chunks
  const cases: [number, number, number, number | undefined][] = [
    [1, 8, 5, undefined], [2, 40, 33, 1], [3, 200, 70, 2], [4, 776, 31, 3], [5, 1000, 64, undefined],
    [7, 96, 1, 4], [8, 520, 97, 5], [9, 264, 40, 2], [12, 72, 65, undefined], [13, 392, 33, 3], [16, 1032, 50, 4], [16, 64, 32, 1],
  ];
  for (const [i, [rows, K, dOut, splits]] of cases.entries()) {
    const { w, s, mR } = sparseWeight(dOut, K, 300 + i);
    const x = rand32([rows, K], 320 + i), b = rand32([dOut], 340 + i);
    const want = matmul(x, applyMask(w, mR), false, true);
    for (const withBias of [i % 2 === 0, i % 2 !== 0]) {
      const y = ws.tidy(() => spmm(fromArr(x), s, withBias ? fromArr(b) : null, { path: "decode", splits }));
      assertEquals(y.shape, [rows, dOut]);
      assertClose(await f32(y), addBias(want, withBias ? b : null).data, { rtol: 1e-4, atol: 3e-5, msg: `decode n=${rows} K=${K} d_out=${dOut} splits=${splits} bias=${withBias}` });
      y.dispose();
    }
    // "auto" takes the decode path for these shapes and agrees with the gather kernel (masked dense on the GPU)
    const [ya, yg] = ws.tidy(() => [spmm(fromArr(x), s, fromArr(b)), spmm(fromArr(x), s, fromArr(b), { path: "gather" })]);
    assertClose(await f32(ya!), await f32(yg!), { rtol: 1e-4, atol: 3e-5, msg: `auto vs gather n=${rows} K=${K}` });
    ya!.dispose(); yg!.dispose(); s.dispose();
  }
});

test("spmm decode path through a double-pruned W_RC^T (groups keeping fewer than 2) gives dY·(M_RC⊙W)", async () => {
  for (const [i, [rows, dOut, dIn]] of ([[1, 64, 40], [6, 96, 72], [16, 520, 36]] as const).entries()) {
    const { w, s } = sparseWeight(dOut, dIn, 360 + i);
    const t = doublePrune(s);
    const dY = rand32([rows, dOut], 370 + i);
    for (const splits of [1, 2]) {
      const dx = ws.tidy(() => spmm(fromArr(dY), t, null, { path: "decode", splits }));
      assertClose(await f32(dx), matmul(dY, applyMask(w, slopeMasks(w, 2, 4).mRC)).data, { rtol: 1e-4, atol: 3e-5, msg: `n=${rows} ${dOut}×${dIn} splits=${splits}` });
      dx.dispose();
    }
    s.dispose(); t.dispose();
  }
});

test("spmm decode path: typed errors for other patterns, K not a multiple of 8, over 16 rows and bad splits", async () => {
  const s24 = compress24(ws.zeros([8, 12])), s28 = compress24(ws.zeros([8, 16]), { pattern: "2:8" });
  const s16 = compress24(ws.zeros([8, 16]));
  await assertThrows(() => spmm(ws.zeros([2, 12]), s24, null, { path: "decode" }), ws.ShapeError, "multiple of 8");
  await assertThrows(() => spmm(ws.zeros([2, 16]), s28, null, { path: "decode" }), ws.ShapeError, "2:4");
  await assertThrows(() => spmm(ws.zeros([17, 16]), s16, null, { path: "decode" }), ws.ShapeError, "at most 16");
  await assertThrows(() => spmm(ws.zeros([2, 16]), s16, null, { path: "decode", splits: 0 }), ws.ShapeError, "splits");
  s24.dispose(); s28.dispose(); s16.dispose();
});

// ---- the lanes kernel (2:4, warp-uniform patterns) ----------------------------------------------

const SPMM_LANES = Object.keys(LANES_VARIANTS) as LanesVariant[];
/** Odd shapes [M, K, N]: every M ∈ {1, 17, 100, 257}, K ∈ {4, 36, 100, 260} and N ∈ {1, 7, 65, 130} four times, partial tiles and meta words. */
const LANES_SHAPES = [1, 17, 100, 257].flatMap((M, i) => [4, 36, 100, 260].map((K, j) => [M, K, [1, 7, 65, 130][(i + j) % 4]!] as const));

/**
 * Each lanes kernel takes 4–11 s to compile on SwiftShader (Node, CI) against ~0.5 s on lavapipe:
 * there every variant runs once (one compile each) on 5 shapes; Deno runs all 16, bias on and off.
 */
const lanesFull = () => ws.gpu().info.runtime === "Deno";

test("spmm lanes (2:4, every variant): equals X·(M_R⊙W)ᵀ + b (float64) and the masked-dense product, odd M, K, N, bias on/off", async () => {
  const full = lanesFull();
  for (const [i, [rows, K, dOut]] of LANES_SHAPES.entries()) {
    if (!full && ![0, 6, 11, 13, 15].includes(i)) continue; // every M, K and N: (1, 4, 1) (17, 100, 130) (100, 260, 7) (257, 36, 1) (257, 260, 65)
    const { w, s, mR } = sparseWeight(dOut, K, 600 + i);
    const x = rand32([rows, K], 620 + i), b = rand32([dOut], 640 + i);
    const want = matmul(x, applyMask(w, mR), false, true);
    const mask = arr([dOut, K], Array.from(mR));
    const dense = ws.tidy(() => maskedLinear(fromArr(x), fromArr(w), fromArr(mask), fromArr(mask), fromArr(b)));
    const oracle = await f32(dense);
    dense.dispose();
    for (const [v, variant] of SPMM_LANES.entries()) {
      // bias on for half of the variants, off for the others, swapping with the shape (Deno)
      const withBias = (v + (full ? i : 0)) % 2 === 0;
      const y = ws.tidy(() => spmm(fromArr(x), s, withBias ? fromArr(b) : null, { path: "lanes", lanesVariant: variant }));
      assertEquals(y.shape, [rows, dOut]);
      const got = await f32(y);
      const msg = `lanes ${variant} M=${rows} K=${K} N=${dOut} bias=${withBias}`;
      assertClose(got, addBias(want, withBias ? b : null).data, { rtol: 1e-4, atol: 1e-5, msg });
      if (withBias) assertClose(got, oracle, { rtol: 1e-4, atol: 1e-5, msg: `${msg} against maskedLinear` });
      y.dispose();
    }
    s.dispose();
  }
});

test("spmm lanes through a double-pruned W_RC^T (groups keeping 0 or 1) gives dY·(M_RC⊙W), every variant", async () => {
  for (const [i, [rows, dOut, dIn]] of ([[17, 36, 100], [100, 260, 7 * 4], [257, 100, 36]] as const).entries()) {
    const { w, s } = sparseWeight(dOut, dIn, 660 + i);
    const t = doublePrune(s);
    const dY = rand32([rows, dOut], 670 + i);
    const want = matmul(dY, applyMask(w, slopeMasks(w, 2, 4).mRC)).data;
    // outside Deno, the variants the case above compiled without bias
    for (const variant of lanesFull() ? SPMM_LANES : SPMM_LANES.filter((_, v) => v % 2 === 1)) {
      const dx = ws.tidy(() => spmm(fromArr(dY), t, null, { path: "lanes", lanesVariant: variant }));
      assertClose(await f32(dx), want, { rtol: 1e-4, atol: 1e-5, msg: `lanes ${variant} n=${rows} ${dOut}×${dIn}` });
      dx.dispose();
    }
    s.dispose(); t.dispose();
  }
});

test("spmm lanes in f16 (f32 accumulation), every variant, against float64 of the f16 inputs", async () => {
  const h = (a: Arr) => ws.tidy(() => fromArr(a).to("f16"));
  const back = async (t: ws.Tensor, shape: number[]) => arr(shape, await t.toArray());
  for (const [i, [rows, K, dOut]] of LANES_SHAPES.filter((_, k) => k % 3 === 0).entries()) {
    const w16 = h(rand32([dOut, K], 680 + i)), x16 = h(rand32([rows, K], 690 + i)), b16 = h(rand32([dOut], 700 + i));
    const w = await back(w16, [dOut, K]), x = await back(x16, [rows, K]), b = await back(b16, [dOut]);
    const s = compress24(w16);
    const want = matmul(x, applyMask(w, nmMask(w, 2, 4)), false, true);
    for (const [v, variant] of SPMM_LANES.entries()) {
      const withBias = v % 2 === 0; // one compile per variant (bias on/off per variant is the f32 case's)
      const y = spmm(x16, s, withBias ? b16 : null, { path: "lanes", lanesVariant: variant });
      assertEquals(y.dtype, "f16");
      assertClose(await y.toArray(), addBias(want, withBias ? b : null).data, { rtol: 2e-2, atol: 2e-2, msg: `lanes f16 ${variant} M=${rows} K=${K} N=${dOut} bias=${withBias}` });
      y.dispose();
    }
    for (const t of [w16, x16, b16]) t.dispose();
    s.dispose();
  }
}, { needs: ["shader-f16"] });

test("sparseLinear with setSpmmKernel(\"lanes\", each variant (8x4 outside Deno)): forward and dX = dY·W_RC equal the masked-dense oracle (maskedLinear) and float64", async () => {
  const [dOut, dIn] = [36, 100];
  const { w, s, mR } = sparseWeight(dOut, dIn, 710);
  const t = doublePrune(s);
  const { mRC } = slopeMasks(w, 2, 4);
  const b = rand32([dOut], 711);
  const lead = [3, 23]; // 69 rows: above the 16 of the decode path, so the override applies
  const rows = 69;
  const xa = rand32([...lead, dIn], 712), proj = rand32([...lead, dOut], 713);
  const x2 = arr([rows, dIn], xa.data), p2 = arr([rows, dOut], proj.data);
  // the oracle: the masked-dense simulation on the GPU, its forward and dX
  const xo = fromArr(xa, { requiresGrad: true });
  const yo = maskedLinear(xo, fromArr(w), fromArr(arr([dOut, dIn], Array.from(mR))), fromArr(arr([dOut, dIn], Array.from(mRC))), fromArr(b));
  ws.tidy(() => yo.mul(fromArr(proj)).sum().backward());
  const [yOracle, dxOracle] = [await f32(yo), await f32(xo.grad!)];
  xo.grad!.dispose(); xo.dispose(); yo.dispose();
  const bias = fromArr(b);
  try {
    for (const variant of lanesFull() ? SPMM_LANES : ["8x4" as const]) {
      setSpmmKernel("lanes", variant);
      const x = fromArr(xa, { requiresGrad: true });
      const y = sparseLinear(x, s, t, bias);
      assertEquals(y.shape, [...lead, dOut]);
      ws.tidy(() => y.mul(fromArr(proj)).sum().backward());
      const [gy, gx] = [await f32(y), await f32(x.grad!)];
      assertClose(gy, addBias(matmul(x2, applyMask(w, mR), false, true), b).data, { rtol: 1e-4, atol: 1e-5, msg: `${variant} forward` });
      assertClose(gy, yOracle, { rtol: 1e-4, atol: 1e-5, msg: `${variant} forward against maskedLinear` });
      assertClose(gx, matmul(p2, applyMask(w, mRC)).data, { rtol: 1e-4, atol: 1e-5, msg: `${variant} dX through W_RC` });
      assertClose(gx, dxOracle, { rtol: 1e-4, atol: 1e-5, msg: `${variant} dX against maskedLinear` });
      x.grad!.dispose(); x.dispose(); y.dispose();
    }
  } finally {
    setSpmmKernel(null);
  }
  bias.dispose(); s.dispose(); t.dispose();
});

test("spmm lanes: typed errors for another pattern, an unknown variant, and bad setSpmmKernel arguments; the override leaves other patterns alone", async () => {
  const s28 = compress24(ws.zeros([8, 16]), { pattern: "2:8" }), s24 = compress24(ws.zeros([8, 16]));
  await assertThrows(() => spmm(ws.zeros([20, 16]), s28, null, { path: "lanes" }), ws.ShapeError, "lanes", "2:4", "2:8");
  await assertThrows(() => spmm(ws.zeros([20, 16]), s24, null, { path: "lanes", lanesVariant: "16x16" as LanesVariant }), ws.ShapeError, "16x16", "8x8");
  await assertThrows(() => setSpmmKernel("fast" as "lanes"), ws.ShapeError, "setSpmmKernel", "fast");
  await assertThrows(() => setSpmmKernel("lanes", "3x3" as LanesVariant), ws.ShapeError, "3x3");
  await assertThrows(() => setSpmmKernel("expand", "8x8"), ws.ShapeError, "needs kernel");
  try {
    setSpmmKernel("lanes");
    const { w, s, mR } = sparseWeight(24, 64, 720, 2, 8);
    const x = rand32([20, 64], 721);
    const y = ws.tidy(() => spmm(fromArr(x), s)); // 2:8 under the lanes override: its usual kernel
    assertClose(await f32(y), matmul(x, applyMask(w, mR), false, true).data, { rtol: 1e-4, atol: 1e-5, msg: "2:8 under the override" });
    y.dispose(); s.dispose();
  } finally {
    setSpmmKernel(null);
  }
  s28.dispose(); s24.dispose();
});

// ---- vector-wise 2:4 -----------------------------------------------------------------------------

test("compressVector: one 2:4 mask per block of rows, top-2 of the block's summed |W| per group, values in column order, round trip", async () => {
  for (const [i, [dOut, K, block]] of ([[64, 8, 64], [70, 36, 64], [200, 104, 128], [130, 520, 64]] as const).entries()) {
    const w = rand32([dOut, K], 400 + i);
    const s = compressVector(fromArr(w), { block });
    const want = vectorMask(w, block);
    assertEquals(Array.from(decodeMeta(await i32(s.meta), dOut, K)), Array.from(want), `meta ${dOut}×${K} block ${block}`);
    assertEquals(spareMetaBits(await i32(s.meta), dOut, K), 0);
    assertClose(await f32(s.values), gather(w, want, 2, 4), { rtol: 0, atol: 0, msg: "values" });
    const d = decompress24(s);
    assertClose(await f32(d), applyMask(w, want).data, { rtol: 0, atol: 0, msg: "round trip" });
    d.dispose(); s.dispose();
  }
});

test("spmmVector and sddmmVector equal X·(M⊙W)ᵀ + b and M⊙(dYᵀX) (float64) at odd n, partial blocks and K, both tiles", async () => {
  // [rows, K, d_out, block]: K = 36 (values per row not a multiple of 4) takes scalar loads
  const shapes: [number, number, number, number][] = [[1, 8, 64, 64], [3, 36, 70, 64], [67, 104, 130, 64], [130, 520, 200, 128], [17, 264, 256, 128]];
  for (const [i, [rows, K, dOut, block]] of shapes.entries()) {
    const w = rand32([dOut, K], 420 + i), x = rand32([rows, K], 440 + i), b = rand32([dOut], 460 + i), dY = rand32([rows, dOut], 480 + i);
    const mask = vectorMask(w, block);
    const s = compressVector(fromArr(w), { block });
    const tiles: (VectorTile | undefined)[] = block % 128 === 0 ? [undefined, "64x64", "128x128"] : [undefined, "64x64"];
    for (const tile of tiles) {
      const withBias = i % 2 === 0 || tile === "128x128";
      const y = ws.tidy(() => spmmVector(fromArr(x), s, withBias ? fromArr(b) : null, { block, tile }));
      assertClose(await f32(y), addBias(matmul(x, applyMask(w, mask), false, true), withBias ? b : null).data,
        { rtol: 1e-4, atol: 1e-5, msg: `spmmVector n=${rows} K=${K} d_out=${dOut} block=${block} tile=${tile} bias=${withBias}` });
      const g = ws.tidy(() => sddmmVector(fromArr(dY), fromArr(x), s, { block, tile }));
      assertClose(await f32(g), gather(matmul(dY, x, true, false), mask, 2, 4), { rtol: 1e-4, atol: 2e-5, msg: `sddmmVector n=${rows} K=${K} d_out=${dOut} tile=${tile}` });
      // the per-element kernels read the same Sparse24 (masked dense on the GPU)
      const ye = ws.tidy(() => spmm(fromArr(x), s, withBias ? fromArr(b) : null));
      assertClose(await f32(y), await f32(ye), { rtol: 1e-4, atol: 1e-5, msg: "spmmVector vs spmm" });
      y.dispose(); g.dispose(); ye.dispose();
    }
    s.dispose();
  }
});

test("vector-wise 2:4 in f16 (f32 accumulation): compressVector, spmmVector and sddmmVector against float64 of the f16 inputs", async () => {
  const h = (a: Arr) => ws.tidy(() => fromArr(a).to("f16"));
  const back = async (t: ws.Tensor, shape: number[]) => arr(shape, await t.toArray());
  const [rows, K, dOut] = [67, 72, 130];
  const w16 = h(rand32([dOut, K], 490)), x16 = h(rand32([rows, K], 491)), dY16 = h(rand32([rows, dOut], 492));
  const w = await back(w16, [dOut, K]), x = await back(x16, [rows, K]), dY = await back(dY16, [rows, dOut]);
  const s = compressVector(w16);
  const mask = vectorMask(w, 64);
  assertEquals(Array.from(decodeMeta(await i32(s.meta), dOut, K)), Array.from(mask), "f16 meta");
  const y = spmmVector(x16, s), g = sddmmVector(dY16, x16, s);
  assertClose(await y.toArray(), matmul(x, applyMask(w, mask), false, true).data, { rtol: 2e-2, atol: 2e-2, msg: "spmmVector f16" });
  assertClose(await g.toArray(), gather(matmul(dY, x, true, false), mask, 2, 4), { rtol: 2e-2, atol: 5e-2, msg: "sddmmVector f16" });
  for (const t of [w16, x16, dY16, y, g]) t.dispose();
  s.dispose();
}, { needs: ["shader-f16"] });

test("sddmmVector split-K forced to 1, 3, 7 and automatic (both tiles) equals M⊙(dYᵀX) (float64) at ragged slices, partial blocks and K, overwriting and accumulating", async () => {
  // [rows, K, d_out, block]: rows not a multiple of S·step, K = 36 (values per row not a multiple of 4), d_out past a block
  const shapes: [number, number, number, number][] = [[300, 36, 70, 64], [130, 264, 200, 128]];
  for (const [i, [rows, K, dOut, block]] of shapes.entries()) {
    const w = rand32([dOut, K], 700 + i), x = rand32([rows, K], 710 + i), dY = rand32([rows, dOut], 720 + i);
    const mask = vectorMask(w, block);
    const s = compressVector(fromArr(w), { block });
    const ref = gather(matmul(dY, x, true, false), mask, 2, 4);
    const tiles: (VectorTile | undefined)[] = block % 128 === 0 ? ["64x64", "128x128"] : ["64x64"];
    for (const tile of tiles) for (const splitK of [1, 3, 7, undefined]) {
      const opts = { block, tile, splitK }, msg = `${JSON.stringify(opts)} n=${rows} K=${K} d_out=${dOut}`;
      const plan = sddmmVectorPlan(rows, dOut, K, block, opts);
      if (splitK === 1) assertEquals(plan.slices, 1, msg);
      else if (splitK !== undefined) assert(plan.slices > 1 && plan.slices <= splitK, `${msg}: split into ${plan.slices}`);
      assert(plan.slices === 1 || (plan.slices - 1) * plan.sliceRows < rows, `${msg}: no empty slice`);
      const g = ws.tidy(() => sddmmVector(fromArr(dY), fromArr(x), s, opts));
      assertClose(await f32(g), ref, { rtol: 1e-4, atol: 2e-5, msg });
      const same = ws.tidy(() => sddmmVector(fromArr(dY), fromArr(x), s, { ...opts, out: g, accumulate: true }));
      assert(same === g, "accumulate returns out");
      assertClose(await f32(g), ref.map((v) => 2 * v), { rtol: 1e-4, atol: 4e-5, msg: `${msg} accumulate` });
      g.dispose();
    }
    s.dispose();
  }
});

test("sddmmVector splits automatically by the per-element sddmm's rule (small output, n = 4096) and sums the slices correctly", async () => {
  const [rows, K, dOut] = [4096, 64, 64];
  const plan = sddmmVectorPlan(rows, dOut, K, 64);
  assertEquals([plan.tile, plan.grid, plan.slices, plan.sliceRows], ["64x64", 1, 16, 256], "one 64×64 tile: 16 slices of 256 rows");
  assertEquals(plan.slices, sddmmPlan(rows, dOut, K, { tile: "64x64" }).slices, "the per-element sddmm's split at the same grid");
  assertEquals(sddmmVectorPlan(rows, dOut, K, 64, { splitK: 1 }).slices, 1, "splitK 1 turns it off");
  assertEquals(sddmmVectorPlan(511, dOut, K, 64).slices, 1, "slices keep ≥ 256 rows");
  const w = rand32([dOut, K], 730), x = rand32([rows, K], 731), dY = rand32([rows, dOut], 732);
  const s = compressVector(fromArr(w));
  const ref = gather(matmul(dY, x, true, false), vectorMask(w, 64), 2, 4);
  const g = ws.tidy(() => sddmmVector(fromArr(dY), fromArr(x), s));
  assertClose(await f32(g), ref, { rtol: 1e-4, atol: 1e-4, msg: "automatic split" });
  g.dispose(); s.dispose();
});

test("sddmmVector split-K in f16 sums f32 partials, forced and automatic, overwriting and accumulating, against float64 of the f16 inputs", async () => {
  const h = (a: Arr) => ws.tidy(() => fromArr(a).to("f16"));
  const back = async (t: ws.Tensor, shape: number[]) => arr(shape, await t.toArray());
  for (const [rows, K, dOut, splitK] of [[300, 36, 70, 4], [4096, 64, 64, undefined]] as const) {
    const w16 = h(rand32([dOut, K], 740)), x16 = h(rand32([rows, K], 741)), dY16 = h(rand32([rows, dOut], 742));
    const w = await back(w16, [dOut, K]), x = await back(x16, [rows, K]), dY = await back(dY16, [rows, dOut]);
    const s = compressVector(w16);
    const ref = gather(matmul(dY, x, true, false), vectorMask(w, 64), 2, 4);
    assert(sddmmVectorPlan(rows, dOut, K, 64, { splitK }).slices > 1, `n=${rows} splits`);
    const g = sddmmVector(dY16, x16, s, { splitK });
    assertClose(await g.toArray(), ref, { rtol: 2e-3, atol: 2e-3, msg: `f16 n=${rows} splitK=${splitK}` });
    sddmmVector(dY16, x16, s, { splitK, out: g, accumulate: true });
    assertClose(await g.toArray(), ref.map((v) => 2 * v), { rtol: 4e-3, atol: 4e-3, msg: `f16 n=${rows} splitK=${splitK} accumulate` });
    for (const t of [w16, x16, dY16, g]) t.dispose();
    s.dispose();
  }
}, { needs: ["shader-f16"] });

test("sddmmVector rejects a splitK that is not an integer from 1 to 64 with sddmm's ValueError and leaves out unchanged", async () => {
  const s = compressVector(ws.randn([64, 64], { seed: 750 }));
  const x = ws.randn([300, 64], { seed: 751 }), dY = ws.randn([300, 64], { seed: 752 }), out = ws.full([64, 32], 3);
  for (const bad of [0, -2, 2.5, 65, Number.NaN]) {
    await assertThrows(() => sddmmVector(dY, x, s, { out, splitK: bad }), ws.ValueError, "sddmmVector", `splitK ${bad}`, "1 to 64");
    await assertThrows(() => sddmmVector(dY, x, s, { out, accumulate: true, splitK: bad }), ws.ValueError, "sddmmVector", `splitK ${bad}`);
  }
  await assertThrows(() => sddmmVector(dY, x, s, { accumulate: true }), ws.ShapeError, "sddmmVector", "accumulate needs");
  assert(Array.from(await f32(out)).every((v) => v === 3), "out unchanged");
  for (const t of [x, dY, out]) t.dispose();
  s.dispose();
});

test("vector-wise 2:4: typed errors for a block that is not a multiple of 64, another pattern, a tile wider than the block", async () => {
  await assertThrows(() => compressVector(ws.zeros([64, 8]), { block: 32 }), ws.ShapeError, "compressVector", "32", "multiple of 64");
  await assertThrows(() => compressVector(ws.zeros([64, 10])), ws.ShapeError, "compressVector", "multiple");
  const s = compressVector(ws.zeros([64, 16])), s28 = compress24(ws.zeros([64, 16]), { pattern: "2:8" });
  await assertThrows(() => spmmVector(ws.zeros([2, 16]), s28), ws.ShapeError, "spmmVector", "2:4");
  await assertThrows(() => spmmVector(ws.zeros([2, 12]), s), ws.ShapeError, "spmmVector", "K=16");
  await assertThrows(() => spmmVector(ws.zeros([2, 16]), s, null, { tile: "128x128" }), ws.ShapeError, "128");
  s.dispose(); s28.dispose();
});

test("spmm through W_RC^T gives dX = dY·(M_RC⊙W) (tiled and small)", async () => {
  for (const [i, [rows, dOut, dIn]] of ([[5, 32, 48], [70, 64, 96], [3, 48, 40]] as const).entries()) {
    const { w, s } = sparseWeight(dOut, dIn, 90 + i);
    const t = doublePrune(s);
    const dY = rand32([rows, dOut], 95 + i);
    const dx = ws.tidy(() => spmm(fromArr(dY), t));
    assertEquals(dx.shape, [rows, dIn]);
    assertClose(await f32(dx), matmul(dY, applyMask(w, slopeMasks(w, 2, 4).mRC)).data, { rtol: 1e-4, atol: 1e-5, msg: `n=${rows} ${dOut}×${dIn}` });
    dx.dispose(); s.dispose(); t.dispose();
  }
});

test("spmm folds leading axes of x: [2, 3, K] → [2, 3, d_out]", async () => {
  const { w, s, mR } = sparseWeight(20, 64, 101);
  const x = rand32([2, 3, 64], 102);
  const y = ws.tidy(() => spmm(fromArr(x), s));
  assertEquals(y.shape, [2, 3, 20]);
  assertClose(await f32(y), matmul(arr([6, 64], x.data), applyMask(w, mR), false, true).data, { rtol: 1e-4, atol: 1e-5 });
  y.dispose(); s.dispose();
});

for (const [pattern, n, m] of PATTERNS) {
  test(`sddmm ${pattern}: dW = M_R⊙(dYᵀX), compressed, at odd n, partial tiles and partial meta words`, async () => {
    const shapes: [number, number, number][] = [[1, 64, 16], [67, 96, 33], [130, 32 + m, 20], [64, 160, 48]];
    for (const [i, [rows, K, dOut]] of shapes.entries()) {
      const { s, mR } = sparseWeight(dOut, K, 110 + i, n, m);
      const x = rand32([rows, K], 120 + i), dY = rand32([rows, dOut], 130 + i);
      const ref = gather(matmul(dY, x, true, false), mR, n, m);
      const variants: SddmmOptions[] = [{ method: "dense-tile", tile: "64x64" }, { method: "dense-tile", tile: "128x128" }, { method: "gather" }, { method: "matmul" }];
      for (const opts of variants) {
        const g = ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s, opts));
        assertEquals(g.shape, s.values.shape as number[]);
        assertClose(await f32(g), ref, { rtol: 1e-4, atol: 1e-5, msg: `${pattern} ${JSON.stringify(opts)} n=${rows} K=${K} d_out=${dOut}` });
        g.dispose();
      }
      s.dispose();
    }
  });
}

test("sddmm accumulates over two micro-batches into an existing buffer", async () => {
  const { s, mR } = sparseWeight(40, 96, 140);
  const x1 = rand32([37, 96], 141), d1 = rand32([37, 40], 142), x2 = rand32([70, 96], 143), d2 = rand32([70, 40], 144);
  const g = ws.tidy(() => sddmm(fromArr(d1), fromArr(x1), s));
  const same = ws.tidy(() => sddmm(fromArr(d2), fromArr(x2), s, { out: g, accumulate: true }));
  assert(same === g, "accumulate returns out");
  const ref = map((a, b) => a + b, matmul(d1, x1, true, false), matmul(d2, x2, true, false));
  assertClose(await f32(g), gather(ref, mR, 2, 4), { rtol: 1e-4, atol: 2e-5 });
  ws.tidy(() => sddmm(fromArr(d2), fromArr(x2), s, { out: g }));
  assertClose(await f32(g), gather(matmul(d2, x2, true, false), mR, 2, 4), { rtol: 1e-4, atol: 1e-5, msg: "overwrite" });
  g.dispose(); s.dispose();
});

test("sddmm split-K forced to 1, 2, 4, 7 (both tiles, gather) equals M_R⊙(dYᵀX) (float64) at ragged slices, partial tiles and meta words, overwriting and accumulating", async () => {
  // [rows, K, d_out]: n not a multiple of S·step, d_out not a multiple of the tile, K = 36 and 160 end in partial meta words
  const shapes: [number, number, number][] = [[67, 96, 20], [300, 36, 33], [130, 160, 48]];
  const variants: SddmmOptions[] = [{ method: "dense-tile", tile: "64x64" }, { method: "dense-tile", tile: "128x128" }, { method: "gather" }];
  for (const [i, [rows, K, dOut]] of shapes.entries()) {
    const { s, mR } = sparseWeight(dOut, K, 200 + i);
    const x = rand32([rows, K], 210 + i), dY = rand32([rows, dOut], 220 + i);
    const ref = gather(matmul(dY, x, true, false), mR, 2, 4);
    for (const base of variants) for (const splitK of [1, 2, 4, 7]) {
      const opts = { ...base, splitK }, msg = `${JSON.stringify(opts)} n=${rows} K=${K} d_out=${dOut}`;
      const plan = sddmmPlan(rows, dOut, K, opts);
      // the gather kernel steps n by 64: below 128 rows it cannot split
      if (splitK > 1 && (base.method !== "gather" || rows >= 128)) assert(plan.slices > 1 && plan.slices <= splitK, `${msg}: split into ${plan.slices}`);
      if (splitK === 1) assertEquals(plan.slices, 1, msg);
      assert(plan.slices === 1 || (plan.slices - 1) * plan.sliceRows < rows, `${msg}: no empty slice`);
      const g = ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s, opts));
      assertClose(await f32(g), ref, { rtol: 1e-4, atol: 1e-5, msg });
      ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s, { ...opts, out: g, accumulate: true }));
      assertClose(await f32(g), ref.map((v) => 2 * v), { rtol: 1e-4, atol: 2e-5, msg: `${msg} accumulate` });
      g.dispose();
    }
    s.dispose();
  }
});

test("sddmm splits K automatically at a small output and large n (n = 4096, d_out 64, K 64) and not at a large output", async () => {
  const [rows, K, dOut] = [4096, 64, 64];
  const plan = sddmmPlan(rows, dOut, K);
  assertEquals([plan.tile, plan.grid, plan.slices, plan.sliceRows], ["64x64", 1, 16, 256], "one 64×64 tile: 16 slices of 256 rows");
  assertEquals(sddmmPlan(rows, 1536, 384).slices, 4, "GPT-2 fc1 at d = 384: 144 tiles × 4");
  assertEquals(sddmmPlan(16384, 384, 384).slices, 16, "384×384 over 16,384 rows: 36 tiles × 16");
  assertEquals(sddmmPlan(4096, 2048, 2048).slices, 1, "256 tiles of 128×128 fill the GPU");
  assertEquals(sddmmPlan(511, 64, 64).slices, 1, "slices keep ≥ 256 rows");
  assertEquals(sddmmPlan(rows, dOut, K, { splitK: 1 }).slices, 1, "splitK 1 turns it off");
  const { s, mR } = sparseWeight(dOut, K, 230);
  const x = rand32([rows, K], 231), dY = rand32([rows, dOut], 232);
  const ref = gather(matmul(dY, x, true, false), mR, 2, 4);
  const g = ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s));
  assertClose(await f32(g), ref, { rtol: 1e-4, atol: 1e-4, msg: "automatic split" });
  ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s, { out: g, accumulate: true }));
  assertClose(await f32(g), ref.map((v) => 2 * v), { rtol: 1e-4, atol: 2e-4, msg: "automatic split, accumulate" });
  g.dispose(); s.dispose();
});

test("sddmm split-K in f16 sums f32 partials: forced and automatic, overwriting and accumulating, against float64 of the f16 inputs", async () => {
  const h = (a: Arr) => ws.tidy(() => fromArr(a).to("f16"));
  const back = async (t: ws.Tensor, shape: number[]) => arr(shape, await t.toArray());
  for (const [rows, K, dOut, splitK] of [[300, 36, 33, 4], [300, 96, 20, 7], [4096, 64, 64, undefined]] as const) {
    const w16 = h(rand32([dOut, K], 240)), x16 = h(rand32([rows, K], 241)), dY16 = h(rand32([rows, dOut], 242));
    const w = await back(w16, [dOut, K]), x = await back(x16, [rows, K]), dY = await back(dY16, [rows, dOut]);
    const s = compress24(w16);
    const ref = gather(matmul(dY, x, true, false), nmMask(w, 2, 4), 2, 4);
    for (const method of ["dense-tile", "gather"] as const) {
      const opts: SddmmOptions = { method, splitK }, msg = `f16 ${JSON.stringify(opts)} n=${rows}`;
      assert(sddmmPlan(rows, dOut, K, opts).slices > 1, `${msg} splits`);
      const g = sddmm(dY16, x16, s, opts);
      // one f16 rounding of an f32 sum: half-precision partials would lose far more over 4096 rows
      assertClose(await g.toArray(), ref, { rtol: 2e-3, atol: 2e-3, msg });
      sddmm(dY16, x16, s, { ...opts, out: g, accumulate: true });
      assertClose(await g.toArray(), ref.map((v) => 2 * v), { rtol: 4e-3, atol: 4e-3, msg: `${msg} accumulate` });
      g.dispose();
    }
    for (const t of [w16, x16, dY16]) t.dispose();
    s.dispose();
  }
}, { needs: ["shader-f16"] });

test("sddmm rejects a splitK that is not an integer from 1 to 64, or an unknown method, with a ValueError and leaves out unchanged", async () => {
  const { s } = sparseWeight(8, 64, 250);
  const x = ws.randn([300, 64], { seed: 251 }), dY = ws.randn([300, 8], { seed: 252 }), out = ws.full([8, 32], 3);
  for (const bad of [0, -2, 2.5, 65, Number.NaN]) {
    await assertThrows(() => sddmm(dY, x, s, { out, splitK: bad }), ws.ValueError, "sddmm", `splitK ${bad}`, "1 to 64");
    await assertThrows(() => sddmm(dY, x, s, { out, accumulate: true, splitK: bad, method: "gather" }), ws.ValueError, "sddmm", `splitK ${bad}`);
  }
  // an unknown method string per call names itself and the methods there are
  await assertThrows(() => sddmm(dY, x, s, { out, method: "fast" as SddmmOptions["method"] }), ws.ValueError, "sddmm", '"fast"', '"gather"');
  assert(Array.from(await f32(out)).every((v) => v === 3), "out unchanged");
  for (const t of [x, dY, out]) t.dispose();
  s.dispose();
});

// ---- the lanes sddmm (warp-uniform pattern codes) ------------------------------------------------

const LANES = Object.keys(SDDMM_LANES) as SddmmLanesVariant[];

test("sddmm lanes: every variant fits the 16 KiB of workgroup memory every WebGPU adapter gives, its sum in ≥ 1 pair a round", () => {
  for (const v of LANES) {
    const e = lanesExtent(v);
    assert(e.bytes <= 16384 && e.pairsPerRound >= 1, `${v}: ${e.bytes} bytes, ${e.pairsPerRound} pairs a round`);
  }
});

test("sddmm lanes, a staged and a direct variant at one odd shape, equal M_R⊙(dYᵀX) (float64) on every engine (all variants: Deno, below)", async () => {
  const [rows, K, dOut] = [37, 36, 9];
  const { s, mR } = sparseWeight(dOut, K, 660);
  const x = rand32([rows, K], 661), dY = rand32([rows, dOut], 662);
  const ref = gather(matmul(dY, x, true, false), mR, 2, 4);
  for (const lanes of ["c4g2m4", "c4g2m4d"] as SddmmLanesVariant[]) {
    const g = ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s, { method: "lanes", lanes }));
    assertClose(await f32(g), ref, { rtol: 1e-4, atol: 2e-5, msg: `${lanes} n=${rows} K=${K} d_out=${dOut}` });
    g.dispose();
  }
  s.dispose();
});

test("sddmm lanes (every variant) equals M_R⊙(dYᵀX) (float64) and the masked dense dYᵀX at odd n, d_out and K, overwriting, accumulating, split (Deno only)", async () => {
  // [rows n, K, d_out]: n ∈ {1, 17, 100, 300}, d_out ∈ {1, 7, 65}, K ∈ {4, 36, 100} (partial meta words, partial workgroup tiles)
  const shapes: [number, number, number][] = [[1, 36, 7], [17, 4, 65], [100, 100, 1], [300, 36, 65], [300, 100, 7], [17, 100, 65]];
  for (const [i, [rows, K, dOut]] of shapes.entries()) {
    const { s, mR } = sparseWeight(dOut, K, 600 + i);
    const x = rand32([rows, K], 610 + i), dY = rand32([rows, dOut], 620 + i);
    const ref = gather(matmul(dY, x, true, false), mR, 2, 4);
    // the masked-dense oracle: the GPU's dense dYᵀX (f32, off the matrix units) at the kept positions
    const dense = ws.tidy(() => ws.matmul(fromArr(dY), fromArr(x), { transA: true }));
    const oracle = gather(arr([dOut, K], await f32(dense)), mR, 2, 4);
    dense.dispose();
    for (const lanes of LANES) for (const splitK of rows >= 300 ? [1, 3] : [1]) {
      const opts: SddmmOptions = { method: "lanes", lanes, splitK }, msg = `${JSON.stringify(opts)} n=${rows} K=${K} d_out=${dOut}`;
      const plan = sddmmPlan(rows, dOut, K, opts);
      assertEquals([plan.method, plan.lanes], ["lanes", lanes], msg);
      if (splitK > 1) assert(plan.slices > 1, `${msg}: split into ${plan.slices}`);
      const g = ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s, opts));
      assertEquals(g.shape, s.values.shape as number[]);
      const got = await f32(g);
      assertClose(got, ref, { rtol: 1e-4, atol: 2e-5, msg });
      assertClose(got, oracle, { rtol: 1e-4, atol: 2e-5, msg: `${msg} vs masked dense` });
      ws.tidy(() => sddmm(fromArr(dY), fromArr(x), s, { ...opts, out: g, accumulate: true }));
      assertClose(await f32(g), ref.map((v) => 2 * v), { rtol: 1e-4, atol: 4e-5, msg: `${msg} accumulate` });
      g.dispose();
    }
    s.dispose();
  }
}, { runtimes: ["deno"] });

test("sddmm lanes in f16 (f32 accumulation), every variant, against float64 of the f16 inputs", async () => {
  const h = (a: Arr) => ws.tidy(() => fromArr(a).to("f16"));
  const back = async (t: ws.Tensor, shape: number[]) => arr(shape, await t.toArray());
  const [rows, K, dOut] = [100, 36, 65];
  const w16 = h(rand32([dOut, K], 630)), x16 = h(rand32([rows, K], 631)), dY16 = h(rand32([rows, dOut], 632));
  const w = await back(w16, [dOut, K]), x = await back(x16, [rows, K]), dY = await back(dY16, [rows, dOut]);
  const s = compress24(w16);
  const ref = gather(matmul(dY, x, true, false), nmMask(w, 2, 4), 2, 4);
  for (const [lanes, splitK] of [...LANES.map((v) => [v, 1] as const), ["c4g2m4", 2], ["c4g4m2d", 2]] as const) {
    const opts: SddmmOptions = { method: "lanes", lanes, splitK }, msg = `f16 ${JSON.stringify(opts)}`;
    const g = sddmm(dY16, x16, s, opts);
    assertClose(await g.toArray(), ref, { rtol: 2e-3, atol: 2e-3, msg });
    sddmm(dY16, x16, s, { ...opts, out: g, accumulate: true });
    assertClose(await g.toArray(), ref.map((v) => 2 * v), { rtol: 4e-3, atol: 4e-3, msg: `${msg} accumulate` });
    g.dispose();
  }
  for (const t of [w16, x16, dY16]) t.dispose();
  s.dispose();
}, { needs: ["shader-f16"] });

test("sddmm lanes: a ValueError for another pattern or an unknown variant (out unchanged); setSddmmMethod('lanes') keeps other patterns on dense-tile", async () => {
  const { s } = sparseWeight(8, 64, 640, 2, 8);
  const s24 = sparseWeight(8, 64, 641).s;
  const x = ws.randn([30, 64], { seed: 642 }), dY = ws.randn([30, 8], { seed: 643 }), out = ws.full([8, 16], 3), out24 = ws.full([8, 32], 3);
  await assertThrows(() => sddmm(dY, x, s, { out, method: "lanes" }), ws.ValueError, "sddmm", "2:4", "2:8");
  await assertThrows(() => sddmm(dY, x, s24, { out: out24, method: "lanes", lanes: "c9g9m9" as SddmmLanesVariant }), ws.ValueError, "sddmm", "c9g9m9", "c4g2m4");
  await assertThrows(() => setSddmmMethod("fast" as "lanes"), ws.ValueError, "setSddmmMethod", "fast");
  assert(Array.from(await f32(out)).every((v) => v === 3) && Array.from(await f32(out24)).every((v) => v === 3), "out unchanged");
  setSddmmMethod("lanes");
  try {
    assertEquals(sddmmPlan(30, 8, 64, {}, "sddmm", [2, 8]).method, "dense-tile", "2:8 under the lanes default");
    assertEquals(sddmmPlan(30, 8, 64).method, "lanes", "2:4 under the lanes default");
  } finally { setSddmmMethod(null); }
  assertEquals(sddmmPlan(30, 8, 64).method, "dense-tile", "null restores the default");
  for (const t of [x, dY, out, out24]) t.dispose();
  s.dispose(); s24.dispose();
});

test("sparseLinear with the lanes sddmm forced (setSddmmMethod): w.values.grad = M_R⊙(dYᵀX) (float64), accumulated over two backwards (Deno only)", async () => {
  const [dOut, dIn] = [68, 36]; // d_out a multiple of 4 (the transpose is 2:4 along it), not of a workgroup tile
  const { s, mR } = sparseWeight(dOut, dIn, 650);
  const t = doublePrune(s);
  s.values.requiresGrad_();
  for (const lanes of ["c4g4m2", "c4g2m4d"] as SddmmLanesVariant[]) {
    setSddmmMethod("lanes", lanes);
    try {
      let gRef = new Float64Array(s.values.size);
      for (const [step, rows] of [[0, 17], [1, 300]] as const) {
        const xa = rand32([rows, dIn], 651 + step), proj = rand32([rows, dOut], 653 + step);
        const x = fromArr(xa);
        ws.tidy(() => sparseLinear(x, s, t, null).mul(fromArr(proj)).sum().backward());
        gRef = gRef.map((v, i) => v + gather(matmul(proj, xa, true, false), mR, 2, 4)[i]!);
        assertClose(await f32(s.values.grad!), gRef, { rtol: 1e-4, atol: 4e-5, msg: `${lanes} after backward ${step + 1}` });
        x.dispose();
      }
    } finally { setSddmmMethod(null); }
    s.values.grad!.dispose(); s.values.grad = null;
  }
  s.dispose(); t.dispose();
}, { runtimes: ["deno"] });

/** sddmm through a double-pruned W_RC^T, whose groups may keep fewer than N: every method given writes the unused slots 0. */
async function sddmmDoublePrunedCase(methods: SddmmOptions[]): Promise<void> {
  const { w, s } = sparseWeight(32, 64, 145);
  const t = doublePrune(s);
  const maskT = slopeMasks(w, 2, 4).mRCt;
  assert(groupCounts(maskT, 64, 32, 4).some((k) => k < 2), "precondition: some groups keep fewer than 2");
  const dY = rand32([37, 64], 146), x = rand32([37, 32], 147);
  const ref = gather(matmul(dY, x, true, false), maskT, 2, 4);
  for (const opts of methods) {
    const out = ws.full([64, 16], 7);
    ws.tidy(() => sddmm(fromArr(dY), fromArr(x), t, { out, ...opts }));
    assertClose(await f32(out), ref, { rtol: 1e-4, atol: 1e-5, msg: JSON.stringify(opts) });
    ws.tidy(() => sddmm(fromArr(dY), fromArr(x), t, { out, ...opts, accumulate: true }));
    assertClose(await f32(out), ref.map((v) => 2 * v), { rtol: 1e-4, atol: 2e-5, msg: `${JSON.stringify(opts)} accumulate` });
    out.dispose();
  }
  s.dispose(); t.dispose();
}

test("sddmm through a double-pruned W_RC^T (groups keeping fewer than N): unused slots are written 0", () =>
  sddmmDoublePrunedCase([{ method: "dense-tile", tile: "64x64" }, { method: "dense-tile", tile: "128x128" }, { method: "gather" },
    { method: "dense-tile", tile: "64x64", splitK: 3 }, { method: "dense-tile", tile: "128x128", splitK: 2 }]));

// The lanes kernels in Deno only: SwiftShader's shader compiler (Node's Dawn here, Chromium) takes over 20 GiB on them
// and the process is killed for memory, as in CI; lavapipe compiles them in seconds.
test("sddmm lanes through a double-pruned W_RC^T (groups keeping fewer than N): unused slots are written 0 (Deno only)", () =>
  sddmmDoublePrunedCase([...LANES.map((lanes) => ({ method: "lanes", lanes })), { method: "lanes", lanes: "c4g2m4d", splitK: 2 }] as SddmmOptions[]),
  { runtimes: ["deno"] });

test("spmm and sddmm in f16 (f32 accumulation)", async () => {
  const h = (a: Arr) => ws.tidy(() => fromArr(a).to("f16"));
  const back = async (t: ws.Tensor, shape: number[]) => arr(shape, await t.toArray());
  for (const rows of [3, 5, 67]) {
    const w16 = h(rand32([24, 64], 150)), x16 = h(rand32([rows, 64], 151)), dY16 = h(rand32([rows, 24], 152));
    const w = await back(w16, [24, 64]), x = await back(x16, [rows, 64]), dY = await back(dY16, [rows, 24]);
    const s = compress24(w16);
    const mR = nmMask(w, 2, 4);
    const y = spmm(x16, s);
    assertClose(await y.toArray(), matmul(x, applyMask(w, mR), false, true).data, { rtol: 2e-2, atol: 2e-2, msg: `spmm n=${rows}` });
    const yg = spmm(x16, s, null, { path: "gather" });
    assertClose(await yg.toArray(), matmul(x, applyMask(w, mR), false, true).data, { rtol: 2e-2, atol: 2e-2, msg: `spmm gather n=${rows}` });
    yg.dispose();
    const g = sddmm(dY16, x16, s);
    assertClose(await g.toArray(), gather(matmul(dY, x, true, false), mR, 2, 4), { rtol: 2e-2, atol: 5e-2, msg: `sddmm n=${rows}` });
    sddmm(dY16, x16, s, { out: g, method: "gather" });
    assertClose(await g.toArray(), gather(matmul(dY, x, true, false), mR, 2, 4), { rtol: 2e-2, atol: 5e-2, msg: `sddmm gather n=${rows}` });
    for (const t of [w16, x16, dY16, y, g]) t.dispose();
    s.dispose();
  }
}, { needs: ["shader-f16"] });

// ---- sparseLinear (autograd) --------------------------------------------------------------------

test("sparseLinear: forward X·W_Rᵀ + b; backward dX = dY·W_RC, w.values.grad = M_R⊙(dYᵀX), bias.grad = ΣdY, accumulated over micro-batches (the last split-K)", async () => {
  const [dOut, dIn] = [32, 64];
  const { w, s, mR } = sparseWeight(dOut, dIn, 160);
  const t = doublePrune(s);
  const mRC = slopeMasks(w, 2, 4).mRC;
  const b = rand32([dOut], 161);
  s.values.requiresGrad_();
  const bias = fromArr(b, { requiresGrad: true });
  let gRef = new Float64Array(s.values.size), bRef = new Float64Array(dOut);
  assert(sddmmPlan(4 * 256, dOut, dIn).slices > 1, "precondition: the third micro-batch (1,024 rows) takes split-K");
  for (const [step, lead] of [[0, [2, 5]], [1, [67]], [2, [4, 256]]] as const) {
    const rows = lead.reduce((p, q) => p * q, 1);
    const xa = rand32([...lead, dIn], 170 + step), proj = rand32([...lead, dOut], 180 + step);
    const x = fromArr(xa, { requiresGrad: true });
    const y = sparseLinear(x, s, t, bias);
    assertEquals(y.shape, [...lead, dOut]);
    const x2 = arr([rows, dIn], xa.data), p2 = arr([rows, dOut], proj.data);
    assertClose(await f32(y), addBias(matmul(x2, applyMask(w, mR), false, true), b).data, { rtol: 1e-4, atol: 1e-5, msg: "forward" });
    ws.tidy(() => y.mul(fromArr(proj)).sum().backward());
    assertEquals(x.grad!.shape, [...lead, dIn]);
    assertClose(await f32(x.grad!), matmul(p2, applyMask(w, mRC)).data, { rtol: 1e-4, atol: 1e-5, msg: "dX through W_RC" });
    gRef = gRef.map((v, i) => v + gather(matmul(p2, x2, true, false), mR, 2, 4)[i]!);
    bRef = bRef.map((v, i) => v + reduce(p2, [0], false, "sum").data[i]!);
    assertEquals(s.values.grad!.shape, s.values.shape as number[]);
    assertClose(await f32(s.values.grad!), gRef, { rtol: 1e-4, atol: 2e-5, msg: `w.values.grad after micro-batch ${step + 1}` });
    assertClose(await f32(bias.grad!), bRef, { rtol: 1e-4, atol: 2e-5, msg: `bias.grad after micro-batch ${step + 1}` });
    x.grad!.dispose(); x.dispose(); y.dispose();
  }
  s.values.grad!.dispose(); bias.grad!.dispose(); bias.dispose(); s.dispose(); t.dispose();
});

test("sparseLinear with a fused activation (gelu, relu): act(X·W_Rᵀ + b) and its backward through the pre-activation equal float64, at decode rows (≤ 16) and above; without gradients no pre-activation is kept; a bad activation is a ValueError", async () => {
  const { geluTanh } = await import("../ref/cpu.ts");
  const geluGrad = (v: number) => { const h = 1e-6; return (geluTanh(v + h) - geluTanh(v - h)) / (2 * h); };
  const [dOut, dIn] = [36, 64];
  const { w, s, mR } = sparseWeight(dOut, dIn, 260);
  const t = doublePrune(s);
  const mRC = slopeMasks(w, 2, 4).mRC;
  const b = rand32([dOut], 261);
  s.values.requiresGrad_();
  const bias = fromArr(b, { requiresGrad: true });
  for (const activation of ["gelu", "relu"] as const) {
    const f = activation === "gelu" ? geluTanh : (v: number) => Math.max(v, 0);
    const df = activation === "gelu" ? geluGrad : (v: number) => (v > 0 ? 1 : 0);
    for (const rows of [8, 70]) {
      const xa = rand32([rows, dIn], 262 + rows), proj = rand32([rows, dOut], 263 + rows);
      const x = fromArr(xa, { requiresGrad: true });
      const y = sparseLinear(x, s, t, bias, null, activation);
      const pre = addBias(matmul(xa, applyMask(w, mR), false, true), b);
      const msg = `${activation}, ${rows} rows`;
      assertClose(await f32(y), pre.data.map(f), { rtol: 1e-4, atol: 1e-5, msg: `${msg}: forward` });
      ws.tidy(() => y.mul(fromArr(proj)).sum().backward());
      const dz = arr([rows, dOut], proj.data.map((p, i) => p * df(pre.data[i]!)));
      assertClose(await f32(x.grad!), matmul(dz, applyMask(w, mRC)).data, { rtol: 1e-4, atol: 1e-4, msg: `${msg}: dX` });
      assertClose(await f32(s.values.grad!), gather(matmul(dz, xa, true, false), mR, 2, 4), { rtol: 1e-4, atol: 1e-4, msg: `${msg}: w.values.grad` });
      assertClose(await f32(bias.grad!), reduce(dz, [0], false, "sum").data, { rtol: 1e-4, atol: 1e-4, msg: `${msg}: bias.grad` });
      for (const g of [x.grad!, s.values.grad!, bias.grad!]) g.dispose();
      s.values.grad = null; bias.grad = null;
      x.dispose(); y.dispose();
    }
  }
  // no gradient wanted: the activation alone, no pre-activation kept
  const y0 = ws.noGrad(() => sparseLinear(fromArr(rand32([20, dIn], 270)), s, t, bias, null, "gelu"));
  assertEquals(y0.shape, [20, dOut]);
  y0.dispose();
  await assertThrows(() => sparseLinear(fromArr(rand32([4, dIn], 271)), s, t, bias, null, "tanh" as "gelu"), ws.ValueError, "activation must be");
  bias.dispose(); s.dispose(); t.dispose();
});

test("sparseLinear: the gradient of w.values matches finite differences (it is exact; dX is not, by design)", async () => {
  const { w, s } = sparseWeight(8, 32, 190);
  const t = doublePrune(s);
  const xa = rand32([3, 32], 191);
  const x = fromArr(xa);
  s.values.requiresGrad_();
  const proj = rand32([3, 8], 192);
  ws.tidy(() => sparseLinear(x, s, t, null).mul(fromArr(proj)).sum().backward());
  const vals = await f32(s.values);
  const mR = nmMask(w, 2, 4);
  const loss = (v: Float64Array) => {
    const dense = expand(v, mR, 8, 32, 2, 4).dense;
    const y = matmul(xa, dense, false, true);
    return y.data.reduce((acc, yy, i) => acc + yy * proj.data[i]!, 0);
  };
  const num = Array.from(vals, (_, k) => {
    const vp = Float64Array.from(vals), vm = Float64Array.from(vals);
    vp[k] = vp[k]! + 1e-6; vm[k] = vm[k]! - 1e-6;
    return (loss(vp) - loss(vm)) / 2e-6;
  });
  assertClose(await f32(s.values.grad!), num, { rtol: 1e-3, atol: 1e-4 });
  s.values.grad!.dispose(); x.dispose(); s.dispose(); t.dispose();
});

// ---- typed errors -------------------------------------------------------------------------------

test("sparse: typed errors for bad shapes, dtypes and patterns", async () => {
  const w = ws.randn([8, 64], { seed: 1 });
  await assertThrows(() => compress24(ws.zeros([8, 30])), ws.ShapeError, "compress24", "multiple of the group size 4", "[8, 30]");
  await assertThrows(() => compress24(ws.zeros([8, 40]), { pattern: "2:16" }), ws.ShapeError, "multiple of the group size 16");
  await assertThrows(() => compress24(ws.zeros([2, 8, 64])), ws.ShapeError, "compress24", "2-D", "[2, 8, 64]");
  await assertThrows(() => compress24(ws.zeros([64])), ws.ShapeError, "2-D");
  await assertThrows(() => compress24(ws.tensor(new Int32Array(8 * 64), [8, 64])), ws.DTypeError, "compress24", "i32");
  await assertThrows(() => compress24(w, { pattern: "3:4" }), ws.ShapeError, "unsupported sparsity pattern \"3:4\"");
  await assertThrows(() => compress24(w, { pattern: "2:2" }), ws.ShapeError, "unsupported");
  const s = compress24(w);
  const odd = compress24(ws.randn([6, 64], { seed: 2 }));
  await assertThrows(() => doublePrune(odd), ws.ShapeError, "doublePrune", "d_out 6", "multiple of the group size 4");
  const x = ws.randn([5, 48], { seed: 3 });
  await assertThrows(() => spmm(x, s), ws.ShapeError, "spmm", "[5, 48]", "[8, 64]");
  await assertThrows(() => spmm(ws.randn([5, 64]), s, ws.zeros([7])), ws.ShapeError, "spmm", "bias [7]", "[8]");
  await assertThrows(() => spmm(ws.tensor(new Int32Array(5 * 64), [5, 64]), s), ws.DTypeError, "spmm", "i32");
  const t = doublePrune(s);
  await assertThrows(() => sparseLinear(x, s, t), ws.ShapeError, "sparseLinear", "[5, 48]", "[8, 64]");
  await assertThrows(() => sparseLinear(ws.randn([5, 64]), s, s), ws.ShapeError, "sparseLinear", "double-pruned transpose");
  await assertThrows(() => refreshTranspose(s, s), ws.ShapeError, "refreshTranspose", "[8, 64]");
  await assertThrows(() => sddmm(ws.randn([5, 8]), x, s), ws.ShapeError, "sddmm", "[5, 48]", "[8, 64]");
  await assertThrows(() => sddmm(ws.randn([5, 8]), ws.randn([5, 64]), s, { accumulate: true }), ws.ShapeError, "sddmm", "out");
  await assertThrows(() => new Sparse24(ws.zeros([8, 31]), s.meta, 8, 64), ws.ShapeError, "Sparse24", "values");
  s.dispose();
  await assertThrows(() => spmm(ws.randn([5, 64]), s), ws.DisposedTensorError, "spmm");
  odd.dispose(); t.dispose(); w.dispose(); x.dispose();
});

test("Sparse24 lives through tidy() when returned and is freed with it otherwise", async () => {
  const w = ws.randn([8, 64], { seed: 4 });
  const kept = ws.tidy(() => compress24(w));
  assert(!kept.isDisposed, "returned Sparse24 survives tidy");
  let inner: Sparse24 | null = null;
  ws.tidy(() => { inner = compress24(w); });
  assert(inner !== null && (inner as Sparse24).isDisposed, "unreturned Sparse24 is disposed by tidy");
  assertEquals(Array.from(await f32(decompress24(kept))).filter((v) => v !== 0).length, 8 * 32);
  kept.dispose(); w.dispose();
});
