// Moves float64 reference arrays to GPU tensors and back.
import { type CreateOptions, type Tensor, tensor } from "../../src/index.ts";
import { type Arr, arr } from "./cpu.ts";

export function fromArr(a: Arr, opts: CreateOptions = {}): Tensor {
  return tensor(Float32Array.from(a.data), a.shape, opts);
}

export async function toArr(t: Tensor): Promise<Arr> {
  return arr([...t.shape], await t.toArray());
}
