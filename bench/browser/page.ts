// The browser side of bench/browser/run.ts: runs one bench module, the same file that Node and Deno
// run, in a Chromium page. The bench is named by the page's ?bench= and gets the JSON array ?args=
// as its command line (bench/env.ts reads globalThis.__bench); what it prints goes to the console,
// which the runner relays, and the files it writes are left in __bench.files for the runner to save.
// The page is bundled by esbuild with code splitting, so a bench's dependencies (TF.js and jax-js for
// matmul) load only when it runs.
import type { BrowserBench } from "../env.ts";

/** The benches that run in a browser (matmul-units needs Node's Dawn toggles; bench/torch is Python). */
const BENCHES: Record<string, () => Promise<unknown>> = {
  train: () => import("../train.ts"),
  matmul: () => import("../matmul.ts"),
  sparse: () => import("../sparse.ts"),
  attention: () => import("../attention.ts"),
  reduce: () => import("../reduce.ts"),
  lowrank: () => import("../lowrank.ts"),
  decode: () => import("../decode.ts"),
  // a quality check (f32 against mixed-f16 validation loss), not in bench:quick's set
  precision: () => import("../precision.ts"),
};

const q = new URLSearchParams(location.search);
const name = q.get("bench") ?? "";
const state: BrowserBench = { args: [], files: {}, done: false };
(globalThis as unknown as { __bench: BrowserBench }).__bench = state;
const log = document.getElementById("log");

function fail(e: unknown): void {
  const head = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  const stack = e instanceof Error ? e.stack ?? "" : "";
  state.error = stack.includes(head) ? stack : stack ? `${head}\n${stack}` : head;
  log?.append(`FAILED: ${state.error}\n`);
  state.done = true;
}

try {
  const args: unknown = JSON.parse(q.get("args") ?? "[]");
  if (!Array.isArray(args) || !args.every((a) => typeof a === "string")) throw new TypeError(`?args= must be a JSON array of strings, got ${q.get("args")}`);
  state.args = args;
  const load = BENCHES[name];
  if (!load) throw new Error(`no bench named ${JSON.stringify(name)} in the page; one of ${Object.keys(BENCHES).join(", ")}`);
  log?.append(`running ${name} ${args.join(" ")}\n`);
  // The bench runs at its module's top level and calls exit() (done) at the end.
  load().then(() => { state.done = true; }, fail);
} catch (e) {
  fail(e);
}
