// The demo's checkpoint of one run, as bytes: the library's safetensors checkpoint
// (checkpointToBytes / checkpointFromBytes, src/train/checkpoint.ts: weights with nanoGPT's names,
// masks, adapters, optimizer state, step and generators) with the demo's own part in its `extra`
// metadata: which run it is, the page's settings, the corpus name and the curves to redraw.
// Downloads, uploads and the autosave all go through these two functions.
import { CheckpointError } from "../src/index.ts";
import { type CharTokenizer, checkpointFromBytes, checkpointToBytes, type Corpus } from "../src/train/index.ts";
import { SafetensorsFile } from "../src/train/safetensors.ts";
import type { DemoConfig, RunHistory, RunKind } from "./protocol.ts";
import { Run } from "./runs.ts";

export interface DemoMeta {
  kind: RunKind;
  config: DemoConfig;
  corpusName: string;
  history: RunHistory;
  /** The tokenizer's vocabulary (the library's metadata). */
  chars: string[];
  step: number;
}

/** Serialises a run between two steps (it reads the tensors back). */
export function runToBytes(run: Run, tokenizer: CharTokenizer, corpusName: string): Promise<Uint8Array> {
  return checkpointToBytes({
    model: run.model, tokenizer, trainer: run.trainer,
    extra: { demo: { kind: run.kind, config: run.cfg, corpusName, history: run.history } },
  });
}

/** The demo's metadata of a checkpoint, without touching the GPU; a file of another origin is a CheckpointError. */
export function readDemoMeta(bytes: Uint8Array): DemoMeta {
  const file = SafetensorsFile.parse(bytes);
  let meta: { step?: number; tokenizer?: { chars?: string[] } | null; extra?: { demo?: Omit<DemoMeta, "chars" | "step"> } };
  try { meta = JSON.parse(file.metadata.webslope ?? "null") ?? {}; } catch { meta = {}; }
  const demo = meta.extra?.demo;
  if (!demo || !meta.tokenizer?.chars || typeof meta.step !== "number") {
    throw new CheckpointError("checkpoint: this file was not saved by the demo page (no run settings or tokenizer in its metadata); download one from a run card");
  }
  return { ...demo, chars: meta.tokenizer.chars, step: meta.step };
}

/** Rebuilds a run from runToBytes output, training on `corpus` (encoded with the saved tokenizer). */
export async function runFromBytes(bytes: Uint8Array, corpus: Corpus, vocabSize: number): Promise<Run> {
  const meta = readDemoMeta(bytes);
  const run = new Run(meta.kind, meta.config, vocabSize, corpus);
  try {
    await checkpointFromBytes(bytes, { trainer: run.trainer });
  } catch (e) {
    run.dispose();
    throw e;
  }
  run.history.losses.push(...meta.history.losses);
  run.history.val.push(...meta.history.val);
  run.history.sample = meta.history.sample;
  const last = meta.history.losses.at(-1);
  if (last) run.ema = last[1];
  return run;
}
