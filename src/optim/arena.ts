// Flat arenas: an optimizer's parameters, gradients and moments each live in one buffer, every
// tensor a 256-byte-aligned slot of it, so one elementwise dispatch over the whole buffer updates
// every parameter (and one reduction gives the global gradient norm). Parameters move in once
// (the same Tensor objects, now views); backward writes gradients straight into their slots
// (Tensor.gradSlot). The padding between slots is zero in every arena and stays zero: a zero
// gradient with zero moments leaves a zero weight, and adds nothing to a norm.
import { gpu } from "../gpu/context.ts";
import { fill } from "../ops/raw/map.ts";
import { keep } from "../scope.ts";
import { type Storage, Tensor } from "../tensor.ts";

/** One arena's layout: the element offset of each tensor and the total element count. */
export interface ArenaLayout {
  offsets: number[];
  total: number;
}

/** Element alignment of slots: the adapter's storage offset alignment (256 bytes by default). */
function alignElems(): number {
  return Math.max(1, gpu().limits.minStorageBufferOffsetAlignment / 4);
}

/**
 * Packs tensors of `sizes` (f32 elements) into arenas of at most maxBytes each (a tensor never
 * straddles two). Returns the index ranges [start, end) of `sizes` per arena with its layout.
 */
export function planArenas(sizes: readonly number[], maxBytes: number): { start: number; end: number; layout: ArenaLayout }[] {
  const a = alignElems();
  const out: { start: number; end: number; layout: ArenaLayout }[] = [];
  let cur: { start: number; end: number; layout: ArenaLayout } | null = null;
  sizes.forEach((n, i) => {
    const slot = Math.ceil(Math.max(n, 1) / a) * a;
    if (!cur || (cur.layout.total + slot) * 4 > maxBytes) {
      cur = { start: i, end: i, layout: { offsets: [], total: 0 } };
      out.push(cur);
    }
    cur.layout.offsets.push(cur.layout.total);
    cur.layout.total += slot;
    cur.end = i + 1;
  });
  return out;
}

/** Arenas whose gradient slots backward writes, by root storage (clipGradNorm finds them here). */
const gradArenas = new WeakMap<Storage, GradArena>();

/** A zeroed f32 arena of `layout` and the views of its slots with the given shapes. */
export class FlatArena {
  readonly flat: Tensor;
  readonly slots: Storage[];

  constructor(op: string, readonly layout: ArenaLayout, sizes: readonly number[]) {
    this.flat = keep(fill([layout.total], 0, "f32", op));
    const root = this.flat.storage(op);
    this.slots = layout.offsets.map((o, i) => root.view(o * 4, sizes[i]! * 4));
  }

  /** A tensor on slot i. */
  view(i: number, shape: readonly number[]): Tensor {
    return keep(new Tensor(this.slots[i]!.retain(), shape, "f32"));
  }

  dispose(): void {
    for (const s of this.slots) s.release();
    this.slots.length = 0;
    this.flat.dispose();
  }
}

/**
 * The parameters of one arena and their gradient slots. Moving in copies each parameter's data
 * into its slot and makes the tensor a view of it; its gradient slot is registered for backward.
 */
export class GradArena {
  readonly params: FlatArena;
  readonly grads: FlatArena;

  constructor(op: string, readonly tensors: readonly Tensor[], layout: ArenaLayout) {
    const sizes = tensors.map((t) => t.size);
    this.params = new FlatArena(op, layout, sizes);
    this.grads = new FlatArena(op, layout, sizes);
    const l = gpu().launcher;
    tensors.forEach((t, i) => {
      const slot = this.params.slots[i]!;
      l.copy(t.buffer(op), 0, slot.range, 0, slot.range.size);
      t.adoptStorage(slot.retain());
      t.gradSlot = this.grads.slots[i]!;
    });
    gradArenas.set(this.grads.flat.storage(op), this);
  }

  /** Whether every tensor's gradient is the one backward wrote into its slot. */
  gradsInPlace(): boolean {
    return this.tensors.every((t, i) => t.grad && !t.grad.isDisposed && t.grad.storage() === this.grads.slots[i]);
  }

  /** Stops writing gradients here (the optimizer is gone); parameters stay views of their slots. */
  dispose(): void {
    for (const t of this.tensors) if (t.gradSlot && this.grads.slots.includes(t.gradSlot)) t.gradSlot = null;
    this.grads.dispose();
    this.params.dispose();
  }
}

/**
 * The fewest tensors covering `grads` for an elementwise pass or a sum: each arena whose every
 * slot holds its parameter's current gradient is replaced by its flat tensor.
 */
export function gradSpans(grads: readonly Tensor[]): Tensor[] {
  const out: Tensor[] = [];
  const whole = new Set<GradArena>();
  const seen = new Set<Storage>();
  for (const g of grads) {
    const s = g.storage("gradSpans");
    const arena = s.parent ? gradArenas.get(s.parent) : undefined;
    if (arena && arena.gradsInPlace() && !seen.has(s)) {
      seen.add(s);
      whole.add(arena);
    } else {
      out.push(g);
    }
  }
  for (const a of whole) {
    // Only when the caller passed every slot of it (a subset must not scale the others).
    if (a.grads.slots.every((s) => seen.has(s))) out.push(a.grads.flat);
    else out.push(...a.tensors.map((t) => t.grad!).filter((g) => seen.has(g.storage())));
  }
  return out;
}
