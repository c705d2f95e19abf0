// Float64 references for the fused nn ops: layerNorm, embedding, crossEntropy (softmax and
// logSoftmax are in cpu.ts). Same conventions as the GPU ops, written as plain loops.
import { type Arr, arr, lanes } from "./cpu.ts";

/** (x − mean)/sqrt(var + eps)·w + b over the last axis, biased variance. */
export function layerNorm(x: Arr, w: Arr | null, b: Arr | null, eps = 1e-5): Arr {
  return lanes(x, (v) => {
    const C = v.length;
    const mean = v.reduce((s, a) => s + a, 0) / C;
    const vr = v.reduce((s, a) => s + (a - mean) ** 2, 0) / C;
    const r = 1 / Math.sqrt(vr + eps);
    return v.map((a, k) => (a - mean) * r * (w ? w.data[k]! : 1) + (b ? b.data[k]! : 0));
  });
}

/** weight rows picked by idx; an index outside [0, V) gives a zero row. */
export function embedding(idx: ArrayLike<number>, idxShape: number[], weight: Arr): Arr {
  const [V, C] = weight.shape as [number, number];
  const out = arr([...idxShape, C]);
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i]!;
    if (v < 0 || v >= V) continue;
    for (let c = 0; c < C; c++) out.data[i * C + c] = weight.data[v * C + c]!;
  }
  return out;
}

/**
 * Cross-entropy of logits [..., C] against targets (one per row); rows whose target is
 * ignoreIndex or outside [0, C) count for nothing. mean divides by the counted rows (0 if none).
 */
export function crossEntropy(logits: Arr, targets: ArrayLike<number>, reduction: "mean" | "sum" | "none" = "mean", ignoreIndex = -100): Arr {
  const C = logits.shape.at(-1)!;
  const N = logits.data.length / C;
  const losses = new Float64Array(N);
  let count = 0;
  for (let r = 0; r < N; r++) {
    const t = targets[r]!;
    if (t === ignoreIndex || t < 0 || t >= C) continue;
    const row = logits.data.subarray(r * C, r * C + C);
    const m = Math.max(...row);
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    losses[r] = m + Math.log(s) - row[t]!;
    count++;
  }
  if (reduction === "none") return arr([N], losses);
  const total = losses.reduce((a, b) => a + b, 0);
  return arr([], [reduction === "sum" ? total : total / Math.max(count, 1)]);
}
