// Checkpoints: a GPT (dense or SLoPe, with its lazy adapters), its tokenizer and, given a Trainer,
// everything a bitwise-exact resume needs (step, AdamW and SparseAdamW state, every random
// stream) in one safetensors file (./safetensors.ts) that PyTorch reads with nanoGPT's names.
//
// Stable API (the demo's download/upload/autosave builds on the bytes-level pair):
//   checkpointToBytes(state: CheckpointState): Promise<Uint8Array>
//   checkpointFromBytes(bytes: Uint8Array, target?: LoadTarget): Promise<LoadedCheckpoint>
//   saveCheckpoint(path: string, state: CheckpointState): Promise<void>      Node and Deno; atomic
//   loadCheckpoint(path: string, target?: LoadTarget): Promise<LoadedCheckpoint>
// CheckpointState = { model, tokenizer?, trainer?, extra? }; LoadTarget = { model?, trainer? }:
// with a trainer, its model, optimizers, step and generators are restored; with a model, the
// weights; with neither, a new GPT is built from the file's config (pruned and adapted as saved).
//
// File layout (tensor names are nanoGPT's; Linear weights [out, in] as in PyTorch):
//   transformer.wte.weight, transformer.wpe.weight, transformer.ln_f.{weight,bias},
//   transformer.h.{i}.ln_1 / ln_2 / attn.c_attn / attn.c_proj / mlp.c_fc / mlp.c_proj .{weight,bias}
//   lm_head.weight is tied to transformer.wte.weight and not stored (safetensors has no aliases).
//   A SLoPe layer stores its weight dense with zeros at pruned positions, plus u8 masks:
//   `.weight_mask` (M_R, static 2:4 along in) and `.weight_mask_rc` (M_RC, the double-pruned mask,
//   in the same [out, in] layout); its adapter as `.adapter.L` [in, r], `.adapter.R` [r, out],
//   `.adapter.L_mask` (u8). Optimizer moments: `optimizer.adamw.<param>.exp_avg / .exp_avg_sq`,
//   `optimizer.sparse_adamw.<layer>.weight.exp_avg / .exp_avg_sq` (dense [out, in]).
//   Metadata "webslope" (JSON): config, tokenizer, step, sparse layout, adapter ranks, trainer
//   options, optimizer hyperparameters and steps, generator states.
// Loading validates the whole file against the model before changing anything: a bad file is a
// CheckpointError naming the problem, and the live model, optimizers and generators stay as they were.
import { CheckpointError, WebslopeError } from "../errors.ts";
import { GPT, type GPTConfig } from "../nn/gpt.ts";
import { resolveRank } from "../nn/lowrank-adapter.ts";
import type { Module } from "../nn/module.ts";
import { MergedSparseLinear } from "../nn/merged-sparse-linear.ts";
import { SparseLinear } from "../nn/sparse-linear.ts";
import { tensor } from "../ops/creation.ts";
import type { AdamWStateDict } from "../optim/adamw.ts";
import { globalGenerator } from "../random.ts";
import { pruneModel } from "../slope/prune.ts";
import { parsePattern, type Pattern } from "../sparse/sparse24.ts";
import type { Tensor } from "../tensor.ts";
import { encodeSafetensors, type SafeArray, type SafeDType, SafetensorsFile, type SafeTensor } from "./safetensors.ts";
import { CharTokenizer } from "./tokenizer.ts";
import type { Trainer, TrainerOptions } from "./trainer.ts";

export interface CheckpointState {
  model: GPT;
  tokenizer?: CharTokenizer | null;
  /** Saves its step, optimizer state and generators too (a resumable checkpoint). */
  trainer?: Trainer | null;
  /** Your own JSON-serialisable metadata (run name, corpus path, ...). */
  extra?: Record<string, unknown>;
}

export interface LoadTarget {
  /** Load the weights into this model (same config, pruned and adapted like the saved one). */
  model?: GPT;
  /** Restore this trainer (its model, optimizers, step, generators); adapters are inserted if saved. */
  trainer?: Trainer;
}

export interface LoadedCheckpoint {
  model: GPT;
  config: GPTConfig;
  tokenizer: CharTokenizer | null;
  /** Optimizer steps taken when it was saved. */
  step: number;
  /** The saving trainer's options (null for a model-only checkpoint). */
  trainerOptions: TrainerOptions | null;
  extra: Record<string, unknown>;
}

const FORMAT = "webslope-checkpoint";
const VERSION = 1;

interface Meta {
  format: string;
  version: number;
  config: GPTConfig;
  tokenizer: { type: "char"; chars: string[] } | null;
  step: number;
  /** webslope module names of the SparseLinear layers, with their storage. */
  sparse: { pattern: string; compress: boolean; layers: string[] } | null;
  /** webslope module name → adapter rank. */
  adapters: Record<string, number>;
  trainer: {
    options: TrainerOptions;
    stepCount: number;
    batchRng: number;
    adamw: { paramGroups: { lr: number; betas: [number, number]; eps: number; weightDecay: number; params: string[] }[]; steps: Record<string, number> };
    /** layerSteps: each layer's own step count (older files: every layer took `step`). */
    sparseAdamW: { step: number; layers: string[]; layerSteps?: Record<string, number> } | null;
    /** Mixed precision: the loss scaler's state (absent in f32 runs and older files). */
    scaler?: { scale: number; growthTracker: number; skipped: number } | null;
  } | null;
  rng: { global: number };
  extra: Record<string, unknown>;
}

// ---- names -----------------------------------------------------------------------------------

const TOP: Record<string, string> = { wte: "transformer.wte", wpe: "transformer.wpe", lnF: "transformer.ln_f", blocks: "transformer.h" };
const INNER: Record<string, string> = { ln1: "ln_1", ln2: "ln_2", qkv: "c_attn", proj: "c_proj", fc1: "c_fc", fc2: "c_proj" };

/** A webslope module or parameter name ("blocks.0.attn.qkv.weight") → nanoGPT's ("transformer.h.0.attn.c_attn.weight"). */
export function torchName(name: string): string {
  return name.split(".").map((s, i) => (i === 0 ? TOP[s] : INNER[s]) ?? s).join(".");
}

function mergedLayer(model: Module): [string, Module] | undefined {
  return model.namedModules().find(([, l]) => l instanceof MergedSparseLinear);
}

function sparseLayers(model: Module): [string, SparseLinear][] {
  return model.namedModules().filter((e): e is [string, SparseLinear] => e[1] instanceof SparseLinear);
}

// ---- N:M packing on the CPU (the layout of src/sparse/sparse24.ts: kept values in column order,
// ---- meta bit c of a row set when column c is kept) ------------------------------------------

function unpackNM(values: ArrayLike<number>, meta: ArrayLike<number>, rows: number, cols: number, n: number, m: number): { dense: Float32Array; mask: Uint8Array } {
  const words = Math.ceil(cols / 32), vpr = (cols * n) / m;
  const dense = new Float32Array(rows * cols), mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      let k = (g / m) * n;
      for (let c = g; c < g + m; c++) {
        if (((meta[r * words + (c >>> 5)]! >>> (c & 31)) & 1) === 0) continue;
        dense[r * cols + c] = values[r * vpr + k++]!;
        mask[r * cols + c] = 1;
      }
    }
  }
  return { dense, mask };
}

/**
 * Packs a dense rows×cols matrix at the kept positions of `mask`: each group of m columns keeps
 * exactly n (`exact`, a pruned W or Lᵀ) or at most n (the double-pruned W_RC^T), checked.
 */
function packNM(what: string, dense: Float32Array, mask: Uint8Array, rows: number, cols: number, n: number, m: number, exact = true): { values: Float32Array; meta: Int32Array } {
  const words = Math.ceil(cols / 32), vpr = (cols * n) / m;
  const values = new Float32Array(rows * vpr), meta = new Int32Array(rows * words);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      let kept = 0;
      for (let c = g; c < g + m; c++) {
        const b = mask[r * cols + c]!;
        if (b > 1) throw new CheckpointError(`checkpoint: ${what} has the value ${b} at [${r}, ${c}]; a mask holds only 0 and 1`);
        if (!b) continue;
        if (kept < n) values[r * vpr + (g / m) * n + kept] = dense[r * cols + c]!;
        kept++;
        meta[r * words + (c >>> 5)]! |= 1 << (c & 31);
      }
      if (exact ? kept !== n : kept > n) {
        throw new CheckpointError(`checkpoint: ${what} keeps ${kept} of the ${m} columns ${g}..${g + m - 1} in row ${r}; pattern ${n}:${m} keeps ${exact ? "exactly" : "at most"} ${n}`);
      }
    }
  }
  return { values, meta };
}

function transpose<A extends Float32Array | Uint8Array>(a: A, rows: number, cols: number): A {
  const out = new (a.constructor as new (n: number) => A)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

const toU8 = (a: ArrayLike<number>) => Uint8Array.from(a, (x) => (x ? 1 : 0));
const toF32 = (a: Uint8Array) => Float32Array.from(a);

// ---- saving ----------------------------------------------------------------------------------

/** Serialises a model (and tokenizer, trainer state) to safetensors bytes. Reads tensors back; never mutates. */
export async function checkpointToBytes(state: CheckpointState): Promise<Uint8Array> {
  const { model, trainer } = state;
  if (!(model instanceof GPT)) throw new CheckpointError("checkpointToBytes: state.model must be a GPT");
  if (trainer && trainer.model !== model) throw new CheckpointError("checkpointToBytes: state.trainer trains a different model than state.model");
  if (trainer) await trainer.settle();
  // Mixed precision: the optimizers' step counts live on the GPU (a skipped step does not count).
  const scaler = trainer ? await trainer.syncScaler() : null;
  const layers = sparseLayers(model);
  const merged = mergedLayer(model);
  if (merged) {
    throw new CheckpointError(`checkpointToBytes: layer "${merged[0]}" is merged for inference (mergeAdapters), which keeps [W; Lᵀ] and R/r ` +
      "instead of the trained tensors; save the model before merging it (merging after loadCheckpoint is exact)");
  }
  const reads: { name: string; t: Tensor }[] = [];
  const read = (name: string, t: Tensor) => reads.push({ name, t });
  const prefixes = layers.map(([n]) => `${n}.`);
  const state0 = model.stateDict();
  for (const [k, t] of state0) if (!prefixes.some((p) => k.startsWith(p))) read(k, t);
  for (const [n, l] of layers) {
    if (l.compress) { read(`${n}|values`, l.w!.values); read(`${n}|meta`, l.w!.meta); read(`${n}|metaT`, l.wT!.meta); }
    else { read(`${n}|weight`, l.weight!); read(`${n}|maskR`, l.maskR!); read(`${n}|maskRC`, l.maskRC!); }
    if (l.bias) read(`${n}|bias`, l.bias);
    if (l.adapter) { read(`${n}|L`, l.adapter.L); read(`${n}|R`, l.adapter.R); read(`${n}|maskL`, l.adapter.maskL); }
  }
  // optimizer moments
  const paramName = new Map<Tensor, string>(model.namedParameters().map(([n, t]) => [t, n]));
  for (const [n, l] of layers) if (l.adapter) { paramName.set(l.adapter.L, `${n}.adapter.L`); paramName.set(l.adapter.R, `${n}.adapter.R`); }
  let adamw: AdamWStateDict | null = null;
  if (trainer) {
    adamw = trainer.dense.stateDict();
    const flat = adamw.paramGroups.flatMap((g) => g.params);
    const all = trainer.dense.paramGroups.flatMap((g) => g.params);
    for (const [i, s] of adamw.state) {
      const name = paramName.get(all[flat[i]!]!);
      if (!name) throw new CheckpointError(`checkpointToBytes: the trainer's AdamW updates a tensor that is not a parameter of the model (index ${i})`);
      read(`adamw|${name}|m`, s.expAvg); read(`adamw|${name}|v`, s.expAvgSq);
    }
    if (trainer.sparse) {
      const sd = trainer.sparse.stateDict();
      trainer.sparse.layers.forEach((l, i) => {
        const m = sd.tensors.get(`${i}.m`), v = sd.tensors.get(`${i}.v`);
        const n = layers.find(([, x]) => x === l)?.[0];
        if (m && v && n !== undefined) { read(`sadamw|${n}|m`, m); read(`sadamw|${n}|v`, v); }
      });
    }
  }
  const data = new Map<string, Float32Array | Int32Array>();
  const arrays = await Promise.all(reads.map((r) => r.t.toArray()));
  reads.forEach((r, i) => data.set(r.name, arrays[i]!));
  const get = (k: string) => data.get(k)!;

  const out = new Map<string, SafeTensor>();
  const put = (name: string, dtype: SafeDType, shape: readonly number[], a: SafeArray) => {
    if (a instanceof Float32Array) {
      for (let i = 0; i < a.length; i++) {
        if (!Number.isFinite(a[i])) {
          throw new CheckpointError(`checkpointToBytes: "${name}" holds ${a[i]} at element ${i}; a checkpoint of a diverged model is refused ` +
            "so the last good one is kept (lower the learning rate or clip gradients, then resume from it)");
        }
      }
    }
    out.set(name, { dtype, shape: [...shape], data: a });
  };
  for (const [k, t] of state0) {
    if (prefixes.some((p) => k.startsWith(p))) continue;
    const a = get(k);
    put(torchName(k), a instanceof Int32Array ? "I32" : "F32", t.shape, a);
  }
  const sparseMoment = (l: SparseLinear, a: Float32Array, metaKey: string) => (l.compress
    ? unpackNM(a, get(metaKey), l.outFeatures, l.inFeatures, l.w!.n, l.w!.m).dense
    : a);
  for (const [n, l] of layers) {
    const tp = torchName(n), O = l.outFeatures, I = l.inFeatures;
    if (l.compress) {
      const w = unpackNM(get(`${n}|values`), get(`${n}|meta`), O, I, l.w!.n, l.w!.m);
      const rc = unpackNM(new Float32Array(l.wT!.values.size), get(`${n}|metaT`), I, O, l.wT!.n, l.wT!.m);
      put(`${tp}.weight`, "F32", [O, I], w.dense);
      put(`${tp}.weight_mask`, "U8", [O, I], w.mask);
      put(`${tp}.weight_mask_rc`, "U8", [O, I], transpose(rc.mask, I, O));
    } else {
      put(`${tp}.weight`, "F32", [O, I], get(`${n}|weight`) as Float32Array);
      put(`${tp}.weight_mask`, "U8", [O, I], toU8(get(`${n}|maskR`)));
      put(`${tp}.weight_mask_rc`, "U8", [O, I], toU8(get(`${n}|maskRC`)));
    }
    if (l.bias) put(`${tp}.bias`, "F32", [O], get(`${n}|bias`) as Float32Array);
    if (l.adapter) {
      const r = l.adapter.rank;
      put(`${tp}.adapter.L`, "F32", [I, r], get(`${n}|L`) as Float32Array);
      put(`${tp}.adapter.R`, "F32", [r, O], get(`${n}|R`) as Float32Array);
      put(`${tp}.adapter.L_mask`, "U8", [I, r], toU8(get(`${n}|maskL`)));
    }
  }
  let trainerMeta: Meta["trainer"] = null;
  if (trainer && adamw) {
    const all = trainer.dense.paramGroups.flatMap((g) => g.params);
    const steps: Record<string, number> = {};
    for (const [i, s] of adamw.state) {
      const name = paramName.get(all[i]!)!;
      steps[torchName(name)] = s.step;
      const shape = all[i]!.shape;
      put(`optimizer.adamw.${torchName(name)}.exp_avg`, "F32", shape, get(`adamw|${name}|m`) as Float32Array);
      put(`optimizer.adamw.${torchName(name)}.exp_avg_sq`, "F32", shape, get(`adamw|${name}|v`) as Float32Array);
    }
    const sparseNames: string[] = [];
    for (const [n, l] of layers) {
      if (!data.has(`sadamw|${n}|m`)) continue;
      sparseNames.push(torchName(n));
      put(`optimizer.sparse_adamw.${torchName(n)}.weight.exp_avg`, "F32", [l.outFeatures, l.inFeatures], sparseMoment(l, get(`sadamw|${n}|m`) as Float32Array, `${n}|meta`));
      put(`optimizer.sparse_adamw.${torchName(n)}.weight.exp_avg_sq`, "F32", [l.outFeatures, l.inFeatures], sparseMoment(l, get(`sadamw|${n}|v`) as Float32Array, `${n}|meta`));
    }
    trainerMeta = {
      options: trainer.options,
      stepCount: trainer.stepCount,
      batchRng: trainer.gen.getState(),
      adamw: {
        paramGroups: adamw.paramGroups.map(({ params, ...h }) => ({ ...h, params: params.map((i) => torchName(paramName.get(all[i]!)!)) })),
        steps,
      },
      sparseAdamW: trainer.sparse ? {
        step: trainer.sparse.stepCount, layers: sparseNames,
        layerSteps: Object.fromEntries(layers.filter(([n]) => sparseNames.includes(torchName(n))).map(([n, l]) => [torchName(n), trainer.sparse!.stepOf(l)])),
      } : null,
      scaler: scaler ? { scale: scaler.scale, growthTracker: scaler.growthTracker, skipped: scaler.skipped } : null,
    };
  }
  const first = layers[0]?.[1];
  const meta: Meta = {
    format: FORMAT,
    version: VERSION,
    config: { ...model.config },
    tokenizer: state.tokenizer ? { type: "char", chars: [...state.tokenizer.chars] } : null,
    step: trainer?.stepCount ?? 0,
    sparse: first ? { pattern: first.pattern, compress: first.compress, layers: layers.map(([n]) => n) } : null,
    adapters: Object.fromEntries(layers.filter(([, l]) => l.adapter).map(([n, l]) => [n, l.adapter!.rank])),
    trainer: trainerMeta,
    rng: { global: globalGenerator().getState() },
    extra: state.extra ?? {},
  };
  return encodeSafetensors(out, { format: "pt", webslope: JSON.stringify(meta) });
}

// ---- loading ---------------------------------------------------------------------------------

function parseMeta(file: SafetensorsFile): Meta {
  const raw = file.metadata.webslope;
  if (raw === undefined) throw new CheckpointError(`checkpoint: the safetensors metadata has no "webslope" entry; this file was not written by webslope's saveCheckpoint`);
  let m: Meta;
  try { m = JSON.parse(raw) as Meta; } catch (e) { throw new CheckpointError(`checkpoint: the "webslope" metadata is not valid JSON (${(e as Error).message})`); }
  const bad = (what: string): never => { throw new CheckpointError(`checkpoint: metadata ${what}`); };
  if (typeof m !== "object" || m === null) bad("is not an object");
  if (m.format !== FORMAT) bad(`format is ${JSON.stringify(m.format)}, expected "${FORMAT}"`);
  if (m.version !== VERSION) bad(`version ${m.version} is not supported (this webslope reads version ${VERSION})`);
  const c = m.config;
  if (typeof c !== "object" || c === null) bad("has no config");
  for (const k of ["vocabSize", "blockSize", "nLayer", "nHead", "nEmbd"] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] < 1 || c[k] > 1 << 24) bad(`config.${k} = ${JSON.stringify(c[k])} is not a positive integer`);
  }
  if (!Number.isSafeInteger(m.step) || m.step < 0) bad(`step ${JSON.stringify(m.step)} is not a non-negative integer`);
  if (m.tokenizer !== null) {
    const ch = m.tokenizer?.chars;
    if (m.tokenizer?.type !== "char" || !Array.isArray(ch) || ch.some((s) => typeof s !== "string" || [...s].length !== 1)) bad("tokenizer must be {type: \"char\", chars: [single characters]}");
    if (ch.length !== c.vocabSize) bad(`tokenizer has ${ch.length} characters, config.vocabSize is ${c.vocabSize}`);
  }
  if (m.sparse !== null) {
    if (typeof m.sparse !== "object" || !Array.isArray(m.sparse.layers) || typeof m.sparse.compress !== "boolean") bad("sparse must be {pattern, compress, layers}");
    try { parsePattern("checkpoint", m.sparse.pattern as Pattern); } catch (e) { bad(`sparse.pattern: ${(e as Error).message}`); }
  }
  if (typeof m.adapters !== "object" || m.adapters === null || Object.values(m.adapters).some((r) => !Number.isSafeInteger(r) || r < 1)) bad("adapters must map layer names to positive ranks");
  if (typeof m.rng?.global !== "number") bad("has no rng.global");
  return m;
}

/** What a checkpoint holds, read from its header only (to build the model and trainer before loading). */
export function readCheckpointInfo(bytes: Uint8Array): Omit<LoadedCheckpoint, "model"> & { sparse: { pattern: string; compress: boolean } | null; adapters: Record<string, number> } {
  const m = parseMeta(SafetensorsFile.parse(bytes));
  return {
    config: { ...m.config }, tokenizer: m.tokenizer ? new CharTokenizer(m.tokenizer.chars.join("")) : null, step: m.step,
    trainerOptions: m.trainer?.options ?? null, extra: m.extra ?? {},
    sparse: m.sparse ? { pattern: m.sparse.pattern, compress: m.sparse.compress } : null, adapters: { ...m.adapters },
  };
}

/** A fresh GPT shaped like the saved one: pruned and adapted as saved (values come from the file). */
function buildModel(m: Meta): GPT {
  const model = new GPT(m.config);
  try {
    if (m.sparse) {
      const names = new Set(m.sparse.layers);
      pruneModel(model, { compress: m.sparse.compress, pattern: m.sparse.pattern as Pattern, skip: [], include: (n) => names.has(n) });
      const got = new Set(sparseLayers(model).map(([n]) => n));
      const missing = [...names].filter((n) => !got.has(n));
      if (missing.length) throw new CheckpointError(`checkpoint: sparse layers ${missing.map((s) => `"${s}"`).join(", ")} are not Linear layers of a GPT with this config`);
    }
    for (const [n, l] of sparseLayers(model)) if (m.adapters[n] !== undefined) l.addAdapter({ rank: m.adapters[n] });
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

interface Want { name: string; dtype: SafeDType; shape: number[] }

/**
 * Reads a checkpoint from bytes. Validates the whole file against the target before any change;
 * a bad file is a CheckpointError and leaves the target as it was.
 */
export async function checkpointFromBytes(bytes: Uint8Array, target: LoadTarget = {}): Promise<LoadedCheckpoint> {
  const file = SafetensorsFile.parse(bytes);
  const m = parseMeta(file);
  const trainer = target.trainer ?? null;
  if (trainer && target.model && trainer.model !== target.model) throw new CheckpointError("checkpoint: target.model and target.trainer.model differ; pass one of them");
  const given = trainer?.model ?? target.model ?? null;
  if (given && !(given instanceof GPT)) throw new CheckpointError("checkpoint: the target model must be a GPT");
  if (given) {
    const diffs = (["vocabSize", "blockSize", "nLayer", "nHead", "nEmbd"] as const).filter((k) => given.config[k] !== m.config[k]);
    if (diffs.length) {
      throw new CheckpointError(`checkpoint: the file's config does not match the model: ${diffs.map((k) => `${k} ${m.config[k]} in the file, ${given.config[k]} in the model`).join("; ")}`);
    }
  }
  if (trainer && !m.trainer) throw new CheckpointError("checkpoint: the file holds a model only (saved without a trainer); load it with { model } to restore the weights, not a training run");
  const tokenizer = m.tokenizer ? new CharTokenizer(m.tokenizer.chars.join("")) : null;
  if (tokenizer && tokenizer.chars.join("\u0000") !== m.tokenizer!.chars.join("\u0000")) {
    throw new CheckpointError("checkpoint: metadata tokenizer.chars must be sorted and distinct (as CharTokenizer makes them)");
  }

  // The structure the model will have: its sparse layers and (after any insertion) adapters.
  const C = m.config.nEmbd, V = m.config.vocabSize;
  const model = given;
  const wsLayers: { name: string; dIn: number; dOut: number; bias: boolean; pattern: string }[] = [];
  let adaptersToInsert = false;
  if (model) {
    const layers = sparseLayers(model);
    const merged = mergedLayer(model);
    if (merged) throw new CheckpointError(`checkpoint: layer "${merged[0]}" of the target is merged for inference; load into the unmerged model, then call mergeAdapters`);
    const saved = new Set(m.sparse?.layers ?? []), have = new Set(layers.map(([n]) => n));
    const onlySaved = [...saved].filter((n) => !have.has(n)), onlyHave = [...have].filter((n) => !saved.has(n));
    if (onlySaved.length || onlyHave.length) {
      throw new CheckpointError("checkpoint: the sparse layers differ: " +
        [onlySaved.length ? `sparse in the file but dense in the model: ${onlySaved.join(", ")} (prune the model as it was trained, or load without a target)` : "",
          onlyHave.length ? `sparse in the model but dense in the file: ${onlyHave.join(", ")}` : ""].filter(Boolean).join("; "));
    }
    for (const [n, l] of layers) {
      if (m.sparse && (l.compress !== m.sparse.compress || l.pattern !== m.sparse.pattern)) {
        throw new CheckpointError(`checkpoint: layer "${n}" is ${l.pattern} ${l.compress ? "compressed" : "masked-dense"} here, ${m.sparse.pattern} ${m.sparse.compress ? "compressed" : "masked-dense"} in the file`);
      }
      const savedRank = m.adapters[n];
      if (l.adapter && savedRank === undefined) throw new CheckpointError(`checkpoint: layer "${n}" has an adapter, the file has none for it`);
      if (l.adapter && l.adapter.rank !== savedRank) throw new CheckpointError(`checkpoint: layer "${n}" has an adapter of rank ${l.adapter.rank}, the file's has rank ${savedRank}`);
      if (!l.adapter && savedRank !== undefined) {
        const sched = trainer?.adapters;
        if (trainer && (!sched || sched.inserted)) throw new CheckpointError(`checkpoint: the file has adapters (rank ${savedRank} on "${n}") but this trainer has no lazy adapters to insert; construct it with the same slope.adapterRank`);
        if (sched) {
          if (m.step < sched.insertStep) throw new CheckpointError(`checkpoint: the file has adapters at step ${m.step}, but this trainer inserts them at step ${sched.insertStep}; use the saved trainer options`);
          const r = resolveRank("checkpoint", l.inFeatures, l.outFeatures, sched.opts);
          if (r !== savedRank) throw new CheckpointError(`checkpoint: layer "${n}": the file's adapter has rank ${savedRank}, this trainer's schedule makes rank ${r}`);
        }
        adaptersToInsert = true;
      }
      wsLayers.push({ name: n, dIn: l.inFeatures, dOut: l.outFeatures, bias: !!l.bias, pattern: l.pattern });
    }
    if (trainer?.adapters && !trainer.adapters.inserted && !adaptersToInsert && m.step > trainer.adapters.insertStep) {
      throw new CheckpointError(`checkpoint: step ${m.step} is past this trainer's adapter insertion (step ${trainer.adapters.insertStep}) but the file has no adapters`);
    }
  }

  // Expected tensors: the dense state of the model (or of the config), the sparse layers', optimizer moments.
  const wants: Want[] = [];
  const dense: [string, number[], "F32" | "I32"][] = [];
  if (model) {
    const prefixes = wsLayers.map((l) => `${l.name}.`);
    for (const [k, t] of model.stateDict()) if (!prefixes.some((p) => k.startsWith(p))) dense.push([k, [...t.shape], t.dtype === "i32" ? "I32" : "F32"]);
  }
  for (const [k, shape, dtype] of dense) wants.push({ name: torchName(k), dtype, shape });
  const sparseFromFile = (): { name: string; dIn: number; dOut: number; bias: boolean; pattern: string }[] => (m.sparse?.layers ?? []).map((n) => {
    const dIn = /\.fc2$/.test(n) ? 4 * C : C, dOut = /\.qkv$/.test(n) ? 3 * C : /\.fc1$/.test(n) ? 4 * C : C;
    return { name: n, dIn, dOut, bias: file.entries.has(`${torchName(n)}.bias`), pattern: m.sparse!.pattern };
  });
  const layerPlan = model ? wsLayers : sparseFromFile();
  for (const l of layerPlan) {
    const tp = torchName(l.name);
    wants.push({ name: `${tp}.weight`, dtype: "F32", shape: [l.dOut, l.dIn] }, { name: `${tp}.weight_mask`, dtype: "U8", shape: [l.dOut, l.dIn] },
      { name: `${tp}.weight_mask_rc`, dtype: "U8", shape: [l.dOut, l.dIn] });
    if (l.bias) wants.push({ name: `${tp}.bias`, dtype: "F32", shape: [l.dOut] });
    const r = m.adapters[l.name];
    if (r !== undefined) {
      wants.push({ name: `${tp}.adapter.L`, dtype: "F32", shape: [l.dIn, r] }, { name: `${tp}.adapter.R`, dtype: "F32", shape: [r, l.dOut] },
        { name: `${tp}.adapter.L_mask`, dtype: "U8", shape: [l.dIn, r] });
    }
  }
  if (!model) {
    // Without a target the dense tensors follow from the config (checked after the model is built).
    wants.push({ name: "transformer.wte.weight", dtype: "F32", shape: [V, C] }, { name: "transformer.wpe.weight", dtype: "F32", shape: [m.config.blockSize, C] });
  }
  const problems: string[] = [];
  const wanted = new Set(wants.map((w) => w.name));
  for (const w of wants) {
    const e = file.entries.get(w.name);
    if (!e) { problems.push(`tensor "${w.name}" is missing`); continue; }
    if (e.dtype !== w.dtype) problems.push(`tensor "${w.name}" is ${e.dtype}, expected ${w.dtype}`);
    if (e.shape.join() !== w.shape.join()) problems.push(`tensor "${w.name}" has shape [${e.shape}], the model needs [${w.shape}]`);
  }
  if (model) {
    for (const k of file.entries.keys()) if (!wanted.has(k) && !k.startsWith("optimizer.")) problems.push(`tensor "${k}" is not part of this model`);
  }
  // Optimizer tensors (only when restoring a trainer).
  const optim = trainer && m.trainer ? m.trainer : null;
  if (optim && model) {
    const byTorch = new Map<string, Tensor>(model.namedParameters().map(([n, t]) => [torchName(n), t]));
    const groups = trainer!.dense.paramGroups;
    const savedGroups = optim.adamw?.paramGroups;
    if (!Array.isArray(savedGroups)) problems.push("metadata trainer.adamw.paramGroups is missing");
    else {
      const expectGroups = groups.length + (adaptersToInsert ? 1 : 0);
      if (savedGroups.length !== expectGroups) problems.push(`the file's AdamW has ${savedGroups.length} parameter groups, this trainer's will have ${expectGroups}`);
      groups.forEach((g, gi) => {
        const names = g.params.map((p) => [...byTorch].find(([, t]) => t === p)?.[0]);
        const saved = savedGroups[gi]?.params ?? [];
        if (names.join() !== saved.join()) problems.push(`AdamW group ${gi} holds other parameters in the file (${saved.length}) than in this trainer (${names.length})`);
      });
      for (const [name, step] of Object.entries(optim.adamw.steps ?? {})) {
        if (!Number.isSafeInteger(step) || step < 0) problems.push(`AdamW step of "${name}" is ${step}`);
        for (const s of ["exp_avg", "exp_avg_sq"]) {
          const e = file.entries.get(`optimizer.adamw.${name}.${s}`);
          const shape = byTorch.get(name)?.shape ?? adapterShape(name, layerPlan, m.adapters);
          if (!e) problems.push(`tensor "optimizer.adamw.${name}.${s}" is missing`);
          else if (!shape) problems.push(`tensor "optimizer.adamw.${name}.${s}" is for a parameter this model does not have`);
          else if (e.dtype !== "F32" || e.shape.join() !== shape.join()) problems.push(`tensor "optimizer.adamw.${name}.${s}" is ${e.dtype} [${e.shape}], expected F32 [${shape}]`);
        }
      }
    }
    if (!!optim.sparseAdamW !== !!trainer!.sparse) problems.push(`the file was trained ${optim.sparseAdamW ? "with" : "without"} SparseAdamW, this trainer ${trainer!.sparse ? "has" : "has no"} SparseAdamW`);
    for (const tp of optim.sparseAdamW?.layers ?? []) {
      const l = layerPlan.find((x) => torchName(x.name) === tp);
      for (const s of ["exp_avg", "exp_avg_sq"]) {
        const e = file.entries.get(`optimizer.sparse_adamw.${tp}.weight.${s}`);
        if (!l) problems.push(`SparseAdamW state for "${tp}", which is not a sparse layer here`);
        else if (!e) problems.push(`tensor "optimizer.sparse_adamw.${tp}.weight.${s}" is missing`);
        else if (e.dtype !== "F32" || e.shape.join() !== [l.dOut, l.dIn].join()) problems.push(`tensor "optimizer.sparse_adamw.${tp}.weight.${s}" is ${e.dtype} [${e.shape}], expected F32 [${l.dOut}, ${l.dIn}]`);
      }
    }
    if (typeof optim.batchRng !== "number" || !Number.isSafeInteger(optim.stepCount)) problems.push("metadata trainer.batchRng / stepCount are missing");
    const sc = optim.scaler;
    if (sc != null && (typeof sc !== "object" || !(typeof sc.scale === "number" && sc.scale > 0 && Number.isFinite(sc.scale)) ||
      !Number.isSafeInteger(sc.growthTracker) || sc.growthTracker < 0 || !Number.isSafeInteger(sc.skipped) || sc.skipped < 0)) {
      problems.push(`metadata trainer.scaler ${JSON.stringify(sc)} is not { scale > 0, growthTracker ≥ 0, skipped ≥ 0 }`);
    }
  }
  if (problems.length) throw new CheckpointError(`checkpoint: ${problems.length} problem${problems.length > 1 ? "s" : ""}: ${problems.slice(0, 12).join("; ")}${problems.length > 12 ? "; ..." : ""}`);

  // CPU side: read and pack every tensor (still no change to the target).
  const { n: pn, m: pm } = m.sparse ? parsePattern("checkpoint", m.sparse.pattern as Pattern) : { n: 2, m: 4 };
  const compress = m.sparse?.compress ?? true;
  const host = new Map<string, { data: Float32Array | Int32Array; shape: number[] }>();  // webslope state key → data
  const f32 = (name: string) => file.read(name).data as Float32Array;
  const u8 = (name: string) => file.read(name).data as Uint8Array;
  for (const [k, shape, dtype] of dense) {
    const t = file.read(torchName(k));
    host.set(k, { data: dtype === "I32" ? t.data as Int32Array : t.data as Float32Array, shape });
  }
  const masksOf = new Map<string, Uint8Array>();
  for (const l of layerPlan) {
    const tp = torchName(l.name), O = l.dOut, I = l.dIn;
    const w = f32(`${tp}.weight`), mr = u8(`${tp}.weight_mask`), mrc = u8(`${tp}.weight_mask_rc`);
    masksOf.set(l.name, mr);
    const pw = packNM(`"${tp}.weight_mask"`, w, mr, O, I, pn, pm);
    for (let i = 0; i < mr.length; i++) {
      if (mrc[i]! > mr[i]!) throw new CheckpointError(`checkpoint: "${tp}.weight_mask_rc" keeps [${Math.floor(i / I)}, ${i % I}], which "${tp}.weight_mask" prunes; M_RC must lie inside M_R`);
    }
    const pt = packNM(`"${tp}.weight_mask_rc"`, transpose(w, O, I), transpose(mrc, O, I), I, O, pn, pm, false);
    if (compress) {
      host.set(`${l.name}.weight.values`, { data: pw.values, shape: [O, (I * pn) / pm] });
      host.set(`${l.name}.weight.meta`, { data: pw.meta, shape: [O, Math.ceil(I / 32)] });
      host.set(`${l.name}.weightT.values`, { data: pt.values, shape: [I, (O * pn) / pm] });
      host.set(`${l.name}.weightT.meta`, { data: pt.meta, shape: [I, Math.ceil(O / 32)] });
    } else {
      host.set(`${l.name}.weight`, { data: w, shape: [O, I] });
      host.set(`${l.name}.maskR`, { data: toF32(mr), shape: [O, I] });
      host.set(`${l.name}.maskRC`, { data: toF32(mrc), shape: [O, I] });
    }
    if (l.bias) host.set(`${l.name}.bias`, { data: f32(`${tp}.bias`), shape: [O] });
    const r = m.adapters[l.name];
    if (r !== undefined) {
      const lm = u8(`${tp}.adapter.L_mask`);
      packNM(`"${tp}.adapter.L_mask"`, new Float32Array(lm.length), transpose(lm, I, r), r, I, pn, pm);
      host.set(`${l.name}.adapter.L`, { data: f32(`${tp}.adapter.L`), shape: [I, r] });
      host.set(`${l.name}.adapter.R`, { data: f32(`${tp}.adapter.R`), shape: [r, O] });
      host.set(`${l.name}.adapter.maskL`, { data: toF32(lm), shape: [I, r] });
    }
  }

  // Changes start here: build or adapt the model, upload, load.
  const built = model ? null : buildModel(m);
  const live = model ?? built!;
  const uploaded: Tensor[] = [];
  try {
    if (built) {
      // Dense tensors of a built model: their shapes follow from the config; check them now.
      const prefixes = layerPlan.map((l) => `${l.name}.`);
      for (const [k, t] of built.stateDict()) {
        if (prefixes.some((p) => k.startsWith(p))) continue;
        const e = file.entries.get(torchName(k));
        if (!e) throw new CheckpointError(`checkpoint: tensor "${torchName(k)}" is missing`);
        if (e.shape.join() !== t.shape.join()) throw new CheckpointError(`checkpoint: tensor "${torchName(k)}" has shape [${e.shape}], the config needs [${t.shape}]`);
        const d = file.read(torchName(k));
        host.set(k, { data: d.data as Float32Array, shape: [...t.shape] });
      }
    }
    if (adaptersToInsert) {
      if (trainer?.adapters) trainer.adapters.step(m.step, live, trainer.dense);
      else for (const [n, l] of sparseLayers(live)) if (m.adapters[n] !== undefined && !l.adapter) l.addAdapter({ rank: m.adapters[n] });
    }
    const state = new Map<string, Tensor>();
    for (const [k, h] of host) { const t = tensor(h.data, h.shape); uploaded.push(t); state.set(k, t); }
    live.loadStateDict(state);
    if (trainer && optim) restoreTrainer(trainer, live, optim, m, file, masksOf, uploaded, pn, pm);
    globalGenerator().setState(m.rng.global);
  } catch (e) {
    built?.dispose();
    if (e instanceof WebslopeError) throw e;
    throw new CheckpointError(`checkpoint: loading failed: ${(e as Error).message}`);
  } finally {
    for (const t of uploaded) t.dispose();
  }
  return { model: live, config: { ...m.config }, tokenizer, step: m.step, trainerOptions: m.trainer?.options ?? null, extra: m.extra ?? {} };
}

function adapterShape(torch: string, layers: { name: string; dIn: number; dOut: number }[], ranks: Record<string, number>): number[] | null {
  for (const l of layers) {
    const r = ranks[l.name];
    if (r === undefined) continue;
    if (torch === `${torchName(l.name)}.adapter.L`) return [l.dIn, r];
    if (torch === `${torchName(l.name)}.adapter.R`) return [r, l.dOut];
  }
  return null;
}

function restoreTrainer(trainer: Trainer, model: GPT, optim: NonNullable<Meta["trainer"]>, m: Meta, file: SafetensorsFile,
  masks: Map<string, Uint8Array>, uploaded: Tensor[], pn: number, pm: number): void {
  const byTorch = new Map<string, Tensor>(model.namedParameters().map(([n, t]) => [torchName(n), t]));
  const up = (data: Float32Array, shape: readonly number[]) => { const t = tensor(data, [...shape]); uploaded.push(t); return t; };
  const all = trainer.dense.paramGroups.flatMap((g) => g.params);
  const state: AdamWStateDict["state"] = new Map();
  for (const [name, step] of Object.entries(optim.adamw.steps)) {
    const p = byTorch.get(name)!;
    const i = all.indexOf(p);
    if (i < 0) throw new CheckpointError(`checkpoint: AdamW state for "${name}", which this trainer's AdamW does not update`);
    state.set(i, {
      step,
      expAvg: up(file.read(`optimizer.adamw.${name}.exp_avg`).data as Float32Array, p.shape),
      expAvgSq: up(file.read(`optimizer.adamw.${name}.exp_avg_sq`).data as Float32Array, p.shape),
    });
  }
  const paramGroups = optim.adamw.paramGroups.map((g, gi) => ({ ...g, params: trainer.dense.paramGroups[gi]!.params.map((p) => all.indexOf(p)) }));
  trainer.dense.loadStateDict({ state, paramGroups });
  if (trainer.sparse && optim.sparseAdamW) {
    const tensors = new Map<string, Tensor>();
    trainer.sparse.layers.forEach((l, i) => {
      const n = sparseLayers(model).find(([, x]) => x === l)![0];
      const tp = torchName(n);
      if (!optim.sparseAdamW!.layers.includes(tp)) return;
      for (const [s, k] of [["exp_avg", "m"], ["exp_avg_sq", "v"]] as const) {
        const d = file.read(`optimizer.sparse_adamw.${tp}.weight.${s}`).data as Float32Array;
        const t = l.compress
          ? up(packNM(`"${tp}.weight_mask"`, d, masks.get(n)!, l.outFeatures, l.inFeatures, pn, pm).values, l.sparseParam.shape)
          : up(d, l.sparseParam.shape);
        tensors.set(`${i}.${k}`, t);
      }
    });
    const saved = optim.sparseAdamW.layerSteps;
    const layerSteps = saved && trainer.sparse.layers.map((l) => {
      const tp = torchName(sparseLayers(model).find(([, x]) => x === l)![0]);
      return optim.sparseAdamW!.layers.includes(tp) ? saved[tp] ?? optim.sparseAdamW!.step : 0;
    });
    trainer.sparse.loadStateDict({ step: optim.sparseAdamW.step, tensors, ...(layerSteps ? { layerSteps } : {}) });
  }
  // An f32 run resumed as mixed starts a fresh scaler; a mixed run resumed as f32 drops it.
  if (trainer.scaler && optim.scaler) trainer.scaler.loadState(optim.scaler);
  trainer.restore({ stepCount: optim.stepCount, batchRng: optim.batchRng });
  void m;
}

// ---- files (Node and Deno) -------------------------------------------------------------------

interface FsLike {
  writeFile(path: string, data: Uint8Array): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
}

async function fs(): Promise<FsLike> {
  const D = (globalThis as unknown as { Deno?: { writeFile(p: string, d: Uint8Array): Promise<void>; readFile(p: string): Promise<Uint8Array>; rename(a: string, b: string): Promise<void>; remove(p: string): Promise<void> } }).Deno;
  if (D) return { writeFile: (p, d) => D.writeFile(p, d), readFile: (p) => D.readFile(p), rename: (a, b) => D.rename(a, b), remove: (p) => D.remove(p) };
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (!proc?.versions?.node) {
    throw new CheckpointError("saveCheckpoint / loadCheckpoint need a file system (Node or Deno); in a browser use checkpointToBytes / checkpointFromBytes " +
      "with a download, OPFS or IndexedDB");
  }
  const m = await import(/* @vite-ignore */ "node:fs/promises" as string) as {
    writeFile(p: string, d: Uint8Array): Promise<void>; readFile(p: string): Promise<Uint8Array>; rename(a: string, b: string): Promise<void>; rm(p: string, o: { force: boolean }): Promise<void>;
  };
  return { writeFile: (p, d) => m.writeFile(p, d), readFile: async (p) => new Uint8Array(await m.readFile(p)), rename: (a, b) => m.rename(a, b), remove: (p) => m.rm(p, { force: true }) };
}

/** Writes a checkpoint atomically: to a temporary file next to `path`, then renamed over it. */
export async function saveCheckpoint(path: string, state: CheckpointState): Promise<void> {
  const bytes = await checkpointToBytes(state);
  const f = await fs();
  const tmp = `${path}.tmp-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  try {
    await f.writeFile(tmp, bytes);
    await f.rename(tmp, path);
  } catch (e) {
    await f.remove(tmp).catch(() => {});
    throw new CheckpointError(`saveCheckpoint: cannot write "${path}": ${(e as Error).message}`);
  }
  if (state.trainer) state.trainer.lastCheckpoint = { step: state.trainer.stepCount, path };
}

/** Reads a checkpoint file (see checkpointFromBytes). */
export async function loadCheckpoint(path: string, target: LoadTarget = {}): Promise<LoadedCheckpoint> {
  const f = await fs();
  let bytes: Uint8Array;
  try { bytes = await f.readFile(path); } catch (e) { throw new CheckpointError(`loadCheckpoint: cannot read "${path}": ${(e as Error).message}`); }
  const out = await checkpointFromBytes(bytes, target);
  if (target.trainer) target.trainer.lastCheckpoint = { step: out.step, path };
  return out;
}
