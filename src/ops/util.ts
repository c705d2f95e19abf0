// Shape arithmetic and launch helpers shared by the op front-ends: broadcasting, axis
// normalisation, strides, the 2-D folding of large 1-D grids, and input validation.
import { DTypeError, ShapeError, ValueError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import type { Tensor } from "../tensor.ts";

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]!; }
  return s;
}

export function broadcastShapes(op: string, ...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v === 1) continue;
      if (d !== 1 && d !== v) {
        throw new ShapeError(op, `shapes ${shapes.map(fmtShape).join(" and ")} cannot be broadcast together ` +
          `(axis ${i - rank}: ${d} vs ${v}); sizes must match or be 1`);
      }
      d = v;
    }
    out.push(d);
  }
  return out;
}

/** Strides of `shape` read as if broadcast to `outShape` (0 on broadcast axes). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const st = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : st[i - off]!));
}

export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= Math.max(rank, 1)) {
    throw new ShapeError(op, `axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return a;
}

export function normAxes(op: string, axes: number | number[] | undefined, rank: number): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = (Array.isArray(axes) ? axes : [axes]).map((a) => normAxis(op, a, rank));
  const set = [...new Set(list)].sort((a, b) => a - b);
  if (set.length !== list.length) throw new ShapeError(op, `repeated axis in ${JSON.stringify(axes)}`);
  return set;
}

/** Workgroups for n invocations of `wg` threads, folded into y past the per-dimension limit. */
export function grid1d(n: number, wg: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

export type F = "f32" | "f16";
/** The float kind a kernel is built for (f16 or f32). */
export const fdt = (t: Tensor): F => (t.dtype === "f16" ? "f16" : "f32");
/** One workgroup per row, folded into 2-D past the per-dimension limit. */
export const rowGrid = (rows: number): [number, number] => grid1d(rows, 1);

export function checkLive(op: string, ...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) {
    if (!t) continue;
    if (typeof (t as { buffer?: unknown }).buffer !== "function") {
      throw new ValueError(op, `expected a Tensor, got ${t === null ? "null" : typeof t === "object" ? "an object" : `${typeof t} ${String(t)}`}`);
    }
    t.buffer(op);
  }
}

export function checkFloat(op: string, t: Tensor): void {
  if (t.dtype === "i32") throw new DTypeError(op, `needs a floating-point tensor (f32 or f16), got i32 of shape ${fmtShape(t.shape)}; convert with .to("f32")`);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
