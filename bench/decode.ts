// Whole-model decode speed, dense against merged SLoPe (issue 9's goal: merged SLoPe inference
// with r = 1.56% ≥ 1.3× dense decoding of the same model). One GPT per config (random init,
// seeded) is timed dense, then pruned (pruneModel, compress: true), given lazy adapters of rank
// r = 1.56% of nEmbd with R set to small random values (so the fused low-rank path does real
// work), timed unmerged, merged (mergeAdapters, the inference form) and timed again, all in one
// process. Batch 1, greedy, KV cache (src/nn/kv-cache.ts):
//   - loop: a prompt of P tokens (not timed), then N decode steps each reading back its logits
//     row and taking the argmax on the CPU, as generate() does; median over --reps repetitions
//     after a warm-up of whole generate() calls.
//   - pipe: the same N steps as generate()'s greedy path runs them: the argmax on the GPU fed
//     straight back as the next input, the ids read back 8 at a time (one readback per 8 tokens).
//   - gpu: the same N positions submitted without awaiting (fixed token ids, no readback), one
//     forced completion at the end: the GPU time of a step without the per-token readback.
// Correctness guard (printed and in the JSON): the merged model's greedy tokens against the
// unmerged SLoPe model's, and their logits over prompt + generated tokens; the run fails when the
// logits differ by more than 1e-3 of the largest one or the timed loop's tokens are not generate()'s.
// The config table repeats bench/train.ts's CONFIGS (that file runs when imported).
//
//   deno run -A bench/decode.ts [--configs gpt2,small,mid] [--vocab 65] [--prompt 16] [--tokens 64]
//        [--reps 5] [--rank-fraction 0.015625] [--seed 1] [--warmup MS] [--profile] [--quick] [--json FILE]
//   node .bench-dist/decode.mjs ... [--dawn-toggles]      (after npm run bench:build)
//   npm run bench:browser -- decode ...                   (Chromium through Playwright)
import * as ws from "../src/index.ts";
import { forwardCached, GPT, KVCache, SparseLinear } from "../src/nn/index.ts";
import { addLazyAdapters, mergeAdapters, pruneModel } from "../src/slope/index.ts";
import { generate } from "../src/train/index.ts";
import { TokenReader } from "../src/train/generate.ts";
import { exit, flags, runtimeGpu, writeText } from "./env.ts";
import { median, now, randomF32 } from "./timing.ts";
import { fillKernel } from "../shaders/fill.wgsl.ts";

/** bench/train.ts's shapes (heads of 64); `tiny` is --quick's. */
const CONFIGS = {
  tiny: { nLayer: 2, nEmbd: 64, nHead: 2, blockSize: 32 },
  mid: { nLayer: 4, nEmbd: 256, nHead: 4, blockSize: 128 },
  small: { nLayer: 6, nEmbd: 384, nHead: 6, blockSize: 256 },
  gpt2: { nLayer: 12, nEmbd: 768, nHead: 12, blockSize: 1024 },
} as const;
type ConfigName = keyof typeof CONFIGS;
type Variant = "dense" | "slope-unmerged" | "slope-merged";

interface Row {
  config: ConfigName; variant: Variant; nLayer: number; nEmbd: number; nHead: number; blockSize: number; vocabSize: number;
  rank: number; prompt: number; tokens: number;
  /** Median over reps of the N decode steps with a readback each, per token. */
  loopMsPerToken: number; loopTokensPerS: number; loopRepsMs: number[];
  /** Median over reps of the N pipelined steps (GPU argmax fed back, overlapped readback), per token. */
  pipeMsPerToken: number; pipeTokensPerS: number; pipeRepsMs: number[];
  /** Median over reps of N decode positions submitted without readback and one await, per position. */
  gpuMsPerToken: number; gpuTokensPerS: number; gpuRepsMs: number[];
  /** Median over reps of the host's share of a GPU-only position (its forwardCached call), its dispatches, and the host µs per dispatch. */
  hostMsPerToken: number; dispatchesPerToken: number; hostUsPerDispatch: number;
  /** dense ms / this ms (1 for dense). */
  loopSpeedup: number; pipeSpeedup: number; gpuSpeedup: number;
  /** --profile: one decode position's GPU time per op and kernel family. */
  profile?: { totalMs: number; dispatches: number; byOp: unknown; byFamily: unknown };
}

interface Guard {
  config: ConfigName;
  /** The timed loops' tokens (readback each, and pipelined) equal generate()'s, per variant. */
  loopMatchesGenerate: Record<Variant, boolean>;
  /** Merged tokens equal to the unmerged SLoPe model's (of N + 1). */
  tokensEqual: number; tokensTotal: number;
  /** max |logits merged − unmerged| over prompt + tokens, and relative to max |logit|. */
  maxAbsLogitDiff: number; relLogitDiff: number;
}

const argmax = (a: ArrayLike<number>): number => { let b = 0; for (let i = 1; i < a.length; i++) if (a[i]! > a[b]!) b = i; return b; };
const ids = (a: readonly number[]): ws.Tensor => ws.tensor(Int32Array.from(a), [1, a.length]);

/** The last row of forwardCached's logits for `tokens`, read back. */
async function stepRow(model: GPT, tokens: number[], cache: KVCache): Promise<Float32Array> {
  const idx = ids(tokens);
  const logits = forwardCached(model, idx, cache);
  idx.dispose();
  const last = logits.narrow(1, tokens.length - 1, 1);
  logits.dispose();
  const row = (await last.toArray()) as Float32Array;
  last.dispose();
  return row;
}

/** Greedy decode as generate() does it: prompt (untimed), then N timed steps. Returns the N + 1 tokens and the steps' ms. */
async function decodeLoop(model: GPT, prompt: number[], n: number): Promise<{ tokens: number[]; ms: number }> {
  const cache = new KVCache(model);
  try {
    const tokens = [argmax(await stepRow(model, prompt, cache))];
    const t0 = now();
    for (let i = 0; i < n; i++) tokens.push(argmax(await stepRow(model, [tokens.at(-1)!], cache)));
    return { tokens, ms: now() - t0 };
  } finally {
    cache.dispose();
  }
}

/** generate()'s greedy path: the prompt (untimed), then N steps with the argmax kept on the GPU as the next input and the ids read back GREEDY_BATCH at a time (TokenReader). */
async function decodePipe(model: GPT, prompt: number[], n: number): Promise<{ tokens: number[]; ms: number }> {
  const cache = new KVCache(model);
  const reader = new TokenReader();
  try {
    const idx = ids(prompt);
    const logits = forwardCached(model, idx, cache);
    idx.dispose();
    const last = logits.narrow(1, prompt.length - 1, 1);
    logits.dispose();
    let prev = ws.argmax(last, -1);
    last.dispose();
    const tokens = [((await prev.toArray()) as Int32Array)[0]!];
    const t0 = now();
    for (let i = 0; i < n; i++) {
      const lg = forwardCached(model, prev, cache);
      const next = ws.argmax(lg, -1);
      lg.dispose(); prev.dispose();
      prev = next;
      await reader.push(next);
    }
    await reader.drain();
    const ms = now() - t0;
    prev.dispose();
    return { tokens: [...tokens, ...reader.tokens], ms };
  } finally {
    reader.dispose();
    cache.dispose();
  }
}

/**
 * The same N positions with no readback: every step submitted, one forced completion. Returns
 * the ms, and the host's share: the summed time of the forwardCached calls themselves (encoding
 * and submitting, the GPU running behind) and the dispatches they recorded.
 */
async function decodeGpu(model: GPT, prompt: number[], n: number, token: number): Promise<{ ms: number; hostMs: number; dispatches: number }> {
  const ctx = ws.gpu();
  const cache = new KVCache(model);
  try {
    const idx = ids(prompt);
    forwardCached(model, idx, cache).dispose();
    idx.dispose();
    await ctx.sync();
    const one = ids([token]);
    const d0 = ctx.launcher.stats.dispatches;
    let hostMs = 0;
    const t0 = now();
    for (let i = 0; i < n; i++) { const h0 = now(); forwardCached(model, one, cache).dispose(); hostMs += now() - h0; }
    await ctx.sync();
    const ms = now() - t0;
    one.dispose();
    return { ms, hostMs, dispatches: ctx.launcher.stats.dispatches - d0 };
  } finally {
    cache.dispose();
  }
}

/** A GPU profile (per op and kernel) of one decode position after the prompt. */
async function profileStep(model: GPT, prompt: number[], token: number): Promise<ws.Profile> {
  const cache = new KVCache(model);
  const idx = ids(prompt), one = ids([token]);
  forwardCached(model, idx, cache).dispose();
  await ws.gpu().sync();
  const p = await ws.profile(() => forwardCached(model, one, cache).dispose());
  idx.dispose(); one.dispose(); cache.dispose();
  return p;
}

/** Logits [P + N + 1 − 1 positions, vocab] of the whole sequence in one forward, read back. */
async function sequenceLogits(model: GPT, seq: number[]): Promise<Float32Array> {
  const cache = new KVCache(model);
  const idx = ids(seq);
  const logits = forwardCached(model, idx, cache);
  idx.dispose();
  const out = (await logits.toArray()) as Float32Array;
  logits.dispose();
  cache.dispose();
  return out;
}

const FLOOR_DISPATCHES = 4000;

/** µs of host time per launcher.dispatch with nothing else around it: the engine's own share of a dispatch. */
async function launcherFloor(): Promise<number> {
  const ctx = ws.gpu();
  const buf = ws.zeros([64]);
  const k = fillKernel("f32", false);
  const b = [buf.buffer()];
  for (let i = 0; i < 200; i++) ctx.launcher.dispatch(k, b, [1], [64, 0]);
  await ctx.sync();
  const t0 = now();
  for (let i = 0; i < FLOOR_DISPATCHES; i++) ctx.launcher.dispatch(k, b, [1], [64, 0]);
  const us = ((now() - t0) * 1000) / FLOOR_DISPATCHES;
  await ctx.sync();
  buf.dispose();
  return us;
}

async function measure(model: GPT, prompt: number[], o: { tokens: number; reps: number; warmupMs: number; profile: boolean }) {
  model.eval();
  // warm-up: whole generate() calls (compiles the pipelines; the H200 idles at a low clock)
  const t0 = now();
  let reference: number[] = [];
  do reference = await generate(model, prompt, { maxNewTokens: o.tokens + 1, temperature: 0 });
  while (now() - t0 < o.warmupMs);
  const loop: number[] = [], pipe: number[] = [], gpu: number[] = [], host: number[] = [];
  let dispatches = 0;
  let tokens: number[] = [], piped: number[] = [];
  for (let r = 0; r < o.reps; r++) {
    const d = await decodeLoop(model, prompt, o.tokens);
    loop.push(d.ms / o.tokens);
    tokens = d.tokens;
    const p = await decodePipe(model, prompt, o.tokens);
    pipe.push(p.ms / o.tokens);
    piped = p.tokens;
    const g = await decodeGpu(model, prompt, o.tokens, reference[0]!);
    gpu.push(g.ms / o.tokens);
    host.push(g.hostMs / o.tokens);
    dispatches = g.dispatches / o.tokens;
  }
  const same = (a: number[]) => a.length === reference.length && a.every((t, i) => t === reference[i]);
  const matches = same(tokens) && same(piped);
  const profile = o.profile ? await profileStep(model, prompt, reference[0]!) : null;
  return { loop, pipe, gpu, host, dispatches, tokens: reference, matches, profile };
}

async function runConfig(name: ConfigName, f: { vocab: number; prompt: number; tokens: number; reps: number; warmupMs: number; rankFraction: number; seed: number; profile: boolean }) {
  const c = CONFIGS[name];
  if (f.prompt + f.tokens + 1 > c.blockSize) throw new Error(`${name}: --prompt ${f.prompt} + --tokens ${f.tokens} + 1 pass blockSize ${c.blockSize}`);
  const ctx = ws.gpu();
  ctx.pool.trim();
  const model = new GPT({ vocabSize: f.vocab, blockSize: c.blockSize, nLayer: c.nLayer, nHead: c.nHead, nEmbd: c.nEmbd, dropout: 0, seed: f.seed });
  const pr = randomF32(f.prompt, f.seed + 7);
  const prompt = Array.from(pr, (u) => Math.min(f.vocab - 1, Math.floor(((u + 1) / 2) * f.vocab)));
  const o = { tokens: f.tokens, reps: f.reps, warmupMs: f.warmupMs, profile: f.profile };
  const results = new Map<Variant, Awaited<ReturnType<typeof measure>> & { rank: number }>();
  const log = (v: Variant) => {
    const r = results.get(v)!;
    const reps = (a: number[]) => a.map((x) => x.toFixed(2)).join(" ");
    console.log(`${name} ${v}${r.rank ? ` (r = ${r.rank})` : ""}: loop ${median(r.loop).toFixed(3)} ms/token, pipe ${median(r.pipe).toFixed(3)}, ` +
      `gpu ${median(r.gpu).toFixed(3)} (reps: ${reps(r.loop)} | ${reps(r.pipe)} | ${reps(r.gpu)}); host ${median(r.host).toFixed(3)} ms for ` +
      `${r.dispatches} dispatches (${((1000 * median(r.host)) / r.dispatches).toFixed(1)} µs each)`);
    if (r.profile) console.log(`\nprofile of one ${name} ${v} decode position (${ws.gpu().info.adapterName}):\n${r.profile.table({ top: 15 })}\n`);
  };

  results.set("dense", { ...(await measure(model, prompt, o)), rank: 0 });
  log("dense");

  pruneModel(model, { compress: true });
  const rank = Math.max(1, Math.round(f.rankFraction * c.nEmbd));
  addLazyAdapters(model, { rank, seed: f.seed + 11 });
  let k = 0;
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof SparseLinear) || !m.adapter) continue;
    const R = m.adapter.R;
    const vals = randomF32(R.size, f.seed + 100 + k++);
    for (let i = 0; i < vals.length; i++) vals[i]! *= 0.02;
    ctx.launcher.upload(R.buffer(), vals);
  }
  results.set("slope-unmerged", { ...(await measure(model, prompt, o)), rank });
  log("slope-unmerged");
  const seq = [...prompt, ...results.get("slope-unmerged")!.tokens.slice(0, -1)];
  const before = await sequenceLogits(model, seq);

  mergeAdapters(model);
  results.set("slope-merged", { ...(await measure(model, prompt, o)), rank });
  log("slope-merged");
  const after = await sequenceLogits(model, seq);

  let maxAbs = 0, maxLogit = 0;
  for (let i = 0; i < before.length; i++) { maxAbs = Math.max(maxAbs, Math.abs(after[i]! - before[i]!)); maxLogit = Math.max(maxLogit, Math.abs(before[i]!)); }
  const un = results.get("slope-unmerged")!.tokens, me = results.get("slope-merged")!.tokens;
  const guard: Guard = {
    config: name,
    loopMatchesGenerate: Object.fromEntries([...results].map(([v, r]) => [v, r.matches])) as Record<Variant, boolean>,
    tokensEqual: un.filter((t, i) => t === me[i]).length, tokensTotal: un.length,
    maxAbsLogitDiff: maxAbs, relLogitDiff: maxAbs / Math.max(maxLogit, 1e-30),
  };
  console.log(`${name} guard: merged greedy tokens equal the unmerged SLoPe model's ${guard.tokensEqual}/${guard.tokensTotal}; ` +
    `max |Δlogits| ${maxAbs.toExponential(2)} (${guard.relLogitDiff.toExponential(2)} of max |logit| ${maxLogit.toFixed(3)}) over ${seq.length} positions; ` +
    `timed loop = generate(): ${Object.entries(guard.loopMatchesGenerate).map(([v, b]) => `${v} ${b ? "yes" : "NO"}`).join(", ")}`);

  const dense = results.get("dense")!;
  const rows: Row[] = [...results].map(([variant, r]) => {
    const loopMs = median(r.loop), pipeMs = median(r.pipe), gpuMs = median(r.gpu);
    return {
      config: name, variant, ...c, vocabSize: f.vocab, rank: r.rank, prompt: f.prompt, tokens: f.tokens,
      loopMsPerToken: loopMs, loopTokensPerS: 1000 / loopMs, loopRepsMs: r.loop,
      pipeMsPerToken: pipeMs, pipeTokensPerS: 1000 / pipeMs, pipeRepsMs: r.pipe,
      hostMsPerToken: median(r.host), dispatchesPerToken: r.dispatches, hostUsPerDispatch: (1000 * median(r.host)) / r.dispatches,
      gpuMsPerToken: gpuMs, gpuTokensPerS: 1000 / gpuMs, gpuRepsMs: r.gpu,
      loopSpeedup: median(dense.loop) / loopMs, pipeSpeedup: median(dense.pipe) / pipeMs, gpuSpeedup: median(dense.gpu) / gpuMs,
      ...(r.profile ? { profile: { totalMs: r.profile.totalMs, dispatches: r.profile.dispatches, byOp: r.profile.summary("op"), byFamily: r.profile.summary("family") } } : {}),
    };
  });
  model.dispose();
  ctx.pool.trim();
  return { rows, guard };
}

async function main(): Promise<void> {
  const f = await flags({
    configs: { type: "string", default: "gpt2" },
    /** 65: the char-level corpus (bench/train.ts's gpt2 row); 50304: GPT-2's padded BPE vocabulary. */
    vocab: { type: "string", default: "65" },
    prompt: { type: "string", default: "16" },
    tokens: { type: "string", default: "64" },
    reps: { type: "string", default: "5" },
    "rank-fraction": { type: "string", default: "0.015625" },
    seed: { type: "string", default: "1" },
    warmup: { type: "string", default: "1000" },
    json: { type: "string" },
    /** Also print a GPU profile (per op) of one decode position of each model. */
    profile: { type: "boolean", default: false },
    /** CI smoke run: the tiny config (2 × 64), a prompt of 4, 4 tokens, 2 reps, 200 ms warm-up. */
    quick: { type: "boolean", default: false },
  });
  const configs = (f.quick ? "tiny" : f.configs).split(",").filter(Boolean) as ConfigName[];
  for (const c of configs) if (!(c in CONFIGS)) throw new Error(`--configs: unknown config ${c}; one of ${Object.keys(CONFIGS).join(", ")}`);
  const int = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} ${v}: an integer ≥ ${min}`);
    return n;
  };
  const o = {
    vocab: int("vocab", f.vocab, 2),
    prompt: int("prompt", f.quick ? "4" : f.prompt, 1), tokens: int("tokens", f.quick ? "4" : f.tokens, 1),
    reps: int("reps", f.quick ? "2" : f.reps, 1), warmupMs: int("warmup", f.quick ? "200" : f.warmup, 0),
    rankFraction: Number(f["rank-fraction"]), seed: int("seed", f.seed, 0), profile: f.profile,
  };
  if (!(o.rankFraction > 0 && o.rankFraction <= 1)) throw new Error(`--rank-fraction ${f["rank-fraction"]}: a fraction in (0, 1]`);
  const { gpu, engine } = await runtimeGpu({ dawnToggles: f["dawn-toggles"] });
  const ctx = await ws.init({ gpu });
  console.log(`engine: ${engine}; adapter: ${ctx.info.adapterName}; configs ${configs.join(", ")}; vocab ${o.vocab}; ` +
    `prompt ${o.prompt}, ${o.tokens} decode steps, ${o.reps} reps, warm-up ${o.warmupMs} ms; rank ${(o.rankFraction * 100).toFixed(2)}% of nEmbd`);
  console.log(`host floor: ${(await launcherFloor()).toFixed(1)} µs per raw launcher.dispatch (a 1-workgroup fill into one buffer, ${FLOOR_DISPATCHES} recorded, then one sync)`);
  const rows: Row[] = [], guards: Guard[] = [];
  for (const name of configs) {
    const r = await runConfig(name, o);
    rows.push(...r.rows);
    guards.push(r.guard);
  }

  console.log(`\n| config | model | ms/token (readback each) | × dense | ms/token (generate: pipelined) | tokens/s | × dense | GPU ms/token (no readback) | × dense |  (${engine})`);
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.config} (${r.nLayer}×${r.nEmbd}, V ${r.vocabSize}) | ${r.variant}${r.rank ? ` r=${r.rank}` : ""} | ${r.loopMsPerToken.toFixed(3)} | ${r.loopSpeedup.toFixed(2)}× | ` +
      `${r.pipeMsPerToken.toFixed(3)} | ${r.pipeTokensPerS.toFixed(1)} | ${r.pipeSpeedup.toFixed(2)}× | ${r.gpuMsPerToken.toFixed(3)} | ${r.gpuSpeedup.toFixed(2)}× |`);
  }
  if (f.json) {
    await writeText(f.json, JSON.stringify({ bench: "decode", date: new Date().toISOString(), engine, adapter: ctx.info.adapterName, options: o, rows, guards }, null, 1));
    console.log(`wrote ${f.json}`);
  }
  // the guard fails the run after the table is out: a wrong merged model's speed means nothing
  // (differing tokens with agreeing logits are a near-tie of a random model: a warning, not a failure)
  for (const g of guards) if (g.tokensEqual !== g.tokensTotal) console.log(`warning: ${g.config}: merged and unmerged greedy tokens differ (${g.tokensEqual}/${g.tokensTotal}) though their logits agree to ${g.relLogitDiff.toExponential(1)}: a near-tie`);
  const bad = guards.filter((g) => g.relLogitDiff > 1e-3 || !Object.values(g.loopMatchesGenerate).every(Boolean));
  if (bad.length) throw new Error(`decode guard failed for ${bad.map((g) => g.config).join(", ")}: the merged model does not decode as the unmerged one (see the guard lines)`);
}

await main();
exit();
