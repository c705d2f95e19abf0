// Checkpoints (issue 10): bytes round trips (dense, SLoPe compressed and masked-dense, with
// adapters) bitwise; every hostile-file case a CheckpointError with the live model unchanged;
// resume bitwise-equal to the uninterrupted run (dense with dropout, SLoPe before and after the
// adapters enter); the NaN guard; GPTConfig.seed seeding every weight; files on Node and Deno.
import * as ws from "../../src/index.ts";
import { GPT, type GPTConfig } from "../../src/nn/index.ts";
import { mergeAdapters, pruneModel, addLazyAdapters } from "../../src/slope/index.ts";
import {
  CharTokenizer, Corpus, Trainer, type TrainerOptions, checkpointFromBytes, checkpointToBytes, loadCheckpoint, saveCheckpoint,
} from "../../src/train/index.ts";
import { assert, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

const TEXT = "to be or not to be, that is the question: whether 'tis nobler in the mind to suffer. ".repeat(12);
const tok = new CharTokenizer(TEXT);
const corpus = () => new Corpus(tok.encode(TEXT), { valFraction: 0.2 });
const cfg = (over: Partial<GPTConfig> = {}): GPTConfig => ({ vocabSize: tok.vocabSize, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, seed: 5, ...over });

/** Every tensor of the model's state, read back, by name. */
async function snapshot(model: ws.Tensor[] | { stateDict(): Map<string, ws.Tensor> }): Promise<Map<string, number[]>> {
  const entries = Array.isArray(model) ? model.map((t, i) => [String(i), t] as const) : [...model.stateDict()];
  const vals = await Promise.all(entries.map(([, t]) => t.toArray()));
  return new Map(entries.map(([k], i) => [k, Array.from(vals[i]!)]));
}

function assertSameState(a: Map<string, number[]>, b: Map<string, number[]>, what: string): void {
  assertEquals([...a.keys()].sort().join(), [...b.keys()].sort().join(), `${what}: same tensor names`);
  for (const [k, v] of a) {
    const w = b.get(k)!;
    for (let i = 0; i < v.length; i++) {
      if (!Object.is(v[i], w[i])) throw new Error(`${what}: "${k}"[${i}] is ${w[i]}, expected ${v[i]} (bitwise)`);
    }
  }
}

async function losses(trainer: Trainer, n: number): Promise<number[]> {
  const ls = Array.from({ length: n }, () => trainer.step());
  const v = await Promise.all(ls.map((l) => l.item()));
  for (const l of ls) l.dispose();
  return v;
}

test("checkpoint bytes: a dense GPT round-trips bitwise with nanoGPT names and [out, in] Linear weights", async () => {
  const model = new GPT(cfg());
  const trainer = new Trainer(model, corpus(), { batchSize: 4, totalSteps: 10, seed: 1 });
  await losses(trainer, 2);
  const bytes = await checkpointToBytes({ model, tokenizer: tok, trainer });
  const len = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len)));
  assertEquals(header["transformer.h.0.attn.c_attn.weight"].shape.join(), "96,32", "c_attn [3C, C]");
  assertEquals(header["transformer.h.1.mlp.c_fc.weight"].shape.join(), "128,32", "c_fc [4C, C]");
  assertEquals(header["transformer.h.1.mlp.c_proj.weight"].shape.join(), "32,128", "c_proj [C, 4C]");
  for (const k of ["transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.bias", "transformer.h.1.ln_2.weight",
    "optimizer.adamw.transformer.wte.weight.exp_avg_sq"]) assert(k in header, `header has ${k}`);
  const fresh = new GPT(cfg({ seed: 99 }));
  const loaded = await checkpointFromBytes(bytes, { model: fresh });
  assertEquals(loaded.step, 2);
  assertEquals(loaded.tokenizer!.chars.join(""), tok.chars.join(""));
  assertSameState(await snapshot(model), await snapshot(fresh), "loaded into a model");
  const built = await checkpointFromBytes(bytes);
  assertSameState(await snapshot(model), await snapshot(built.model), "built from the file");
  for (const m of [model, fresh, built.model]) m.dispose();
  trainer.dispose();
});

for (const compress of [true, false]) {
  test(`checkpoint bytes: SLoPe (${compress ? "compressed" : "masked-dense"}) with adapters round-trips bitwise; u8 masks; merged after load`, async () => {
    const model = new GPT(cfg());
    const trainer = new Trainer(model, corpus(), { batchSize: 4, totalSteps: 6, seed: 1, slope: { compress, adapterRank: 4, adapterAt: 0.5, maskChangeFreq: 2 } });
    await losses(trainer, 5);
    assert(trainer.adaptersActive, "adapters are in");
    const bytes = await checkpointToBytes({ model, trainer });
    const len = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len)));
    const p = "transformer.h.1.mlp.c_fc";
    assertEquals(header[`${p}.weight`].shape.join(), "128,32");
    assertEquals(header[`${p}.weight_mask`].dtype, "U8");
    assertEquals(header[`${p}.weight_mask_rc`].dtype, "U8");
    assertEquals(header[`${p}.adapter.L`].shape.join(), "32,4");
    assert(!("transformer.h.0.attn.c_attn.weight_mask" in header), "block 0's qkv stays dense");
    assert(`optimizer.sparse_adamw.${p}.weight.exp_avg` in header, "SparseAdamW moments");
    const built = await checkpointFromBytes(bytes);
    assertSameState(await snapshot(model), await snapshot(built.model), "built from the file");
    const target = new GPT(cfg({ seed: 7 }));
    pruneModel(target, { compress });
    addLazyAdapters(target, { rank: 4 });
    await checkpointFromBytes(bytes, { model: target });
    assertSameState(await snapshot(model), await snapshot(target), "loaded into a pruned, adapted model");
    if (compress) {
      // merged inference after loading equals the unmerged model
      const idx = ws.tensor(Int32Array.from(tok.encode("to be or not to ")), [1, 16]);
      model.eval(); target.eval();
      const a = ws.noGrad(() => model.forward(idx));
      mergeAdapters(target);
      const b = ws.noGrad(() => target.forward(idx));
      const [av, bv] = await Promise.all([a.toArray(), b.toArray()]);
      let err = 0;
      for (let i = 0; i < av.length; i++) err = Math.max(err, Math.abs(av[i]! - bv[i]!));
      assert(err < 1e-4, `merged logits within 1e-4 of unmerged (max diff ${err})`);
      await assertThrows(() => checkpointToBytes({ model: target }), ws.CheckpointError, "merged", "save the model before merging");
      for (const t of [idx, a, b]) t.dispose();
    }
    for (const m of [model, built.model, target]) m.dispose();
    trainer.dispose();
  });
}

// ---- hostile files -----------------------------------------------------------------------------

function withHeader(bytes: Uint8Array, edit: (h: Record<string, any>) => void): Uint8Array {
  const len = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len)));
  edit(h);
  let json = new TextEncoder().encode(JSON.stringify(h));
  const padded = Math.ceil(json.length / 8) * 8;
  const j = new Uint8Array(padded).fill(0x20); j.set(json); json = j;
  const out = new Uint8Array(8 + padded + bytes.length - 8 - len);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.set(bytes.subarray(8 + len), 8 + padded);
  return out;
}

test("checkpoint: every hostile file is a CheckpointError naming the problem, and the live model is unchanged", async () => {
  const src = new GPT(cfg());
  pruneModel(src);
  const bytes = await checkpointToBytes({ model: src, tokenizer: tok });
  const live = new GPT(cfg({ seed: 8 }));
  pruneModel(live);
  const before = await snapshot(live);
  const huge = bytes.slice(); new DataView(huge.buffer).setBigUint64(0, 1n << 50n, true);
  const past = bytes.slice(); new DataView(past.buffer).setBigUint64(0, BigInt(bytes.length), true);
  const W = "transformer.h.1.attn.c_proj.weight";
  const cases: [string, Uint8Array, string[]][] = [
    ["shorter than 8 bytes", bytes.slice(0, 5), ["shorter than the 8-byte"]],
    ["huge header length", huge, ["header length", "over the"]],
    ["header length past the end", past, ["past the end"]],
    ["truncated data", bytes.slice(0, bytes.length - 100), ["past the end of the", "truncated"]],
    ["header not JSON", withHeader(bytes, () => {}).fill(0x7b, 8, 20), ["not valid UTF-8 JSON"]],
    ["offsets out of range", withHeader(bytes, (h) => { h[W].data_offsets = [0, 1e12]; }), [W, "past the end"]],
    ["offsets overlapping", withHeader(bytes, (h) => { h["transformer.wpe.weight"].data_offsets = h["transformer.wte.weight"].data_offsets.map((x: number) => x + 4); h["transformer.wpe.weight"].shape = h["transformer.wte.weight"].shape; }), ["overlap"]],
    ["offsets not matching the shape", withHeader(bytes, (h) => { h[W].shape = [32, 31]; }), [W, "needs"]],
    ["unknown dtype", withHeader(bytes, (h) => { h[W].dtype = "F8_E4M3"; }), [W, "unknown dtype", "F8_E4M3"]],
    ["shape not matching the config", withHeader(bytes, (h) => { h[W].shape = [16, 64]; }), [W, "[16,64]", "needs [32,32]"]],
    ["missing tensor", withHeader(bytes, (h) => { delete h["transformer.h.1.ln_1.bias"]; }), ["transformer.h.1.ln_1.bias", "missing"]],
    ["unexpected tensor", withHeader(bytes, (h) => { h["transformer.h.9.mlp.c_fc.weight"] = { dtype: "F32", shape: [0], data_offsets: [0, 0] }; }), ["transformer.h.9.mlp.c_fc.weight", "not part of this model"]],
    ["no webslope metadata", withHeader(bytes, (h) => { h.__metadata__ = {}; }), ["no \"webslope\""]],
    ["config of another model", withHeader(bytes, (h) => { const m = JSON.parse(h.__metadata__.webslope); m.config.nEmbd = 64; h.__metadata__.webslope = JSON.stringify(m); }), ["nEmbd 64 in the file, 32 in the model"]],
    ["bad 2:4 mask", (() => {
      const b = bytes.slice();
      const len = Number(new DataView(b.buffer).getBigUint64(0, true));
      const h = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + len)));
      const [s] = h[`${W}_mask`].data_offsets;
      b[8 + len + s] = 1; b[8 + len + s + 1] = 1; b[8 + len + s + 2] = 1; b[8 + len + s + 3] = 1;
      return b;
    })(), [`${W}_mask`, "keeps 4 of the 4", "exactly 2"]],
  ];
  for (const [what, file, fragments] of cases) {
    const err = await assertThrows(() => checkpointFromBytes(file, { model: live }), ws.CheckpointError, ...fragments);
    assert(err.message.length < 2000, `${what}: a short message`);
  }
  // a dense model cannot take a SLoPe checkpoint silently
  const dense = new GPT(cfg());
  await assertThrows(() => checkpointFromBytes(bytes, { model: dense }), ws.CheckpointError, "sparse in the file but dense in the model");
  assertSameState(before, await snapshot(live), "the live model after every failed load");
  for (const m of [src, live, dense]) m.dispose();
});

// ---- resume ------------------------------------------------------------------------------------

async function resumeCase(opts: TrainerOptions, model: GPTConfig, total: number, k: number): Promise<void> {
  ws.manualSeed(3);
  const a = new GPT(model);
  const ta = new Trainer(a, corpus(), opts);
  const straight = await losses(ta, total);
  ws.manualSeed(3);
  const b = new GPT(model);
  const tb = new Trainer(b, corpus(), opts);
  const first = await losses(tb, k);
  const bytes = await checkpointToBytes({ model: b, trainer: tb });
  ws.manualSeed(1234); // the resumed process's own generator state must not matter
  const c = new GPT({ ...model, seed: 77 });
  const tc = new Trainer(c, corpus(), opts);
  await checkpointFromBytes(bytes, { trainer: tc });
  assertEquals(tc.stepCount, k);
  const rest = await losses(tc, total - k);
  const resumed = [...first, ...rest];
  for (let i = 0; i < total; i++) {
    if (!Object.is(resumed[i], straight[i])) throw new Error(`step ${i}: resumed loss ${resumed[i]} ≠ uninterrupted ${straight[i]} (interrupted at ${k}); all: ${resumed} vs ${straight}`);
  }
  assertSameState(await snapshot(a), await snapshot(c), "final weights");
  for (const t of [ta, tb, tc]) t.dispose();
  for (const m of [a, b, c]) m.dispose();
}

test("resume: dense with dropout, interrupted at step 3 of 6, gives bitwise the same losses and weights", async () => {
  await resumeCase({ batchSize: 4, totalSteps: 6, seed: 2, lr: 3e-3 }, cfg({ dropout: 0.1 }), 6, 3);
});

for (const k of [2, 5]) {
  test(`resume: SLoPe with lazy adapters (enter at step 4 of 7, mask refresh every 2) interrupted at step ${k} ${k < 4 ? "before" : "after"} insertion is bitwise equal`, async () => {
    await resumeCase({ batchSize: 4, totalSteps: 7, seed: 2, lr: 3e-3, slope: { adapterRank: 4, adapterAt: 4 / 7 + 1e-9, maskChangeFreq: 2 } }, cfg({ dropout: 0.1 }), 7, k);
  });
}

// ---- NaN guard, seeds --------------------------------------------------------------------------

test("NaN guard: a diverged run stops with an error naming the step and what to try; no checkpoint of it is written", async () => {
  const model = new GPT(cfg());
  const seen: number[] = [];
  const trainer = new Trainer(model, corpus(), { batchSize: 4, totalSteps: 20, seed: 1, onLoss: (s) => seen.push(s) });
  await losses(trainer, 3);
  await trainer.settle();
  assertEquals(seen.join(), "0,1,2", "onLoss saw every step in order");
  const good = await checkpointToBytes({ model, trainer });
  poison(model);
  let err: Error | null = null;
  try {
    for (let i = 0; i < 10; i++) trainer.step().dispose();
    await trainer.settle();
  } catch (e) { err = e as Error; }
  assert(err instanceof ws.NonFiniteLossError, `expected NonFiniteLossError, got ${err}`);
  assertEquals((err as ws.NonFiniteLossError).step, 3, "names the first bad step");
  for (const f of ["step 3", "NaN", "lower learning rate", "gradClip", "last finite loss"]) assert(err!.message.includes(f), `message has "${f}": ${err!.message}`);
  await assertThrows(() => checkpointToBytes({ model, trainer }), ws.NonFiniteLossError, "step 3");
  // the last good bytes still load and train
  const fresh = new GPT(cfg());
  const t2 = new Trainer(fresh, corpus(), { batchSize: 4, totalSteps: 20, seed: 1 });
  await checkpointFromBytes(good, { trainer: t2 });
  const more = await losses(t2, 2);
  assert(more.every(Number.isFinite), "resumed from the last good checkpoint");
  for (const t of [trainer, t2]) t.dispose();
  model.dispose(); fresh.dispose();
});

function poison(model: GPT): void {
  ws.noGrad(() => {
    const w = model.wte.weight;
    const bad = ws.full([...w.shape], NaN);
    const mixed = w.mul(bad);  // NaN everywhere
    const tmp = new Map(model.stateDict());
    tmp.set("wte.weight", mixed);
    model.loadStateDict(tmp);
    bad.dispose(); mixed.dispose();
  });
}

test("GPTConfig.seed seeds every weight: same seed, same model (whatever the global generator); another seed, other weights everywhere", async () => {
  ws.manualSeed(1);
  const a = new GPT(cfg({ seed: 11 }));
  ws.manualSeed(2);
  const b = new GPT(cfg({ seed: 11 }));
  const c = new GPT(cfg({ seed: 12 }));
  const [sa, sb, sc] = await Promise.all([snapshot(a), snapshot(b), snapshot(c)]);
  assertSameState(sa, sb, "same seed");
  for (const [k, v] of sa) {
    if (!/weight$/.test(k) || /ln/.test(k)) continue;
    const w = sc.get(k)!;
    assert(v.some((x, i) => x !== w[i]), `"${k}" differs with another seed`);
  }
  for (const m of [a, b, c]) m.dispose();
});

// ---- files (Node and Deno only) ----------------------------------------------------------------

test("saveCheckpoint / loadCheckpoint (Node and Deno file system): atomic write, bitwise reload, no temporary left", async () => {
  const { mkdtemp, readdir, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "webslope-ckpt-"));
  try {
    const model = new GPT(cfg());
    const trainer = new Trainer(model, corpus(), { batchSize: 4, totalSteps: 10, seed: 1, slope: {} });
    await losses(trainer, 2);
    const path = join(dir, "ckpt.safetensors");
    await saveCheckpoint(path, { model, trainer, tokenizer: tok });
    await saveCheckpoint(path, { model, trainer, tokenizer: tok }); // over an existing file
    assertEquals((await readdir(dir)).join(), "ckpt.safetensors", "only the checkpoint, no temporary");
    assertEquals(trainer.lastCheckpoint?.path, path);
    const loaded = await loadCheckpoint(path);
    assertSameState(await snapshot(model), await snapshot(loaded.model), "reloaded");
    await assertThrows(() => loadCheckpoint(join(dir, "nope.safetensors")), ws.CheckpointError, "cannot read", "nope.safetensors");
    trainer.dispose(); model.dispose(); loaded.model.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, { browser: false });
