// Host-side validation shared by every public entry point: numbers in their range, integer
// sizes, dtypes from the closed set. Each check throws the typed error that names the op, the
// value and the accepted range, before anything is allocated or changed.
import { DTYPE_BYTES, type DType } from "./dtype.ts";
import { DTypeError, ShapeError, ValueError } from "./errors.ts";

export interface Range {
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Exclusive bounds. */
  above?: number;
  below?: number;
  integer?: boolean;
}

function describe(r: Range): string {
  const parts: string[] = [];
  if (r.min !== undefined) parts.push(`≥ ${r.min}`);
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.max !== undefined) parts.push(`≤ ${r.max}`);
  if (r.below !== undefined) parts.push(`< ${r.below}`);
  return `${r.integer ? "an integer" : "a finite number"}${parts.length ? " " + parts.join(" and ") : ""}`;
}

const show = (v: unknown) => (typeof v === "number" ? String(v) : typeof v === "string" ? JSON.stringify(v) : String(v));

/** `v` is a finite number (an integer when asked) within `r`; returns it. */
export function checkNumber(op: string, name: string, v: unknown, r: Range = {}): number {
  const ok = typeof v === "number" && Number.isFinite(v) && (!r.integer || Number.isSafeInteger(v)) &&
    (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max) &&
    (r.above === undefined || v > r.above) && (r.below === undefined || v < r.below);
  if (!ok) throw new ValueError(op, `${name} must be ${describe(r)}, got ${show(v)}`);
  return v as number;
}

/** An optional number: undefined passes through. */
export function checkOptional(op: string, name: string, v: unknown, r: Range = {}): number | undefined {
  return v === undefined ? undefined : checkNumber(op, name, v, r);
}

export const DTYPES = Object.keys(DTYPE_BYTES) as DType[];

/** `d` is one of webslope's dtypes. */
export function checkDType(op: string, d: unknown): DType {
  if (typeof d !== "string" || !(DTYPES as string[]).includes(d)) {
    throw new DTypeError(op, `dtype ${show(d)} is not one of ${DTYPES.map((x) => `"${x}"`).join(", ")}; use "f32" (f64 has no WebGPU support)`);
  }
  return d as DType;
}

/** A shape: an array of non-negative safe integers. */
export function checkShape(op: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== "number" || !Number.isSafeInteger(d) || d < 0)) {
    throw new ShapeError(op, `shape ${JSON.stringify(shape)} must be a list of non-negative integers`);
  }
  return shape as number[];
}

/** An integer value that fits an i32 element. */
export function checkI32(op: string, name: string, v: number): number {
  return checkNumber(op, name, v, { integer: true, min: -(2 ** 31), max: 2 ** 31 - 1 });
}
