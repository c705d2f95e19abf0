// Float64 reference of scaled-dot-product attention over [..., T, D] (heads flattened), forward
// and backward written out by hand, with an optional explicit dropout mask; and a CPU port of the
// counter RNG (shaders/fill.wgsl.ts) so the mask the GPU draws can be rebuilt here.
import { type Arr, arr } from "./cpu.ts";

export interface RefAttentionOptions {
  causal?: boolean;
  scale?: number;
  /** keep[bh][i][j] ∈ {0, 1} and the drop probability p: P̃ = P·keep/(1 − p). */
  keep?: (bh: number, i: number, j: number) => boolean;
  p?: number;
}

interface Dims { BH: number; T: number; D: number }
const dimsOf = (q: Arr): Dims => {
  const T = q.shape.at(-2)!, D = q.shape.at(-1)!;
  return { BH: q.data.length / (T * D), T, D };
};

/** The probabilities P (undropped) and P̃ (dropped, scaled) of head bh, row-major [T, T]. */
function probs(q: Arr, k: Arr, bh: number, { BH: _, T, D }: Dims, o: RefAttentionOptions): { P: Float64Array; Pd: Float64Array } {
  const scale = o.scale ?? 1 / Math.sqrt(D), base = bh * T * D;
  const P = new Float64Array(T * T), Pd = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    const n = o.causal ? i + 1 : T;
    let m = -Infinity;
    const s = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let d = 0; d < D; d++) acc += q.data[base + i * D + d]! * k.data[base + j * D + d]!;
      s[j] = acc * scale;
      m = Math.max(m, s[j]!);
    }
    let sum = 0;
    for (let j = 0; j < n; j++) sum += Math.exp(s[j]! - m);
    for (let j = 0; j < n; j++) {
      const p = Math.exp(s[j]! - m) / sum;
      P[i * T + j] = p;
      Pd[i * T + j] = o.keep ? (o.keep(bh, i, j) ? p / (1 - o.p!) : 0) : p;
    }
  }
  return { P, Pd };
}

export function attention(q: Arr, k: Arr, v: Arr, o: RefAttentionOptions = {}): Arr {
  const dm = dimsOf(q), { BH, T, D } = dm;
  const out = arr(q.shape);
  for (let bh = 0; bh < BH; bh++) {
    const { Pd } = probs(q, k, bh, dm, o);
    const base = bh * T * D;
    for (let i = 0; i < T; i++) for (let d = 0; d < D; d++) {
      let acc = 0;
      for (let j = 0; j < T; j++) acc += Pd[i * T + j]! * v.data[base + j * D + d]!;
      out.data[base + i * D + d] = acc;
    }
  }
  return out;
}

/** [dq, dk, dv] of Σ dO ∘ attention(q, k, v). */
export function attentionBackward(q: Arr, k: Arr, v: Arr, dO: Arr, o: RefAttentionOptions = {}): [Arr, Arr, Arr] {
  const dm = dimsOf(q), { BH, T, D } = dm;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const dq = arr(q.shape), dk = arr(q.shape), dv = arr(q.shape);
  for (let bh = 0; bh < BH; bh++) {
    const { P, Pd } = probs(q, k, bh, dm, o);
    const base = bh * T * D;
    const dP = new Float64Array(T * T);
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) {
      let acc = 0;
      for (let d = 0; d < D; d++) acc += dO.data[base + i * D + d]! * v.data[base + j * D + d]!;
      // through the dropout: dP = dP̃·keep/(1 − p)
      dP[i * T + j] = o.keep ? (o.keep(bh, i, j) ? acc / (1 - o.p!) : 0) : acc;
      for (let d = 0; d < D; d++) dv.data[base + j * D + d]! += Pd[i * T + j]! * dO.data[base + i * D + d]!;
    }
    for (let i = 0; i < T; i++) {
      let dot = 0;
      for (let j = 0; j < T; j++) dot += P[i * T + j]! * dP[i * T + j]!;
      for (let j = 0; j < T; j++) {
        const ds = P[i * T + j]! * (dP[i * T + j]! - dot) * scale;
        for (let d = 0; d < D; d++) {
          dq.data[base + i * D + d]! += ds * k.data[base + j * D + d]!;
          dk.data[base + j * D + d]! += ds * q.data[base + i * D + d]!;
        }
      }
    }
  }
  return [dq, dk, dv];
}

/** [B, T, 3C] → q, k, v as [B, H, T, D] (the packed layout the qkv projection writes). */
export function splitQkv(qkv: Arr, H: number): [Arr, Arr, Arr] {
  const [B, T, C3] = qkv.shape as [number, number, number];
  const C = C3 / 3, D = C / H;
  const parts = [0, 1, 2].map(() => arr([B, H, T, D]));
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let s = 0; s < 3; s++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) {
    parts[s]!.data[((b * H + h) * T + t) * D + d] = qkv.data[(b * T + t) * C3 + s * C + h * D + d]!;
  }
  return parts as [Arr, Arr, Arr];
}

/** [B, H, T, D] → [B, T, H·D] (heads concatenated). */
export function mergeHeads(x: Arr): Arr {
  const [B, H, T, D] = x.shape as [number, number, number, number];
  const out = arr([B, T, H * D]);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) {
    out.data[(b * T + t) * H * D + h * D + d] = x.data[((b * H + h) * T + t) * D + d]!;
  }
  return out;
}

// ---- the counter RNG of shaders/fill.wgsl.ts, in u32 arithmetic ---------------------------------

function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> (((state >>> 28) + 4) & 31)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

export function randU32(k0: number, k1: number, i: number, stream: number): number {
  return pcg((pcg((pcg((i ^ k0) >>> 0) + k1) >>> 0) ^ Math.imul(stream, 0x9e3779b9)) >>> 0);
}

/** Uniform in (0, 1], as rand_unit. */
export function randUnit(k0: number, k1: number, i: number, stream: number): number {
  return ((randU32(k0, k1, i, stream) >>> 8) + 1) / 16777216;
}

/** The keep test the attention kernels apply to element (i, j) of head bh. */
export function attentionKeep(key: readonly [number, number], p: number, T: number): (bh: number, i: number, j: number) => boolean {
  const pf = Math.fround(p);
  return (bh, i, j) => Math.fround(randUnit(key[0], key[1], (i * T + j) >>> 0, bh)) > pf;
}
