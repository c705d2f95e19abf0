// Tensor: a shape, a dtype and reference-counted GPU storage from the pool, plus the autograd
// fields (requiresGrad, grad, gradFn). Data stays on the GPU; toArray()/item() read it back
// asynchronously. The PyTorch-named op methods (add, sum, reshape, matmul, softmax ...) are
// attached by the op modules in src/ops/ (each declares its methods on this class by declaration
// merging), so this file imports no op.
import { backward, type GraphNode } from "./autograd/graph.ts";
import { tapeKernels } from "./autograd/rules.ts";
import { DTYPE_BYTES, fromHalfBits, type DType } from "./dtype.ts";
import { AutogradError, DeviceLostError, DisposedTensorError } from "./errors.ts";
import { type GpuContext, gpu, maybeGpu } from "./gpu/context.ts";
import type { BufferRange } from "./gpu/pool.ts";
import { keep, track } from "./scope.ts";
import { checkDType, checkShape } from "./validate.ts";

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
    this.range = parent ? { buffer, offset, size: Math.ceil(bytes / 4) * 4 } : { buffer, offset, size: buffer.size, whole: offset === 0 };
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

/**
 * Tensors made since the last microtask, not yet registered with the FinalizationRegistry.
 * register() is one of the costliest calls of a dispatch (V8 allocates a weak cell), and most
 * tensors an op makes are disposed within the same synchronous step (tidy(), temporaries): they
 * never need it. The rest are registered at the end of the job, or once 4096 are waiting.
 */
let unregistered: Tensor[] = [];
const REGISTER_BATCH = 4096;
function registerLater(t: Tensor): void {
  if (!registry) return;
  if (unregistered.length === 0) queueMicrotask(registerPending);
  unregistered.push(t);
  if (unregistered.length >= REGISTER_BATCH) registerPending();
}
function registerPending(): void {
  const list = unregistered;
  unregistered = [];
  for (const t of list) t.registerForCollection();
}

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
  /** Whether the FinalizationRegistry holds this tensor's storage (see registerLater). */
  private registered = false;

  /** Internal: wraps storage. Use tensor(), zeros(), randn() ... to make tensors. */
  constructor(storage: Storage, readonly shape: readonly number[], readonly dtype: DType) {
    this._storage = storage;
    this.size = shape.reduce((a, b) => a * b, 1);
    track(this);
    registerLater(this);
  }

  /** Allocates an uninitialised tensor from the pool. */
  static empty(shape: readonly number[], dtype: DType = "f32", op = "empty"): Tensor {
    const g = gpu();
    const size = shape.reduce((a, b) => a * b, 1);
    // Backstops for every op: a dtype outside the set or a non-integer size never reaches the pool.
    if (DTYPE_BYTES[dtype] === undefined) checkDType(op, dtype);
    if (!Number.isSafeInteger(size) || size < 0) checkShape(op, shape);
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
    if (this.registered) { registry!.unregister(this); this.registered = false; }
    this._storage = storage;
    this.registerForCollection();
    old.release();
  }

  /** Internal: lets the garbage collector free this tensor's storage if it is never disposed (once; a disposed tensor is skipped). */
  registerForCollection(): void {
    if (!registry || this.registered || !this._storage) return;
    registry.register(this, this._storage, this);
    this.registered = true;
  }

  /** Frees the GPU memory (when no alias still holds it). Safe to call twice. */
  dispose(): void {
    if (!this._storage) return;
    if (this.registered) { registry!.unregister(this); this.registered = false; }
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
    backward(this, grad);
  }

  /** Internal (the tape): adds a gradient that reached this leaf into `.grad` (or its arena slot). */
  accumulateGrad(gi: Tensor): void {
    keep(gi);
    if (this.grad && !this.grad.isDisposed) {
      tapeKernels().addInPlace(this.grad, gi);
      gi.dispose();
    } else if (this.gradSlot && gi.dtype === this.dtype && gi.size === this.size) {
      gpu().launcher.copy(gi.buffer("backward"), 0, this.gradSlot.range, 0, this.gradSlot.range.size);
      gi.dispose();
      this.grad = keep(new Tensor(this.gradSlot.retain(), this.shape, this.dtype));
    } else {
      this.grad = gi;
    }
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}${this.requiresGrad ? ", requiresGrad" : ""}${this.isDisposed ? ", disposed" : ""})`;
  }
}

/**
 * Attaches op methods to Tensor (non-enumerable, like class methods). Each op module declares its
 * methods on the Tensor interface (declaration merging) and calls this when it loads; `getters`
 * are properties computed on read (`x.T`).
 */
export function defineTensorMethods<G extends keyof Tensor = never>(
  methods: { [K in keyof Tensor]?: Tensor[K] } & ThisType<Tensor>,
  getters: { [K in G]: (this: Tensor) => Tensor[K] } = {} as { [K in G]: (this: Tensor) => Tensor[K] },
): void {
  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(Tensor.prototype, name, { value, writable: true, configurable: true });
  }
  for (const [name, get] of Object.entries(getters) as [string, () => unknown][]) Object.defineProperty(Tensor.prototype, name, { get, configurable: true });
}
