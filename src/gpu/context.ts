// The one GPU context: the device, its pool, pipeline cache and launcher, and async readback.
// init() creates it; every op reaches it through gpu(), which also surfaces a lost device or a
// device error as a typed error on the next operation.
import { DeviceLostError, ResourceLimitError, WebGPUError, WebGPUUnavailableError } from "../errors.ts";
import { type DeviceInfo, type InitOptions, requestDevice, runtimeName } from "./device.ts";
import { Launcher } from "./launcher.ts";
import { type MatrixUnits, NO_MATRIX_UNITS, probeMatrixUnits } from "./matrix-units.ts";
import { PipelineCache } from "./pipelines.ts";
import { BufferPool, type BufferRange, type MemoryStats } from "./pool.ts";
import { BufferUsage, MapMode } from "./usage.ts";

/** A plain copy of every numeric limit; the live object where an engine does not enumerate them. */
function snapshotLimits(live: GPUSupportedLimits): GPUSupportedLimits {
  const copy: Record<string, number> = {};
  for (const k in live) {
    const v = (live as unknown as Record<string, unknown>)[k];
    if (typeof v === "number") copy[k] = v;
  }
  return typeof copy.maxBufferSize === "number" && typeof copy.maxStorageBufferBindingSize === "number"
    ? (copy as unknown as GPUSupportedLimits) : live;
}

export class GpuContext {
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly launcher: Launcher;
  lost: { reason: string; message: string } | null = null;
  /** The matrix-unit matmul variants this device runs (set by init(); none when unavailable). */
  matrixUnits: MatrixUnits = NO_MATRIX_UNITS;
  private errors: string[] = [];

  constructor(readonly info: DeviceInfo) {
    this.device = info.device;
    this.pool = new BufferPool(this.device);
    this.pipelines = new PipelineCache(this.device);
    this.pool.onDestroy = () => this.pipelines.clearBindGroups();
    this.launcher = new Launcher(this.device, this.pipelines);
    this.device.lost.then((l) => { this.lost = { reason: l.reason ?? "unknown", message: l.message }; this.pool.close(); });
    const onError = (e: Event) => {
      const err = (e as GPUUncapturedErrorEvent).error;
      if (this.errors.length < 16) this.errors.push(err?.message ?? String(err));
    };
    if (typeof this.device.addEventListener === "function") this.device.addEventListener("uncapturederror", onError);
    else (this.device as unknown as { onuncapturederror: unknown }).onuncapturederror = onError;
  }

  get features(): ReadonlySet<string> {
    return this.info.features;
  }

  /**
   * The device's limits, copied once into a plain object: each read of the live object is a call
   * into the engine (Dawn's Node binding), and ops read limits on every dispatch.
   */
  get limits(): GPUSupportedLimits {
    return (this.limitsCopy ??= snapshotLimits(this.device.limits));
  }
  private limitsCopy: GPUSupportedLimits | null = null;

  hasF16(): boolean {
    return this.info.features.has("shader-f16");
  }

  /** Throws the device's loss or its first uncaptured error, if any happened. */
  check(): void {
    if (this.lost) throw new DeviceLostError(this.lost.reason, this.lost.message);
    if (this.errors.length) {
      const msgs = this.errors.splice(0);
      throw new WebGPUError(`the GPU reported an error from earlier work: ${msgs.join(" | ")}`);
    }
  }

  /** Refuses buffers the adapter cannot bind, before any allocation. */
  checkSize(op: string, bytes: number, shape: readonly number[]): void {
    const maxBind = this.limits.maxStorageBufferBindingSize, maxBuf = this.limits.maxBufferSize;
    const cap = Math.min(maxBind, maxBuf);
    if (bytes > cap) {
      throw new ResourceLimitError(op, `a tensor of shape [${shape.join(", ")}] needs ${bytes} bytes, over this adapter's ` +
        `${bytes > maxBuf ? `maxBufferSize (${maxBuf})` : `maxStorageBufferBindingSize (${maxBind})`}; split it into ` +
        "smaller tensors (e.g. shard the rows) or use a smaller batch");
    }
  }

  /** Reads `bytes` of `src` back. Submits what is recorded first. */
  async read(src: BufferRange, bytes: number, offset = 0): Promise<ArrayBuffer> {
    this.check();
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(size, 4), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    if (size) this.launcher.copy(src, offset, staging, 0, size);
    this.launcher.flush();
    try {
      await staging.mapAsync(MapMode.READ);
    } catch (e) {
      // A device lost mid-flight fails the map before its lost promise settles: give it a moment.
      await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 500))]);
      this.check();
      throw new WebGPUError(`readback failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    this.check();
    return out;
  }

  /** Resolves when all submitted work is done. */
  async sync(): Promise<void> {
    this.launcher.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }
}

let current: GpuContext | null = null;

/** Acquires the WebGPU device. Call once before making tensors; calling again returns the same context. */
export async function init(opts: InitOptions = {}): Promise<GpuContext> {
  if (current && !current.lost) return current;
  const ctx = new GpuContext(await requestDevice(opts));
  if (opts.matrixUnits) ctx.matrixUnits = await probeMatrixUnits(ctx.info);
  current = ctx;
  return current;
}

/** The active context; throws a clear error before init(). */
export function gpu(): GpuContext {
  if (!current) throw new WebGPUUnavailableError(runtimeName(), "webslope is not initialised; call `await init()` first");
  current.check();
  return current;
}

/** The active context or null (no checks). */
export function maybeGpu(): GpuContext | null {
  return current;
}

/** Live / peak bytes and live tensors, from the buffer pool. */
export function memoryStats(): MemoryStats {
  return gpu().pool.stats();
}

/** Starts peak tracking afresh: memoryStats().peakBytes becomes the bytes live now. */
export function resetPeakMemory(): void {
  gpu().pool.resetPeak();
}

/** Submits recorded GPU work now (a step boundary). Never waits. */
export function flush(): void {
  gpu().launcher.flush();
}
