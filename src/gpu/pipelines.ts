// Pipeline cache keyed by the kernel's parameters (Kernel.key), with explicit bind-group
// layouts so the params block can use a dynamic offset, and a bind-group cache keyed by the
// buffers bound (the pool hands the same buffers back every training step).
import type { Kernel } from "../../shaders/kernel.ts";
import { type BufferRange, bufferId } from "./pool.ts";

export interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  module: GPUShaderModule;
  kernel: Kernel;
}

type BindGroupLevel = Map<number | string, BindGroupLevel | GPUBindGroup>;

const GPUShaderStage_COMPUTE = 0x4;
export const PARAM_SLOT_BYTES = 256;

export class PipelineCache {
  private pipelines = new Map<string, CachedPipeline>();
  /** Bind groups by kernel key, then one level per binding (see bindGroup). */
  private bindGroups = new Map<string, BindGroupLevel>();
  private bindGroupCount = 0;

  constructor(private device: GPUDevice) {}

  get(kernel: Kernel): CachedPipeline {
    let p = this.pipelines.get(kernel.key);
    if (!p) {
      const entries: GPUBindGroupLayoutEntry[] = kernel.bindings.map((a, i) => ({
        binding: i,
        visibility: GPUShaderStage_COMPUTE,
        buffer: { type: a === "rw" ? "storage" : "read-only-storage" },
      }));
      if (kernel.params) {
        entries.push({
          binding: kernel.bindings.length,
          visibility: GPUShaderStage_COMPUTE,
          buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: PARAM_SLOT_BYTES },
        });
      }
      const layout = this.device.createBindGroupLayout({ label: kernel.key, entries });
      const module = this.device.createShaderModule({ label: kernel.key, code: kernel.code });
      const pipeline = this.device.createComputePipeline({
        label: kernel.key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: "main" },
      });
      p = { pipeline, layout, module, kernel };
      this.pipelines.set(kernel.key, p);
    }
    return p;
  }

  bindGroup(p: CachedPipeline, buffers: readonly BufferRange[], paramsBuffer: GPUBuffer | null): GPUBindGroup {
    // One map level per binding, keyed by the buffer's small id (a sub-range by id, offset and
    // size): a lookup on every dispatch, so no key string is built for whole buffers.
    if (this.bindGroupCount >= 20000) this.clearBindGroups(); // a bound on what stale entries can hold
    let level = this.bindGroups.get(p.kernel.key);
    if (!level) this.bindGroups.set(p.kernel.key, (level = new Map()));
    for (const b of buffers) {
      const k = b.whole || (b.offset === 0 && b.size === b.buffer.size) ? bufferId(b.buffer) : `${bufferId(b.buffer)}@${b.offset}+${b.size}`;
      let next = level.get(k) as BindGroupLevel | undefined;
      if (!next) level.set(k, (next = new Map()));
      level = next;
    }
    const pk = paramsBuffer ? bufferId(paramsBuffer) : 0;
    let bg = level.get(pk) as GPUBindGroup | undefined;
    if (!bg) {
      const entries: GPUBindGroupEntry[] = buffers.map((b, i) => ({ binding: i, resource: { buffer: b.buffer, offset: b.offset, size: b.size } }));
      if (paramsBuffer) {
        entries.push({ binding: buffers.length, resource: { buffer: paramsBuffer, offset: 0, size: PARAM_SLOT_BYTES } });
      }
      bg = this.device.createBindGroup({ layout: p.layout, entries });
      level.set(pk, bg);
      this.bindGroupCount++;
    }
    return bg;
  }

  /** Drop cached bind groups (buffers were destroyed). */
  clearBindGroups(): void {
    this.bindGroups.clear();
    this.bindGroupCount = 0;
  }

  /** Every compiled module, for getCompilationInfo() checks. */
  all(): CachedPipeline[] {
    return [...this.pipelines.values()];
  }
}
