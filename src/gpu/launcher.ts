// Records dispatches into one command encoder (one compute pass kept open across dispatches)
// and submits only when a readback, an upload's ordering, or a step boundary needs it. Each
// dispatch's params go into a slot of one uniform arena, written once per submit.
import { PARAM_WORDS, type Kernel } from "../../shaders/kernel.ts";
import { ResourceLimitError } from "../errors.ts";
import { PARAM_SLOT_BYTES, PipelineCache } from "./pipelines.ts";
import type { BufferRange } from "./pool.ts";
import type { Recording } from "./profiler.ts";
import { BufferUsage } from "./usage.ts";

const ARENA_SLOTS = 2048;
const MAX_DISPATCHES_PER_SUBMIT = 4096;

export interface LaunchStats {
  submits: number;
  dispatches: number;
  /** Compute passes begun (one per dispatch while a profile records). */
  passes: number;
}

export class Launcher {
  readonly stats: LaunchStats = { submits: 0, dispatches: 0, passes: 0 };
  /** Set by the profiler (src/gpu/profiler.ts) while a profile records; null otherwise. */
  recording: Recording | null = null;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private arena: GPUBuffer;
  private arenaCpu = new Uint32Array((ARENA_SLOTS * PARAM_SLOT_BYTES) / 4);
  private slots = 0;
  private pendingDispatches = 0;
  private toDestroy: GPUBuffer[] = [];
  private maxGroups: number;

  constructor(private device: GPUDevice, readonly pipelines: PipelineCache) {
    this.arena = device.createBuffer({ size: ARENA_SLOTS * PARAM_SLOT_BYTES, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    this.maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
  }

  private enc(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) { this.pass = this.enc().beginComputePass(); this.stats.passes++; }
    return this.pass;
  }

  /** Profiling: a pass of its own for one dispatch, with its timestamp writes where timed. */
  private profiledPass(rec: Recording, kernel: Kernel): GPUComputePassEncoder {
    this.endPass();
    const timestampWrites = rec.add(kernel);
    this.stats.passes++;
    return (this.pass = this.enc().beginComputePass(timestampWrites ? { timestampWrites } : {}));
  }

  private endPass(): void {
    if (this.pass) { this.pass.end(); this.pass = null; }
  }

  /** Records one dispatch. `params` are u32 words (use f32bits / i32 >>> 0 for other types). */
  dispatch(kernel: Kernel, buffers: readonly BufferRange[], groups: readonly number[], params?: ArrayLike<number>): void {
    const [x = 1, y = 1, z = 1] = groups;
    if (x > this.maxGroups || y > this.maxGroups || z > this.maxGroups) {
      throw new ResourceLimitError(kernel.key, `dispatch of ${x}×${y}×${z} workgroups exceeds the adapter's ` +
        `maxComputeWorkgroupsPerDimension (${this.maxGroups}); split the work`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    if (this.slots >= ARENA_SLOTS || this.pendingDispatches >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
    const p = this.pipelines.get(kernel);
    let offset = 0;
    if (kernel.params) {
      const n = params?.length ?? 0;
      if (n > PARAM_WORDS) throw new ResourceLimitError(kernel.key, `${n} param words, at most ${PARAM_WORDS}`);
      offset = this.slots * PARAM_SLOT_BYTES;
      const base = offset / 4;
      for (let i = 0; i < n; i++) this.arenaCpu[base + i] = params![i]!;
      this.slots++;
    }
    const bg = this.pipelines.bindGroup(p, buffers, kernel.params ? this.arena : null);
    const rec = this.recording;
    const pass = rec ? this.profiledPass(rec, kernel) : this.computePass();
    pass.setPipeline(p.pipeline);
    if (kernel.params) pass.setBindGroup(0, bg, [offset]);
    else pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(x, y, z);
    if (rec) this.endPass();
    this.pendingDispatches++;
    this.stats.dispatches++;
  }

  /** Copies bytes into `dst` in encoder order (through a staging buffer), so it never overtakes recorded work. */
  upload(dst: BufferRange, data: ArrayBufferView, dstOffset = 0): void {
    const bytes = Math.ceil(data.byteLength / 4) * 4;
    if (bytes === 0) return;
    const staging = this.device.createBuffer({ size: bytes, usage: BufferUsage.COPY_SRC | BufferUsage.MAP_WRITE, mappedAtCreation: true });
    new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    staging.unmap();
    this.endPass();
    this.enc().copyBufferToBuffer(staging, 0, dst.buffer, dst.offset + dstOffset, bytes);
    this.toDestroy.push(staging);
  }

  /** Records a buffer-to-buffer copy in encoder order (offsets are relative to each range). */
  copy(src: BufferRange | GPUBuffer, srcOffset: number, dst: BufferRange | GPUBuffer, dstOffset: number, bytes: number): void {
    this.endPass();
    const [sb, so] = "offset" in src ? [src.buffer, src.offset] : [src, 0];
    const [db, dof] = "offset" in dst ? [dst.buffer, dst.offset] : [dst, 0];
    this.enc().copyBufferToBuffer(sb, so + srcOffset, db, dof + dstOffset, bytes);
  }

  /** Submits what is recorded (nothing if empty). The one place queue.submit is called. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.slots) this.device.queue.writeBuffer(this.arena, 0, this.arenaCpu, 0, (this.slots * PARAM_SLOT_BYTES) / 4);
    this.device.queue.submit([this.encoder.finish()]);
    this.stats.submits++;
    this.encoder = null;
    this.slots = 0;
    this.pendingDispatches = 0;
    for (const b of this.toDestroy) b.destroy();
    this.toDestroy = [];
  }
}

/** The u32 bit pattern of an f32, for params blocks. */
const f32view = new Float32Array(1);
const u32view = new Uint32Array(f32view.buffer);
export function f32bits(x: number): number {
  f32view[0] = x;
  return u32view[0]!;
}
