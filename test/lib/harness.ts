// A runtime-neutral test registry: suite files call test(); the Deno, Node and Chromium runners
// import the suite, call init() their own way, and run each case under their own test runner.
// A case that needs an optional adapter feature says so in its name and is gated on it.

export type Runtime = "deno" | "node" | "browser";

/** The runtime this suite runs in. */
export function currentRuntime(): Runtime {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Deno === "object") return "deno";
  if (typeof g.window === "undefined" && (g.process as { versions?: { node?: string } } | undefined)?.versions?.node) return "node";
  return "browser";
}

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
  /** The runtimes the case runs in (all when empty): long loops run in Deno only, for CI time. */
  runtimes: Runtime[];
}

export const cases: TestCase[] = [];

export interface TestOptions {
  needs?: Feature[];
  absent?: Feature[];
  /** Also run in the browser runner (default true). */
  browser?: boolean;
  /** Run only in these runtimes (its name says so), e.g. ["deno"] for long loops. */
  runtimes?: Runtime[];
}

export function test(name: string, fn: () => Promise<void> | void, opts: TestOptions = {}): void {
  const needs = opts.needs ?? [], absent = opts.absent ?? [];
  let label = needs.length ? `${name} [needs ${needs.join(", ")}]` : name;
  if (absent.length) label += ` [only without ${absent.join(", ")}]`;
  const runtimes = opts.runtimes ?? [];
  if (runtimes.length && !/only\)?$/.test(name)) label += ` [${runtimes.map((r) => r[0]!.toUpperCase() + r.slice(1)).join(", ")} only]`;
  if (cases.some((c) => c.name === label)) throw new Error(`duplicate test name: ${label}`);
  cases.push({ name: label, fn, needs, absent, browser: (opts.browser ?? true) && (!runtimes.length || runtimes.includes("browser")), runtimes });
}

/** Whether the adapter has what a case needs, and the case runs in this runtime. */
export function supported(c: TestCase, features: ReadonlySet<string>): boolean {
  if (c.runtimes.length && !c.runtimes.includes(currentRuntime())) return false;
  return c.needs.every((f) => features.has(f)) && c.absent.every((f) => !features.has(f));
}
