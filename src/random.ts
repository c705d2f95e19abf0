// The one seeded PRNG of webslope. A CPU-side generator hands out 64-bit keys; GPU kernels turn
// (key, element index) into random bits with a counter-based hash, so init, dropout and batch
// sampling all follow from manualSeed() and the same seed gives the same run on any adapter.

import { checkNumber } from "./validate.ts";

/** splitmix32: a small, well-mixed 32-bit generator for keys and CPU-side sampling. */
export class Generator {
  private state: number;
  constructor(seed: number) {
    checkNumber("Generator", "seed", seed, { integer: true });
    this.state = (Math.floor(seed) ^ 0x9e3779b9) >>> 0;
  }
  /** Next 32 random bits. */
  nextU32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }
  /** Uniform in [0, 1). */
  random(): number {
    return this.nextU32() / 4294967296;
  }
  /** Integer in [0, n). */
  randint(n: number): number {
    return Math.floor(this.random() * n);
  }
  /** The generator's whole state (one u32): save it to resume the stream exactly (checkpoints). */
  getState(): number {
    return this.state;
  }
  /** Restores a state from getState(). */
  setState(state: number): void {
    checkNumber("Generator.setState", "state (a u32 from getState())", state, { integer: true, min: 0, max: 0xffffffff });
    this.state = state >>> 0;
  }
  /** A two-word key for a GPU random kernel. */
  nextKey(): [number, number] {
    return [this.nextU32(), this.nextU32()];
  }
}

let global = new Generator(0);

/** Reseeds the global generator (torch.manual_seed). */
export function manualSeed(seed: number): void {
  global = new Generator(seed);
}

/** The global generator (dropout keys, unseeded init): its state goes into checkpoints. */
export function globalGenerator(): Generator {
  return global;
}

/** The global generator, or a fresh one when an explicit seed is given. */
export function generatorFor(seed?: number): Generator {
  return seed === undefined ? global : new Generator(seed);
}
