// Float64 masked-dense simulation of SLoPe's sparse core: N:M magnitude masks (ties keep the
// lower index), the double-pruned mask, and CPU decoders of the compressed (values, meta)
// layout, so GPU results are checked against an independent reading of the format.
import { type Arr, arr } from "./cpu.ts";

/** Keep mask (1 = kept) of top-N |a| in each group of M consecutive elements along the last axis. */
export function nmMask(a: Arr, n: number, m: number): Uint8Array {
  const cols = a.shape.at(-1)!, rows = a.data.length / cols;
  const mask = new Uint8Array(a.data.length);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols / m; g++) {
      const idx = Array.from({ length: m }, (_, j) => r * cols + g * m + j);
      idx.sort((x, y) => Math.abs(a.data[y]!) - Math.abs(a.data[x]!) || x - y);
      for (const i of idx.slice(0, n)) mask[i] = 1;
    }
  }
  return mask;
}

export function applyMask(a: Arr, mask: Uint8Array): Arr {
  return arr(a.shape, a.data.map((v, i) => (mask[i] ? v : 0)));
}

export function transpose2d(a: Arr): Arr {
  const [r, c] = a.shape as [number, number];
  const out = arr([c, r]);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.data[j * r + i] = a.data[i * c + j]!;
  return out;
}

function transposeMask(mask: Uint8Array, r: number, c: number): Uint8Array {
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = mask[i * c + j]!;
  return out;
}

/**
 * SLoPe's masks for W [dOut, dIn]: mR (row-wise N:M along dIn) and mRC (mR ∩ the column-wise
 * top-N of W_R = mR⊙W along dOut), both dOut×dIn, plus mRCt = mRC transposed (dIn×dOut).
 */
export function slopeMasks(w: Arr, n: number, m: number): { mR: Uint8Array; mRC: Uint8Array; mRCt: Uint8Array } {
  const [dOut, dIn] = w.shape as [number, number];
  const mR = nmMask(w, n, m);
  const wRt = transpose2d(applyMask(w, mR));
  const colTop = transposeMask(nmMask(wRt, n, m), dIn, dOut);
  const mRC = mR.map((v, i) => v & colTop[i]!);
  return { mR, mRC, mRCt: transposeMask(mRC, dOut, dIn) };
}

/** Keep mask (rows × cols) from meta words read back from the GPU (i32 holding u32 bits). */
export function decodeMeta(meta: ArrayLike<number>, rows: number, cols: number): Uint8Array {
  const ws = Math.ceil(cols / 32);
  const mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) mask[r * cols + c] = (meta[r * ws + (c >> 5)]! >>> (c & 31)) & 1;
  }
  return mask;
}

/** Bits set in meta past cols (must be none). */
export function spareMetaBits(meta: ArrayLike<number>, rows: number, cols: number): number {
  const ws = Math.ceil(cols / 32);
  let count = 0;
  for (let r = 0; r < rows; r++) {
    for (let b = cols; b < ws * 32; b++) count += (meta[r * ws + (b >> 5)]! >>> (b & 31)) & 1;
  }
  return count;
}

/** Kept count per group of M along each row of a mask. */
export function groupCounts(mask: Uint8Array, rows: number, cols: number, m: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols / m; g++) {
      let k = 0;
      for (let j = 0; j < m; j++) k += mask[r * cols + g * m + j]!;
      out.push(k);
    }
  }
  return out;
}

/**
 * Dense matrix from compressed values + decoded mask: group g's kept entries, in increasing
 * column order, take values [g·N, g·N + count); the remaining slots of the group must hold 0
 * (returned as `badSlots`, the number that do not).
 */
export function expand(values: ArrayLike<number>, mask: Uint8Array, rows: number, cols: number, n: number, m: number): { dense: Arr; badSlots: number } {
  const dense = arr([rows, cols]);
  const vpr = (cols * n) / m;
  let badSlots = 0;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols / m; g++) {
      let t = 0;
      for (let j = 0; j < m; j++) {
        const c = g * m + j;
        if (mask[r * cols + c]) dense.data[r * cols + c] = values[r * vpr + g * n + t++]!;
      }
      for (; t < n; t++) if (values[r * vpr + g * n + t] !== 0) badSlots++;
    }
  }
  return { dense, badSlots };
}

/** Compressed values (rows × cols·N/M) of a dense matrix at a mask with ≤ N kept per group. */
export function gather(a: Arr, mask: Uint8Array, n: number, m: number): Float64Array {
  const [rows, cols] = a.shape as [number, number];
  const vpr = (cols * n) / m;
  const out = new Float64Array(rows * vpr);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols / m; g++) {
      let t = 0;
      for (let j = 0; j < m; j++) if (mask[r * cols + g * m + j]) out[r * vpr + g * n + t++] = a.data[r * cols + g * m + j]!;
    }
  }
  return out;
}

/**
 * Keep mask of the vector-wise 2:4 pattern for W [rows, cols]: each block of `block` rows keeps,
 * per group of 4 columns, the 2 columns of largest Σ|W| over the block's rows (summed in f32 in
 * row order, as the GPU does, so ties rank alike; ties keep the lower index).
 */
export function vectorMask(w: Arr, block: number): Uint8Array {
  const [rows, cols] = w.shape as [number, number];
  const mask = new Uint8Array(rows * cols);
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(r0 + block, rows);
    for (let g = 0; g < cols / 4; g++) {
      const sums = [0, 0, 0, 0];
      for (let r = r0; r < r1; r++) for (let j = 0; j < 4; j++) sums[j] = Math.fround(sums[j]! + Math.abs(w.data[r * cols + 4 * g + j]!));
      const order = [0, 1, 2, 3].sort((x, y) => sums[y]! - sums[x]! || x - y);
      for (let r = r0; r < r1; r++) for (const j of order.slice(0, 2)) mask[r * cols + 4 * g + j] = 1;
    }
  }
  return mask;
}
