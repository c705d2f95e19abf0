// A tokenised corpus split into train / validation, and seeded random batches of next-token
// pairs (x = tokens[i..i+T), y = tokens[i+1..i+T+1]) uploaded as i32 tensors.
import { ShapeError, ValueError } from "../errors.ts";
import { checkNumber } from "../validate.ts";
import { tensor } from "../ops/creation.ts";
import { Generator } from "../random.ts";
import type { Tensor } from "../tensor.ts";

export interface Batch {
  x: Tensor;
  y: Tensor;
}

export class Corpus {
  readonly train: Int32Array;
  readonly val: Int32Array;

  constructor(tokens: Int32Array, { valFraction = 0.1 } = {}) {
    if (!(tokens instanceof Int32Array)) throw new ValueError("Corpus", `tokens must be an Int32Array (tokenizer.encode(text)), got ${tokens === null ? "null" : typeof tokens}`);
    checkNumber("Corpus", "valFraction", valFraction, { min: 0, below: 1 });
    const n = Math.floor(tokens.length * (1 - valFraction));
    this.train = tokens.subarray(0, n);
    this.val = tokens.subarray(n);
  }

  /** B random windows of length T from the split, drawn with `gen` (the same seed gives the same batches). */
  batch(split: "train" | "val", B: number, T: number, gen: Generator): Batch {
    const data = split === "train" ? this.train : this.val;
    if (data.length < T + 2) throw new ShapeError("Corpus.batch", `the ${split} split has ${data.length} tokens, fewer than blockSize + 2 = ${T + 2}`);
    const xs = new Int32Array(B * T), ys = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const i = gen.randint(data.length - T - 1);
      xs.set(data.subarray(i, i + T), b * T);
      ys.set(data.subarray(i + 1, i + T + 1), b * T);
    }
    return { x: tensor(xs, [B, T]), y: tensor(ys, [B, T]) };
  }
}
