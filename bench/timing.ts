// Timing for GPU benchmarks that is fair across runtimes and libraries: warm the GPU up (it idles
// at a low clock), then time batches of work with ONE forced completion per batch, since an
// await costs ~11 ms in Deno and ~0.1 ms in Node + Dawn (docs/design.md §3), and report the median.

export interface Timing {
  /** Median over batches of the per-item time, ms. */
  medianMs: number;
  /** Per-item time of every timed batch, ms. */
  batchesMs: number[];
  /** Items per timed batch. */
  perBatch: number;
  /** Items timed in total. */
  items: number;
}

export interface TimingOptions {
  /** Warm-up wall time, ms (default 1000). */
  warmupMs?: number;
  /** Target wall time of one timed batch, ms (default 250). */
  batchMs?: number;
  /** Timed batches (default 5). */
  batches?: number;
  /** At least this many items in total (default 20). */
  minItems?: number;
}

/**
 * The timing of every bench's `--quick` (what CI runs in Node, Deno and Chromium on software
 * adapters): seconds per bench, enough to show the path runs and print a table, not to compare speeds.
 */
export const QUICK_TIMING = { warmupMs: 200, batchMs: 50, batches: 3, minItems: 3 } as const satisfies TimingOptions;

export const now = (): number => performance.now();

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/**
 * `run(n)` issues n items and resolves when the GPU has finished all of them (one forced
 * completion). Returns the median per-item time over the timed batches.
 */
export async function timeBatches(run: (n: number) => Promise<void>, o: TimingOptions = {}): Promise<Timing> {
  const warmupMs = o.warmupMs ?? 1000, batchMs = o.batchMs ?? 250, batches = o.batches ?? 5, minItems = o.minItems ?? 20;
  // warm-up: growing batches until the wall time is spent; the last one estimates the item time
  let n = 1, est = Infinity;
  const t0 = now();
  do {
    const s = now();
    await run(n);
    est = (now() - s) / n;
    if (now() - t0 + est * n * 2 < warmupMs) n *= 2;
  } while (now() - t0 < warmupMs);
  const perBatch = Math.max(Math.ceil(minItems / batches), Math.round(batchMs / Math.max(est, 1e-3)), 1);
  const batchesMs: number[] = [];
  for (let b = 0; b < batches; b++) {
    const s = now();
    await run(perBatch);
    batchesMs.push((now() - s) / perBatch);
  }
  return { medianMs: median(batchesMs), batchesMs, perBatch, items: perBatch * batches };
}

/** TFLOP/s of an M×K×N product taking `ms`. */
export const tflops = (M: number, K: number, N: number, ms: number): number => (2 * M * K * N) / (ms * 1e-3) / 1e12;

/** Deterministic uniform [-1, 1) data (fast enough for 8192² elements). */
export function randomF32(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}
