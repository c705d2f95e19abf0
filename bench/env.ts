// What every benchmark needs from its runtime, so one bench file runs in Node (Dawn, through the
// npm `webgpu` package), Deno (wgpu) and Chromium (bench/browser/): the GPU, the command-line
// arguments (node:util parseArgs; in the browser its polyfill @pkgjs/parseargs over the page's
// args), reading a data file, and writing the JSON result (in the browser, handed to the runner).
import { dawnFlags } from "../src/gpu/device.ts";

type G = Record<string, unknown> & {
  Deno?: { args: string[]; version: { deno: string }; writeTextFile(p: string, s: string): Promise<void> };
  process?: { argv: string[]; versions: { node: string }; exit(c: number): void };
};
const G = globalThis as unknown as G;
export const isDeno = typeof G.Deno === "object";
/** In a browser page (bench/browser/page.ts sets globalThis.__bench before importing the bench). */
export const isBrowser = !isDeno && typeof G.window === "object" && typeof G.document === "object";

/** What the browser page and its runner exchange (bench/browser/). */
export interface BrowserBench {
  /** The bench's command-line arguments. */
  args: string[];
  /** What the bench wrote with writeText(), by path; the runner writes them to disk. */
  files: Record<string, string>;
  /** Set by exit() when the bench has finished, or by the page when it failed. */
  done: boolean;
  /** The failure (name, message and stack) when the bench threw. */
  error?: string;
}
const page = (): BrowserBench => ((G.__bench as BrowserBench | undefined) ??= { args: [], files: {}, done: false });

export function argv(): string[] {
  return isDeno ? G.Deno!.args : isBrowser ? page().args : G.process!.argv.slice(2);
}

/** The parseArgs option shape (node:util's). */
export type FlagSpec = Record<string, { type: "string" | "boolean"; default?: string | boolean; short?: string; multiple?: false }>;
type FlagValues<S extends FlagSpec> = { [K in keyof S]: S[K]["type"] extends "boolean" ? boolean : S[K]["default"] extends string ? string : string | undefined };

/** Flags every bench takes. */
export const COMMON_FLAGS = {
  /** Node: create Dawn with the H200 toggles (dawnFlags(): f16 + unsafe APIs, unquantized timestamps). */
  "dawn-toggles": { type: "boolean", default: false },
} as const satisfies FlagSpec;

/** Parses this runtime's arguments with node:util parseArgs (the polyfill in a browser); unknown flags are an error. */
export async function flags<S extends FlagSpec>(spec: S, args: string[] = argv()): Promise<FlagValues<S & typeof COMMON_FLAGS>> {
  type ParseArgs = (c: unknown) => { values: Record<string, unknown> };
  // the polyfill is CommonJS: a bundler may put its exports on the namespace or only under `default`
  const mod = (isBrowser ? await import("@pkgjs/parseargs") : await import("node:util")) as { parseArgs?: ParseArgs; default?: { parseArgs?: ParseArgs } };
  const parseArgs = mod.parseArgs ?? mod.default?.parseArgs;
  if (!parseArgs) throw new Error(`bench/env.ts: no parseArgs in ${isBrowser ? "@pkgjs/parseargs" : "node:util"}`);
  const { values } = parseArgs({
    args, options: { ...COMMON_FLAGS, ...spec }, strict: true, allowPositionals: false,
  });
  return values as FlagValues<S & typeof COMMON_FLAGS>;
}

export async function runtimeGpu(opts: { dawnToggles?: boolean } = {}): Promise<{ gpu: GPU; engine: string; globals: Record<string, unknown> }> {
  if (isDeno || isBrowser) {
    const gpu = (G.navigator as { gpu?: GPU } | undefined)?.gpu;
    if (!gpu) throw new Error(isDeno ? "Deno has no navigator.gpu here (no Vulkan driver?)" : "this browser has no navigator.gpu (start Chromium with --enable-unsafe-webgpu)");
    const ua = String((G.navigator as { userAgent?: string }).userAgent ?? "");
    const engine = isDeno ? `wgpu (Deno ${G.Deno!.version.deno})` : `Dawn (${/Chrom(e|ium)\/[\d.]+/.exec(ua)?.[0] ?? "browser"})`;
    return { gpu, engine, globals: {} };
  }
  const pkg = "webgpu";
  const { create, globals } = (await import(pkg)) as { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  const toggles = opts.dawnToggles ? dawnFlags({ matrixUnits: true, preciseTimestamps: true }) : [];
  return { gpu: create(toggles), engine: `Dawn (Node ${G.process!.versions.node}, npm webgpu${toggles.length ? ", H200 toggles" : ""})`, globals };
}

/** Writes a result file, creating its folder first (a --trace-dir or --json path may name a new one). */
export async function writeText(path: string, text: string): Promise<void> {
  if (isBrowser) { page().files[path] = text; return; }
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  if (isDeno) {
    const D = G.Deno as unknown as { mkdir(p: string, o: { recursive: boolean }): Promise<void>; writeTextFile(p: string, s: string): Promise<void> };
    if (dir) await D.mkdir(dir, { recursive: true });
    return D.writeTextFile(path, text);
  }
  const fs = await import("node:fs/promises");
  if (dir) await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path, text);
}

/** A text file's contents, or null when it is absent (in a browser: fetched from the page's server). */
export async function readText(path: string): Promise<string | null> {
  try {
    if (isDeno) return await (G.Deno as unknown as { readTextFile(p: string): Promise<string> }).readTextFile(path);
    if (isBrowser) {
      const r = await fetch(path);
      return r.ok ? await r.text() : null;
    }
    const fs = await import("node:fs/promises");
    return await fs.readFile(path, "utf8");
  } catch {
    return null;
  }
}

export function exit(): void {
  if (isBrowser) page().done = true;
  else if (!isDeno) G.process!.exit(0);
}
