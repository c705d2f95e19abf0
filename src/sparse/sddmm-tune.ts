// Measured kernel choice for the 2:4 sddmm (the weight gradient at the kept positions), as
// spmm-tune.ts does for spmm (issue 9: tile sizes chosen by measurement per adapter, with the
// choice cached). The rule picks the dense-tile kernel's tile from the grid and splits the
// reduction below a fixed grid, with H200 constants; on the H200 the resulting sddmm ran
// 0.73–1.55× of the dense dYᵀX depending on shape and engine, and the dense dYᵀX plus a gather of
// its kept entries ("matmul") is itself a candidate. tuneSddmm() times each candidate on the real
// product and keeps the fastest in sddmm's table; a 2:4 sddmm that names no kernel (the
// sparseLinear backward's) then runs it for that shape and f32 matmul precision. Tuning awaits
// the GPU: once before training, never inside a step (sddmmShapesOf + tuneSddmmShapes tune a step's).
import { ShapeError, ValueError } from "../errors.ts";
import { noGrad } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { SDDMM_LANES, type SddmmLanesVariant } from "../../shaders/sddmm-lanes.wgsl.ts";
import { SDDMM_TILES, type SddmmTile } from "../../shaders/sddmm.wgsl.ts";
import { randn } from "../ops/creation.ts";
import type { MatmulPrecision } from "../ops/raw/precision.ts";
import { compress24, type Sparse24 } from "./sparse24.ts";
import { checkSddmm, checkSplitK, type SddmmOptions, sddmmRaw, sddmmTunedEntries, sddmmTuneKey, setSddmmShapeLog, setSddmmTuned } from "./sddmm.ts";
import {
  adapterOf, checkCandidates, checkReps, measureCandidates, parseTable, resolveClock, shapesLogged, type TuneClock, type TuningTable, underPrecision,
} from "./tuning.ts";

/**
 * A candidate by name: "rule" (what an sddmm naming no kernel runs untuned), "matmul" (the dense
 * dYᵀX and a gather), "gather", "dense-tile:64x64" (the rule's split), "dense-tile:128x128:split4"
 * (split-K forced; split1 = off), "lanes:c4g2m4" (the warp-uniform kernel; not among the defaults).
 */
export type SddmmChoice = "rule" | "matmul" | "gather" | `dense-tile:${SddmmTile}` | `dense-tile:${SddmmTile}:split${number}` | `lanes:${SddmmLanesVariant}`;

export interface SddmmTuneOptions {
  /** Candidates to time (default: sddmmCandidates()). */
  candidates?: readonly SddmmChoice[];
  /** Timed batches per candidate (default 5; the median is kept). */
  reps?: number;
  /** How each candidate is timed (TuneClock, src/sparse/tuning.ts); default "auto". */
  clock?: TuneClock;
}

export interface SddmmTuneResult {
  /** The table key: rows × d_out × K, dtype, f32 matmul precision. */
  key: string;
  /** The fastest candidate, now what a 2:4 sddmm naming no kernel runs at this shape. */
  choice: SddmmChoice;
  /** Median ms per call of each candidate, fastest first. */
  timings: { choice: SddmmChoice; ms: number }[];
  clock: "gpu" | "wall";
}

export type SddmmTuning = TuningTable<SddmmChoice>;

const KEY = /^(\d+)x(\d+)x(\d+)\|(f32|f16)\|(highest|high|medium)$/;
const EXAMPLE = "16384x768x768|f32|highest";
const TILES = Object.keys(SDDMM_TILES) as SddmmTile[];
/** The forced splits among the default candidates (the rule's own split is "dense-tile:<tile>"). */
const SPLITS = [1, 2, 4, 8] as const;

/** The sddmm options of a choice; a ValueError naming an unknown one. */
function optionsOf(op: string, c: string): SddmmOptions {
  if (c === "rule") return {};
  if (c === "matmul" || c === "gather") return { method: c };
  const [kind, arg, split] = c.split(":");
  if (kind === "lanes" && arg !== undefined && Object.hasOwn(SDDMM_LANES, arg) && split === undefined) return { method: "lanes", lanes: arg as SddmmLanesVariant };
  if (kind === "dense-tile" && TILES.includes(arg as SddmmTile)) {
    if (split === undefined) return { method: "dense-tile", tile: arg as SddmmTile };
    const m = /^split(\d+)$/.exec(split);
    if (m) {
      const splitK = Number(m[1]);
      checkSplitK(op, splitK);
      return { method: "dense-tile", tile: arg as SddmmTile, splitK };
    }
  }
  throw new ValueError(op, `unknown sddmm choice "${c}"; one of rule, matmul, gather, ${TILES.map((t) => `dense-tile:${t}`).join(", ")}, ` +
    `dense-tile:<tile>:split<1–64>, ${Object.keys(SDDMM_LANES).map((v) => `lanes:${v}`).join(", ")}`);
}

/** The name of the options a choice maps to (the inverse of optionsOf). */
function choiceOf(o: SddmmOptions): SddmmChoice {
  if (o.method === "matmul" || o.method === "gather") return o.method;
  if (o.method === "lanes") return `lanes:${o.lanes!}`;
  if (o.method === "dense-tile") return o.splitK === undefined ? `dense-tile:${o.tile!}` : `dense-tile:${o.tile!}:split${o.splitK}`;
  return "rule";
}

/** The default candidates: the rule, matmul, gather, each dense tile with the rule's split and with split 1, 2, 4, 8. */
export function sddmmCandidates(): SddmmChoice[] {
  return ["rule", "matmul", "gather", ...TILES.flatMap((t) => [`dense-tile:${t}` as const, ...SPLITS.map((n) => `dense-tile:${t}:split${n}` as const)])];
}

/** sddmm's table, as the shared measuring loop sees it. */
const TABLE = { entries: sddmmTunedEntries, set: setSddmmTuned };

/** Every name a caller may pass: the defaults and the lanes variants. */
const known = (): SddmmChoice[] => [...sddmmCandidates(), ...Object.keys(SDDMM_LANES).map((v) => `lanes:${v}` as SddmmChoice)];

/**
 * Times every candidate kernel of the weight gradient dY [..., d_out], x [..., K] at the kept
 * positions of s (2:4) and keeps the fastest for their shape: from then on a 2:4 sddmm that names
 * no kernel (sparseLinear's backward, SparseLinear) runs it. Awaits the GPU: call it before a
 * training loop, not inside a step.
 */
export async function tuneSddmm(dY: Tensor, x: Tensor, s: Sparse24, opts: SddmmTuneOptions = {}): Promise<SddmmTuneResult> {
  const op = "tuneSddmm";
  const rows = checkSddmm(op, dY, x, s);
  if (s.n !== 2 || s.m !== 4) throw new ShapeError(op, `tuning covers 2:4 weights, got ${s.pattern}; other patterns keep the rule`);
  const reps = opts.reps ?? 5;
  checkReps(op, reps);
  const candidates = checkCandidates(op, known(), opts.candidates ?? sddmmCandidates(), (c) => optionsOf(op, c));
  const clock = resolveClock(op, opts.clock);
  // every check is above: a refused call leaves the table as it was
  const key = sddmmTuneKey(rows, s.rows, s.cols, s.values.dtype);
  const { choice, timings } = await measureCandidates(key, candidates, (c) => optionsOf(op, c), (o) => { sddmmRaw(dY, x, s, rows, null, false, o, op); }, clock, reps, TABLE);
  return { key, choice, timings, clock };
}

/**
 * Runs fn (a training step) and returns the tuning keys of the 2:4 weight gradients in it that
 * name no kernel: every sparse layer's sddmm. Pass them to tuneSddmmShapes().
 */
export function sddmmShapesOf(fn: () => unknown): string[] {
  return shapesLogged(setSddmmShapeLog, fn);
}

/**
 * Tunes each shape of `keys` (from sddmmShapesOf) on random operands of that shape and dtype (the
 * fastest kernel depends on the shape, not the values), under the f32 matmul precision the key
 * names. Returns one result per key, in order.
 */
export async function tuneSddmmShapes(keys: readonly string[], opts: SddmmTuneOptions = {}): Promise<SddmmTuneResult[]> {
  const op = "tuneSddmmShapes";
  const parsed = keys.map((k) => {
    const m = KEY.exec(k);
    if (!m) throw new ValueError(op, `malformed key "${k}"; keys look like "${EXAMPLE}" (sddmmShapesOf returns them)`);
    return { rows: Number(m[1]), dOut: Number(m[2]), K: Number(m[3]), dtype: m[4] as "f32" | "f16", precision: m[5] as MatmulPrecision };
  });
  const out: SddmmTuneResult[] = [];
  for (const p of parsed) {
    const made = noGrad(() => {
      const w = randn([p.dOut, p.K], { dtype: p.dtype });
      const s = compress24(w);
      w.dispose();
      return { s, x: randn([p.rows, p.K], { dtype: p.dtype }), dY: randn([p.rows, p.dOut], { dtype: p.dtype }) };
    });
    try {
      out.push(await underPrecision(p.precision, () => tuneSddmm(made.dY, made.x, made.s, opts)));
    } finally {
      made.s.dispose(); made.x.dispose(); made.dY.dispose();
    }
  }
  return out;
}

/** The measured table with the adapter it belongs to (JSON-ready). */
export function sddmmTuning(): SddmmTuning {
  const entries: Record<string, SddmmChoice> = {};
  for (const [k, o] of sddmmTunedEntries()) entries[k] = choiceOf(o);
  return { adapter: adapterOf(), entries };
}

/** Loads a table from sddmmTuning(): false (nothing changed) for another adapter's; a ValueError for a malformed one. */
export function loadSddmmTuning(t: SddmmTuning): boolean {
  const parsed = parseTable("loadSddmmTuning", t, KEY, EXAMPLE, optionsOf);
  if (!parsed) return false;
  for (const [k, o] of parsed) setSddmmTuned(k, o);
  return true;
}

/** Forgets every measured sddmm choice (the rule applies again). */
export function clearSddmmTuning(): void {
  setSddmmTuned(null, null);
}
