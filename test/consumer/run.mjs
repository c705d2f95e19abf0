// The consumer test: webslope as a user meets it. Builds the package (`npm run build`), packs it
// (`npm pack`), installs the tarball with npm `webgpu` into a fresh temporary project (strict, no
// skipLibCheck, no lib or types of its own: test/consumer/tsconfig.json), type-checks it with tsc,
// and runs the README's usage example — the block after the marker in README.md, as written, with
// `steps` set to 3 — in Node (Dawn; SwiftShader when VK_ICD_FILENAMES is unset) and in Deno
// (its WebGPU; lavapipe without a GPU). Then Node with no Vulkan driver must fail with a
// WebGPUUnavailableError that names the ICD path (test/consumer/no-driver.ts).
// Prints "Consumer: N passed, M failed" and exits non-zero on any failure. The temporary project
// is removed when everything passed and kept (its path printed) otherwise; WEBSLOPE_CONSUMER_KEEP=1
// keeps it always.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const here = join(root, "test/consumer");
const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";
const MARKER = "<!-- test/consumer/run.mjs runs the next block -->";
const STEPS_LINE = "const steps = 1000;";
const t0 = performance.now();
const results = [];
const since = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;

/** Runs one check; a failure is recorded with its message and the next check still runs. */
function check(name, fn) {
  try {
    const detail = fn();
    results.push({ name, ok: true });
    console.log(`ok - ${name} (${since()})${detail ? `\n  ${detail}` : ""}`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`not ok - ${name} (${since()})\n  ${String(e.message ?? e).replaceAll("\n", "\n  ")}`);
  }
}

/** Runs a command; throws with its output when it fails. Returns stdout. */
function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: 300_000, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status ?? r.signal}\n${(r.stdout ?? "").slice(-4000)}${(r.stderr ?? "").slice(-4000)}`);
  }
  return r.stdout;
}

/** The README's usage example: the ```ts block after MARKER, with `steps` set to 3. */
function readmeExample() {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const at = readme.indexOf(MARKER);
  if (at < 0) throw new Error(`README.md has no "${MARKER}"`);
  const m = /^```ts\n([\s\S]*?)^```$/m.exec(readme.slice(at + MARKER.length));
  if (!m) throw new Error("README.md: no ```ts block after the marker");
  const code = m[1];
  if (code.split(STEPS_LINE).length !== 2) throw new Error(`README.md's example must contain "${STEPS_LINE}" once (the test sets it to 3)`);
  return code.replace(STEPS_LINE, "const steps = 3;");
}

const dir = mkdtempSync(join(tmpdir(), "webslope-consumer-"));
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const nodeEnv = { ...process.env };
if (!nodeEnv.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) nodeEnv.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
console.log(`# consumer project in ${dir}; Node's VK_ICD_FILENAMES=${nodeEnv.VK_ICD_FILENAMES ?? "(unset)"}`);

let tarball = null;
check("npm run build && npm pack", () => {
  sh("npm", ["run", "-s", "build"], { cwd: root });
  const out = sh("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: root }).trim().split("\n").pop();
  tarball = join(dir, out);
  if (!existsSync(tarball)) throw new Error(`npm pack wrote no ${tarball}`);
  return out;
});

check("npm install of the tarball (with npm webgpu) into a fresh project", () => {
  if (!tarball) throw new Error("no tarball");
  writeFileSync(join(dir, "package.json"), JSON.stringify({
    name: "webslope-consumer", private: true, type: "module",
    dependencies: { webslope: `file:./${tarball.split("/").pop()}`, webgpu: pkg.devDependencies.webgpu },
  }, null, 2));
  // --prefer-offline: after `npm ci` the cache holds every dependency; the network is the fallback.
  sh("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], { cwd: dir });
  const got = readdirSync(join(dir, "node_modules")).join(" ");
  for (const want of ["webslope", "wgsl-preprocessor", "webgpu", "@webgpu"]) {
    if (!existsSync(join(dir, "node_modules", want))) throw new Error(`node_modules lacks ${want} (has ${got})`);
  }
  return `node_modules: ${got}`;
});

check("tsc: the README example and no-driver.ts type-check (strict, no skipLibCheck, default lib)", () => {
  copyFileSync(join(here, "tsconfig.json"), join(dir, "tsconfig.json"));
  copyFileSync(join(here, "no-driver.ts"), join(dir, "no-driver.ts"));
  writeFileSync(join(dir, "main.ts"), readmeExample());
  const tsconfig = readFileSync(join(dir, "tsconfig.json"), "utf8");
  if (/skipLibCheck|"lib"|"types"/.test(tsconfig.replace(/\/\/.*$/gm, ""))) throw new Error("the consumer tsconfig must not set skipLibCheck, lib or types");
  sh(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", dir], { cwd: dir });
  return readdirSync(join(dir, "build")).join(" ");
});

/** The example prints step 0's loss, then the 40 generated characters. */
function checkExampleOutput(out) {
  const m = /^0 (\S+)$/m.exec(out);
  if (!m || !Number.isFinite(Number(m[1])) || Number(m[1]) <= 0) throw new Error(`no finite loss for step 0 in:\n${out}`);
  const generated = out.slice(m.index + m[0].length + 1).replace(/\n$/, "");
  if (generated.length !== 40) throw new Error(`expected 40 generated characters after the loss, got ${JSON.stringify(generated)} in:\n${out}`);
  return out.trim().replaceAll("\n", " | ");
}

check("Node (npm webgpu): the README example trains 3 steps and generates", () =>
  checkExampleOutput(sh(process.execPath, ["build/main.js"], { cwd: dir, env: nodeEnv })));

check("Deno: the README example trains 3 steps and generates", () => {
  const deno = join(root, "node_modules/.bin/deno");
  return checkExampleOutput(sh(deno, ["run", "-A", "--node-modules-dir=manual", "main.ts"], { cwd: dir, env: { ...process.env, NO_COLOR: "1" } }));
});

check("Node without a Vulkan driver: WebGPUUnavailableError names the ICD path", () =>
  sh(process.execPath, ["build/no-driver.js"], { cwd: dir, env: { ...process.env, VK_ICD_FILENAMES: join(dir, "no-such-icd.json") } }).trim());

const failed = results.filter((r) => !r.ok).length;
console.log(`Consumer: ${results.length - failed} passed, ${failed} failed (${since()})`);
if (failed || process.env.WEBSLOPE_CONSUMER_KEEP) console.log(`# kept ${dir}`);
else rmSync(dir, { recursive: true, force: true });
if (failed) process.exitCode = 1;
