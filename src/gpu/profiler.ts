// A GPU profiler for any code, as torch.profiler: `const p = await profile(async () => step())`
// (or startProfile() … await session.stop()). While a profile records, the launcher gives every
// dispatch its own compute pass with timestamp writes (where the adapter has `timestamp-query`),
// and each dispatch is attributed to its kernel family (the Kernel.key prefix) and to the op that
// issued it: an op front-end claims the dispatches recorded since the last claim when it records
// its autograd node (endOp, called by record()); the backward engine labels each rule's dispatches
// `<op>.backward`; dispatches no op claims are named after their kernel family. When no profile is
// active the launcher path is untouched: no timestamp writes, no extra passes, one null check.
import { ValueError } from "../errors.ts";
import type { Kernel } from "../../shaders/kernel.ts";
import { gpu } from "./context.ts";
import { BufferUsage, MapMode } from "./usage.ts";

/** WebGPU caps one GPUQuerySet at 4,096 queries: 2,048 timed dispatches (begin + end) per set. */
const QUERIES_PER_SET = 4096;
/** At most this many query sets (32,768 timed dispatches) per profile; later dispatches are counted, not timed. */
const MAX_QUERY_SETS = 16;

/** One dispatch of a profile. Times are in µs from the first timed dispatch; NaN where untimed. */
export interface ProfileEvent {
  /** The full kernel key (family + builder parameters). */
  kernel: string;
  /** The kernel family (Kernel.key up to the first ':'). */
  family: string;
  /** The op that issued it (`matmul`, `layerNorm.backward`, …) or, unclaimed, the kernel family. */
  op: string;
  startUs: number;
  durUs: number;
}

/** One row of Profile.summary(). */
export interface ProfileRow {
  name: string;
  calls: number;
  /** Summed GPU time, ms (NaN without timing). */
  totalMs: number;
  /** Share of the profile's summed GPU time, % (NaN without timing). */
  percent: number;
  /** Mean per call, µs (NaN without timing). */
  meanUs: number;
}

export type ProfileGrouping = "op" | "family" | "kernel";

/** The launcher's side of an active recording (src/gpu/launcher.ts calls add() per dispatch). */
export class Recording {
  readonly kernels: Kernel[] = [];
  readonly ops: (string | null)[] = [];
  /** An explicit label (the backward engine's `<op>.backward`): dispatches under it are claimed at once. */
  label: string | null = null;
  readonly sets: GPUQuerySet[] = [];
  private claimed = 0;

  constructor(private readonly device: GPUDevice, readonly timing: boolean) {}

  /** Registers one dispatch; returns the timestamp writes of its pass, or undefined when untimed. */
  add(kernel: Kernel): GPUComputePassTimestampWrites | undefined {
    const i = this.kernels.length;
    this.kernels.push(kernel);
    this.ops.push(this.label);
    if (this.label !== null) this.claimed = i + 1;
    if (!this.timing) return undefined;
    const perSet = QUERIES_PER_SET / 2;
    const s = Math.floor(i / perSet);
    if (s >= MAX_QUERY_SETS) return undefined;
    if (s === this.sets.length) this.sets.push(this.device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET }));
    const q = (i % perSet) * 2;
    return { querySet: this.sets[s]!, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 };
  }

  /** The dispatches since the last claim belong to `op`. */
  claim(op: string): void {
    for (let i = this.claimed; i < this.ops.length; i++) this.ops[i] ??= op;
    this.claimed = this.ops.length;
  }

  get timedCount(): number {
    return this.timing ? Math.min(this.kernels.length, MAX_QUERY_SETS * (QUERIES_PER_SET / 2)) : 0;
  }

  /** Reads every timestamp back: [begin, end] ns per timed dispatch. */
  async resolve(): Promise<BigInt64Array> {
    const n = this.timedCount;
    const out = new BigInt64Array(n * 2);
    if (!n) return out;
    const bytes = n * 2 * 8;
    const resolved = this.device.createBuffer({ size: bytes, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    const staging = this.device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    for (let s = 0; s < this.sets.length; s++) {
      const count = Math.min(QUERIES_PER_SET, n * 2 - s * QUERIES_PER_SET);
      enc.resolveQuerySet(this.sets[s]!, 0, count, resolved, s * QUERIES_PER_SET * 8);
    }
    enc.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
    // The profiler's own submit, after the profiled work: it is not in the launcher's stats.
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(MapMode.READ);
    out.set(new BigInt64Array(staging.getMappedRange()));
    staging.unmap();
    for (const b of [resolved, staging]) b.destroy();
    for (const s of this.sets) s.destroy();
    return out;
  }
}

let active: Recording | null = null;

/**
 * Ends the current op for the profiler: the dispatches recorded since the last claim were issued
 * by `op`. Op front-ends call it (through autograd's record()); a no-op unless a profile records.
 */
export function endOp(op: string): void {
  if (active) active.claim(op);
}

/** Labels the dispatches that follow `label` until it is set back to null (the backward engine uses `<op>.backward`). */
export function setOpLabel(label: string | null): void {
  if (active) active.label = label;
}

/** Whether a profile is recording (for callers that would build a label string). */
export function isProfiling(): boolean {
  return active !== null;
}

const family = (key: string): string => {
  const i = key.indexOf(":");
  return i < 0 ? key : key.slice(0, i);
};

/** The result of a profile: per-dispatch events, summaries, a printed table and a Chrome trace. */
export class Profile {
  constructor(
    readonly events: readonly ProfileEvent[],
    /** Whether GPU timestamps were available (`timestamp-query`); without them only calls are counted. */
    readonly timed: boolean,
    /** Dispatches counted but not timed (past the query-set cap). */
    readonly untimed: number,
    /** Wall-clock time of the profiled code (CPU side, including the final GPU sync), ms. */
    readonly wallMs: number,
  ) {}

  get dispatches(): number {
    return this.events.length;
  }

  /** Summed GPU time of all timed dispatches, ms (NaN without timing). */
  get totalMs(): number {
    if (!this.timed) return NaN;
    let s = 0;
    for (const e of this.events) if (!Number.isNaN(e.durUs)) s += e.durUs;
    return s / 1000;
  }

  /** From the first timed dispatch's start to the last one's end, ms (NaN without timing). */
  get spanMs(): number {
    if (!this.timed) return NaN;
    let end = 0;
    for (const e of this.events) if (!Number.isNaN(e.durUs)) end = Math.max(end, e.startUs + e.durUs);
    return end / 1000;
  }

  /** Rows per op, kernel family or full kernel key, largest total first (most calls first without timing). */
  summary(by: ProfileGrouping = "op"): ProfileRow[] {
    const acc = new Map<string, { calls: number; us: number }>();
    for (const e of this.events) {
      const name = by === "op" ? e.op : by === "family" ? e.family : e.kernel;
      const r = acc.get(name) ?? { calls: 0, us: 0 };
      r.calls++;
      if (!Number.isNaN(e.durUs)) r.us += e.durUs;
      acc.set(name, r);
    }
    const total = this.totalMs;
    const rows = [...acc].map(([name, r]) => ({
      name, calls: r.calls,
      totalMs: this.timed ? r.us / 1000 : NaN,
      percent: this.timed ? (total > 0 ? (100 * r.us) / 1000 / total : 0) : NaN,
      meanUs: this.timed ? r.us / r.calls : NaN,
    }));
    return rows.sort((a, b) => (this.timed ? b.totalMs - a.totalMs : 0) || b.calls - a.calls || (a.name < b.name ? -1 : 1));
  }

  /** A printable table (name, calls, total ms, % of step, mean µs), by op and by kernel family unless `by` says one. */
  table(opts: { by?: ProfileGrouping; top?: number } = {}): string {
    const groupings: ProfileGrouping[] = opts.by ? [opts.by] : ["op", "family"];
    const head = this.timed
      ? `${this.dispatches} dispatches, ${this.totalMs.toFixed(3)} ms summed GPU time (span ${this.spanMs.toFixed(3)} ms, wall ${this.wallMs.toFixed(1)} ms)` +
        (this.untimed ? `; ${this.untimed} dispatches past the ${MAX_QUERY_SETS * (QUERIES_PER_SET / 2)}-dispatch cap counted but not timed` : "")
      : `${this.dispatches} dispatches; GPU timing unavailable (the adapter has no timestamp-query): calls only`;
    const out = [head];
    const f = (x: number, d: number) => (Number.isNaN(x) ? "—" : x.toFixed(d));
    for (const by of groupings) {
      let rows = this.summary(by);
      const rest = opts.top && rows.length > opts.top ? rows.slice(opts.top) : [];
      if (rest.length) {
        rows = rows.slice(0, opts.top);
        const calls = rest.reduce((a, r) => a + r.calls, 0), ms = rest.reduce((a, r) => a + r.totalMs, 0);
        rows.push({ name: `(${rest.length} more)`, calls, totalMs: ms, percent: (100 * ms) / this.totalMs, meanUs: (1000 * ms) / calls });
      }
      const cells = rows.map((r) => [r.name, String(r.calls), f(r.totalMs, 3), f(r.percent, 1), f(r.meanUs, 1)]);
      const header = [by === "op" ? "op" : by === "family" ? "kernel family" : "kernel", "calls", "total ms", "% of step", "mean µs"];
      const w = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
      const line = (c: string[]) => c.map((s, i) => (i === 0 ? s.padEnd(w[i]!) : s.padStart(w[i]!))).join("  ");
      out.push("", line(header), w.map((n) => "-".repeat(n)).join("  "), ...cells.map(line));
    }
    return out.join("\n");
  }

  /** Chrome trace-event JSON (Perfetto and chrome://tracing open it): one complete event per dispatch on a GPU track. */
  chromeTrace(): string {
    const traceEvents: Record<string, unknown>[] = [
      { name: "process_name", ph: "M", pid: 1, tid: 1, args: { name: "webslope GPU" } },
      { name: "thread_name", ph: "M", pid: 1, tid: 1, args: { name: this.timed ? "dispatches (GPU timestamps)" : "dispatches (untimed: order only)" } },
    ];
    this.events.forEach((e, i) => {
      const timed = !Number.isNaN(e.durUs);
      traceEvents.push({
        name: e.op, cat: e.family, ph: "X", pid: 1, tid: 1,
        ts: timed ? e.startUs : i, dur: timed ? e.durUs : 0,
        args: { kernel: e.kernel, index: i, ...(timed ? {} : { timing: "unavailable" }) },
      });
    });
    return JSON.stringify({ traceEvents, displayTimeUnit: "ms" });
  }
}

/** An active profile; stop() ends it and reads the timestamps back. */
export interface ProfileSession {
  stop(): Promise<Profile>;
}

export interface ProfileOptions {
  /** Time dispatches where the adapter has timestamp-query (default true); false counts only. */
  timing?: boolean;
}

/** Starts recording (the start/stop form of profile()). One profile at a time. */
export function startProfile(opts: ProfileOptions = {}): ProfileSession {
  const ctx = gpu();
  if (active) throw new ValueError("startProfile", "a profile is already recording; stop() it before starting another");
  ctx.launcher.flush(); // work recorded before the profile is not in it
  const timing = (opts.timing ?? true) && ctx.features.has("timestamp-query");
  const rec = new Recording(ctx.device, timing);
  active = rec;
  ctx.launcher.recording = rec;
  const t0 = performance.now();
  let stopped = false;
  return {
    async stop(): Promise<Profile> {
      if (stopped) throw new ValueError("ProfileSession.stop", "this profile was already stopped");
      stopped = true;
      try {
        await ctx.sync();
      } finally {
        active = null;
        ctx.launcher.recording = null;
      }
      const wallMs = performance.now() - t0;
      const ts = await rec.resolve();
      const n = rec.kernels.length, timed = rec.timedCount;
      let t0ns = 0n;
      if (timed) { t0ns = ts[0]!; for (let i = 0; i < timed; i++) if (ts[2 * i]! < t0ns) t0ns = ts[2 * i]!; }
      const events: ProfileEvent[] = [];
      for (let i = 0; i < n; i++) {
        const k = rec.kernels[i]!.key, fam = family(k);
        let startUs = NaN, durUs = NaN;
        if (i < timed) {
          const b = ts[2 * i]!, e = ts[2 * i + 1]!;
          startUs = Number(b - t0ns) / 1000;
          durUs = Math.max(0, Number(e - b) / 1000);
        }
        events.push({ kernel: k, family: fam, op: rec.ops[i] ?? fam, startUs, durUs });
      }
      return new Profile(events, timing, timing ? n - timed : 0, wallMs);
    },
  };
}

/**
 * Profiles `fn` (sync or async): every GPU dispatch it issues, timed where the adapter has
 * timestamp-query. Node's Dawn quantizes timestamps unless the GPU is made with
 * create(dawnFlags({ preciseTimestamps: true })). Dispatches run one per compute pass while profiling.
 */
export async function profile(fn: () => unknown, opts: ProfileOptions = {}): Promise<Profile> {
  const s = startProfile(opts);
  try {
    await fn();
  } catch (e) {
    await s.stop().catch(() => undefined);
    throw e;
  }
  return s.stop();
}
