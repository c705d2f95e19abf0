// What the measured kernel choices of spmm (spmm-tune.ts) and sddmm (sddmm-tune.ts) share: the
// clock that times a candidate, the adapter a table belongs to, and the checks of a candidate
// list. Each tuner keeps its own table (in spmm.ts, sddmm.ts) and its own key and choice names.
import { ValueError } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { profile } from "../gpu/profiler.ts";
import { noGrad, tidy } from "../scope.ts";
import { getFloat32MatmulPrecision, type MatmulPrecision, setFloat32MatmulPrecision } from "../ops/raw/precision.ts";

/**
 * "gpu": the timestamp span of a ~2 ms batch (needs timestamp-query); "wall": wall clock over a
 * batch of ≥ 50 ms and one sync. "auto": "gpu" where the adapter has timestamps, except under
 * Deno's wgpu, where on the H200 the timestamp ranking disagreed with wall-clock batches
 * (bench/results/2026-12-03/p4-spmm-tune-wgpu.txt).
 */
export type TuneClock = "auto" | "gpu" | "wall";

/** The clock a tuning call uses; a ValueError for an unknown one or "gpu" without timestamps. */
export function resolveClock(op: string, wanted: TuneClock = "auto"): "gpu" | "wall" {
  const ctx = gpu();
  if (wanted !== "auto" && wanted !== "gpu" && wanted !== "wall") throw new ValueError(op, `clock must be "auto", "gpu" or "wall", got ${String(wanted)}`);
  if (wanted === "gpu" && !ctx.features.has("timestamp-query")) throw new ValueError(op, `clock "gpu" needs timestamp-query, which this adapter lacks; use "wall" or "auto"`);
  return wanted !== "auto" ? wanted : ctx.features.has("timestamp-query") && ctx.info.runtime !== "Deno" ? "gpu" : "wall";
}

/** A ValueError unless reps is an integer in [1, 100]. */
export function checkReps(op: string, reps: number): void {
  if (!Number.isInteger(reps) || reps < 1 || reps > 100) throw new ValueError(op, `reps must be an integer in [1, 100], got ${reps}`);
}

/**
 * The candidates to time: `asked` (default `all`), each of them in `all`. `known(name)` throws the
 * tuner's own ValueError for a name it does not know; one it knows but the adapter cannot run gets
 * this ValueError.
 */
export function checkCandidates<C extends string>(op: string, all: readonly C[], asked: readonly C[] | undefined, known: (c: string) => unknown): readonly C[] {
  const candidates = asked ?? all;
  if (candidates.length === 0) throw new ValueError(op, "candidates is empty; leave it out to time every kernel that fits");
  const bad = candidates.find((c) => !all.includes(c));
  if (bad !== undefined) {
    known(bad);
    throw new ValueError(op, `candidate "${bad}" does not fit this adapter; the ones that do: ${all.join(", ")}`);
  }
  return candidates;
}

/** Median of a non-empty list. */
const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]!; };

/** Median ms per call of `call` over `reps` timed batches (compiled and synced first, outside the timing). */
export async function timeCall(call: () => void, clock: "gpu" | "wall", reps: number): Promise<number> {
  const ctx = gpu();
  call(); // compiles the pipelines
  await ctx.sync();
  const per: number[] = [];
  if (clock === "gpu") {
    // The span of a batch long enough (~2 ms) that quantized timestamps (Dawn's default, 2^16 ns steps) blur it by a few %.
    const est = Math.max((await profile(call)).spanMs, 1e-3);
    const n = Math.min(64, Math.max(1, Math.ceil(2 / est)));
    const batch = () => { for (let i = 0; i < n; i++) call(); };
    for (let r = 0; r < reps; r++) per.push((await profile(batch)).spanMs / n);
  } else {
    // Batches doubled until one takes ≥ 50 ms with its sync, so a late answer to the await
    // (Deno: ~11 ms) is a small share of what is timed.
    let n = 4;
    for (;;) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) call();
      await ctx.sync();
      if (performance.now() - t0 >= 50 || n >= 512) break;
      n *= 2;
    }
    for (let r = 0; r < reps; r++) {
      const t1 = performance.now();
      for (let i = 0; i < n; i++) call();
      await ctx.sync();
      per.push((performance.now() - t1) / n);
    }
  }
  return median(per);
}

/** A tuner's table as the shared loop sees it: its entries, and setting (null: clearing) one key. */
export interface TunedTable<O> {
  entries(): [string, O][];
  set(key: string, opts: O | null): void;
}

/**
 * Times `run(optionsOf(c))` for each candidate c (one call each, inside tidy and noGrad) and keeps
 * the fastest under `key`. The key's entry is cleared while timing, so "rule" times the rule, and
 * put back as it was if a timing throws (a failed tuning changes nothing). Fastest first.
 */
export async function measureCandidates<C extends string, O>(key: string, candidates: readonly C[], optionsOf: (c: C) => O, run: (o: O) => void,
  clock: "gpu" | "wall", reps: number, table: TunedTable<O>): Promise<{ choice: C; timings: { choice: C; ms: number }[] }> {
  const previous = table.entries().find(([k]) => k === key)?.[1] ?? null;
  table.set(key, null);
  const timings: { choice: C; ms: number }[] = [];
  try {
    for (const c of candidates) {
      const o = optionsOf(c);
      timings.push({ choice: c, ms: await timeCall(() => tidy(() => noGrad(() => run(o))), clock, reps) });
    }
  } catch (e) {
    table.set(key, previous);
    throw e;
  }
  timings.sort((a, b) => a.ms - b.ms);
  const choice = timings[0]!.choice;
  table.set(key, optionsOf(choice));
  return { choice, timings };
}

/** Runs fn with a shape log installed by `setLog` and returns the keys it logged. */
export function shapesLogged(setLog: (log: Set<string> | null) => void, fn: () => unknown): string[] {
  const log = new Set<string>();
  setLog(log);
  try {
    fn();
  } finally {
    setLog(null);
  }
  return [...log];
}

/** Awaits fn under f32 matmul precision p (the one a tuning key names), then restores the previous one. */
export async function underPrecision<R>(p: MatmulPrecision, fn: () => Promise<R>): Promise<R> {
  const was = getFloat32MatmulPrecision();
  setFloat32MatmulPrecision(p);
  try {
    return await fn();
  } finally {
    setFloat32MatmulPrecision(was);
  }
}

/** The adapter a table belongs to: engine and adapter (Dawn and wgpu choose differently on one GPU). */
export const adapterOf = (): string => `${gpu().info.runtime}: ${gpu().info.adapterName}`;

/** A tuning table's JSON shape: the adapter it was measured on and the choice per product key. */
export interface TuningTable<C extends string> {
  adapter: string;
  entries: Record<string, C>;
}

/**
 * Parses a table (spmmTuning / sddmmTuning) into [key, options] pairs, or null when it was measured
 * on another adapter; a ValueError (naming `example`, a well-formed key) for a malformed one.
 */
export function parseTable<O>(op: string, t: TuningTable<string>, key: RegExp, example: string, optionsOf: (op: string, c: string) => O): [string, O][] | null {
  if (typeof t !== "object" || t === null || typeof t.adapter !== "string" || typeof t.entries !== "object" || t.entries === null) {
    throw new ValueError(op, "expected { adapter: string, entries: { [key]: choice } } as the tuning export returns");
  }
  const parsed = Object.entries(t.entries).map(([k, c]): [string, O] => {
    if (!key.test(k)) throw new ValueError(op, `malformed key "${k}"; keys look like "${example}"`);
    return [k, optionsOf(op, String(c))];
  });
  return t.adapter === adapterOf() ? parsed : null;
}
