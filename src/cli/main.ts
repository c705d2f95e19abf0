// The CLI's entry point on Node and Deno: `main.ts train ...` / `main.ts generate ...`. Acquires
// WebGPU the runtime's way (Deno: navigator.gpu; Node: npm `webgpu`, Dawn) and exits with the
// command's code. Node runs it as the esbuild bundle of `npm run train` / `npm run generate`;
// Deno runs this file directly: deno run -A src/cli/main.ts train --config tiny ...
import { init } from "../gpu/context.ts";
import { dawnFlags } from "../gpu/device.ts";
import "../ops/register.ts";
import { generate, GENERATE_USAGE } from "./generate.ts";
import { processIO } from "./io.ts";
import { train, TRAIN_USAGE } from "./train.ts";

async function gpuForNode(matrixUnits: boolean): Promise<unknown> {
  const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";
  const { existsSync } = await import("node:fs");
  // Without a GPU driver Dawn needs SwiftShader; Debian's chromium ships its ICD here.
  if (!process.env.VK_ICD_FILENAMES && !existsSync("/dev/nvidia0") && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  const webgpu = await import("webgpu");
  Object.assign(globalThis, webgpu.globals);
  return webgpu.create(matrixUnits ? dawnFlags({ matrixUnits: true }) : []);
}

/** Mixed precision wants the matrix units (Dawn's toggles, the probe); a resumed run may be mixed. */
function wantsMatrixUnits(argv: string[]): boolean {
  const i = argv.findIndex((a) => a === "--precision" || a.startsWith("--precision="));
  const p = i < 0 ? undefined : argv[i]!.includes("=") ? argv[i]!.split("=")[1] : argv[i + 1];
  return p === "mixed-f16" || (p === undefined && argv.includes("--resume"));
}

const [command, ...rest] = process.argv.slice(2);
const io = processIO();
let code: number;
if (command !== "train" && command !== "generate") {
  io.err(`usage: main.ts train|generate [flags]\n\n${TRAIN_USAGE}\n${GENERATE_USAGE}`);
  code = 2;
} else if (rest.includes("--help")) {
  code = await (command === "train" ? train : generate)(rest, io);
} else {
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
  const matrixUnits = command === "train" && wantsMatrixUnits(rest);
  const gpu = isDeno ? undefined : await gpuForNode(matrixUnits);
  try {
    const ctx = await init({ ...(gpu ? { gpu: gpu as GPU } : {}), matrixUnits });
    io.err(`webslope on ${isDeno ? "Deno" : `Node ${process.version}`}, adapter ${ctx.info.adapterName}\n`);
    code = await (command === "train" ? train : generate)(rest, io);
    ctx.device.destroy();
  } catch (e) {
    io.err(`error: ${(e as Error).message}\n`);
    code = 1;
  }
  void gpu;
}
process.exit(code);
