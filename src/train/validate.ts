// The checks at the train layer's entry points (Trainer, Corpus, generate): option ranges, and
// token ids against the model's vocabulary wherever they are on the host — a vocabulary smaller
// than the corpus's would otherwise train on zero rows in silence. All run before anything is
// allocated or the model is touched.
import { ShapeError, ValueError } from "../errors.ts";
import type { GPT } from "../nn/gpt.ts";
import { resolveRank } from "../nn/lowrank-adapter.ts";
import { checkNumber, checkOptional } from "../validate.ts";
import type { Corpus } from "./corpus.ts";
import type { GenerateOptions } from "./generate.ts";
import type { TrainerOptions } from "./trainer.ts";

/** Every id is an integer in [0, vocabSize); names the first that is not. */
export function checkIds(op: string, what: string, ids: ArrayLike<number>, vocabSize: number, fix: string): void {
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= vocabSize) {
      throw new ValueError(op, `${what} has id ${v} at position ${i}, outside the model's vocabulary [0, ${vocabSize}); ${fix}`);
    }
  }
}

export function checkTrainer(model: GPT, corpus: Corpus, opts: TrainerOptions): void {
  const op = "Trainer";
  if (typeof opts !== "object" || opts === null) throw new ValueError(op, "needs options { batchSize, totalSteps, ... }");
  checkNumber(op, "batchSize", opts.batchSize, { integer: true, min: 1 });
  checkNumber(op, "totalSteps", opts.totalSteps, { integer: true, min: 1 });
  checkOptional(op, "lr", opts.lr, { min: 0 });
  checkOptional(op, "warmupFraction", opts.warmupFraction, { min: 0, max: 1 });
  checkOptional(op, "weightDecay", opts.weightDecay, { min: 0 });
  checkOptional(op, "gradClip", opts.gradClip, { above: 0 });
  checkOptional(op, "seed", opts.seed, { integer: true });
  if (opts.precision !== undefined && opts.precision !== "f32" && opts.precision !== "mixed-f16") {
    throw new ValueError(op, `precision must be "f32" or "mixed-f16", got ${JSON.stringify(opts.precision)}`);
  }
  if (opts.lossScale !== undefined && opts.precision !== "mixed-f16") {
    throw new ValueError(op, `lossScale is for precision "mixed-f16" (precision is ${JSON.stringify(opts.precision ?? "f32")}); drop it or set precision: "mixed-f16"`);
  }
  const s = opts.slope;
  if (s) {
    checkOptional(op, "slope.maskChangeFreq", s.maskChangeFreq, { integer: true, min: 1 });
    checkOptional(op, "slope.adapterRank", s.adapterRank, { integer: true, min: 1 });
    checkOptional(op, "slope.adapterRankFraction", s.adapterRankFraction, { above: 0, max: 1 });
    checkOptional(op, "slope.adapterAt", s.adapterAt, { min: 0, max: 1 });
    // Every sparse layer of a GPT block has min(d_in, d_out) = nEmbd: check the rank now, not at
    // the adapters' entry step 99% into the run (and before pruneModel touches the model).
    if (s.adapterRank !== undefined || s.adapterRankFraction !== undefined) {
      const d = model.config.nEmbd;
      resolveRank(op, d, d, s.adapterRank !== undefined ? { rank: s.adapterRank } : { rankFraction: s.adapterRankFraction, hiddenSize: d });
    }
  }
  const T = model.config.blockSize;
  if (corpus.train.length < T + 2) {
    throw new ShapeError(op, `the train split has ${corpus.train.length} tokens, fewer than blockSize + 2 = ${T + 2}; use a longer corpus or a smaller blockSize`);
  }
  const V = model.config.vocabSize;
  const fix = `build the GPT with vocabSize ≥ the tokenizer's vocabSize (e.g. new GPT({ vocabSize: tokenizer.vocabSize, ... }))`;
  checkIds(op, "the corpus's train split", corpus.train, V, fix);
  checkIds(op, "the corpus's validation split", corpus.val, V, fix);
}

export function checkGenerate(model: GPT, prompt: ArrayLike<number>, opts: GenerateOptions): void {
  const op = "generate";
  if (typeof opts !== "object" || opts === null) throw new ValueError(op, "needs options { maxNewTokens, temperature?, topK?, seed? }");
  checkNumber(op, "maxNewTokens", opts.maxNewTokens, { integer: true, min: 0 });
  checkOptional(op, "temperature", opts.temperature, { min: 0 });
  checkOptional(op, "topK", opts.topK, { integer: true, min: 0 });
  checkOptional(op, "seed", opts.seed, { integer: true });
  if (prompt === null || typeof prompt !== "object" || typeof prompt.length !== "number") {
    throw new ValueError(op, `prompt must be an array of token ids, got ${prompt === null ? "null" : typeof prompt}`);
  }
  checkIds(op, "the prompt", prompt, model.config.vocabSize, "encode it with the tokenizer the model was trained with");
}
