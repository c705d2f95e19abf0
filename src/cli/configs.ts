// The CLI's model and training presets. `small` is nanoGPT's config/train_shakespeare_char.py
// (6 × 384, block 256, batch 64, dropout 0.2, lr 1e-3, 5,000 iterations); `mid` the DESIGN.md
// benchmark shape; `tiny` a smoke-test model that trains in seconds on a software GPU.
import type { GPTConfig } from "../nn/gpt.ts";

export interface Preset {
  model: Omit<GPTConfig, "vocabSize">;
  batchSize: number;
  lr: number;
  steps: number;
}

export const PRESETS: Record<"tiny" | "mid" | "small", Preset> = {
  tiny: { model: { blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 64, dropout: 0 }, batchSize: 8, lr: 3e-3, steps: 200 },
  mid: { model: { blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 256, dropout: 0.1 }, batchSize: 32, lr: 1e-3, steps: 2000 },
  small: { model: { blockSize: 256, nLayer: 6, nHead: 6, nEmbd: 384, dropout: 0.2 }, batchSize: 64, lr: 1e-3, steps: 5000 },
};

const MODEL_KEYS = ["blockSize", "nLayer", "nHead", "nEmbd", "dropout", "attention", "seed"] as const;

/** A preset name, or a JSON file's content: model fields (GPTConfig minus vocabSize) plus optional batchSize, lr, steps. */
export function presetFrom(name: string, json: string | null): Preset {
  if (json === null) {
    const p = PRESETS[name as keyof typeof PRESETS];
    if (!p) throw new Error(`--config must be tiny, mid, small or a .json file, got "${name}"`);
    return structuredClone(p);
  }
  let raw: Record<string, unknown>;
  try { raw = JSON.parse(json); } catch (e) { throw new Error(`--config ${name} is not valid JSON (${(e as Error).message})`); }
  if (typeof raw !== "object" || raw === null) throw new Error(`--config ${name} must hold a JSON object`);
  const unknown = Object.keys(raw).filter((k) => !(MODEL_KEYS as readonly string[]).includes(k) && !["batchSize", "lr", "steps"].includes(k));
  if (unknown.length) throw new Error(`--config ${name}: unknown keys ${unknown.join(", ")} (allowed: ${[...MODEL_KEYS, "batchSize", "lr", "steps"].join(", ")})`);
  const base = PRESETS.tiny;
  const model = { ...base.model } as Record<string, unknown>;
  for (const k of MODEL_KEYS) if (raw[k] !== undefined) model[k] = raw[k];
  return {
    model: model as Preset["model"],
    batchSize: (raw.batchSize as number) ?? base.batchSize,
    lr: (raw.lr as number) ?? base.lr,
    steps: (raw.steps as number) ?? base.steps,
  };
}
