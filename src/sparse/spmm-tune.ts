// Measured kernel choice for 2:4 spmm above 16 rows (issue 9: tile sizes chosen by measurement
// per adapter, with the choice cached). The automatic rule picks the expand kernel's tile from the
// grid size and never the lanes kernel, though on the H200 lanes won 5 of 6 shapes under Dawn and
// lost under wgpu: only a measurement on the adapter at hand can choose. tuneSpmm() times every
// candidate on the real product (the GPU-timestamp span of a batch, or wall clock over a
// synchronised batch: SpmmTuneOptions.clock), keeps the fastest in spmm's table,
// and "auto" takes it from then on for that shape and f32 matmul precision. The table is per
// adapter: spmmTuning() exports it with the adapter's name and loadSpmmTuning() refuses a table
// measured on another one. Tuning awaits the GPU, so it runs once before training or serving,
// never inside a step (spmmShapesOf + tuneSpmmShapes tune the products of a step).
import { ShapeError, ValueError } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { noGrad } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { LANES_VARIANTS, type LanesVariant, spmmLanesStorage } from "../../shaders/spmm-lanes.wgsl.ts";
import { EXPAND_TILES, type ExpandTile, SPMM_SMALL_MAX_ROWS, spmmExpandStorage, spmmGatherStorage } from "../../shaders/spmm.wgsl.ts";
import { compress24, type Sparse24 } from "./sparse24.ts";
import { checkSpmm, setSpmmShapeLog, setSpmmTuned, spmmRaw, spmmTunedEntries, spmmTuneKey, type SpmmOptions } from "./spmm.ts";
import { randn } from "../ops/creation.ts";
import type { MatmulPrecision } from "../ops/raw/precision.ts";
import {
  adapterOf, checkCandidates, checkReps, measureCandidates, parseTable, resolveClock, shapesLogged, type TuneClock, type TuningTable, underPrecision,
} from "./tuning.ts";

/** A candidate by name: "rule" (what "auto" runs untuned), "expand:64x64", "lanes:8x8", "gather:128", … */
export type SpmmChoice = "rule" | `expand:${ExpandTile}` | `lanes:${LanesVariant}` | `gather:${64 | 128}`;

export interface SpmmTuneOptions {
  /** Candidates to time (default: every one that fits the adapter's workgroup memory). */
  candidates?: readonly SpmmChoice[];
  /** Timed batches per candidate (default 5; the median is kept). */
  reps?: number;
  /** How each candidate is timed (TuneClock, src/sparse/tuning.ts); default "auto". */
  clock?: TuneClock;
}

export interface SpmmTuneResult {
  /** The table key: rows × d_out × K, dtype, bias, f32 matmul precision. */
  key: string;
  /** The fastest candidate, now what "auto" runs for this shape. */
  choice: SpmmChoice;
  /** Median ms per call of each candidate, fastest first. */
  timings: { choice: SpmmChoice; ms: number }[];
  /** The clock used (SpmmTuneOptions.clock): "gpu" (the timestamp span of a batch) or "wall" (a synchronised batch). */
  clock: "gpu" | "wall";
}

/** A tuning table as JSON: the adapter it was measured on and the choice per product shape. */
export type SpmmTuning = TuningTable<SpmmChoice>;

/** A table key: rows × d_out × K, dtype, bias, f32 matmul precision (spmmTuneKey). */
const KEY = /^(\d+)x(\d+)x(\d+)\|(f32|f16)\|(bias|nobias)\|(highest|high|medium)$/;

const EXPANDS = Object.keys(EXPAND_TILES) as ExpandTile[];
const LANES = Object.keys(LANES_VARIANTS) as LanesVariant[];

/** The spmm options of a choice; throws a ValueError naming an unknown one. */
function optionsOf(op: string, c: string): SpmmOptions {
  if (c === "rule") return {};
  const [kind, arg] = c.split(":");
  if (kind === "expand" && EXPANDS.includes(arg as ExpandTile)) return { path: "expand", expandTile: arg as ExpandTile };
  if (kind === "lanes" && LANES.includes(arg as LanesVariant)) return { path: "lanes", lanesVariant: arg as LanesVariant };
  if (kind === "gather" && (arg === "64" || arg === "128")) return { path: "gather", tileRows: Number(arg) as 64 | 128 };
  throw new ValueError(op, `unknown spmm choice "${c}"; one of rule, ${EXPANDS.map((t) => `expand:${t}`).join(", ")}, ` +
    `${LANES.map((v) => `lanes:${v}`).join(", ")}, gather:64, gather:128`);
}

/** The name of the options a choice maps to (the inverse of optionsOf). */
function choiceOf(o: SpmmOptions): SpmmChoice {
  if (o.path === "expand") return `expand:${o.expandTile!}`;
  if (o.path === "lanes") return `lanes:${o.lanesVariant!}`;
  if (o.path === "gather") return `gather:${o.tileRows!}`;
  return "rule";
}

/** spmm's table, as the shared measuring loop sees it. */
const TABLE = { entries: spmmTunedEntries, set: setSpmmTuned };

/** Every candidate that fits this adapter's workgroup memory. */
export function spmmCandidates(): SpmmChoice[] {
  const max = gpu().limits.maxComputeWorkgroupStorageSize;
  return [
    "rule",
    ...EXPANDS.filter((t) => spmmExpandStorage(t) <= max).map((t) => `expand:${t}` as const),
    ...LANES.filter((v) => spmmLanesStorage(v) <= max).map((v) => `lanes:${v}` as const),
    ...([64, 128] as const).filter((r) => spmmGatherStorage(2, 4, r) <= max).map((r) => `gather:${r}` as const),
  ];
}

/**
 * Times every candidate kernel of y = x·sᵀ + bias on these operands and keeps the fastest for
 * their shape: from then on spmm (and sparseLinear, SparseLinear) with path "auto" runs it for
 * that shape. 2:4 only, above 16 rows of x (at most 16 rows take the decode kernel). Awaits the
 * GPU: call it before a training loop, not inside a step.
 */
export async function tuneSpmm(x: Tensor, s: Sparse24, bias: Tensor | null = null, opts: SpmmTuneOptions = {}): Promise<SpmmTuneResult> {
  const op = "tuneSpmm";
  const rows = checkSpmm(op, x, s, bias);
  if (s.n !== 2 || s.m !== 4) throw new ShapeError(op, `tuning covers 2:4 products, got ${s.pattern}; other patterns have one kernel`);
  if (rows <= SPMM_SMALL_MAX_ROWS) {
    throw new ShapeError(op, `x has ${rows} rows; products of at most ${SPMM_SMALL_MAX_ROWS} rows take the decode kernel and are not tuned: pass the training or prefill batch`);
  }
  const reps = opts.reps ?? 5;
  checkReps(op, reps);
  // an unknown name gets optionsOf's error, one that does not fit the workgroup memory checkCandidates'
  const candidates = checkCandidates(op, spmmCandidates(), opts.candidates, (c) => optionsOf(op, c));
  const clock = resolveClock(op, opts.clock);
  // every check is above: a refused call leaves the table as it was
  const key = spmmTuneKey(rows, s.rows, s.cols, s.values.dtype, !!bias);
  const { choice, timings } = await measureCandidates(key, candidates, (c) => optionsOf(op, c), (o) => { spmmRaw(x, s, bias, rows, o, op); }, clock, reps, TABLE);
  return { key, choice, timings, clock };
}

/**
 * Runs fn (a training step, a prefill) and returns the tuning keys of the 2:4 products in it that
 * "auto" chooses a kernel for: the forward's x·W_Rᵀ and the input gradient's dY·W_RC of every
 * sparse layer. Pass them to tuneSpmmShapes().
 */
export function spmmShapesOf(fn: () => unknown): string[] {
  return shapesLogged(setSpmmShapeLog, fn);
}

/**
 * Tunes each product shape of `keys` (from spmmShapesOf) on random operands of that shape and
 * dtype: which kernel is fastest depends on the shape and the 2:4 pattern's randomness, not on
 * the values. Returns one result per key, in order.
 */
export async function tuneSpmmShapes(keys: readonly string[], opts: SpmmTuneOptions = {}): Promise<SpmmTuneResult[]> {
  const op = "tuneSpmmShapes";
  const parsed = keys.map((k) => {
    const m = KEY.exec(k);
    if (!m) throw new ValueError(op, `malformed key "${k}"; keys look like "4096x768x768|f32|bias|highest" (spmmShapesOf returns them)`);
    return { rows: Number(m[1]), dOut: Number(m[2]), K: Number(m[3]), dtype: m[4] as "f32" | "f16", bias: m[5] === "bias", precision: m[6] as MatmulPrecision };
  });
  const out: SpmmTuneResult[] = [];
  for (const p of parsed) {
    const made = noGrad(() => {
      const w = randn([p.dOut, p.K], { dtype: p.dtype });
      const s = compress24(w);
      w.dispose();
      return { s, x: randn([p.rows, p.K], { dtype: p.dtype }), b: p.bias ? randn([p.dOut], { dtype: p.dtype }) : null };
    });
    try {
      out.push(await underPrecision(p.precision, () => tuneSpmm(made.x, made.s, made.b, opts))); // the precision the product ran under
    } finally {
      made.s.dispose(); made.x.dispose(); made.b?.dispose();
    }
  }
  return out;
}

/** The measured table with the adapter it belongs to (JSON-ready: save it beside a checkpoint). */
export function spmmTuning(): SpmmTuning {
  const entries: Record<string, SpmmChoice> = {};
  for (const [k, o] of spmmTunedEntries()) entries[k] = choiceOf(o);
  return { adapter: adapterOf(), entries };
}

/**
 * Loads a table from spmmTuning(). Returns false and changes nothing when it was measured on
 * another adapter (its choices would be guesses here); throws a ValueError on a malformed table.
 */
export function loadSpmmTuning(t: SpmmTuning): boolean {
  const parsed = parseTable("loadSpmmTuning", t, KEY, "4096x768x768|f32|bias|highest", optionsOf);
  if (!parsed) return false;
  for (const [k, o] of parsed) setSpmmTuned(k, o);
  return true;
}

/** Forgets every measured choice ("auto" follows its rule again). */
export function clearSpmmTuning(): void {
  setSpmmTuned(null, null);
}
