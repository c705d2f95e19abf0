// Device acquisition: finds WebGPU in browsers and Deno (navigator.gpu) and in Node (init({ gpu }), or
// npm `webgpu` loaded on demand), requests the adapter's real limits and the optional features, and
// turns a missing WebGPU into a WebGPUUnavailableError that says how to enable it (in Node: the ICD path).
import { WebGPUUnavailableError } from "../errors.ts";

export interface InitOptions {
  /**
   * A GPU object. Default: navigator.gpu; in Node, `create([])` of the npm package `webgpu` (Dawn)
   * when it is installed — pass `create(flags)` yourself for Dawn flags (e.g. `dawnFlags()`).
   */
  gpu?: GPU;
  /** "high-performance" by default. */
  powerPreference?: GPUPowerPreference;
  /** Ask for no optional features (tests of the fallbacks). */
  disableFeatures?: readonly string[];
  /**
   * Experimental: use the GPU's matrix units (tensor cores) through WebGPU's
   * `chromium-experimental-subgroup-matrix` where the adapter offers it with f16 — f16 matmuls,
   * and f32 matmuls under setFloat32MatmulPrecision("high" | "medium"). Off by default. In Node,
   * make the GPU with create(dawnFlags()) from npm `webgpu`; in Chrome, start it with
   * --enable-unsafe-webgpu (and --enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia
   * on NVIDIA/Linux).
   */
  matrixUnits?: boolean;
}

/** One matrix shape the adapter's matrix units take (WebGPU's GPUSubgroupMatrixConfig). */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface DeviceInfo {
  /** Held for the device's lifetime: Node's Dawn aborts the process if this object is collected. */
  gpu: GPU;
  device: GPUDevice;
  adapterName: string;
  runtime: string;
  features: ReadonlySet<string>;
  limits: GPUSupportedLimits;
  /** The matrix configurations of `chromium-experimental-subgroup-matrix` (empty without it). */
  subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
  /** Invocations per subgroup (0 when the adapter does not say). */
  subgroupMinSize: number;
  subgroupMaxSize: number;
}

/** The WebGPU feature that exposes matrix units (tensor cores) to WGSL. */
export const SUBGROUP_MATRIX = "chromium-experimental-subgroup-matrix";

export const OPTIONAL_FEATURES = ["shader-f16", "timestamp-query", "subgroups", SUBGROUP_MATRIX] as const;

/**
 * Flags for Node's Dawn (`create(dawnFlags())` from npm `webgpu`). `matrixUnits` turns on Dawn's
 * unsafe APIs (the experimental subgroup-matrix feature) and, on NVIDIA's Vulkan driver, f16 —
 * without that toggle Dawn offers no shader-f16 and only integer matrix configs there.
 * `preciseTimestamps` disables Dawn's timestamp quantization (for profiling).
 */
export function dawnFlags(opts: { matrixUnits?: boolean; preciseTimestamps?: boolean } = {}): string[] {
  const flags: string[] = [];
  if (opts.matrixUnits ?? true) flags.push("enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia");
  if (opts.preciseTimestamps) flags.push("disable-dawn-features=timestamp_quantization");
  return flags;
}

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
    const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.VK_ICD_FILENAMES;
    return "Node's WebGPU is Dawn from the npm package `webgpu` (init() loads it when installed; or pass " +
      "init({ gpu: create([]) }) with `import { create } from \"webgpu\"`). Dawn needs a Vulkan driver: " +
      `VK_ICD_FILENAMES is ${env ? `"${env}"` : "unset"}; point it at your driver's ICD file, e.g. ` +
      "VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/nvidia_icd.json, or without a GPU at SwiftShader's ICD, " +
      "VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (Debian's chromium package; Dawn refuses Debian 12's lavapipe)";
  }
  return "use Chrome/Edge 113+ or Safari 26+, or start Chromium with --enable-unsafe-webgpu; WebGPU needs a " +
    "secure context (https:// or http://localhost)";
}

/**
 * Node has no navigator.gpu: Dawn from the npm package `webgpu`, when the application installed it
 * (it is not a dependency of webslope: browsers and Deno do not need it).
 */
async function nodeGpu(): Promise<GPU> {
  const name = "webgpu"; // a variable, so that bundlers for the browser leave the import alone
  let mod: { create(flags: string[]): GPU };
  try {
    mod = await import(/* @vite-ignore */ /* webpackIgnore: true */ name);
  } catch (e) {
    throw new WebGPUUnavailableError("Node.js", `no navigator.gpu, and the npm package \`webgpu\` could not be loaded ` +
      `(${(e as Error).message}); run \`npm install webgpu\`. ${howToEnable("Node.js")}`);
  }
  return mod.create([]);
}

export async function requestDevice(opts: InitOptions = {}): Promise<DeviceInfo> {
  const runtime = runtimeName();
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const gpu = opts.gpu ?? nav?.gpu ?? (runtime === "Node.js" ? await nodeGpu() : undefined);
  if (!gpu) throw new WebGPUUnavailableError(runtime, `no navigator.gpu; ${howToEnable(runtime)}`);
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  if (!adapter) {
    throw new WebGPUUnavailableError(runtime, `requestAdapter() returned null (no usable GPU or driver); ${howToEnable(runtime)}`);
  }
  const skip = new Set(opts.disableFeatures ?? []);
  if (!opts.matrixUnits) skip.add(SUBGROUP_MATRIX);
  let wanted = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f) && !skip.has(f));
  // Subgroup matrices need subgroups; their f16 configs need shader-f16.
  if (!wanted.includes("subgroups")) wanted = wanted.filter((f) => f !== SUBGROUP_MATRIX);
  const requiredFeatures = wanted as unknown as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const info = (adapter as { info?: GPUAdapterInfo }).info;
  const adapterName = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(" ") || "unknown";
  const features = new Set(device.features as unknown as Iterable<string>);
  const x = info as unknown as { subgroupMatrixConfigs?: Iterable<SubgroupMatrixConfig>; subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  const subgroupMatrixConfigs = features.has(SUBGROUP_MATRIX)
    ? [...(x?.subgroupMatrixConfigs ?? [])].map((c) => ({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K }))
    : [];
  return {
    gpu, device, adapterName, runtime, features, limits: device.limits, subgroupMatrixConfigs,
    subgroupMinSize: x?.subgroupMinSize ?? 0, subgroupMaxSize: x?.subgroupMaxSize ?? 0,
  };
}
