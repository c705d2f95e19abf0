// Run by test/consumer/run.mjs in Node with VK_ICD_FILENAMES pointing at a missing file (no Vulkan
// driver): init() must fail with a WebGPUUnavailableError that names the ICD path to set.
import { init, WebGPUUnavailableError } from "webslope";

let error: unknown = null;
try {
  await init();
} catch (e) {
  error = e;
}
if (!(error instanceof WebGPUUnavailableError)) throw new Error(`expected a WebGPUUnavailableError, got ${String(error)}`);
for (const want of ["VK_ICD_FILENAMES", "/usr/lib/chromium/vk_swiftshader_icd.json", "Node.js"]) {
  if (!error.message.includes(want)) throw new Error(`the error does not name ${want}: ${error.message}`);
}
console.log(`no driver: ${error.name}: ${error.message}`);
