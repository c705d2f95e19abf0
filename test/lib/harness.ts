// A runtime-neutral test registry: suite files call test(); the Deno, Node and Chromium runners
// import the suite, call init() their own way, and run each case under their own test runner.
// A case that needs an optional adapter feature says so in its name and is gated on it.

export type Feature = "shader-f16" | "subgroups" | "timestamp-query" | "chromium-experimental-subgroup-matrix";

export interface TestCase {
  name: string;
  fn: () => Promise<void> | void;
  /** Adapter features the case needs; runners skip (and name) it where they are missing. */
  needs: Feature[];
  /** Adapter features whose absence the case tests (it runs only where they are missing). */
  absent: Feature[];
  /** Part of the representative subset run in headless Chromium. */
  browser: boolean;
}

export const cases: TestCase[] = [];

export interface TestOptions {
  needs?: Feature[];
  absent?: Feature[];
  /** Also run in the browser runner (default true). */
  browser?: boolean;
}

export function test(name: string, fn: () => Promise<void> | void, opts: TestOptions = {}): void {
  const needs = opts.needs ?? [], absent = opts.absent ?? [];
  let label = needs.length ? `${name} [needs ${needs.join(", ")}]` : name;
  if (absent.length) label += ` [only without ${absent.join(", ")}]`;
  if (cases.some((c) => c.name === label)) throw new Error(`duplicate test name: ${label}`);
  cases.push({ name: label, fn, needs, absent, browser: opts.browser ?? true });
}

/** Whether the adapter has what a case needs. */
export function supported(c: TestCase, features: ReadonlySet<string>): boolean {
  return c.needs.every((f) => features.has(f)) && c.absent.every((f) => !features.has(f));
}
