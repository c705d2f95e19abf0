// Runs the shared suite under `deno test`, on Deno's WebGPU (wgpu; lavapipe on machines without a GPU).
import { init } from "../src/index.ts";
import { cases, supported } from "./suite/index.ts";

const ctx = await init();
console.log(`webslope tests on Deno ${Deno.version.deno}, adapter: ${ctx.info.adapterName}; features: ${[...ctx.features].join(", ") || "none"}`);
for (const c of cases) {
  Deno.test({ name: c.name, ignore: !supported(c, ctx.features), sanitizeOps: false, sanitizeResources: false, fn: c.fn });
}
