// safetensors (https://github.com/huggingface/safetensors), the file format of webslope's
// checkpoints, written and read on plain bytes so it works in browsers, Deno and Node alike:
//   8 bytes little-endian u64 N | N bytes of JSON header (space-padded to 8) | tensor data.
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
// the data section) and may hold "__metadata__": {string: string}. The reader checks every field
// of a header before it touches (or allocates for) any tensor data, so a truncated or hostile
// file is a CheckpointError naming the problem, never a huge allocation or an out-of-range read.
import { CheckpointError } from "../errors.ts";

/** The dtypes webslope writes and reads (f32 weights and moments, u8 masks, i32 indices). */
export type SafeDType = "F32" | "I32" | "U8";
export type SafeArray = Float32Array | Int32Array | Uint8Array;

const DTYPE_BYTES: Record<SafeDType, number> = { F32: 4, I32: 4, U8: 1 };

export interface SafeTensor {
  dtype: SafeDType;
  shape: number[];
  data: SafeArray;
}

export interface SafeEntry {
  dtype: SafeDType;
  shape: number[];
  /** Byte range inside the data section. */
  begin: number;
  end: number;
}

/** Largest header accepted: far more than any model's tensor table, far less than memory. */
export const MAX_HEADER_BYTES = 64 * 1024 * 1024;

const dtypeOf = (a: SafeArray): SafeDType => (a instanceof Float32Array ? "F32" : a instanceof Int32Array ? "I32" : "U8");

/** Serialises named tensors (in the order given) and string metadata. */
export function encodeSafetensors(tensors: ReadonlyMap<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new CheckpointError(`safetensors: "__metadata__" is reserved and cannot name a tensor`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n || dtypeOf(t.data) !== t.dtype) {
      throw new CheckpointError(`safetensors: tensor "${name}" has ${t.data.length} ${dtypeOf(t.data)} values, its shape [${t.shape}] ${t.dtype} needs ${n}`);
    }
    const bytes = n * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  let at = 8 + padded;
  for (const t of tensors.values()) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/** A parsed, validated safetensors file: its table and metadata; read tensors with `read`. */
export class SafetensorsFile {
  private constructor(
    private readonly bytes: Uint8Array,
    private readonly dataStart: number,
    readonly entries: ReadonlyMap<string, SafeEntry>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Validates the header of `bytes` (nothing else is read or allocated until `read`). */
  static parse(bytes: Uint8Array, what = "checkpoint"): SafetensorsFile {
    const fail = (m: string): never => { throw new CheckpointError(`${what}: ${m}`); };
    if (!(bytes instanceof Uint8Array)) fail(`expected the file's bytes as a Uint8Array, got ${Object.prototype.toString.call(bytes)}`);
    if (bytes.length < 8) fail(`the file is ${bytes.length} bytes long, shorter than the 8-byte safetensors header length (truncated, or not a safetensors file)`);
    const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER_BYTES)) fail(`the header length field says ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit (corrupt, or not a safetensors file)`);
    const hlen = Number(n);
    if (8 + hlen > bytes.length) fail(`the header length field says ${hlen} bytes, past the end of the ${bytes.length}-byte file (truncated)`);
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + hlen)));
    } catch (e) {
      fail(`the ${hlen}-byte header is not valid UTF-8 JSON (${(e as Error).message})`);
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("the header is not a JSON object");
    const dataStart = 8 + hlen, dataLen = bytes.length - dataStart;
    const entries = new Map<string, SafeEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof v !== "object" || v === null || Array.isArray(v) || Object.values(v).some((s) => typeof s !== "string")) {
          fail(`"__metadata__" must be an object of strings`);
        }
        metadata = v as Record<string, string>;
        continue;
      }
      const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e !== "object" || e === null) fail(`tensor "${name}": its entry is not an object`);
      if (typeof e.dtype !== "string" || !(e.dtype in DTYPE_BYTES)) {
        fail(`tensor "${name}": unknown dtype ${JSON.stringify(e.dtype)} (webslope reads ${Object.keys(DTYPE_BYTES).join(", ")})`);
      }
      const dtype = e.dtype as SafeDType;
      if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) fail(`tensor "${name}": shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
      const shape = e.shape as number[];
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || off.some((o) => !Number.isSafeInteger(o) || o < 0) || off[0] > off[1]) {
        fail(`tensor "${name}": data_offsets ${JSON.stringify(off)} must be [begin, end] integers with 0 ≤ begin ≤ end`);
      }
      const [begin, end] = off as [number, number];
      if (end > dataLen) fail(`tensor "${name}": data_offsets [${begin}, ${end}] run past the end of the ${dataLen}-byte data section (truncated or corrupt)`);
      const need = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
      if (end - begin !== need) fail(`tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes, its shape [${shape}] ${dtype} needs ${need}`);
      entries.set(name, { dtype, shape, begin, end });
    }
    const sorted = [...entries].filter(([, e]) => e.end > e.begin).sort((a, b) => a[1].begin - b[1].begin);
    for (let i = 1; i < sorted.length; i++) {
      const [pn, p] = sorted[i - 1]!, [cn, c] = sorted[i]!;
      if (c.begin < p.end) fail(`tensors "${pn}" [${p.begin}, ${p.end}] and "${cn}" [${c.begin}, ${c.end}] overlap`);
    }
    return new SafetensorsFile(bytes, dataStart, entries, metadata);
  }

  /** A copy of one tensor's data (aligned, independent of the file's buffer). */
  read(name: string): SafeTensor {
    const e = this.entries.get(name);
    if (!e) throw new CheckpointError(`checkpoint: tensor "${name}" is missing`);
    const raw = this.bytes.slice(this.dataStart + e.begin, this.dataStart + e.end);
    const data = e.dtype === "F32" ? new Float32Array(raw.buffer) : e.dtype === "I32" ? new Int32Array(raw.buffer) : raw;
    return { dtype: e.dtype, shape: [...e.shape], data };
  }
}
