// Generation with the KV cache (issue 10): cached logits equal the full forward's, cached
// sampling equals uncached token for token (greedy and seeded top-k, past blockSize), each new
// token is one forward of one position, and a merged SLoPe model decodes like the unmerged one.
import * as ws from "../../src/index.ts";
import { GPT, KVCache, forwardCached, kvCacheSupports } from "../../src/nn/index.ts";
import { mergeAdapters } from "../../src/slope/index.ts";
import { CharTokenizer, Corpus, Trainer, checkpointFromBytes, checkpointToBytes, generate } from "../../src/train/index.ts";
import { assert, assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

const TEXT = "first citizen: before we proceed any further, hear me speak. all: speak, speak. ".repeat(10);
const tok = new CharTokenizer(TEXT);
const cfg = { vocabSize: tok.vocabSize, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, seed: 3 };

test("forwardCached: prompt then one token at a time gives the full forward's logits (1e-4)", async () => {
  const model = new GPT(cfg).eval();
  const ids = Array.from(tok.encode("first citiz"));
  const full = ws.noGrad(() => model.forward(ws.tensor(Int32Array.from(ids), [1, ids.length])));
  const cache = new KVCache(model);
  const parts = [forwardCached(model, ws.tensor(Int32Array.from(ids.slice(0, 6)), [1, 6]), cache)];
  for (let i = 6; i < ids.length; i++) parts.push(forwardCached(model, ws.tensor(Int32Array.from([ids[i]!]), [1, 1]), cache));
  assertEquals(cache.length, ids.length);
  const got = ws.concat(parts, 1);
  assertClose(await got.toArray(), await full.toArray(), { atol: 1e-4, rtol: 1e-4 });
  await assertThrows(() => forwardCached(model, ws.tensor(Int32Array.from([1, 2]), [1, 2]), cache), ws.ShapeError, "one new token at a time");
  for (const t of [full, got, ...parts]) t.dispose();
  cache.dispose(); model.dispose();
});

test("generate: KV-cached equals uncached token for token (greedy and seeded top-k, past blockSize), one position per new token", async () => {
  const model = new GPT(cfg);
  const prompt = tok.encode("first citizen");
  for (const o of [{ temperature: 0 }, { temperature: 0.9, topK: 5, seed: 7 }]) {
    const a = await generate(model, prompt, { maxNewTokens: 24, ...o });
    const b = await generate(model, prompt, { maxNewTokens: 24, ...o, kvCache: false });
    assertEquals(a.join(), b.join(), `cached vs uncached with ${JSON.stringify(o)}`);
  }
  const lens: number[] = [];
  const qkv = model.blocks[0]!.attn.qkv;
  const orig = qkv.forward.bind(qkv);
  qkv.forward = (x: ws.Tensor) => { lens.push(x.shape[1]!); return orig(x); };
  await generate(model, tok.encode("all: "), { maxNewTokens: 6, temperature: 0 });
  assertEquals(lens.join(), "5,1,1,1,1,1", "the prompt once, then one position per new token");
  model.dispose();
});

test("generate: a merged SLoPe model (mergeAdapters, fused sparse kernels) decodes like the unmerged one", async () => {
  const model = new GPT(cfg);
  const trainer = new Trainer(model, new Corpus(tok.encode(TEXT)), { batchSize: 4, totalSteps: 4, seed: 1, lr: 1e-2, slope: { adapterRank: 4, adapterAt: 0 } });
  for (let i = 0; i < 4; i++) trainer.step().dispose();
  const bytes = await checkpointToBytes({ model, trainer });
  const { model: merged } = await checkpointFromBytes(bytes);
  assert(mergeAdapters(merged) > 0, "layers merged");
  const prompt = tok.encode("hear me");
  const a = await generate(model, prompt, { maxNewTokens: 12, temperature: 0 });
  const b = await generate(merged, prompt, { maxNewTokens: 12, temperature: 0 });
  assertEquals(b.join(), a.join(), "merged greedy tokens");
  trainer.dispose(); model.dispose(); merged.dispose();
});

test("forwardCached: the cache grows past its first 64 positions keeping what it holds, and reset() keeps the storage for the next prompt", async () => {
  const model = new GPT({ ...cfg, blockSize: 80 }).eval();
  const ids = Array.from({ length: 70 }, (_, i) => (i * 7 + 3) % cfg.vocabSize);
  const full = ws.noGrad(() => model.forward(ws.tensor(Int32Array.from(ids), [1, ids.length])));
  const cache = new KVCache(model);
  const parts = [forwardCached(model, ws.tensor(Int32Array.from(ids.slice(0, 62)), [1, 62]), cache)];
  assertEquals(cache.capacity, 64, "the first allocation");
  for (let i = 62; i < ids.length; i++) parts.push(forwardCached(model, ws.tensor(Int32Array.from([ids[i]!]), [1, 1]), cache));
  assertEquals(cache.capacity, 80, "doubled, capped at blockSize");
  const got = ws.concat(parts, 1);
  assertClose(await got.toArray(), await full.toArray(), { atol: 1e-4, rtol: 1e-4, msg: "logits across the growth" });
  const k0 = cache.k[0];
  cache.reset();
  assertEquals(cache.length, 0);
  const again = forwardCached(model, ws.tensor(Int32Array.from(ids.slice(0, 3)), [1, 3]), cache);
  assert(cache.k[0] === k0, "reset() kept the storage");
  const fresh = ws.noGrad(() => model.forward(ws.tensor(Int32Array.from(ids.slice(0, 3)), [1, 3])));
  assertClose(await again.toArray(), await fresh.toArray(), { atol: 1e-4, rtol: 1e-4, msg: "a new prompt after reset()" });
  for (const t of [full, got, again, fresh, ...parts]) t.dispose();
  cache.dispose();
  assertEquals(cache.capacity, 0, "dispose() frees the storage");
  model.dispose();
});

test("a head dim over the decode kernel's 1024: forwardCached refuses it before any GPU work", async () => {
  const model = new GPT({ vocabSize: 11, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 1032, seed: 5, attention: "unfused" }); // the fused kernels stop at 256
  assert(!kvCacheSupports(model), "D = 1032 is over the kernel");
  const cache = new KVCache(model);
  const d0 = ws.gpu().launcher.stats.dispatches;
  await assertThrows(() => forwardCached(model, ws.tensor(Int32Array.from([1, 2]), [1, 2]), cache), ws.ShapeError, "forwardCached", "head dim 1032", "kvCache: false");
  assertEquals(ws.gpu().launcher.stats.dispatches - d0, 0, "nothing dispatched");
  assertEquals(cache.capacity, 0, "nothing allocated");
  cache.dispose(); model.dispose();
});

test("generate() on a head dim over the decode kernel's 1024 decodes the whole window instead of the cache (a 1032-wide model: Deno only)", async () => {
  const model = new GPT({ vocabSize: 11, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 1032, seed: 5, attention: "unfused" });
  const a = await generate(model, [1, 2], { maxNewTokens: 3, temperature: 0 });
  const b = await generate(model, [1, 2], { maxNewTokens: 3, temperature: 0, kvCache: false });
  assertEquals(a.join(), b.join(), "the default falls back to the uncached path");
  assertEquals(a.length, 3);
  model.dispose();
}, { runtimes: ["deno"] });
