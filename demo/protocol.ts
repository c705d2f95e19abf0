// The messages between the page (main.ts) and the training worker (worker.ts). Everything the
// page draws comes from these; the worker owns the GPU, the models and the autosave.
import type { ModelShape, PresetName } from "./presets.ts";

export interface DemoConfig {
  preset: PresetName;
  model: ModelShape;
  batchSize: number;
  totalSteps: number;
  lr: number;
  dense: boolean;
  slope: boolean;
  /** Lazy adapter rank as a fraction of nEmbd (0: none) and when they enter (fraction of training). */
  adapterRankFraction: number;
  adapterAt: number;
  /** "mixed-f16": matmuls on the matrix units with loss scaling (f32 matmuls where the adapter has none). Absent in older saves: f32. */
  precision?: "f32" | "mixed-f16";
  /** Validation + samples + masks every this many steps; sample length in characters. */
  sampleEvery: number;
  sampleTokens: number;
  /** Autosave to IndexedDB every this many steps (0: never). */
  autosaveEvery: number;
  seed: number;
}

export type RunKind = "dense" | "slope";

export interface RunInfo {
  label: string;
  kind: RunKind;
  color: string;
  params: number;
  adapterStep: number | null;
}

/** Bytes a run keeps on the GPU, by what they hold. */
export interface MemoryBreakdown {
  weights: number;
  /** SLoPe: the double-pruned transpose W_RCᵀ kept for the backward pass. */
  wrcT: number;
  /** SLoPe: 2:4 index metadata of W and W_RCᵀ. */
  masks: number;
  gradients: number;
  optimizer: number;
  /** Peak of the step's transient tensors beyond the model state (activations and workspace). */
  activations: number;
}

/** One point of a run's curves: step, smoothed train loss, raw train loss. */
export type LossPoint = [step: number, ema: number, raw: number];

export interface RunHistory {
  losses: LossPoint[];
  val: [step: number, loss: number][];
  sample: { step: number; text: string; valLoss: number } | null;
}

export type Phase = "idle" | "compiling" | "training" | "validating" | "sampling" | "saving" | "profiling" | "paused" | "done" | "racing" | "lost" | "error";

/** One bar of "where the time goes": a kernel family's summed GPU time in one step. */
export interface ProfileRow { name: string; ms: number; calls: number }

export type ToWorker =
  | { type: "init" }
  | { type: "start"; config: DemoConfig; corpusName: string; text: string }
  | { type: "pause" }
  | { type: "resume" }
  | { type: "reset" }
  /** Restores the autosave (if any) in the paused state. */
  | { type: "restore" }
  | { type: "download"; run: number }
  | { type: "upload"; name: string; bytes: ArrayBuffer; text: string | null }
  | { type: "race"; tokens: number }
  /** Destroys the device as a real loss would end it (the test of the recovery path). */
  | { type: "lose-device" };

export type FromWorker =
  | { type: "ready"; adapter: string; features: string[]; software: boolean; autosave: AutosaveSummary | null }
  | { type: "nogpu"; message: string }
  | { type: "status"; phase: Phase; text: string }
  | { type: "runs"; config: DemoConfig; runs: RunInfo[]; vocabSize: number; corpusName: string; history: RunHistory[] }
  | { type: "losses"; run: number; points: LossPoint[] }
  | { type: "val"; run: number; step: number; loss: number }
  | { type: "sample"; run: number; step: number; text: string; valLoss: number }
  | { type: "stats"; step: number; total: number; tokensPerSec: (number | null)[]; stepMs: (number | null)[]; etaSec: number | null; memory: MemoryBreakdown[]; liveBytes: number; lr: number; adaptersIn: boolean }
  | { type: "masks"; size: number; r: Float32Array; rc: Float32Array; density: number; layer: string }
  | { type: "saved"; step: number }
  | { type: "checkpoint"; run: number; name: string; bytes: ArrayBuffer }
  | { type: "race"; results: { label: string; tokensPerSec: number; text: string }[] }
  | { type: "profile"; run: number; rows: ProfileRow[]; totalMs: number; dispatches: number; timed: boolean }
  | { type: "stopped"; step: number; total: number; done: boolean }
  | { type: "lost"; message: string; autosaveStep: number | null }
  | { type: "error"; message: string };

export interface AutosaveSummary {
  step: number;
  total: number;
  corpusName: string;
  savedAt: number;
}
