// Runs the shared suite under Node + Dawn (npm `webgpu`): bundles test/node/suite.test.ts with
// esbuild into .test-dist/ (Node 20 cannot load the suite's `.ts` imports itself), runs the bundle
// under Node's built-in test runner (TAP on stdout: "# pass N" / "# fail N"), then prints the plain
// line "Node (Dawn): N passed, M failed, K skipped" and exits non-zero on any failure or crash.
// Without a GPU, Dawn needs SwiftShader: VK_ICD_FILENAMES points at Chromium's ICD when unset.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "node:test";
import { tap } from "node:test/reporters";
import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const outfile = join(root, ".test-dist", "node", "suite.test.mjs");
const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

const t0 = performance.now();
await build({
  entryPoints: [join(root, "test/node/suite.test.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["webgpu"], // native addon (dawn.node): loaded from node_modules at run time
  sourcemap: "inline",
  // package.json "sideEffects" lists only the library's registering modules, but the suite registers its cases
  // by side effect on import: without this, esbuild drops every suite file.
  ignoreAnnotations: true,
  logLevel: "warning",
});

if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
console.log(`# bundled in ${((performance.now() - t0) / 1000).toFixed(2)}s; VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? "(unset)"}`);

let passed = 0, failed = 0, skipped = 0, expected = -1;
const crashes = new Set();
// The bundle is the only file, so Node reports its tests at nesting 0; the file itself shows up as
// a test named by its path when its process fails (a native crash, a top-level error).
const isFileLevel = (d) => d.name === outfile || d.name === d.file;
const errorText = (d) => String(d.details?.error?.cause ?? d.details?.error?.message ?? d.details?.error ?? "unknown error");

// A whole-run limit: a native deadlock in the driver blocks the test process for good, and this is
// what kills it (override with WEBSLOPE_NODE_TIMEOUT_S).
const timeoutS = Number(process.env.WEBSLOPE_NODE_TIMEOUT_S ?? 1800);
const stream = run({ files: [outfile], concurrency: 1, timeout: timeoutS * 1000 });
stream.on("test:pass", (d) => {
  if (d.nesting !== 0 || isFileLevel(d)) return;
  if (d.skip !== undefined && d.skip !== false) skipped++;
  else passed++;
});
stream.on("test:fail", (d) => {
  if (d.nesting !== 0) return;
  if (isFileLevel(d)) crashes.add(errorText(d));
  else failed++;
});
// Node 20 reports a crashed file only through test:complete (no test:fail): catch it there too.
stream.on("test:complete", (d) => {
  if (d.nesting === 0 && isFileLevel(d) && d.details?.error) crashes.add(errorText(d));
});
stream.on("test:stdout", (d) => {
  const m = /webslope cases: (\d+)/.exec(d.message ?? "");
  if (m) expected = Number(m[1]);
});
// Consuming the TAP stream drives the run; when it ends, every event above has been seen.
for await (const chunk of stream.compose(tap)) process.stdout.write(chunk);

const seen = passed + failed + skipped;
// A file-level error that only says "some tests failed" (exit code 1) adds nothing to the count.
const problems = failed && seen >= expected ? [] : [...crashes];
if (expected < 0) problems.push("the suite never started (no case count was printed)");
else if (seen < expected) problems.push(`${expected - seen} of ${expected} cases never reported (the test process ended early)`);
const seconds = ((performance.now() - t0) / 1000).toFixed(1);
console.log(`Node (Dawn): ${passed} passed, ${failed} failed, ${skipped} skipped (${seconds}s)`);
for (const p of problems) console.log(`Node (Dawn): ERROR: ${p}`);
if (failed || problems.length) process.exitCode = 1;
