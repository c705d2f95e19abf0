// `npm run bench:quick`: the `--quick` set of the benchmarks in all three engines, one after
// another — Node (Dawn, the esbuild bundles in .bench-dist/), Deno (wgpu, the .ts sources) and
// Chromium (bench/browser/run.ts) — each bench's output streamed as it runs, then every table again
// in one summary. Speed is never a failure: the exit status is 1 only when a bench crashed (a
// non-zero exit, a signal, or no finish within the time limit). CI runs it as the last step of
// `npm test`. Without a GPU (no /dev/nvidia0 or /dev/dri/renderD128), Node's Dawn is pointed at
// Chromium's SwiftShader ICD, as the Node test runner does; Deno finds lavapipe by itself.
//
//   npm run bench:quick [-- --engines node,deno,chromium] [--benches train,matmul,...] [--timeout S]
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { defaultAdapter } from "../test/browser/chromium.ts";

/** The repository root: this file runs bundled as .bench-dist/quick.mjs. */
const root = fileURLToPath(new URL("..", import.meta.url));
const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";
const ENGINES = ["node", "deno", "chromium"] as const;
type Engine = (typeof ENGINES)[number];
/** Every bench with a --quick that runs in all three engines (matmul-units is Node-only, for the H200). */
const BENCHES = ["train", "matmul", "sparse", "attention", "reduce", "lowrank", "decode"];

const { values: f } = parseArgs({
  options: {
    engines: { type: "string", default: ENGINES.join(",") },
    benches: { type: "string", default: BENCHES.join(",") },
    timeout: { type: "string", default: process.env.WEBSLOPE_BENCH_TIMEOUT_S ?? "600" },
  },
  strict: true,
});
const engines = f.engines.split(",").filter(Boolean) as Engine[];
for (const e of engines) if (!ENGINES.includes(e)) throw new Error(`--engines: unknown engine ${e}; of ${ENGINES.join(", ")}`);
const benches = f.benches.split(",").filter(Boolean);
for (const b of benches) if (!BENCHES.includes(b)) throw new Error(`--benches: unknown bench ${b}; of ${BENCHES.join(", ")}`);
const timeoutS = Number(f.timeout);
if (!(timeoutS > 0)) throw new Error(`--timeout ${f.timeout}: a number of seconds`);

const bin = (name: string) => resolve(root, "node_modules/.bin", name);
const env = { ...process.env };
if (!env.VK_ICD_FILENAMES && defaultAdapter() === "swiftshader" && existsSync(SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;

function command(engine: Engine, bench: string): { cmd: string; args: string[]; env: NodeJS.ProcessEnv } {
  if (engine === "node") return { cmd: process.execPath, args: [resolve(root, ".bench-dist", `${bench}.mjs`), "--quick"], env };
  // Deno finds lavapipe itself; Node's ICD choice must not reach it
  if (engine === "deno") return { cmd: bin("deno"), args: ["run", "-A", `bench/${bench}.ts`, "--quick"], env: process.env };
  return { cmd: process.execPath, args: [resolve(root, ".bench-dist/browser-run.mjs"), `--timeout=${timeoutS}`, bench, "--quick"], env: process.env };
}

interface Run { engine: Engine; bench: string; ok: boolean; why: string; seconds: number; tables: string[] }

/** Runs one bench, streaming its output; resolves with its tables (runs of lines that start with "|"). */
function runOne(engine: Engine, bench: string): Promise<Run> {
  const { cmd, args, env } = command(engine, bench);
  console.log(`\n=== ${engine}: ${bench} --quick`);
  const t0 = performance.now();
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d; process.stdout.write(d); });
    child.stderr.on("data", (d: Buffer) => process.stderr.write(d));
    let timedOut = false;
    // the Chromium runner stops at the same limit itself and closes its browser: give it time to
    const limitS = engine === "chromium" ? timeoutS + 60 : timeoutS;
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, limitS * 1000);
    const finish = (why: string) => {
      clearTimeout(timer);
      const tables: string[] = [];
      let cur: string[] = [];
      for (const line of out.split("\n").concat("")) {
        if (line.startsWith("|")) cur.push(line);
        else if (cur.length) { tables.push(cur.join("\n")); cur = []; }
      }
      done({ engine, bench, ok: why === "", why, seconds: (performance.now() - t0) / 1000, tables });
    };
    child.on("error", (e) => finish(`could not start ${cmd}: ${e.message}`));
    child.on("close", (code, signal) => {
      finish(timedOut ? `no finish within ${limitS} s` : code === 0 ? "" : signal ? `killed by ${signal}` : `exit status ${code}`);
    });
  });
}

const t0 = performance.now();
const runs: Run[] = [];
for (const engine of engines) for (const bench of benches) runs.push(await runOne(engine, bench));

console.log(`\n## The quick benchmarks' tables (software adapters in CI: the figures say the paths run, not how fast)`);
for (const r of runs) {
  console.log(`\n### ${r.engine}: ${r.bench} (${r.seconds.toFixed(1)} s)${r.ok ? "" : ` — CRASHED: ${r.why}`}`);
  for (const t of r.tables) console.log(`\n${t}`);
}
const crashed = runs.filter((r) => !r.ok);
console.log(`\nbench:quick: ${runs.length} runs in ${((performance.now() - t0) / 1000).toFixed(0)} s, ${runs.length - crashed.length} finished, ${crashed.length} crashed` +
  (crashed.length ? ` (${crashed.map((r) => `${r.engine} ${r.bench}: ${r.why}`).join("; ")})` : ""));
process.exitCode = crashed.length ? 1 : 0;
