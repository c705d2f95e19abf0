// Size-bucketed GPU buffer pool and the memory accounting behind memoryStats(). Tensors take
// storage from here and give it back on dispose; live bytes count what tensors asked for, so
// the memory claims measured with memoryStats() are the model's bytes, not the pool's rounding.
import { BufferUsage } from "./usage.ts";

/**
 * What a kernel binds: a whole pooled buffer (offset 0, size = buffer.size), or one tensor's
 * 256-byte-aligned slot of a flat arena (optimizer state, parameters and gradients).
 */
export interface BufferRange {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
  /** Set where the range is the whole buffer (offset 0, size = buffer.size): its bind-group key is the buffer's id alone. */
  readonly whole?: boolean;
}

export const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

/** Rounds a byte size up to its bucket: 256-byte steps below 4 KiB, then 8 steps per power of two. */
export function bucketSize(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 8;
  return Math.ceil(b / step) * step;
}

export interface MemoryStats {
  /** Bytes held by live tensors (their exact sizes). */
  liveBytes: number;
  /** Highest liveBytes since init() or resetPeakMemory(). */
  peakBytes: number;
  /** Number of live tensor storages. */
  liveTensors: number;
  /** Bytes of GPU buffers the pool holds, in use or free (bucket-rounded). */
  pooledBytes: number;
}

let nextBufferId = 1;
const bufferIds = new WeakMap<GPUBuffer, number>();
/** A stable small id per buffer, used in bind-group cache keys. */
export function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = nextBufferId++));
  return id;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private live = 0;
  private peak = 0;
  private count = 0;
  private pooled = 0;
  private closed = false;
  /** Called when buffers are destroyed, so caches holding them can drop their entries. */
  onDestroy: () => void = () => {};

  constructor(private device: GPUDevice) {}

  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (!buf) {
      buf = this.device.createBuffer({ size, usage: STORAGE_USAGE });
      this.pooled += size;
    }
    this.live += bytes;
    this.count++;
    if (this.live > this.peak) this.peak = this.live;
    return buf;
  }

  release(buf: GPUBuffer, bytes: number): void {
    this.live -= bytes;
    this.count--;
    if (this.closed) { buf.destroy(); return; }
    const size = buf.size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
  }

  /** Destroys the free buffers (pending GPU work on them finishes first, per WebGPU). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) { this.pooled -= b.size; b.destroy(); }
    this.free.clear();
    this.onDestroy();
  }

  /** The device is lost: free buffers are destroyed, and so is every buffer released from now on. */
  close(): void {
    this.trim();
    this.closed = true;
  }

  stats(): MemoryStats {
    return { liveBytes: this.live, peakBytes: this.peak, liveTensors: this.count, pooledBytes: this.pooled };
  }

  resetPeak(): void {
    this.peak = this.live;
  }
}
