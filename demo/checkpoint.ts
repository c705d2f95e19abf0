// The demo's checkpoint of one run as bytes (safetensors: 8-byte header length, JSON header with
// each tensor's dtype/shape/offsets and string metadata, then the raw data): the model state,
// both optimizers' moments, the step, the batch generator's state, the tokenizer and the curves.
// Downloads, uploads and the autosave all go through runToBytes/runFromBytes, the one place to
// switch to the library's checkpointToBytes/checkpointFromBytes (src/train/checkpoint.ts).
import { keep, manualSeed, tensor, type Tensor, WebslopeError } from "../src/index.ts";
import { CharTokenizer, type Corpus } from "../src/train/index.ts";
import type { DemoConfig, RunHistory, RunKind } from "./protocol.ts";
import { Run } from "./runs.ts";

const FORMAT = "webslope-demo/1";

/** A file that is not a checkpoint of this demo, or a damaged one; nothing was changed. */
export class CheckpointFormatError extends WebslopeError {
  override name = "CheckpointFormatError";
  constructor(detail: string) {
    super(`checkpoint: ${detail}; choose a .safetensors file downloaded from this page`);
  }
}

interface Meta {
  format: string;
  kind: RunKind;
  config: DemoConfig;
  step: number;
  denseSteps: number[];
  sparseStep: number;
  genState: number;
  adaptersIn: boolean;
  chars: string[];
  corpusName: string;
  history: RunHistory;
}

type Dt = "F32" | "I32";

/** Serialises a run (reads its tensors back; call between steps). */
export async function runToBytes(run: Run, chars: string[], corpusName: string): Promise<Uint8Array> {
  const tensors: [string, Tensor][] = [...run.model.stateDict()].map(([k, t]) => [`model.${k}`, t]);
  const dense = run.trainer.dense.paramGroups.flatMap((g) => g.params);
  const denseSteps: number[] = [];
  dense.forEach((p, i) => {
    const s = run.trainer.dense.stateOf(p);
    denseSteps.push(s?.step ?? 0);
    if (s) tensors.push([`adamw.${i}.m`, s.m], [`adamw.${i}.v`, s.v]);
  });
  const sp = run.trainer.sparse?.stateDict();
  if (sp) for (const [k, t] of sp.tensors) tensors.push([`sparse_adamw.${k}`, t]);
  const meta: Meta = {
    format: FORMAT, kind: run.kind, config: run.cfg, step: run.step, denseSteps, sparseStep: sp?.step ?? 0,
    genState: (run.trainer.gen as unknown as { state: number }).state, adaptersIn: run.trainer.adaptersActive,
    chars, corpusName, history: run.history,
  };
  const datas = await Promise.all(tensors.map(([, t]) => t.toArray()));
  const header: Record<string, unknown> = { __metadata__: { webslope: JSON.stringify(meta) } };
  let off = 0;
  tensors.forEach(([k, t], i) => {
    const n = datas[i]!.byteLength;
    header[k] = { dtype: t.dtype === "i32" ? "I32" : "F32", shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  });
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const d of datas) { out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at); at += d.byteLength; }
  return out;
}

/** The metadata of a checkpoint, validated, without touching the GPU. */
export function readMeta(bytes: Uint8Array): { meta: Meta; header: Record<string, { dtype: Dt; shape: number[]; data_offsets: [number, number] }>; base: number } {
  if (bytes.length < 8) throw new CheckpointFormatError(`the file has ${bytes.length} bytes, too short for a safetensors header`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  if (n <= 0 || 8 + n > bytes.length || n > 64 << 20) throw new CheckpointFormatError(`header length ${n} is past the end of the ${bytes.length}-byte file`);
  let header: Record<string, unknown>;
  try { header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))); } catch { throw new CheckpointFormatError("the header is not JSON"); }
  const raw = (header.__metadata__ as Record<string, string> | undefined)?.webslope;
  if (!raw) throw new CheckpointFormatError("no webslope metadata: not a checkpoint this demo wrote");
  const meta = JSON.parse(raw) as Meta;
  if (meta.format !== FORMAT) throw new CheckpointFormatError(`format ${JSON.stringify(meta.format)}, expected ${FORMAT}`);
  delete header.__metadata__;
  const base = 8 + n;
  for (const [k, v] of Object.entries(header) as [string, { dtype: Dt; shape: number[]; data_offsets: [number, number] }][]) {
    const [a, b] = v.data_offsets;
    const want = v.shape.reduce((x, y) => x * y, 1) * 4;
    if (!(v.dtype === "F32" || v.dtype === "I32")) throw new CheckpointFormatError(`tensor ${k}: unknown dtype ${v.dtype}`);
    if (!(a >= 0 && b - a === want && base + b <= bytes.length)) throw new CheckpointFormatError(`tensor ${k}: offsets [${a}, ${b}] do not fit its shape or the file`);
  }
  return { meta, header: header as never, base };
}

/** Rebuilds a run from runToBytes output over `corpus` (whose tokenizer must match the saved one). */
export function runFromBytes(bytes: Uint8Array, corpus: Corpus, vocabSize: number): Run {
  const { meta, header, base } = readMeta(bytes);
  manualSeed(meta.config.seed);
  const run = new Run(meta.kind, meta.config, vocabSize, corpus);
  const made: Tensor[] = [];
  const get = (k: string): Tensor | undefined => {
    const h = header[k];
    if (!h) return undefined;
    const buf = bytes.slice(base + h.data_offsets[0], base + h.data_offsets[1]).buffer;
    const t = tensor(h.dtype === "I32" ? new Int32Array(buf) : new Float32Array(buf), h.shape, { dtype: h.dtype === "I32" ? "i32" : "f32" });
    made.push(t);
    return t;
  };
  try {
    if (meta.adaptersIn) run.trainer.adapters?.step(run.trainer.adapters.insertStep, run.model, run.trainer.dense);
    const state = new Map<string, Tensor>();
    for (const k of Object.keys(header)) if (k.startsWith("model.")) state.set(k.slice(6), get(k)!);
    run.model.loadStateDict(state);
    const dense = run.trainer.dense.paramGroups.flatMap((g) => g.params);
    const st = (run.trainer.dense as unknown as { state: Map<Tensor, { step: number; m: Tensor; v: Tensor }> }).state;
    dense.forEach((p, i) => {
      const m = get(`adamw.${i}.m`), v = get(`adamw.${i}.v`);
      if (m && v) st.set(p, { step: meta.denseSteps[i] ?? 0, m: keep(m.mul(1)), v: keep(v.mul(1)) });
    });
    if (run.trainer.sparse) {
      const tensors = new Map<string, Tensor>();
      for (const k of Object.keys(header)) if (k.startsWith("sparse_adamw.")) tensors.set(k.slice(13), get(k)!);
      run.trainer.sparse.loadStateDict({ step: meta.sparseStep, tensors });
    }
    run.trainer.stepCount = meta.step;
    (run.trainer.gen as unknown as { state: number }).state = meta.genState;
    run.history.losses.push(...meta.history.losses);
    run.history.val.push(...meta.history.val);
    run.history.sample = meta.history.sample;
    const last = meta.history.losses.at(-1);
    if (last) run.ema = last[1];
  } catch (e) {
    run.dispose();
    throw e;
  } finally {
    for (const t of made) t.dispose();
  }
  return run;
}

/** The tokenizer a checkpoint was trained with. */
export function tokenizerOf(chars: string[]): CharTokenizer {
  return new CharTokenizer(chars.join(""));
}
