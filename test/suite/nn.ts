// The fused nn ops (softmax, logSoftmax, layerNorm, embedding, crossEntropy, dropout) against
// float64 references at odd sizes (C = 1, rows not a multiple of the workgroup, C over the
// workgroup size), finite-difference checks of every backward, and their typed errors.
import * as ws from "../../src/index.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, arr, permute, randArr, softmax as refSoftmax } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { gradCheck } from "../ref/gradcheck.ts";
import { addLayerNorm } from "../../src/ops/layernorm.ts";
import { crossEntropy as refCrossEntropy, embedding as refEmbedding, layerNorm as refLayerNorm } from "../ref/nn.ts";

const i32 = (data: number[], shape: number[]) => ws.tensor(Int32Array.from(data), shape);

/** Replaces -Infinity by 0 in both arrays after checking they sit at the same places. */
function splitInf(a: ArrayLike<number>, e: ArrayLike<number>, msg: string): [number[], number[]] {
  const aa = Array.from(a), ee = Array.from(e);
  for (let i = 0; i < ee.length; i++) {
    const ai = aa[i] === -Infinity, ei = ee[i] === -Infinity;
    if (ai !== ei) throw new Error(`${msg}: element ${i} is ${aa[i]}, expected ${ee[i]}`);
    if (ei) { aa[i] = 0; ee[i] = 0; }
  }
  return [aa, ee];
}

/** The causal mask of scores shaped like `shape` (1 where j > i on the last two axes). */
function causalMask(shape: number[]): Arr {
  const T = shape.at(-1)!;
  const m = arr(shape);
  for (let i = 0; i < m.data.length; i++) m.data[i] = (i % T) > Math.floor(i / T) % T ? 1 : 0;
  return m;
}

// ---- softmax / logSoftmax ---------------------------------------------------------------------

const SM_SHAPES = [[5, 1], [1], [3, 7], [37, 33], [4, 130], [2, 3, 300], [2, 257]];

for (const log of [false, true]) {
  const name = log ? "logSoftmax" : "softmax";
  const f = (x: ws.Tensor, axis?: number, opts?: ws.SoftmaxOptions) => (log ? ws.logSoftmax(x, axis, opts) : ws.softmax(x, axis, opts));

  test(`${name}: forward matches float64 at ${SM_SHAPES.length} shapes (C = 1, C > workgroup)`, async () => {
    for (const [i, shape] of SM_SHAPES.entries()) {
      const a = randArr(shape, 100 + i, -6, 6);
      const x = fromArr(a);
      const y = f(x);
      assertEquals(y.shape, shape);
      assertClose(await y.toArray(), refSoftmax(a, false, log).data, { rtol: 1e-5, atol: 1e-6, msg: `${name} ${shape}` });
      x.dispose(); y.dispose();
    }
  });

  test(`${name}: along a non-last axis (0 and 1 of [3, 4, 5]) equals permute → last axis → permute back`, async () => {
    const a = randArr([3, 4, 5], 7, -3, 3);
    for (const axis of [0, 1, -2]) {
      const ax = axis < 0 ? axis + 3 : axis;
      const perm = [...[0, 1, 2].filter((d) => d !== ax), ax];
      const inv = perm.map((_, i) => perm.indexOf(i));
      const expected = permute(refSoftmax(permute(a, perm), false, log), inv);
      const y = ws.tidy(() => f(fromArr(a), axis));
      assertClose(await y.toArray(), expected.data, { rtol: 1e-5, atol: 1e-6, msg: `axis ${axis}` });
      y.dispose();
    }
  });

  test(`${name}: causal mask on [..., T, T] (masked = ${log ? "-Infinity" : "exactly 0"})`, async () => {
    for (const [i, shape] of [[1, 1], [2, 5, 5], [1, 2, 40, 40], [1, 260, 260]].entries()) {
      const a = randArr(shape, 200 + i, -4, 4);
      const y = ws.tidy(() => f(fromArr(a), -1, { causal: true }));
      const got = await y.toArray();
      const exp = refSoftmax(a, true, log).data;
      const mask = causalMask(shape);
      for (let k = 0; k < got.length; k++) {
        if (mask.data[k]) assert(got[k] === (log ? -Infinity : 0), `${shape}: masked element ${k} is ${got[k]}`);
      }
      const [ga, ea] = splitInf(got, exp, `${shape}`);
      assertClose(ga, ea, { rtol: 1e-5, atol: 1e-6, msg: `${name} causal ${shape}` });
      y.dispose();
    }
  });

  test(`${name}: backward matches finite differences (C = 7, C = 300 > workgroup, axis 1 of a 3-D tensor)`, async () => {
    await gradCheck({ inputs: [randArr([3, 7], 1, -2, 2)], gpu: ([x]) => f(x!), ref: ([x]) => refSoftmax(x!, false, log) });
    await gradCheck({ inputs: [randArr([1, 300], 2, -2, 2)], gpu: ([x]) => f(x!), ref: ([x]) => refSoftmax(x!, false, log) });
    const perm = [0, 2, 1];
    await gradCheck({
      inputs: [randArr([2, 3, 4], 3, -2, 2)],
      gpu: ([x]) => f(x!, 1),
      ref: ([x]) => permute(refSoftmax(permute(x!, perm), false, log), perm),
    });
  });

  test(`${name}: causal backward matches finite differences; masked positions get 0 gradient`, async () => {
    const shape = [2, 6, 6];
    const mask = causalMask(shape);
    // Masked -Infinity outputs are filled with 0 before the projection (their gradient is 0 either way).
    await gradCheck({
      inputs: [randArr(shape, 4, -2, 2)],
      gpu: ([x]) => f(x!, -1, { causal: true }).maskedFill(fromArr(mask), 0),
      ref: ([x]) => { const y = refSoftmax(x!, true, log); y.data.forEach((v, k) => { if (mask.data[k]) y.data[k] = 0; }); return y; },
    });
    // A nonzero upstream gradient at masked positions must still give dx = 0 there.
    const a = randArr(shape, 5, -2, 2), dyA = randArr(shape, 6, -1, 1);
    const x = fromArr(a, { requiresGrad: true });
    ws.tidy(() => f(x, -1, { causal: true }).backward(fromArr(dyA)));
    const gx = await x.grad!.toArray();
    const y = refSoftmax(a, true, log);
    const T = 6;
    for (let r = 0; r < a.data.length / T; r++) {
      const n = (r % T) + 1;
      let s = 0;
      for (let j = 0; j < n; j++) s += log ? dyA.data[r * T + j]! : dyA.data[r * T + j]! * y.data[r * T + j]!;
      for (let j = 0; j < T; j++) {
        const k = r * T + j;
        const e = j >= n ? 0 : log ? dyA.data[k]! - Math.exp(y.data[k]!) * s : y.data[k]! * (dyA.data[k]! - s);
        if (j >= n) assert(gx[k] === 0, `masked dx[${k}] = ${gx[k]}`);
        assertClose([gx[k]!], [e], { rtol: 1e-4, atol: 1e-6, msg: `dx[${k}]` });
      }
    }
    x.grad!.dispose(); x.dispose();
  });
}

test("softmax: rows of -Infinity entries (a user mask) give 0 there and a normal distribution elsewhere", async () => {
  const x = ws.tensor([[0, -Infinity, 1], [-Infinity, 2, -Infinity]]);
  const y = ws.softmax(x);
  const e0 = [1 / (1 + Math.E), 0, Math.E / (1 + Math.E)];
  assertClose(await y.toArray(), [...e0, 0, 1, 0], { rtol: 1e-6 });
  x.dispose(); y.dispose();
});

// ---- layerNorm ---------------------------------------------------------------------------------

test("layerNorm: forward matches float64 with and without weight/bias (C = 1, 8, 33, 300)", async () => {
  const cases: [number[], boolean, boolean][] = [
    [[4, 1], true, true], [[5, 8], true, true], [[2, 3, 33], false, false], [[3, 300], true, false], [[7, 33], false, true],
  ];
  for (const [i, [shape, hw, hb]] of cases.entries()) {
    const C = shape.at(-1)!;
    const a = randArr(shape, 300 + i, -3, 3);
    const w = hw ? randArr([C], 310 + i, 0.5, 2) : null, b = hb ? randArr([C], 320 + i, -1, 1) : null;
    const y = ws.tidy(() => ws.layerNorm(fromArr(a), w && fromArr(w), b && fromArr(b)));
    assertEquals(y.shape, shape);
    assertClose(await y.toArray(), refLayerNorm(a, w, b).data, { rtol: 1e-4, atol: 1e-5, msg: `${shape} w=${hw} b=${hb}` });
    y.dispose();
  }
});

test("addLayerNorm: [x + r, layerNorm(x + r)] in one pass equals float64 (C = 1, 8, 33, 300, 1000), and with autograd on its gradients are add's and layerNorm's", async () => {
  const cases: [number[], boolean][] = [[[4, 1], true], [[5, 8], true], [[2, 3, 33], false], [[3, 300], true], [[1, 1, 1000], true]];
  for (const [i, [shape, hw]] of cases.entries()) {
    const C = shape.at(-1)!;
    const xa = randArr(shape, 400 + i, -3, 3), ra = randArr(shape, 410 + i, -3, 3);
    const w = hw ? randArr([C], 420 + i, 0.5, 2) : null, b = hw ? randArr([C], 430 + i, -1, 1) : null;
    const sum = arr(shape, xa.data.map((v, k) => v + ra.data[k]!));
    const ins = [fromArr(xa), fromArr(ra), w && fromArr(w), b && fromArr(b)] as const;
    const d0 = ws.gpu().launcher.stats.dispatches;
    const [s, y] = ws.noGrad(() => addLayerNorm(ins[0], ins[1], ins[2], ins[3]));
    assertEquals(ws.gpu().launcher.stats.dispatches - d0, 1, "one kernel");
    for (const t of ins) t?.dispose();
    assertClose(await s.toArray(), sum.data, { rtol: 1e-6, atol: 1e-6, msg: `${shape} sum` });
    assertClose(await y.toArray(), refLayerNorm(sum, w, b).data, { rtol: 1e-4, atol: 1e-5, msg: `${shape} norm` });
    s.dispose(); y.dispose();
  }
  const xa = randArr([3, 7], 440, -2, 2), ra = randArr([3, 7], 441, -2, 2), wa = randArr([7], 442, 0.5, 2), ba = randArr([7], 443, -1, 1);
  const ref = ([x, r, w, b]: Arr[]) => refLayerNorm(arr(x!.shape, x!.data.map((v, k) => v + r!.data[k]!)), w!, b!);
  await gradCheck({ inputs: [xa, ra, wa, ba], gpu: ([x, r, w, b]) => { const [s, y] = addLayerNorm(x!, r!, w!, b!); s.dispose(); return y; }, ref });
  const x = ws.zeros([2, 4]);
  await assertThrows(() => addLayerNorm(x, ws.zeros([2, 3])), ws.ShapeError, "addLayerNorm", "[2, 3]");
  x.dispose();
});

test("layerNorm: eps is honoured (a constant row gives bias; large eps shrinks the output)", async () => {
  const a = randArr([3, 6], 9, -1, 1);
  const y = ws.tidy(() => ws.layerNorm(fromArr(a), null, null, 0.5));
  assertClose(await y.toArray(), refLayerNorm(a, null, null, 0.5).data, { rtol: 1e-5, atol: 1e-6 });
  const c = ws.tidy(() => ws.layerNorm(ws.full([2, 4], 3), null, ws.tensor([1, 2, 3, 4])));
  assertClose(await c.toArray(), [1, 2, 3, 4, 1, 2, 3, 4], { atol: 1e-6 });
  y.dispose(); c.dispose();
});

test("layerNorm: backward of x, weight and bias matches finite differences (C = 7; 70 rows in 3 chunks; C = 300)", async () => {
  const ln = ([x, w, b]: ws.Tensor[]) => ws.layerNorm(x!, w!, b!);
  const ref = ([x, w, b]: Arr[]) => refLayerNorm(x!, w!, b!);
  await gradCheck({ inputs: [randArr([3, 7], 11, -2, 2), randArr([7], 12, 0.5, 2), randArr([7], 13, -1, 1)], gpu: ln, ref });
  await gradCheck({ inputs: [randArr([70, 5], 14, -2, 2), randArr([5], 15, 0.5, 2), randArr([5], 16, -1, 1)], gpu: ln, ref });
  await gradCheck({ inputs: [randArr([2, 300], 17, -2, 2), randArr([300], 18, 0.5, 2), randArr([300], 19, -1, 1)], gpu: ln, ref });
  await gradCheck({ inputs: [randArr([2, 3, 9], 20, -2, 2)], gpu: ([x]) => ws.layerNorm(x!), ref: ([x]) => refLayerNorm(x!, null, null) });
});

/** float64 dweight and dbias of layerNorm for upstream dy: column sums of dy·x̂ and dy. */
function refLayerNormParamGrads(x: Arr, dy: Arr): [number[], number[]] {
  const C = x.shape.at(-1)!;
  const xh = refLayerNorm(x, null, null);
  const dw = new Array<number>(C).fill(0), db = new Array<number>(C).fill(0);
  for (let i = 0; i < dy.data.length; i++) { dw[i % C]! += dy.data[i]! * xh.data[i]!; db[i % C]! += dy.data[i]!; }
  return [dw, db];
}

test("layerNorm: weight and bias gradients over many rows (5,000 × 384 in 250 chunks; 300,000 × 3 at the 1,024-row chunk cap)", async () => {
  for (const [rows, C] of [[5000, 384], [300_000, 3], [257, 5]] as const) {
    const xa = randArr([rows, C], 31 + C, -2, 2), dya = randArr([rows, C], 41 + C);
    const x = fromArr(xa), w = fromArr(randArr([C], 51, 0.5, 2), { requiresGrad: true }), b = fromArr(randArr([C], 52), { requiresGrad: true });
    ws.tidy(() => ws.layerNorm(x, w, b).backward(fromArr(dya)));
    const [dw, db] = refLayerNormParamGrads(xa, dya);
    const atol = 3e-6 * Math.sqrt(rows) + 1e-5;
    assertClose(await w.grad!.toArray(), dw, { rtol: 1e-4, atol, msg: `dweight ${rows}×${C}` });
    assertClose(await b.grad!.toArray(), db, { rtol: 1e-4, atol, msg: `dbias ${rows}×${C}` });
    for (const t of [x, w, b]) { t.grad?.dispose(); t.dispose(); }
  }
}, { browser: false });

test("layerNorm in f16: weight and bias gradients for even and odd C (3,000 rows)", async () => {
  for (const C of [8, 5]) {
    const xa = randArr([3000, C], 61 + C, -2, 2), dya = randArr([3000, C], 71 + C);
    const x16 = fromArr(xa).to("f16"), dy16 = fromArr(dya).to("f16");
    const xr = arr([3000, C], await x16.to("f32").toArray()), dyr = arr([3000, C], await dy16.to("f32").toArray());
    const w = fromArr(randArr([C], 81, 0.5, 2)).to("f16").requiresGrad_(), b = ws.zeros([C], { dtype: "f16" }).requiresGrad_();
    ws.tidy(() => ws.layerNorm(x16, w, b).backward(dy16));
    assertEquals(w.grad!.dtype, "f16");
    const [dw, db] = refLayerNormParamGrads(xr, dyr);
    // x̂ is computed from f16 x in f32; the one f16 rounding of each sum dominates.
    assertClose(await w.grad!.toArray(), dw, { rtol: 2e-3, atol: 0.1, msg: `f16 dweight C=${C}` });
    assertClose(await b.grad!.toArray(), db, { rtol: 2e-3, atol: 0.1, msg: `f16 dbias C=${C}` });
    for (const t of [x16, dy16, w, b]) { t.grad?.dispose(); t.dispose(); }
  }
}, { needs: ["shader-f16"] });

test("layerNorm: only the inputs that need it get a gradient (weight alone)", async () => {
  const x = fromArr(randArr([4, 6], 21)), w = fromArr(randArr([6], 22, 0.5, 2), { requiresGrad: true });
  const dy = randArr([4, 6], 23);
  ws.tidy(() => ws.layerNorm(x, w).backward(fromArr(dy)));
  assert(x.grad === null, "x needs no gradient");
  const xh = refLayerNorm(randArr([4, 6], 21), null, null);
  const expected = new Array(6).fill(0);
  for (let i = 0; i < 24; i++) expected[i % 6] += dy.data[i]! * xh.data[i]!;
  assertClose(await w.grad!.toArray(), expected, { rtol: 1e-4, atol: 1e-5 });
  x.dispose(); w.grad!.dispose(); w.dispose();
});

// ---- embedding ---------------------------------------------------------------------------------

test("embedding: gathers rows for any index shape; out-of-range indices give zero rows", async () => {
  const W = randArr([10, 3], 30);
  const idx = [3, 0, 9, 3, -1, 10, 7, 7, 2, 5];
  const w = fromArr(W);
  const y = ws.tidy(() => ws.embedding(i32(idx, [2, 5]), w));
  assertEquals(y.shape, [2, 5, 3]);
  assertClose(await y.toArray(), Float32Array.from(refEmbedding(idx, [2, 5], W).data), { rtol: 0, atol: 0 });
  const W2 = randArr([4, 300], 31);
  const y2 = ws.tidy(() => ws.embedding(i32([1], []), fromArr(W2)));
  assertEquals(y2.shape, [300]);
  assertClose(await y2.toArray(), Float32Array.from(W2.data.subarray(300, 600)), { rtol: 0, atol: 0 });
  w.dispose(); y.dispose(); y2.dispose();
});

test("embedding: weight gradient with repeated indices matches finite differences", async () => {
  const idx = [1, 4, 1, 0, 4, 4, 2, 1, 5, 0, 1, 4];
  await gradCheck({
    inputs: [randArr([6, 4], 32)],
    gpu: ([w]) => ws.embedding(i32(idx, [3, 4]), w!),
    ref: ([w]) => refEmbedding(idx, [3, 4], w!),
  });
});

test("embedding: backward over 4100 indices (multi-block sort) is the exact scatter-add, deterministic, skips bad indices", async () => {
  const V = 37, C = 3, N = 4100;
  const idx: number[] = [];
  let s = 12345;
  for (let i = 0; i < N; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; idx.push((s >>> 8) % (V + 4) - 2); }
  const dyA = randArr([N, C], 33);
  const expected = new Float64Array(V * C);
  for (let i = 0; i < N; i++) {
    const v = idx[i]!;
    if (v < 0 || v >= V) continue;
    for (let c = 0; c < C; c++) expected[v * C + c]! += Math.fround(dyA.data[i * C + c]!);
  }
  const runs: Float32Array[] = [];
  for (let r = 0; r < 2; r++) {
    const w = ws.randn([V, C], { seed: 1, requiresGrad: true });
    ws.tidy(() => ws.embedding(i32(idx, [N]), w).backward(fromArr(dyA)));
    runs.push(await w.grad!.toArray() as Float32Array);
    w.grad!.dispose(); w.dispose();
  }
  assertClose(runs[0]!, expected, { rtol: 1e-5, atol: 1e-5 });
  assertEquals(Array.from(runs[0]!), Array.from(runs[1]!), "two backward runs agree bit for bit");
});

// ---- crossEntropy ------------------------------------------------------------------------------

test("crossEntropy: mean / sum / none match float64, with an ignored row and C = 1, 5, 300", async () => {
  const cases: [number[], number[]][] = [
    [[6, 5], [0, 4, -100, 2, 2, 1]],
    [[3, 300], [299, 0, 150]],
    [[4, 1], [0, 0, -100, 0]],
    [[2, 3, 4], [3, 0, 1, -100, 2, 2]],
  ];
  for (const [i, [shape, t]] of cases.entries()) {
    const a = randArr(shape, 400 + i, -5, 5);
    for (const reduction of ["mean", "sum", "none"] as const) {
      const y = ws.tidy(() => ws.crossEntropy(fromArr(a), i32(t, shape.slice(0, -1)), { reduction }));
      assertEquals(y.shape, reduction === "none" ? shape.slice(0, -1) : []);
      assertClose(await y.toArray(), refCrossEntropy(a, t, reduction).data, { rtol: 1e-5, atol: 1e-5, msg: `${shape} ${reduction}` });
      y.dispose();
    }
  }
});

test("crossEntropy: flattened targets [N], a custom ignoreIndex, out-of-range targets skipped, all ignored → 0 (not NaN)", async () => {
  const a = randArr([2, 3, 4], 410, -2, 2);
  const t = [3, 2, 1, 2, 0, 7];
  const y = ws.tidy(() => ws.crossEntropy(fromArr(a), i32(t, [6]), { ignoreIndex: 2 }));
  assertClose(await y.toArray(), refCrossEntropy(a, t, "mean", 2).data, { rtol: 1e-5, atol: 1e-6 });
  const z = ws.tidy(() => ws.crossEntropy(fromArr(a), i32([-100, -100, -100, -100, -100, -100], [2, 3])));
  assertEquals(Array.from(await z.toArray()), [0]);
  y.dispose(); z.dispose();
});

test("crossEntropy: backward matches finite differences for mean (with an ignored row), sum and none", async () => {
  const t = [2, -100, 0, 4, 1];
  for (const reduction of ["mean", "sum", "none"] as const) {
    await gradCheck({
      inputs: [randArr([5, 5], 420, -2, 2)],
      gpu: ([x]) => ws.crossEntropy(x!, i32(t, [5]), { reduction }),
      ref: ([x]) => refCrossEntropy(x!, t, reduction),
    });
  }
  await gradCheck({
    inputs: [randArr([2, 300], 421, -2, 2)],
    gpu: ([x]) => ws.crossEntropy(x!, i32([7, 299], [2])),
    ref: ([x]) => refCrossEntropy(x!, [7, 299]),
  });
});

test("crossEntropy: backward with every row ignored is all zeros (no NaN)", async () => {
  const x = fromArr(randArr([3, 4], 422), { requiresGrad: true });
  ws.tidy(() => ws.crossEntropy(x, i32([-100, -100, -100], [3])).backward());
  assertEquals(Array.from(await x.grad!.toArray()), new Array(12).fill(0));
  x.grad!.dispose(); x.dispose();
});

// ---- dropout -----------------------------------------------------------------------------------

test("dropout: keep rate ≈ 1 − p, kept values scaled by 1/(1 − p), same seed → same mask", async () => {
  const n = 1 << 15;
  const x = ws.ones([n]);
  for (const p of [0.1, 0.5, 0.8]) {
    const y = await ws.tidy(() => ws.dropout(x, p, { seed: 7 })).toArray();
    let kept = 0;
    for (const v of y) {
      if (v !== 0) { kept++; assertClose([v], [1 / (1 - p)], { rtol: 1e-6, msg: "kept value" }); }
    }
    const rate = kept / n, sd = Math.sqrt(p * (1 - p) / n);
    assert(Math.abs(rate - (1 - p)) < 5 * sd, `p=${p}: keep rate ${rate}, expected ${1 - p} ± ${5 * sd}`);
  }
  const a = ws.dropout(x, 0.5, { seed: 3 }), b = ws.dropout(x, 0.5, { seed: 3 }), c = ws.dropout(x, 0.5, { seed: 4 });
  const [av, bv, cv] = [await a.toArray(), await b.toArray(), await c.toArray()];
  assertEquals(Array.from(av), Array.from(bv), "same seed, same mask");
  assert(av.some((v, i) => v !== cv[i]), "another seed gives another mask");
  ws.manualSeed(11);
  const g1 = ws.dropout(x, 0.5), g2 = ws.dropout(x, 0.5);
  ws.manualSeed(11);
  const g3 = ws.dropout(x, 0.5);
  const [v1, v2, v3] = [await g1.toArray(), await g2.toArray(), await g3.toArray()];
  assert(v1.some((v, i) => v !== v2[i]), "successive calls draw new masks");
  assertEquals(Array.from(v1), Array.from(v3), "manualSeed reproduces the masks");
  for (const t of [x, a, b, c, g1, g2, g3]) t.dispose();
});

test("dropout: backward regenerates the forward mask (dx = dy·mask/(1 − p)) and matches finite differences", async () => {
  const p = 0.4, shape = [7, 37];
  const a = randArr(shape, 500, 0.5, 1.5), dyA = randArr(shape, 501, -1, 1);
  const x = fromArr(a, { requiresGrad: true });
  const y = ws.dropout(x, p, { seed: 21 });
  const yv = await y.toArray();
  y.backward(fromArr(dyA));
  const gx = await x.grad!.toArray();
  let dropped = 0;
  for (let i = 0; i < yv.length; i++) {
    const kept = yv[i] !== 0;
    if (!kept) dropped++;
    assertClose([yv[i]!], [kept ? a.data[i]! / (1 - p) : 0], { rtol: 1e-6, msg: `y[${i}]` });
    assertClose([gx[i]!], [kept ? dyA.data[i]! / (1 - p) : 0], { rtol: 1e-6, atol: 0, msg: `dx[${i}]` });
  }
  assert(dropped > 0 && dropped < yv.length, "some dropped, some kept");
  const mask = Array.from(yv, (v) => (v !== 0 ? 1 : 0));
  await gradCheck({
    inputs: [a],
    gpu: ([t]) => ws.dropout(t!, p, { seed: 21 }),
    ref: ([t]) => ({ shape: [...shape], data: t!.data.map((v, i) => (v * mask[i]!) / (1 - p)) }),
  });
  y.dispose(); x.grad!.dispose(); x.dispose();
});

test("dropout: p = 0 and training = false return the input and pass the gradient through", async () => {
  const a = randArr([3, 5], 502);
  for (const opts of [{ p: 0, o: {} }, { p: 0.5, o: { training: false } }]) {
    const x = fromArr(a, { requiresGrad: true });
    const y = ws.dropout(x, opts.p, opts.o);
    assertClose(await y.toArray(), Float32Array.from(a.data), { rtol: 0, atol: 0 });
    ws.tidy(() => y.mul(2).sum().backward());
    assertEquals(Array.from(await x.grad!.toArray()), new Array(15).fill(2));
    y.dispose(); x.grad!.dispose(); x.dispose();
  }
});

// ---- f16, memory, errors -----------------------------------------------------------------------

test("nn ops in f16: softmax, logSoftmax, layerNorm, embedding, crossEntropy, dropout forward", async () => {
  const a = randArr([5, 40], 600, -3, 3);
  const w = randArr([40], 601, 0.5, 1.5), b = randArr([40], 602, -1, 1);
  const t = [1, 39, -100, 0, 5];
  const outs = ws.tidy(() => {
    const x = fromArr(a).to("f16");
    return {
      sm: ws.softmax(x).to("f32"),
      lsm: ws.logSoftmax(x, -1).to("f32"),
      ln: ws.layerNorm(x, fromArr(w).to("f16"), fromArr(b).to("f16")).to("f32"),
      emb: ws.embedding(i32([4, 0], [2]), x).to("f32"),
      ce: ws.crossEntropy(x, i32(t, [5])).to("f32"),
      dr: ws.dropout(x, 0.5, { seed: 1 }).to("f32"),
    };
  });
  const tol = { rtol: 1e-2, atol: 1e-2 };
  assertClose(await outs.sm.toArray(), refSoftmax(a, false, false).data, { ...tol, msg: "softmax" });
  assertClose(await outs.lsm.toArray(), refSoftmax(a, false, true).data, { ...tol, msg: "logSoftmax" });
  assertClose(await outs.ln.toArray(), refLayerNorm(a, w, b).data, { ...tol, msg: "layerNorm" });
  assertClose(await outs.emb.toArray(), refEmbedding([4, 0], [2], a).data, { ...tol, msg: "embedding" });
  assertClose(await outs.ce.toArray(), refCrossEntropy(a, t).data, { ...tol, msg: "crossEntropy" });
  const dr = await outs.dr.toArray();
  dr.forEach((v, i) => { if (v !== 0) assertClose([v], [2 * a.data[i]!], { ...tol, msg: "dropout" }); });
  for (const o of Object.values(outs)) o.dispose();
}, { needs: ["shader-f16"] });

test("nn ops free everything they allocate (forward + backward of all six)", async () => {
  const before = ws.memoryStats();
  const x = fromArr(randArr([4, 6], 700), { requiresGrad: true });
  const w = fromArr(randArr([6], 701), { requiresGrad: true });
  const e = fromArr(randArr([9, 6], 702), { requiresGrad: true });
  ws.tidy(() => {
    const h = ws.layerNorm(x, w, w).add(ws.embedding(i32([1, 8, 8, 0], [4]), e));
    const s = ws.softmax(h, 0).add(ws.logSoftmax(h, -1, {}));
    const d = ws.dropout(s, 0.2, { seed: 1 });
    ws.crossEntropy(d, i32([0, 5, -100, 2], [4])).backward();
  });
  for (const t of [x, w, e]) { assert(t.grad !== null, "got a gradient"); t.grad!.dispose(); t.dispose(); }
  const after = ws.memoryStats();
  assertEquals(after.liveTensors, before.liveTensors, "live tensors");
  assertEquals(after.liveBytes, before.liveBytes, "live bytes");
});

test("nn ops: typed errors naming the op and the shapes", async () => {
  const x = ws.zeros([4, 5]), bad = ws.zeros([3]), w5 = ws.zeros([5]);
  const tf = ws.zeros([4]), ti = i32([0, 1, 2, 3], [4]), t3 = i32([0, 1, 2], [3]);
  await assertThrows(() => ws.crossEntropy(x, t3), ws.ShapeError, "crossEntropy", "[3]", "[4, 5]");
  await assertThrows(() => ws.crossEntropy(x, tf), ws.DTypeError, "crossEntropy", "i32");
  await assertThrows(() => ws.crossEntropy(x, ti, { reduction: "avg" as "mean" }), ws.WebslopeError, "reduction");
  await assertThrows(() => ws.layerNorm(x, bad), ws.ShapeError, "layerNorm", "[3]", "[4, 5]");
  await assertThrows(() => ws.layerNorm(x, w5, bad), ws.ShapeError, "layerNorm", "bias", "[3]");
  await assertThrows(() => ws.layerNorm(ti), ws.DTypeError, "layerNorm");
  await assertThrows(() => ws.embedding(ti, w5), ws.ShapeError, "embedding", "[5]");
  await assertThrows(() => ws.embedding(tf, x), ws.DTypeError, "embedding", "i32", "[4]");
  await assertThrows(() => ws.softmax(x, -1, { causal: true }), ws.ShapeError, "softmax", "[4, 5]");
  await assertThrows(() => ws.logSoftmax(x, 0, { causal: true }), ws.ShapeError, "logSoftmax");
  await assertThrows(() => ws.softmax(x, 2), ws.ShapeError, "softmax", "axis 2");
  await assertThrows(() => ws.softmax(ti), ws.DTypeError, "softmax");
  await assertThrows(() => ws.dropout(x, 1), ws.WebslopeError, "dropout", "[0, 1)");
  await assertThrows(() => ws.dropout(x, -0.1), ws.WebslopeError, "dropout");
  for (const t of [x, bad, w5, tf, ti, t3]) t.dispose();
});
