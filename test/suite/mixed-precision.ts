// Trainer({ precision: "mixed-f16" }): dynamic loss scaling decided and applied on the GPU. On the
// software adapters (no matrix units) the matmuls stay f32, so these cases test the scaler, the
// skipped-step path of AdamW / SparseAdamW, the GPU step counts and the checkpointed scaler
// state, and that a mixed run matches the f32 one up to rounding. Cases gated on the matrix-unit
// features check that a mixed step really runs its matmuls there and stays close to f32.
import * as ws from "../../src/index.ts";
import { GPT, SparseLinear } from "../../src/nn/index.ts";
import { CharTokenizer, Corpus, Trainer, type TrainerOptions, checkpointFromBytes, checkpointToBytes } from "../../src/train/index.ts";
import { assert, assertClose, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

const TEXT = "the quick brown fox jumps over the lazy dog. ".repeat(40);

function setup(o: Partial<TrainerOptions> = {}, size: { blockSize?: number; nEmbd?: number; batchSize?: number } = {}) {
  const tok = new CharTokenizer(TEXT);
  const corpus = new Corpus(tok.encode(TEXT), { valFraction: 0.2 });
  const model = new GPT({ vocabSize: tok.vocabSize, blockSize: size.blockSize ?? 16, nLayer: 1, nHead: 2, nEmbd: size.nEmbd ?? 32, seed: 1 });
  const trainer = new Trainer(model, corpus, { batchSize: size.batchSize ?? 8, totalSteps: 40, lr: 3e-3, seed: 2, ...o });
  return { model, trainer, tok, corpus };
}

async function run(trainer: Trainer, n: number): Promise<number[]> {
  const ls = Array.from({ length: n }, () => trainer.step());
  const v = await Promise.all(ls.map((l) => l.item()));
  for (const l of ls) l.dispose();
  return v;
}

/** Every parameter and optimizer moment of the trainer, read back. */
async function snapshot(trainer: Trainer): Promise<Float32Array[]> {
  const ts: ws.Tensor[] = [...trainer.model.parameters()];
  for (const p of trainer.dense.paramGroups.flatMap((g) => g.params)) {
    const s = trainer.dense.stateOf(p);
    if (s) ts.push(s.m, s.v);
  }
  for (const l of trainer.sparse?.layers ?? []) {
    const s = trainer.sparse!.stateOf(l);
    if (s) ts.push(s.m, s.v);
  }
  return (await Promise.all(ts.map((t) => t.toArray()))) as Float32Array[];
}

function steps(trainer: Trainer): number[] {
  const d = trainer.dense.paramGroups.flatMap((g) => g.params).map((p) => trainer.dense.stateOf(p)?.step ?? 0);
  const s = trainer.sparse?.layers.map((l) => trainer.sparse!.stepOf(l)) ?? [];
  return [...d, ...s];
}

for (const slope of [false, true]) {
  const mode = slope ? "SLoPe" : "dense";
  test(`mixed-f16 (${mode}): an overflowing step is skipped on the GPU — params, moments, step counts unchanged, scale halved`, async () => {
    const { model, trainer } = setup({ precision: "mixed-f16", slope: slope ? {} : undefined });
    assertEquals(ws.gpu().matrixUnits.tiles.length > 0, trainer.precisionWarning === null, `precisionWarning: ${trainer.precisionWarning}`);
    await run(trainer, 1);
    let st = (await trainer.syncScaler())!;
    assertEquals([st.scale, st.growthTracker, st.skipped, st.lastSkipped], [2 ** 16, 1, 0, false]);
    assert(steps(trainer).every((n) => n === 1), `every optimizer state took one step: ${steps(trainer)}`);
    const before = await snapshot(trainer);
    // S = 2^126: the scaled gradients' squares (or the gradients themselves) overflow f32.
    trainer.scaler!.loadState({ scale: 2 ** 126, growthTracker: 1, skipped: 0 });
    const [loss] = await run(trainer, 1);
    assert(Number.isFinite(loss), "the forward pass does not see the scale");
    st = (await trainer.syncScaler())!;
    assertEquals([st.scale, st.growthTracker, st.skipped, st.lastSkipped], [2 ** 125, 0, 1, true]);
    assertEquals(trainer.lastScaler?.step, 1);
    assertEquals(trainer.lastScaler?.skipped, 1);
    assert(!Number.isFinite(await trainer.lastGradNorm!.item()), "the norm of an overflowed step is not finite");
    const after = await snapshot(trainer);
    assertEquals(after.length, before.length);
    after.forEach((a, i) => assertEquals([...a], [...before[i]!], `tensor ${i} unchanged by the skipped step`));
    assert(steps(trainer).every((n) => n === 1), `step counts not advanced: ${steps(trainer)}`);
    assertEquals(trainer.stepCount, 2, "the trainer's iteration (the LR schedule) advances, as in PyTorch");
    // A sane scale again: the next step updates and counts.
    trainer.scaler!.loadState({ scale: 2 ** 10 });
    await run(trainer, 1);
    st = (await trainer.syncScaler())!;
    assertEquals([st.scale, st.lastSkipped], [2 ** 10, false]);
    assert(steps(trainer).every((n) => n === 2), `step counts: ${steps(trainer)}`);
    const moved = await snapshot(trainer);
    assert(moved.some((a, i) => a.some((v, j) => v !== before[i]![j])), "a good step changes the parameters");
    trainer.dispose(); model.dispose();
  });

  test(`mixed-f16 (${mode}): 8 steps match the f32 run up to rounding (fallback path)`, async () => {
    const a = setup({ slope: slope ? {} : undefined });
    const la = await run(a.trainer, 8);
    const pa = await snapshot(a.trainer);
    a.trainer.dispose(); a.model.dispose();
    const b = setup({ precision: "mixed-f16", slope: slope ? {} : undefined });
    const lb = await run(b.trainer, 8);
    const pb = await snapshot(b.trainer);
    if (ws.gpu().matrixUnits.tiles.length === 0) {
      assertClose(lb, la, { rtol: 1e-5, atol: 1e-6, msg: "losses" });
      // atol: the attention's key bias has a zero gradient in exact arithmetic (softmax ignores a
      // shift of every key), so Adam turns its rounding noise into lr-sized steps of either sign.
      pb.forEach((x, i) => assertClose(x, pa[i]!, { rtol: 1e-4, atol: 2e-5, msg: `tensor ${i}` }));
    } else {
      assertClose(lb, la, { rtol: 2e-2, msg: "losses on the matrix units" });
    }
    assertEquals((await b.trainer.syncScaler())!.skipped, 0);
    b.trainer.dispose(); b.model.dispose();
  });
}

test("mixed-f16: the scale doubles after growthInterval good steps and the tracker restarts", async () => {
  const { model, trainer } = setup({ precision: "mixed-f16", lossScale: { initScale: 1024, growthInterval: 3 } });
  await run(trainer, 2);
  let st = (await trainer.syncScaler())!;
  assertEquals([st.scale, st.growthTracker], [1024, 2]);
  await run(trainer, 1);
  st = (await trainer.syncScaler())!;
  assertEquals([st.scale, st.growthTracker], [2048, 0]);
  await run(trainer, 4);
  st = (await trainer.syncScaler())!;
  assertEquals([st.scale, st.growthTracker, st.skipped], [4096, 1, 0]);
  assertEquals(trainer.lastScaler?.step, 6);
  assertEquals(trainer.lastScaler?.scale, 4096);
  trainer.dispose(); model.dispose();
});

test("mixed-f16: bad precision and loss-scale options are typed errors naming the value", () => {
  const tok = new CharTokenizer(TEXT);
  const corpus = new Corpus(tok.encode(TEXT), { valFraction: 0.2 });
  const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 32, seed: 1 });
  const bad: [Partial<TrainerOptions>, RegExp][] = [
    [{ precision: "bf16" as never }, /precision must be "f32" or "mixed-f16", got "bf16"/],
    [{ lossScale: { initScale: 8 } }, /lossScale is for precision "mixed-f16"/],
    [{ precision: "mixed-f16", lossScale: { initScale: -1 } }, /initScale must be .*got -1/],
    [{ precision: "mixed-f16", lossScale: { growthInterval: 1.5 } }, /growthInterval must be an integer/],
    [{ precision: "mixed-f16", lossScale: { backoffFactor: 2 } }, /backoffFactor must be .*< 1/],
  ];
  for (const [o, re] of bad) {
    let err: unknown = null;
    try { new Trainer(model, corpus, { batchSize: 8, totalSteps: 4, slope: {}, ...o }); } catch (e) { err = e; }
    assert(err instanceof ws.ValueError && re.test((err as Error).message), `${JSON.stringify(o)}: ${(err as Error)?.message}`);
  }
  assert(model.namedModules().every(([, m]) => !(m instanceof SparseLinear)), "nothing was changed: the model was not pruned");
  model.dispose();
});

test("mixed-f16: a checkpoint round trip restores the scaler and the GPU step counts; both runs continue alike", async () => {
  const a = setup({ precision: "mixed-f16", slope: { adapterRank: 2, adapterAt: 0.05 } });
  await run(a.trainer, 2);
  a.trainer.scaler!.loadState({ scale: 2 ** 126, growthTracker: 1, skipped: 0 });
  await run(a.trainer, 1); // skipped: scale 2^125, skipped 1
  a.trainer.scaler!.loadState({ scale: 2 ** 12, growthTracker: 5, skipped: 1 });
  await run(a.trainer, 1);
  const bytes = await checkpointToBytes({ model: a.model, tokenizer: a.tok, trainer: a.trainer });
  const sa = (await a.trainer.syncScaler())!;
  assertEquals([sa.scale, sa.growthTracker, sa.skipped], [2 ** 12, 6, 1]);
  const b = setup({ precision: "mixed-f16", slope: { adapterRank: 2, adapterAt: 0.05 } });
  await checkpointFromBytes(bytes, { trainer: b.trainer });
  const sb = (await b.trainer.syncScaler())!;
  assertEquals([sb.scale, sb.growthTracker, sb.skipped], [sa.scale, sa.growthTracker, sa.skipped]);
  assertEquals(steps(b.trainer), steps(a.trainer), "optimizer step counts (the skipped step not counted)");
  assert(steps(a.trainer).some((n) => n === 3), `dense steps are 3 of 4 iterations: ${steps(a.trainer)}`);
  const [la, lb] = [await run(a.trainer, 2), await run(b.trainer, 2)];
  assertEquals(lb, la, "bitwise-equal losses after the resume");
  assertEquals((await snapshot(b.trainer)).map((x) => [...x]), (await snapshot(a.trainer)).map((x) => [...x]));
  a.trainer.dispose(); a.model.dispose(); b.trainer.dispose(); b.model.dispose();
});

const NEEDS = { needs: ["chromium-experimental-subgroup-matrix" as const, "shader-f16" as const] };

test("mixed-f16 on the matrix units: a step's matmuls run as matmul_sgmat dispatches and its loss is close to f32's", async () => {
  const size = { blockSize: 32, nEmbd: 64, batchSize: 8 };
  const mixed = setup({ precision: "mixed-f16" }, size);
  assertEquals(mixed.trainer.precisionWarning, null);
  let loss: ws.Tensor | null = null;
  const p = await ws.profile(() => { loss = mixed.trainer.step(); });
  const lm = await loss!.item();
  (loss as ws.Tensor | null)?.dispose();
  const kernels = p.events.map((e) => e.kernel);
  const sg = kernels.filter((k) => k.startsWith("matmul_sgmat")).length;
  assert(sg > 0, `no matrix-unit dispatch among ${p.dispatches} (${[...new Set(p.events.map((e) => e.family))].join(", ")})`);
  assertEquals(ws.getFloat32MatmulPrecision(), "highest", "the step restores the global matmul precision");
  const ref = setup({}, size);
  const [lf] = await run(ref.trainer, 1);
  assertClose([lm], [lf!], { rtol: 1e-2, msg: "first-step loss, f16 operands vs f32" });
  const more = [...await run(mixed.trainer, 9)], moreF = await run(ref.trainer, 9);
  assertClose(more, moreF, { rtol: 3e-2, msg: "ten steps" });
  mixed.trainer.dispose(); mixed.model.dispose(); ref.trainer.dispose(); ref.model.dispose();
}, NEEDS);

test("sddmm method \"matmul\" (dense dYᵀX through the matmul front-end, then the kept entries gathered) equals M⊙(dYᵀX) in float64, overwriting and accumulating, 3-D inputs", async () => {
  const { compress24, sddmm } = await import("../../src/sparse/index.ts");
  const { randArr, matmul } = await import("../ref/cpu.ts");
  const { nmMask, gather } = await import("../ref/sparse.ts");
  const { fromArr } = await import("../ref/convert.ts");
  for (const [rows, K, dOut, seed] of [[67, 100, 33, 1], [300, 36, 130, 2]] as const) {
    const w = randArr([dOut, K], seed), dY = randArr([rows, dOut], seed + 10), x = randArr([rows, K], seed + 20);
    const s = compress24(fromArr(w));
    const ref = gather(matmul(dY, x, true, false), nmMask(w, 2, 4), 2, 4);
    // 3-D [1, rows, ·] like a layer's activations.
    const dY3 = ws.tensor(Float32Array.from(dY.data), [1, rows, dOut]), x3 = ws.tensor(Float32Array.from(x.data), [1, rows, K]);
    const g = sddmm(dY3, x3, s, { method: "matmul" });
    assertEquals(g.shape, s.values.shape as number[]);
    assertClose(await g.toArray(), ref, { rtol: 1e-4, atol: 1e-5, msg: `matmul sddmm ${rows}x${K}x${dOut}` });
    sddmm(dY3, x3, s, { method: "matmul", out: g, accumulate: true });
    assertClose(await g.toArray(), ref.map((v) => 2 * v), { rtol: 1e-4, atol: 2e-5, msg: `matmul sddmm accumulated ${rows}x${K}x${dOut}` });
    for (const t of [g, dY3, x3, s.values, s.meta]) t.dispose();
  }
});

test("mixed-f16 on the matrix units: sddmm's automatic method is the matmul one, within f16 rounding of float64", async () => {
  const { compress24, sddmm } = await import("../../src/sparse/index.ts");
  const { sddmmUsesMatmul } = await import("../../src/sparse/sddmm.ts");
  const { randArr, matmul } = await import("../ref/cpu.ts");
  const { nmMask, gather } = await import("../ref/sparse.ts");
  const { fromArr } = await import("../ref/convert.ts");
  const prev = ws.getFloat32MatmulPrecision();
  ws.setFloat32MatmulPrecision("medium");
  try {
    const [rows, K, dOut] = [2048, 384, 192];
    assert(sddmmUsesMatmul(rows, dOut, K, "f32"), "a 2048-row weight gradient goes through the matrix units");
    const w = randArr([dOut, K], 5), dY = randArr([rows, dOut], 6), x = randArr([rows, K], 7);
    const s = compress24(fromArr(w));
    const g = sddmm(fromArr(dY), fromArr(x), s);
    const ref = gather(matmul(dY, x, true, false), nmMask(w, 2, 4), 2, 4);
    assertClose(await g.toArray(), ref, { rtol: 2e-2, atol: 2e-2 * Math.sqrt(rows) / 8, msg: "sddmm on the matrix units" });
    const keys = ws.gpu().pipelines.all().map((p) => p.kernel.key);
    assert(keys.some((k) => k.startsWith("sp_gather_kept")) && keys.some((k) => k.startsWith("matmul_sgmat")), "the gather and a matrix-unit product ran");
    for (const t of [g, s.values, s.meta]) t.dispose();
  } finally {
    ws.setFloat32MatmulPrecision(prev);
  }
}, { needs: ["chromium-experimental-subgroup-matrix", "shader-f16"] });
