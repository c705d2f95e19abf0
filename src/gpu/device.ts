// Device acquisition: finds WebGPU in browsers and Deno (navigator.gpu) or takes Node's `webgpu`
// package (init({ gpu })), requests the adapter's real limits and the optional features, and
// turns a missing WebGPU into a WebGPUUnavailableError that says how to enable it.
import { WebGPUUnavailableError } from "../errors.ts";

export interface InitOptions {
  /** A GPU object (Node: `import { create } from "webgpu"; init({ gpu: create([]) })`). */
  gpu?: GPU;
  /** "high-performance" by default. */
  powerPreference?: GPUPowerPreference;
  /** Ask for no optional features (tests of the fallbacks). */
  disableFeatures?: readonly string[];
}

export interface DeviceInfo {
  /** Held for the device's lifetime: Node's Dawn aborts the process if this object is collected. */
  gpu: GPU;
  device: GPUDevice;
  adapterName: string;
  runtime: string;
  features: ReadonlySet<string>;
  limits: GPUSupportedLimits;
}

export const OPTIONAL_FEATURES = ["shader-f16", "timestamp-query", "subgroups"] as const;

const LIMIT_NAMES = [
  "maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ", "maxComputeWorkgroupsPerDimension", "maxStorageBuffersPerShaderStage",
] as const;

/** Which JavaScript runtime this is, for messages. */
export function runtimeName(): string {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Deno === "object") return "Deno";
  const proc = g.process as { versions?: { node?: string } } | undefined;
  if (proc?.versions?.node && typeof g.window === "undefined") return "Node.js";
  return "this browser";
}

function howToEnable(runtime: string): string {
  if (runtime === "Deno") {
    return "Deno exposes navigator.gpu when a Vulkan/Metal/DX12 driver is present; on Linux without a GPU install " +
      "Mesa's lavapipe (apt-get install mesa-vulkan-drivers)";
  }
  if (runtime === "Node.js") {
    return "Node has no navigator.gpu: install the npm package `webgpu` and call " +
      "init({ gpu: create([]) }) with `import { create } from \"webgpu\"` (without a GPU, set " +
      "VK_ICD_FILENAMES to SwiftShader's ICD)";
  }
  return "use Chrome/Edge 113+ or Safari 26+, or start Chromium with --enable-unsafe-webgpu; WebGPU needs a " +
    "secure context (https:// or http://localhost)";
}

export async function requestDevice(opts: InitOptions = {}): Promise<DeviceInfo> {
  const runtime = runtimeName();
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const gpu = opts.gpu ?? nav?.gpu;
  if (!gpu) throw new WebGPUUnavailableError(runtime, `no navigator.gpu; ${howToEnable(runtime)}`);
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  if (!adapter) {
    throw new WebGPUUnavailableError(runtime, `requestAdapter() returned null (no usable GPU or driver); ${howToEnable(runtime)}`);
  }
  const skip = new Set(opts.disableFeatures ?? []);
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f) && !skip.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const info = (adapter as { info?: GPUAdapterInfo }).info;
  const adapterName = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(" ") || "unknown";
  return { gpu, device, adapterName, runtime, features: new Set(device.features as unknown as Iterable<string>), limits: device.limits };
}
