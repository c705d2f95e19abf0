// The N:M sparse matrix format (2:4 by default): Sparse24 holds a rows×cols matrix that is N:M
// along cols (the reduction dimension) as compressed `values` plus a bitmask `meta`, and
// compress24 / decompress24 convert from / to dense on the GPU. The exact layout is written
// once, in shaders/sparse24.wgsl.ts; this file owns the shape rules and their errors.
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { keep, track } from "../scope.ts";
import { Tensor } from "../tensor.ts";
import { decompressKernel, pruneKernel, SP_WORKGROUP, type SpDType } from "../../shaders/sparse24.wgsl.ts";
import { checkLive, grid1d } from "../ops/util.ts";

/** "N:M": keep N of every M consecutive elements. M ∈ {2, 4, 8, 16}, N ∈ {1, 2, 4}, N < M. */
export type Pattern = "2:4" | "1:2" | "2:8" | "4:8" | "1:4" | "2:16" | "4:16" | `${number}:${number}`;

export interface NM {
  n: number;
  m: number;
}

/** Parses and validates an N:M pattern string. */
export function parsePattern(op: string, pattern: Pattern | NM): NM {
  const [n, m] = typeof pattern === "string" ? pattern.split(":").map(Number) : [pattern.n, pattern.m];
  if (n === undefined || m === undefined || ![2, 4, 8, 16].includes(m) || ![1, 2, 4].includes(n) || n >= m) {
    const s = typeof pattern === "string" ? pattern : `${pattern.n}:${pattern.m}`;
    throw new ShapeError(op, `unsupported sparsity pattern "${s}"; use N:M with M in {2, 4, 8, 16}, N in {1, 2, 4} and N < M ` +
      `(e.g. "2:4", "1:2", "2:8", "4:8")`);
  }
  return { n, m };
}

/** Meta words per row: a row's bit string, one bit per column, rounded up to whole u32 words. */
export const metaWords = (cols: number) => Math.ceil(cols / 32);

/** What the kernels read of a sparse matrix (a Sparse24, or a view rebuilt from saved tensors). */
export interface SparseLike {
  readonly values: Tensor;
  readonly meta: Tensor;
  readonly rows: number;
  readonly cols: number;
  readonly n: number;
  readonly m: number;
}

/**
 * A rows×cols matrix, N:M along cols. `values` [rows, cols·N/M] keeps each group's kept values
 * in increasing column order; `meta` (i32 tensor holding u32 bits) [rows, ceil(cols/32)] holds
 * each group's M-bit keep mask, bit c of a row = column c kept. cols must be a multiple of M;
 * it need not be a multiple of 32 (the last word of a row is then partial, its spare bits 0).
 *
 * The Sparse24 owns both tensors: they are exempt from tidy() on their own, and the Sparse24
 * itself is what tidy() tracks (return it from tidy to keep it; dispose() frees both).
 */
export class Sparse24 implements SparseLike {
  readonly n: number;
  readonly m: number;

  constructor(readonly values: Tensor, readonly meta: Tensor, readonly rows: number, readonly cols: number, pattern: Pattern | NM = "2:4") {
    const { n, m } = parsePattern("Sparse24", pattern);
    this.n = n; this.m = m;
    if (cols % m !== 0) throw new ShapeError("Sparse24", `cols ${cols} is not a multiple of the group size ${m} (pattern ${n}:${m})`);
    const vs = [rows, (cols * n) / m], ms = [rows, metaWords(cols)];
    if (values.shape.join() !== vs.join()) throw new ShapeError("Sparse24", `values has shape ${fmtShape(values.shape)}, a ${rows}×${cols} ${n}:${m} matrix needs ${fmtShape(vs)}`);
    if (meta.shape.join() !== ms.join()) throw new ShapeError("Sparse24", `meta has shape ${fmtShape(meta.shape)}, a ${rows}×${cols} ${n}:${m} matrix needs ${fmtShape(ms)}`);
    if (meta.dtype !== "i32") throw new DTypeError("Sparse24", `meta must be an i32 tensor (u32 bits), got ${meta.dtype}`);
    if (values.dtype === "i32") throw new DTypeError("Sparse24", "values must be f32 or f16, got i32");
    keep(values); keep(meta);
    track(this);
  }

  get shape(): [number, number] {
    return [this.rows, this.cols];
  }

  get pattern(): string {
    return `${this.n}:${this.m}`;
  }

  get dtype(): SpDType {
    return this.values.dtype as SpDType;
  }

  /** Meta u32 words per row. */
  get wordsPerRow(): number {
    return metaWords(this.cols);
  }

  /** Compressed values per row (cols·N/M). */
  get valuesPerRow(): number {
    return (this.cols * this.n) / this.m;
  }

  get isDisposed(): boolean {
    return this.values.isDisposed || this.meta.isDisposed;
  }

  /** Frees values and meta. Safe to call twice. */
  dispose(): void {
    this.values.dispose();
    this.meta.dispose();
  }

  toString(): string {
    return `Sparse24(${this.rows}×${this.cols}, ${this.pattern}, ${this.dtype}${this.isDisposed ? ", disposed" : ""})`;
  }
}

/** Throws the typed error for a weight that cannot be N:M-compressed along its last axis. */
export function checkCompressible(op: string, w: Tensor, nm: NM): void {
  checkLive(op, w);
  if (w.ndim !== 2) throw new ShapeError(op, `needs a 2-D weight [rows, cols], got ${fmtShape(w.shape)}; reshape it first`);
  if (w.dtype === "i32") throw new DTypeError(op, `needs a floating-point weight (f32 or f16), got i32 ${fmtShape(w.shape)}`);
  if (w.dtype === "f16" && !gpu().hasF16()) throw new DTypeError(op, "f16 needs the adapter feature shader-f16");
  const cols = w.shape[1]!;
  if (cols % nm.m !== 0) {
    throw new ShapeError(op, `cols ${cols} of ${fmtShape(w.shape)} is not a multiple of the group size ${nm.m} ` +
      `(pattern ${nm.n}:${nm.m}); pad the reduction dimension to a multiple of ${nm.m}`);
  }
}

export interface CompressOptions {
  /** "N:M", default "2:4". */
  pattern?: Pattern;
}

/**
 * Magnitude-prunes a rows×cols weight N:M along cols (top-N |w| of every M consecutive columns;
 * ties keep the lower index) and compresses it, on the GPU. The mask is `meta`.
 */
export function compress24(w: Tensor, opts: CompressOptions = {}): Sparse24 {
  const nm = parsePattern("compress24", opts.pattern ?? "2:4");
  checkCompressible("compress24", w, nm);
  const [rows, cols] = w.shape as [number, number];
  const ws = metaWords(cols), vpr = (cols * nm.n) / nm.m;
  const values = Tensor.empty([rows, vpr], w.dtype, "compress24");
  const meta = Tensor.empty([rows, ws], "i32", "compress24");
  gpu().launcher.dispatch(pruneKernel(nm.n, nm.m, w.dtype as SpDType),
    [w.buffer("compress24"), values.buffer("compress24"), meta.buffer("compress24")],
    grid1d(rows * ws, SP_WORKGROUP), [rows, cols, ws, vpr]);
  return new Sparse24(values, meta, rows, cols, nm);
}

/** The dense rows×cols matrix (zeros at pruned positions): M ⊙ W. */
export function decompress24(s: Sparse24): Tensor {
  checkLive("decompress24", s.values, s.meta);
  const out = Tensor.empty([s.rows, s.cols], s.values.dtype, "decompress24");
  gpu().launcher.dispatch(decompressKernel(s.n, s.m, s.dtype),
    [s.values.buffer("decompress24"), s.meta.buffer("decompress24"), out.buffer("decompress24")],
    grid1d(s.rows * s.cols, SP_WORKGROUP), [s.rows, s.cols, s.wordsPerRow, s.valuesPerRow]);
  return out;
}
