// Node entry of the shared suite: acquires WebGPU through the npm `webgpu` package (Dawn; SwiftShader
// on machines without a GPU) and turns every suite case into one node:test test. test/node/run.mjs
// bundles this file with esbuild and runs the bundle under Node's built-in test runner.
import { after, test } from "node:test";
import { create, globals } from "webgpu";
import { dawnFlags, init } from "../../src/index.ts";
import { cases, supported } from "../suite/index.ts";

Object.assign(globalThis, globals);
// Keep the GPU object reachable for the whole run: once Dawn's instance is garbage-collected,
// the next readback aborts the process (futex error / SIGSEGV).
// WEBSLOPE_DAWN_FLAGS=matrix exposes f16 and the matrix units on NVIDIA (the matrix-unit cases).
const dawn = create(process.env.WEBSLOPE_DAWN_FLAGS === "matrix" ? dawnFlags({ matrixUnits: true }) : []);
const ctx = await init({ gpu: dawn, matrixUnits: process.env.WEBSLOPE_DAWN_FLAGS === "matrix" });
const features = [...ctx.features].join(", ") || "none";
console.log(`webslope tests on Node ${process.version} + Dawn (npm webgpu), adapter: ${ctx.info.adapterName}; features: ${features}`);
// run.mjs checks that this many cases were reported (a native crash can end the process early).
console.log(`webslope cases: ${cases.length}`);

for (const c of cases) {
  const missing = c.needs.filter((f) => !ctx.features.has(f));
  const skip = supported(c, ctx.features) ? false : missing.length ? `adapter lacks ${missing.join(", ")}` : `runs only in ${c.runtimes.join(", ")}`;
  test(c.name, { skip }, async () => {
    await c.fn();
  });
}

// Dawn keeps the event loop alive while a device exists: release it so the process ends.
after(() => {
  ctx.device.destroy();
  void dawn;
});
