// Tensor: a shape, a dtype and reference-counted GPU storage from the pool, plus the autograd
// fields (requiresGrad, grad, gradFn). Data stays on the GPU; toArray()/item() read it back
// asynchronously. Methods are thin PyTorch-named forwards to the op front-ends in src/ops/.
import { GraphNode, runBackward } from "./autograd/graph.ts";
import type { Activation } from "./autograd/ops.ts";
import { DTYPE_BYTES, type DType, fromHalfBits } from "./dtype.ts";
import { AutogradError, DeviceLostError, DisposedTensorError } from "./errors.ts";
import { type GpuContext, gpu, maybeGpu } from "./gpu/context.ts";
import type { BufferRange } from "./gpu/pool.ts";
import { isGradEnabled, keep, track } from "./scope.ts";
import { backwardRules } from "./ops/grads.ts";
import * as ew from "./ops/elementwise.ts";
import * as red from "./ops/reduce.ts";
import * as lay from "./ops/layout.ts";
import { matmul, type MatmulOptions } from "./ops/matmul.ts";
import { logSoftmax, softmax, type SoftmaxOptions } from "./ops/nn.ts";

/**
 * GPU memory shared by a tensor and its aliases (reshape views, saved copies); freed at zero refs.
 * A view storage is a byte range of a parent's buffer (a slot of an optimizer's flat arena): it
 * holds a reference on the parent, which returns its buffer to the pool when the last view goes.
 */
export class Storage {
  refs = 1;
  /** The context whose pool the buffer came from: a buffer of a lost device goes back there, never to a new pool. */
  readonly ctx: GpuContext | null = maybeGpu();
  /** What kernels bind (one object per storage, so aliases compare equal). */
  readonly range: BufferRange;
  constructor(readonly buffer: GPUBuffer, readonly bytes: number, readonly offset = 0, readonly parent: Storage | null = null) {
    this.range = { buffer, offset, size: parent ? Math.ceil(bytes / 4) * 4 : buffer.size };
  }
  /** A storage of `bytes` at byte `offset` (a multiple of the adapter's minStorageBufferOffsetAlignment) of this one. */
  view(offset: number, bytes: number): Storage {
    return new Storage(this.buffer, bytes, this.offset + offset, this.retain());
  }
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs !== 0) return;
    if (this.parent) this.parent.release();
    else this.ctx?.pool.release(this.buffer, this.bytes);
  }
}

export type TensorLike = Tensor | number;

let nextTensorId = 1;

const registry = typeof FinalizationRegistry === "function"
  ? new FinalizationRegistry<Storage>((s) => { try { s.release(); } catch { /* device gone */ } })
  : null;

export class Tensor {
  readonly id = nextTensorId++;
  readonly size: number;
  requiresGrad = false;
  /** Accumulated gradient after backward(); same shape as the tensor. */
  grad: Tensor | null = null;
  /**
   * Internal: where backward writes this leaf's gradient when it has none yet (a slot of an
   * optimizer's gradient arena, so one dispatch can update every parameter); null: a new tensor.
   */
  gradSlot: Storage | null = null;
  private _gradFn: GraphNode | null = null;
  private _storage: Storage | null;

  /** Internal: wraps storage. Use tensor(), zeros(), randn() ... to make tensors. */
  constructor(storage: Storage, readonly shape: readonly number[], readonly dtype: DType) {
    this._storage = storage;
    this.size = shape.reduce((a, b) => a * b, 1);
    track(this);
    registry?.register(this, storage, this);
  }

  /** Allocates an uninitialised tensor from the pool. */
  static empty(shape: readonly number[], dtype: DType = "f32", op = "empty"): Tensor {
    const g = gpu();
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = size * DTYPE_BYTES[dtype];
    g.checkSize(op, bytes, shape);
    return new Tensor(new Storage(g.pool.acquire(Math.max(4, Math.ceil(bytes / 4) * 4)), Math.max(4, Math.ceil(bytes / 4) * 4)), [...shape], dtype);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this._storage === null;
  }

  /** The GPU buffer range kernels bind; throws DisposedTensorError after dispose(). */
  buffer(op = "tensor"): BufferRange {
    if (!this._storage) throw new DisposedTensorError(op, `a tensor of shape [${this.shape.join(", ")}]`);
    if (this._storage.ctx !== maybeGpu()) throw this.staleDevice(op);
    return this._storage.range;
  }

  /** The error for a tensor whose device was lost (init() has since made a new one). */
  private staleDevice(op: string): DeviceLostError {
    const lost = this._storage?.ctx?.lost;
    return new DeviceLostError(lost?.reason ?? "unknown", `${op}: this tensor of shape [${this.shape.join(", ")}] was made on the lost device` +
      `${lost?.message ? ` (${lost.message})` : ""}; dispose it and rebuild it on the new one`);
  }

  /** Internal: the storage, for aliasing. */
  storage(op = "tensor"): Storage {
    if (!this._storage) throw new DisposedTensorError(op, `a tensor of shape [${this.shape.join(", ")}]`);
    if (this._storage.ctx !== maybeGpu()) throw this.staleDevice(op);
    return this._storage;
  }

  get gradFn(): GraphNode | null {
    return this._gradFn;
  }

  /** Internal: attaches the node that produced this tensor. */
  setGradFn(node: GraphNode): void {
    if (this._gradFn) this._gradFn.unref();
    this._gradFn = node;
    node.refs++;
    this.requiresGrad = true;
  }

  /** A new handle on the same storage (shape may differ in element count only if equal size). */
  alias(shape: readonly number[] = this.shape): Tensor {
    const t = new Tensor(this.storage("alias").retain(), [...shape], this.dtype);
    return t;
  }

  /**
   * Internal: moves this tensor onto `storage` (same byte size, data already copied there), as an
   * optimizer does when it gathers its parameters into a flat arena. Aliases keep the old storage.
   */
  adoptStorage(storage: Storage): void {
    const old = this.storage("adoptStorage");
    registry?.unregister(this);
    this._storage = storage;
    registry?.register(this, storage, this);
    old.release();
  }

  /** Frees the GPU memory (when no alias still holds it). Safe to call twice. */
  dispose(): void {
    if (!this._storage) return;
    registry?.unregister(this);
    this._storage.release();
    this._storage = null;
    if (this._gradFn) { this._gradFn.unref(); this._gradFn = null; }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Marks a leaf tensor as a parameter to differentiate (torch requires_grad_). */
  requiresGrad_(on = true): this {
    if (this._gradFn && !on) throw new AutogradError("requiresGrad_(false) on a non-leaf tensor; use detach()");
    this.requiresGrad = on;
    return this;
  }

  /** A tensor sharing storage with no autograd history. */
  detach(): Tensor {
    return this.alias();
  }

  /** Reads the data back (f16 comes back as Float32Array). */
  async toArray(): Promise<Float32Array | Int32Array> {
    const buf = this.buffer("toArray");
    const bytes = this.size * DTYPE_BYTES[this.dtype];
    const data = await gpu().read(buf, bytes);
    if (this.dtype === "i32") return new Int32Array(data);
    if (this.dtype === "f16") {
      const h = new Uint16Array(data);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = fromHalfBits(h[i]!);
      return out;
    }
    return new Float32Array(data);
  }

  /** The value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new AutogradError(`item(): the tensor has ${this.size} elements; item() needs exactly one`);
    return (await this.toArray())[0]!;
  }

  /**
   * Backpropagates from this tensor; leaf tensors with requiresGrad accumulate into `.grad`.
   * Without `grad` the tensor must hold one element (the loss), like PyTorch.
   */
  backward(grad?: Tensor): void {
    if (!isGradEnabled()) throw new AutogradError("backward() inside noGrad()");
    let g = grad;
    if (!g) {
      if (this.size !== 1) {
        throw new AutogradError(`backward(): the tensor has shape [${this.shape.join(", ")}]; pass a gradient of that shape or call it on a scalar`);
      }
      g = ew.fullLike(this, 1);
    } else if (g.shape.join() !== this.shape.join()) {
      throw new AutogradError(`backward(grad): grad has shape [${g.shape.join(", ")}], the tensor [${this.shape.join(", ")}]`);
    }
    const root = grad ? g.alias() : g;
    keep(root);
    runBackward(this, root, backwardRules(), (leaf, gi) => {
      keep(gi);
      if (leaf.grad && !leaf.grad.isDisposed) {
        ew.addInPlace(leaf.grad, gi);
        gi.dispose();
      } else if (leaf.gradSlot && gi.dtype === leaf.dtype && gi.size === leaf.size) {
        gpu().launcher.copy(gi.buffer("backward"), 0, leaf.gradSlot.range, 0, leaf.gradSlot.range.size);
        gi.dispose();
        leaf.grad = keep(new Tensor(leaf.gradSlot.retain(), leaf.shape, leaf.dtype));
      } else {
        leaf.grad = gi;
      }
    });
    root.dispose();
  }

  // ---- elementwise -------------------------------------------------------------------------
  add(o: TensorLike): Tensor { return ew.add(this, o); }
  sub(o: TensorLike): Tensor { return ew.sub(this, o); }
  mul(o: TensorLike): Tensor { return ew.mul(this, o); }
  div(o: TensorLike): Tensor { return ew.div(this, o); }
  neg(): Tensor { return ew.neg(this); }
  exp(): Tensor { return ew.exp(this); }
  log(): Tensor { return ew.log(this); }
  sqrt(): Tensor { return ew.sqrt(this); }
  rsqrt(): Tensor { return ew.rsqrt(this); }
  tanh(): Tensor { return ew.tanh(this); }
  relu(): Tensor { return ew.relu(this); }
  gelu(): Tensor { return ew.gelu(this); }
  pow(p: number): Tensor { return ew.pow(this, p); }
  maskedFill(mask: Tensor, value: number): Tensor { return ew.maskedFill(this, mask, value); }
  to(dtype: DType): Tensor { return ew.cast(this, dtype); }
  eq(o: TensorLike): Tensor { return ew.compare("eq", this, o); }
  gt(o: TensorLike): Tensor { return ew.compare("gt", this, o); }
  lt(o: TensorLike): Tensor { return ew.compare("lt", this, o); }
  // ---- reductions --------------------------------------------------------------------------
  sum(axes?: number | number[], keepDim = false): Tensor { return red.sum(this, axes, keepDim); }
  mean(axes?: number | number[], keepDim = false): Tensor { return red.mean(this, axes, keepDim); }
  max(axes?: number | number[], keepDim = false): Tensor { return red.max(this, axes, keepDim); }
  // ---- layout ------------------------------------------------------------------------------
  reshape(...shape: number[] | [number[]]): Tensor { return lay.reshape(this, (Array.isArray(shape[0]) ? shape[0] : shape) as number[]); }
  view(...shape: number[] | [number[]]): Tensor { return this.reshape(...shape); }
  flatten(): Tensor { return lay.reshape(this, [this.size]); }
  permute(...perm: number[] | [number[]]): Tensor { return lay.permute(this, (Array.isArray(perm[0]) ? perm[0] : perm) as number[]); }
  transpose(d0 = -2, d1 = -1): Tensor { return lay.transpose(this, d0, d1); }
  get T(): Tensor { return lay.transpose(this, -2, -1); }
  slice(starts: number[], ends: number[]): Tensor { return lay.slice(this, starts, ends); }
  narrow(axis: number, start: number, length: number): Tensor { return lay.narrow(this, axis, start, length); }
  split(sizes: number | number[], axis = 0): Tensor[] { return lay.split(this, sizes, axis); }
  expand(shape: number[]): Tensor { return lay.expand(this, shape); }
  // ---- matmul / nn -------------------------------------------------------------------------
  matmul(o: Tensor, opts?: MatmulOptions): Tensor { return matmul(this, o, opts); }
  softmax(axis = -1, opts?: SoftmaxOptions): Tensor { return softmax(this, axis, opts); }
  logSoftmax(axis = -1, opts?: SoftmaxOptions): Tensor { return logSoftmax(this, axis, opts); }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}${this.requiresGrad ? ", requiresGrad" : ""}${this.isDisposed ? ", disposed" : ""})`;
  }
}

export type { Activation };
