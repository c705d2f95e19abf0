// Sampling from a GPT: each new token reads back one row of logits (outside any training step),
// then samples on the CPU with temperature and top-k from a seeded generator.
import type { GPT } from "../nn/gpt.ts";
import { tensor } from "../ops/creation.ts";
import { Generator } from "../random.ts";
import { noGrad } from "../scope.ts";

export interface GenerateOptions {
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  seed?: number;
}

/** Continues `prompt` (token ids) by maxNewTokens tokens; returns only the new ones. */
export async function generate(model: GPT, prompt: ArrayLike<number>, opts: GenerateOptions): Promise<number[]> {
  const gen = new Generator(opts.seed ?? 0);
  const T = model.config.blockSize, V = model.config.vocabSize;
  const ctx = Array.from(prompt);
  if (ctx.length === 0) ctx.push(0);
  const out: number[] = [];
  const wasTraining = model.training;
  model.eval();
  try {
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const window = ctx.slice(-T);
      const logitsRow = noGrad(() => {
        const idx = tensor(Int32Array.from(window), [1, window.length]);
        const logits = model.forward(idx);
        const last = logits.narrow(1, window.length - 1, 1);
        idx.dispose(); logits.dispose();
        return last;
      });
      const row = await logitsRow.toArray();
      logitsRow.dispose();
      const next = sample(row, V, opts.temperature ?? 1, opts.topK ?? 0, gen);
      ctx.push(next);
      out.push(next);
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
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
