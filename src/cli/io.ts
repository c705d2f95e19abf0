// What the CLI commands share: where they write (so tests run them in-process), flag parsing with
// node:util's parseArgs that turns every bad flag into a UsageError (exit code 2 with the usage).
import { parseArgs, type ParseArgsConfig } from "node:util";

export interface CliIO {
  /** Results (generated text). */
  out(s: string): void;
  /** Progress and messages. */
  err(s: string): void;
  /** Whether err is a terminal (draws the progress bar). */
  tty: boolean;
}

export const processIO = (): CliIO => ({
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  tty: !!process.stderr.isTTY,
});

/** A bad command line: the command prints it with its usage and exits with code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export function parseFlags<O extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** A flag's value as a number in [min, max] (integer when asked). */
export function num(flag: string, v: string | undefined, { min = -Infinity, max = Infinity, int = false } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
    throw new UsageError(`--${flag} must be ${int ? "an integer" : "a number"}${min > -Infinity ? ` ≥ ${min}` : ""}${max < Infinity ? ` ≤ ${max}` : ""}, got "${v}"`);
  }
  return n;
}
