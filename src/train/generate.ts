// Sampling from a GPT: each new token reads back one row of logits (outside any training step),
// then samples on the CPU with temperature and top-k from a seeded generator; greedy decoding
// (temperature 0) with the cache takes the argmax on the GPU and feeds it straight back, reading
// the ids back eight at a time while the next ones are encoded. With the KV cache
// (default) the prompt is one forward and every new token one forward of one position; once the
// context passes blockSize the window slides (the last blockSize tokens are re-fed, as the
// uncached path does every token), so cached and uncached sampling agree token for token.
import type { GPT } from "../nn/gpt.ts";
import { gpu } from "../gpu/context.ts";
import { tensor, zeros } from "../ops/creation.ts";
import { argmax } from "../ops/reduce.ts";
import { Generator } from "../random.ts";
import { noGrad } from "../scope.ts";
import { KVCache, forwardCached, kvCacheSupports } from "../nn/kv-cache.ts";
import type { Tensor } from "../tensor.ts";
import { checkGenerate } from "./validate.ts";

export interface GenerateOptions {
  maxNewTokens: number;
  /** Softmax temperature; 0 is greedy (argmax). Default 1. */
  temperature?: number;
  /** Sample among the K most likely tokens only; 0 (default) is all. */
  topK?: number;
  /** Seeds the sampling. Default 0. */
  seed?: number;
  /** Decode with a KV cache (default true, where kvCacheSupports the model: head dims up to 1024); false re-runs the whole window per token. */
  kvCache?: boolean;
}

/** Continues `prompt` (token ids) by maxNewTokens tokens; returns only the new ones. */
export async function generate(model: GPT, prompt: ArrayLike<number>, opts: GenerateOptions): Promise<number[]> {
  checkGenerate(model, prompt, opts);
  const gen = new Generator(opts.seed ?? 0);
  const T = model.config.blockSize, V = model.config.vocabSize;
  const ctx = Array.from(prompt);
  if (ctx.length === 0) ctx.push(0);
  const out: number[] = [];
  const temperature = opts.temperature ?? 1, topK = opts.topK ?? 0;
  const wasTraining = model.training;
  model.eval();
  const cache = opts.kvCache === false || !kvCacheSupports(model) ? null : new KVCache(model);
  const ids = (a: number[]) => tensor(Int32Array.from(a), [1, a.length]);
  try {
    if (cache && temperature <= 0) return await greedyCached(model, ctx, opts.maxNewTokens, cache);
    for (let i = 0; i < opts.maxNewTokens; i++) {
      let logitsRow: Tensor;
      if (cache && i > 0 && cache.length < T) {
        const idx = ids([ctx[ctx.length - 1]!]);
        logitsRow = lastRow(forwardCached(model, idx, cache), 1);
        idx.dispose();
      } else {
        const window = ctx.slice(-T);
        const idx = ids(window);
        if (cache) { cache.reset(); logitsRow = lastRow(forwardCached(model, idx, cache), window.length); }
        else logitsRow = noGrad(() => lastRow(model.forward(idx), window.length));
        idx.dispose();
      }
      const row = await logitsRow.toArray();
      logitsRow.dispose();
      const next = sample(row, V, temperature, topK, gen);
      ctx.push(next);
      out.push(next);
    }
  } finally {
    cache?.dispose();
    model.train(wasTraining);
  }
  return out;
}

/** The last position's row [B, 1, V] of logits [B, n, V]; disposes the logits. */
function lastRow(logits: Tensor, n: number): Tensor {
  const last = logits.narrow(1, n - 1, 1);
  logits.dispose();
  return last;
}

/**
 * Tokens per readback in greedy decoding. Each token's id is copied on the GPU into a slot of
 * a batch, and one readback brings back a whole batch while the next one is encoded. A readback
 * answers late (about 11 ms under Deno's wgpu, 0.1 ms under Dawn) and costs a submit and a map
 * (~0.8 ms of host time a token under Dawn on the H200); the next token needs only the GPU copy.
 */
export const GREEDY_BATCH = 8;

/**
 * Brings token ids [1, 1] i32 that stay on the GPU back to the CPU in batches: push() records a
 * 4-byte copy into the next slot of a GREEDY_BATCH-slot buffer; a full buffer starts its readback
 * after awaiting the previous one's, so at most two batches are in flight. drain() lands the rest.
 */
export class TokenReader {
  /** The ids landed so far, in order. */
  readonly tokens: number[] = [];
  private slots: Tensor;
  private filled = 0;
  private reading: Promise<number[]> | null = null;

  constructor(private readonly onToken: (t: number) => void = () => {}) {
    this.slots = zeros([GREEDY_BATCH], { dtype: "i32" });
  }

  async push(token: Tensor): Promise<void> {
    gpu().launcher.copy(token.buffer("generate"), 0, this.slots.buffer("generate"), 4 * this.filled++, 4);
    if (this.filled === GREEDY_BATCH) await this.startRead();
  }

  /** Every pushed id landed (in `tokens`). */
  async drain(): Promise<void> {
    if (this.filled) await this.startRead();
    await this.land();
  }

  dispose(): void {
    this.slots.dispose();
  }

  private async startRead(): Promise<void> {
    await this.land();
    const count = this.filled;
    this.filled = 0;
    this.reading = this.slots.toArray().then((a) => Array.from(a).slice(0, count));
  }

  private async land(): Promise<void> {
    if (!this.reading) return;
    const ids = await this.reading;
    this.reading = null;
    for (const t of ids) { this.tokens.push(t); this.onToken(t); }
  }
}

/**
 * Greedy decoding with the KV cache, pipelined: the argmax stays on the GPU and is the next
 * position's input, so the CPU encodes and submits tokens ahead while earlier batches are read
 * back (TokenReader). Past blockSize the window slides as in the sampled path, which needs every
 * id on the CPU first.
 */
async function greedyCached(model: GPT, ctx: number[], n: number, cache: KVCache): Promise<number[]> {
  const T = model.config.blockSize;
  const reader = new TokenReader((t) => ctx.push(t));
  let prev: Tensor | null = null; // the latest token on the GPU [1, 1] i32
  try {
    for (let i = 0; i < n; i++) {
      let logitsRow: Tensor;
      if (prev && cache.length < T) logitsRow = lastRow(forwardCached(model, prev, cache), 1);
      else {
        await reader.drain();
        const window = ctx.slice(-T);
        const idx = tensor(Int32Array.from(window), [1, window.length]);
        cache.reset();
        logitsRow = lastRow(forwardCached(model, idx, cache), window.length);
        idx.dispose();
      }
      const next = noGrad(() => argmax(logitsRow, -1));  // [1, 1]
      logitsRow.dispose();
      prev?.dispose();
      prev = next;
      await reader.push(next);
    }
    await reader.drain();
    return reader.tokens;
  } finally {
    prev?.dispose();
    reader.dispose();
  }
}

function sample(logits: ArrayLike<number>, V: number, temperature: number, topK: number, gen: Generator): number {
  const idx = Array.from({ length: V }, (_, i) => i);
  if (temperature <= 0) return idx.reduce((b, i) => (logits[i]! > logits[b]! ? i : b), 0);
  let cand = idx;
  if (topK > 0 && topK < V) cand = idx.sort((a, b) => logits[b]! - logits[a]!).slice(0, topK);
  const m = Math.max(...cand.map((i) => logits[i]!));
  const w = cand.map((i) => Math.exp((logits[i]! - m) / temperature));
  let u = gen.random() * w.reduce((a, b) => a + b, 0);
  for (let k = 0; k < cand.length; k++) { u -= w[k]!; if (u <= 0) return cand[k]!; }
  return cand[cand.length - 1]!;
}
