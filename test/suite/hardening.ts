// Issue 11's cases, each kept as a test: the public API driven as a careless user would (bad
// input, throwing scopes, failed calls, leaks outside tidy), answered with a typed error that
// names the op, the value and the fix — and a failed call changes nothing.
import * as ws from "../../src/index.ts";
import { GPT } from "../../src/nn/index.ts";
import { CharTokenizer } from "../../src/train/index.ts";
import { assert, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

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
