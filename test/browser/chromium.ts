// How Chromium is started headless with WebGPU, shared by the Playwright test config
// (test/browser/playwright.config.ts) and the benchmark runner (bench/browser/run.ts): Debian's
// Chromium (Playwright cannot download browsers here), WebGPU on SwiftShader without a GPU, or on
// the machine's GPU through Vulkan when there is one.
import { existsSync } from "node:fs";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** "swiftshader": the CPU adapter (CI without a GPU); "gpu": the machine's GPU through Vulkan. */
export type BrowserAdapter = "swiftshader" | "gpu";

const COMMON = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export function chromiumArgs(adapter: BrowserAdapter = "swiftshader"): string[] {
  return adapter === "swiftshader"
    ? [...COMMON, "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-webgpu-adapter=swiftshader"]
    : [...COMMON, "--enable-features=Vulkan,VulkanFromANGLE", "--use-angle=vulkan", "--ignore-gpu-blocklist"];
}

/** WEBSLOPE_BROWSER_ADAPTER when set, else "gpu" where the machine shows a GPU device, else "swiftshader". */
export function defaultAdapter(): BrowserAdapter {
  const env = process.env.WEBSLOPE_BROWSER_ADAPTER;
  if (env === "swiftshader" || env === "gpu") return env;
  if (env) throw new Error(`WEBSLOPE_BROWSER_ADAPTER=${env}: use "swiftshader" or "gpu"`);
  return existsSync("/dev/nvidia0") || existsSync("/dev/dri/renderD128") ? "gpu" : "swiftshader";
}
