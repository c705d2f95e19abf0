// Character-level tokenizer: the vocabulary is the sorted set of characters (Unicode code points,
// so an emoji is one token, not two UTF-16 halves) of the corpus.
import { ValueError } from "../errors.ts";

export class CharTokenizer {
  readonly chars: string[];
  private readonly index: Map<string, number>;

  constructor(text: string) {
    if (typeof text !== "string") throw new ValueError("CharTokenizer", `needs the corpus text as a string, got ${typeof text}`);
    this.chars = [...new Set(text)].sort();
    this.index = new Map(this.chars.map((c, i) => [c, i]));
  }

  get vocabSize(): number {
    return this.chars.length;
  }

  /** One id per code point. Unknown characters are an error: the vocabulary is closed. */
  encode(s: string): Int32Array {
    const cps = [...s];
    const out = new Int32Array(cps.length);
    for (let i = 0; i < cps.length; i++) {
      const id = this.index.get(cps[i]!);
      if (id === undefined) {
        throw new ValueError("CharTokenizer.encode", `character ${JSON.stringify(cps[i])} (code point ${i} of the input) is not in the ` +
          `vocabulary of ${this.chars.length} characters; build the tokenizer from a text that contains it`);
      }
      out[i] = id;
    }
    return out;
  }

  /** Ids back to text; an id that is not an integer in [0, vocabSize) is an error. */
  decode(ids: ArrayLike<number>): string {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const c = this.chars[ids[i]!];
      if (c === undefined || !Number.isInteger(ids[i])) {
        throw new ValueError("CharTokenizer.decode", `id ${ids[i]} at position ${i} is not an integer in [0, ${this.chars.length})`);
      }
      s += c;
    }
    return s;
  }
}
