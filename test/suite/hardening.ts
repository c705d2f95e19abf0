// Issue 11's cases, each kept as a test: the public API driven as a careless user would (bad
// input, throwing scopes, failed calls, leaks outside tidy), answered with a typed error that
// names the op, the value and the fix — and a failed call changes nothing.
import * as ws from "../../src/index.ts";
import { GPT, LayerNorm, Linear, type LinearLike, Module, SparseLinear } from "../../src/nn/index.ts";
import { AdamW, SparseAdamW, clipGradNorm } from "../../src/optim/index.ts";
import { pruneModel } from "../../src/slope/index.ts";
import { CharTokenizer, Corpus, Trainer, generate } from "../../src/train/index.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

/**
 * assertThrows without an await: tests that compare memoryStats() around refused calls stay
 * synchronous, so no finalizer of an earlier test's garbage can run in between.
 */
function refuses(fn: () => unknown, cls: abstract new (...args: never[]) => Error, ...fragments: string[]): void {
  let err: unknown = null;
  try { fn(); } catch (e) { err = e; }
  assert(err instanceof cls, `expected ${cls.name}, got ${err ? `${(err as Error).name}: ${(err as Error).message}` : "no error"}`);
  for (const f of fragments) assert((err as Error).message.includes(f), `${cls.name} message lacks "${f}": ${(err as Error).message}`);
}

const tiny = (extra: Partial<ConstructorParameters<typeof GPT>[0]> = {}) =>
  new GPT({ vocabSize: 11, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, seed: 1, ...extra });

test("tidy() frees everything its function made when the function throws", async () => {
  const before = ws.memoryStats();
  for (let i = 0; i < 100; i++) {
    try {
      ws.tidy(() => {
        const a = ws.randn([64, 64], { seed: i });
        a.matmul(a).add(1);
        throw new Error("user code failed");
      });
    } catch (e) {
      assert((e as Error).message === "user code failed", "the user's error comes through unchanged");
    }
  }
  const after = ws.memoryStats();
  assertEquals([after.liveBytes, after.liveTensors], [before.liveBytes, before.liveTensors], "live bytes and tensors after 100 throwing tidy() calls");
  const outer = ws.tidy(() => {
    const kept = ws.ones([3]);
    try { ws.tidy(() => { ws.ones([5]); throw new ws.ShapeError("inner", "x"); }); } catch { /* handled */ }
    return kept;
  });
  assert(!outer.isDisposed, "the enclosing scope's result survives an inner scope's throw");
  outer.dispose();
  assertEquals(ws.memoryStats().liveTensors, before.liveTensors);
  await assertThrows(() => ws.tidy((async () => 1) as unknown as () => number), ws.WebslopeError, "synchronous");
});

for (const attention of ["fused", "unfused"] as const) {
  test(`GPT.forward outside tidy leaks no views (${attention} attention)`, async () => {
    const model = tiny({ attention });
    model.eval();
    const idx = ws.tensor(Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const before = ws.memoryStats();
    for (let i = 0; i < 3; i++) ws.noGrad(() => model.forward(idx)).dispose();
    model.train();
    for (let i = 0; i < 2; i++) { const l = model.loss(idx, idx); l.backward(); l.dispose(); model.zeroGrad(); }
    const after = ws.memoryStats();
    assertEquals([after.liveTensors, after.liveBytes], [before.liveTensors, before.liveBytes], "live tensors and bytes after forward/loss + dispose");
    idx.dispose(); model.dispose();
  });
}

test("CharTokenizer encodes by code points: text with emoji round-trips", async () => {
  const text = "héllo 🙂 wörld 🚀🙂!";
  const tok = new CharTokenizer(text);
  assertEquals(tok.vocabSize, new Set([...text]).size);
  const ids = tok.encode(text);
  assertEquals(ids.length, [...text].length, "one id per code point");
  assertEquals(tok.decode(ids), text);
  await assertThrows(() => tok.encode("x"), ws.ValueError, "CharTokenizer.encode", "\"x\"");
  await assertThrows(() => tok.decode([tok.vocabSize]), ws.ValueError, "CharTokenizer.decode", `${tok.vocabSize}`);
  await assertThrows(() => tok.decode([0.5]), ws.ValueError, "0.5");
});

/** Two prunable layers under "blocks.", a fixed input, and sums of their outputs as losses. */
class TwoLayers extends Module {
  constructor(second: [number, number] = [8, 8]) {
    super();
    this.module("blocks.a", new Linear(8, 8, { seed: 1, bias: false }));
    this.module("blocks.b", new Linear(second[0], second[1], { seed: 2, bias: false }));
  }
  layer(name: "a" | "b"): LinearLike {
    return this.namedChildren().find(([n]) => n === `blocks.${name}`)![1] as LinearLike;
  }
}

test("a failed pruneModel changes nothing: the layers before the bad one stay dense and alive", async () => {
  const m = new TwoLayers([6, 8]); // blocks.b has inFeatures 6: not a multiple of 4
  const keys = [...m.stateDict().keys()];
  const w = m.layer("a") as Linear;
  const before = ws.memoryStats();
  refuses(() => pruneModel(m, { skip: [] }), ws.ShapeError, "blocks.b", "nothing was changed");
  refuses(() => pruneModel(m, { skip: [], pattern: "3:5" as "2:4" }), ws.ShapeError, "3:5");
  refuses(() => pruneModel(m, { skip: [], include: (n) => n === "blocks.a", addLora: true, loraRank: 99 }), ws.ShapeError, "rank 99");
  refuses(() => pruneModel(m, { mergeLora: true }), ws.WebslopeError, "mergeLora");
  assert(m.layer("a") === w && !w.weight.isDisposed, "blocks.a is still the same dense Linear");
  assertEquals([...m.stateDict().keys()], keys);
  const after = ws.memoryStats();
  assertEquals([after.liveBytes, after.liveTensors], [before.liveBytes, before.liveTensors], "nothing allocated or freed");
  m.dispose();
});

test("a failed Module.loadStateDict changes nothing (a disposed entry, a non-tensor, a non-Map)", async () => {
  const m = new TwoLayers();
  const orig = await Promise.all([...m.stateDict().values()].map((t) => t.toArray()));
  const state = new Map([...m.stateDict()].map(([k, t]) => [k, ws.full([...t.shape], 5)]));
  const last = [...state.keys()].at(-1)!;
  state.get(last)!.dispose();
  await assertThrows(() => m.loadStateDict(state), ws.ShapeError, last, "disposed", "nothing was loaded");
  state.set(last, 3 as unknown as ws.Tensor);
  await assertThrows(() => m.loadStateDict(state), ws.ShapeError, "expected a Tensor");
  await assertThrows(() => m.loadStateDict({} as Map<string, ws.Tensor>), ws.ValueError, "Map");
  const now = await Promise.all([...m.stateDict().values()].map((t) => t.toArray()));
  assertEquals(now.map((a) => Array.from(a)), orig.map((a) => Array.from(a)), "weights unchanged");
  for (const t of state.values()) if (t instanceof ws.Tensor) t.dispose();
  m.dispose();
});

test("SparseAdamW: refuses a model with no sparse layers; a failed loadStateDict leaves it working", async () => {
  const dense = new TwoLayers();
  await assertThrows(() => new SparseAdamW(dense), ws.ValueError, "SparseAdamW", "pruneModel");
  await assertThrows(() => new AdamW(dense.parameters(), { lr: NaN }), ws.ValueError, "AdamW", "lr", "NaN");
  await assertThrows(() => new AdamW(dense.parameters(), { betas: [0.9, 1] }), ws.ValueError, "betas[1]", "< 1");
  pruneModel(dense, { skip: [] });
  await assertThrows(() => new SparseAdamW(dense, { maskChangeFreq: 0 }), ws.ValueError, "maskChangeFreq");
  const opt = new SparseAdamW(dense, { lr: 0.01 });
  const x = ws.randn([4, 8], { seed: 3 });
  const stepOnce = () => { ws.tidy(() => dense.layer("a").forward(x).add(dense.layer("b").forward(x)).sum().backward()); opt.step(); opt.zeroGrad(); };
  stepOnce();
  const good = opt.stateDict();
  const snapshot = await Promise.all([...good.tensors.values()].map((t) => t.toArray()));
  await assertThrows(() => opt.loadStateDict({} as never), ws.ValueError, "SparseAdamW.loadStateDict", "stateDict()");
  await assertThrows(() => opt.loadStateDict({ step: -1, tensors: new Map() }), ws.ValueError, "step", "-1");
  const bad = new Map(good.tensors);
  const wrong = ws.zeros([3]);
  bad.set("1.v", wrong);
  await assertThrows(() => opt.loadStateDict({ step: 9, tensors: bad }), ws.ShapeError, "layer 1 v", "[3]", "nothing was changed");
  bad.set("1.v", good.tensors.get("1.v")!); bad.set("7.m", wrong);
  await assertThrows(() => opt.loadStateDict({ step: 9, tensors: bad }), ws.ShapeError, "unexpected key \"7.m\"");
  assertEquals(opt.stepCount, 1, "step count unchanged");
  const still = await Promise.all([...opt.stateDict().tensors.values()].map((t) => t.toArray()));
  assertEquals(still.map((a) => Array.from(a)), snapshot.map((a) => Array.from(a)), "moments unchanged");
  stepOnce();
  assertEquals(opt.stepCount, 2, "the optimizer still steps");
  wrong.dispose(); x.dispose(); opt.dispose(); dense.dispose();
});

test("SparseAdamW keeps one step count per weight: a layer that skipped a step gets its own bias correction", async () => {
  const x = ws.randn([4, 8], { seed: 4 });
  const run = async (schedule: ("a" | "b" | "ab")[]) => {
    const m = new TwoLayers();
    pruneModel(m, { skip: [] });
    const opt = new SparseAdamW(m, { lr: 0.1, weightDecay: 0 });
    for (const which of schedule) {
      ws.tidy(() => {
        const ys = [...which].map((n) => m.layer(n as "a" | "b").forward(x).sum());
        (ys.length === 2 ? ys[0]!.add(ys[1]!) : ys[0]!).backward();
      });
      opt.step(); opt.zeroGrad();
    }
    const b = m.layer("b") as SparseLinear;
    const out = { steps: [opt.stepOf(m.layer("a") as SparseLinear), opt.stepOf(b)], values: Array.from(await b.sparseParam.toArray()) };
    opt.dispose(); m.dispose();
    return out;
  };
  const skipped = await run(["ab", "a", "b"]);
  const straight = await run(["ab", "b"]);
  assertEquals(skipped.steps, [2, 2]);
  assertClose(skipped.values, straight.values, { rtol: 1e-6, atol: 1e-7, msg: "b's second update used t = 2 in both runs" });
  x.dispose();
});

test("GPT and the layers validate their options before allocating anything", async () => {
  const before = ws.memoryStats();
  refuses(() => tiny({ nHead: 3 }), ws.ShapeError, "GPT", "nHead=3");
  refuses(() => tiny({ vocabSize: 0 }), ws.ValueError, "vocabSize", "≥ 1", "got 0");
  refuses(() => tiny({ blockSize: 2.5 }), ws.ValueError, "blockSize", "integer");
  refuses(() => tiny({ dropout: 1 }), ws.ValueError, "dropout", "< 1");
  refuses(() => tiny({ nEmbd: NaN }), ws.ValueError, "nEmbd", "NaN");
  refuses(() => tiny({ attention: "flash" as "fused" }), ws.ValueError, "\"flash\"");
  refuses(() => new Linear(0, 4), ws.ValueError, "Linear", "inFeatures");
  refuses(() => new LayerNorm(4, 0), ws.ValueError, "LayerNorm", "eps");
  const after = ws.memoryStats();
  assertEquals([after.liveBytes, after.liveTensors], [before.liveBytes, before.liveTensors], "nothing allocated");
  const m = tiny();
  const idx = ws.tensor(Int32Array.from([1, 2]), [1, 2]);
  const mid = ws.memoryStats();
  refuses(() => m.loss(idx, ws.tensor([1, 2])), ws.ShapeError, "GPT.loss", "f32");
  const gone = ws.tensor(Int32Array.from([1, 2]), [1, 2]);
  gone.dispose();
  refuses(() => m.forward(gone), ws.DisposedTensorError, "GPT.forward");
  assertEquals(ws.memoryStats().liveTensors, mid.liveTensors + 1, "only the f32 targets made in the call above");
  idx.dispose(); m.dispose();
});

test("bad input to the op front-ends: typed errors naming the op and the value, never a crash or garbage", async () => {
  const before = ws.memoryStats();
  const x = ws.ones([2, 3]);
  await assertThrows(() => x.split(0), ws.ShapeError, "split", "positive integer");
  await assertThrows(() => x.split([1, -1, 2], 1), ws.ShapeError, "split");
  await assertThrows(() => ws.tensor(["a"] as unknown as number[]), ws.ValueError, "tensor", "\"a\"");
  await assertThrows(() => ws.tensor([[1, 2], 3] as unknown as number[]), ws.ShapeError, "ragged");
  await assertThrows(() => ws.tensor([1, [2]] as unknown as number[]), ws.ShapeError, "ragged");
  await assertThrows(() => ws.arange(0, NaN), ws.ValueError, "arange", "end", "NaN");
  await assertThrows(() => ws.arange(0, 5, 0), ws.ValueError, "step");
  await assertThrows(() => ws.arange(0, 5, 0.5, { dtype: "i32" }), ws.ValueError, "arange", "integer");
  await assertThrows(() => ws.cast(x, "f64" as ws.DType), ws.DTypeError, "cast", "\"f64\"", "f32");
  await assertThrows(() => ws.zeros([2], { dtype: "int64" as ws.DType }), ws.DTypeError, "zeros", "\"int64\"");
  await assertThrows(() => ws.tensor([3e10], { dtype: "i32" }), ws.ValueError, "tensor", "30000000000", "i32");
  await assertThrows(() => ws.tensor([1.5], { dtype: "i32" }), ws.ValueError, "1.5");
  await assertThrows(() => ws.full([2], 2 ** 31, { dtype: "i32" }), ws.ValueError, "full", "value");
  await assertThrows(() => ws.zeros([0, 4]).max(), ws.ShapeError, "max", "[0, 4]", "empty");
  await assertThrows(() => ws.zeros([2, NaN]), ws.ShapeError, "zeros", "non-negative integers");
  await assertThrows(() => ws.randn([2], { std: -1 }), ws.ValueError, "randn", "std");
  await assertThrows(() => ws.rand([2], { low: 1, high: 0 }), ws.ValueError, "rand", "high");
  await assertThrows(() => x.reshape([NaN, 6]), ws.ShapeError, "reshape");
  await assertThrows(() => x.narrow(1, 0.5, 1), ws.ShapeError, "narrow");
  await assertThrows(() => x.slice([0, NaN], [2, 3]), ws.ShapeError, "slice");
  await assertThrows(() => x.expand([2, NaN]), ws.ShapeError, "expand");
  await assertThrows(() => x.add("1" as unknown as ws.Tensor), ws.ValueError, "add", "expected a Tensor");
  await assertThrows(() => new ws.Generator(0.5), ws.ValueError, "Generator", "seed");
  await assertThrows(() => x.pow("2" as unknown as number), ws.ValueError, "pow", "exponent");
  await assertThrows(() => x.maskedFill(x, "1" as unknown as number), ws.ValueError, "maskedFill", "value");
  await assertThrows(() => clipGradNorm([x], NaN), ws.ValueError, "clipGradNorm", "maxNorm");
  const empty = ws.zeros([0, 4]);
  assertEquals(empty.max(1).shape, [0], "a max whose output is empty is fine");
  assertEquals(Array.from(await empty.sum(0).toArray()), [0, 0, 0, 0], "sum over an empty axis is 0");
  const s = ws.memoryStats();
  assert(Number.isFinite(s.liveBytes), `liveBytes stays a number: ${s.liveBytes}`);
  for (const t of [x, empty]) t.dispose();
  ws.tidy(() => {}); // nothing
  assert(ws.memoryStats().liveBytes >= before.liveBytes, "accounting intact");
});

test("Trainer, Corpus and generate validate their options (adapter ranks too) and the token ids they can see", async () => {
  const text = "abcabcabd ".repeat(8);
  const tok = new CharTokenizer(text);
  const corpus = new Corpus(tok.encode(text));
  const small = new GPT({ vocabSize: tok.vocabSize - 1, blockSize: 8, nLayer: 1, nHead: 1, nEmbd: 8, seed: 1 });
  const model = new GPT({ vocabSize: tok.vocabSize, blockSize: 8, nLayer: 1, nHead: 1, nEmbd: 8, seed: 1 });
  const before = ws.memoryStats();
  refuses(() => new Trainer(small, corpus, { batchSize: 2, totalSteps: 5 }), ws.ValueError, "Trainer", `id ${tok.vocabSize - 1}`, "vocabSize");
  refuses(() => new Trainer(model, corpus, { batchSize: 0, totalSteps: 5 }), ws.ValueError, "batchSize", "got 0");
  refuses(() => new Trainer(model, corpus, { batchSize: 2, totalSteps: 0 }), ws.ValueError, "totalSteps", "got 0");
  refuses(() => new Trainer(model, corpus, { batchSize: 2, totalSteps: 5, lr: NaN }), ws.ValueError, "lr", "NaN");
  refuses(() => new Trainer(model, corpus, { batchSize: 2, totalSteps: 5, slope: { adapterAt: 2 } }), ws.ValueError, "slope.adapterAt");
  // an adapter rank the layers cannot take is refused at construction, not 99% into the run
  refuses(() => new Trainer(model, corpus, { batchSize: 2, totalSteps: 5, slope: { adapterRank: 9 } }), ws.ShapeError, "Trainer", "rank 9", "= 8");
  refuses(() => new Trainer(model, corpus, { batchSize: 2, totalSteps: 5, slope: { adapterRankFraction: 0.01 } }), ws.ShapeError, "Trainer", "0.01 × hidden 8");
  refuses(() => new Trainer(model, new Corpus(tok.encode("abc")), { batchSize: 2, totalSteps: 5 }), ws.ShapeError, "train split", "blockSize");
  refuses(() => new Corpus([1, 2] as unknown as Int32Array), ws.ValueError, "Corpus", "Int32Array");
  refuses(() => new Corpus(tok.encode(text), { valFraction: 1 }), ws.ValueError, "valFraction");
  assert(!(model.namedModules().some(([, m]) => m instanceof SparseLinear)), "a refused SLoPe Trainer did not prune the model");
  const after = ws.memoryStats();
  assertEquals([after.liveBytes, after.liveTensors], [before.liveBytes, before.liveTensors], "refused Trainers allocated nothing");
  await assertThrows(() => generate(model, [1], { maxNewTokens: 2, temperature: NaN }), ws.ValueError, "generate", "temperature", "NaN");
  await assertThrows(() => generate(model, [-1], { maxNewTokens: 2 }), ws.ValueError, "generate", "id -1");
  await assertThrows(() => generate(model, [2.5], { maxNewTokens: 2 }), ws.ValueError, "id 2.5");
  await assertThrows(() => generate(model, [1], { maxNewTokens: -1 }), ws.ValueError, "maxNewTokens");
  await assertThrows(() => generate(model, [1], { maxNewTokens: 1, topK: 1.5 }), ws.ValueError, "topK");
  const trainer = new Trainer(model, corpus, { batchSize: 2, totalSteps: 5 });
  await assertThrows(() => trainer.evaluate(0), ws.ValueError, "Trainer.evaluate", "batches");
  trainer.dispose(); model.dispose(); small.dispose();
});

test("embedding gradient of a token seen more than 65,535 times sums every occurrence (no long shader loop)", async () => {
  const N = 70001, V = 3, C = 4;
  const ids = new Int32Array(N);
  for (let i = 0; i < N; i++) ids[i] = i % 1000 === 999 ? 2 : 0; // token 0 ≈ 69,931 times, token 2 70 times, token 1 never
  const dYv = new Float32Array(N * C);
  for (let i = 0; i < N * C; i++) dYv[i] = (i % 7) - 3; // small integers: every partial sum is exact in f32
  const expected = new Float64Array(V * C);
  for (let i = 0; i < N; i++) for (let c = 0; c < C; c++) { const k = ids[i]! * C + c; expected[k] = expected[k]! + dYv[i * C + c]!; }
  const w = ws.randn([V, C], { seed: 5, requiresGrad: true });
  const idx = ws.tensor(ids, [N]), dY = ws.tensor(dYv, [N, C]);
  ws.tidy(() => ws.embedding(idx, w).mul(dY).sum().backward());
  assertClose(await w.grad!.toArray(), expected, { rtol: 0, atol: 0, msg: "dW = Σ dY rows per token" });
  for (const t of [w, idx, dY]) { t.grad?.dispose(); t.dispose(); }
}, { browser: false });
