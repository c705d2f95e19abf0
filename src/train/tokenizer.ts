// Character-level tokenizer: the vocabulary is the sorted set of characters of the corpus.

export class CharTokenizer {
  readonly chars: string[];
  private readonly index: Map<string, number>;

  constructor(text: string) {
    this.chars = [...new Set(text)].sort();
    this.index = new Map(this.chars.map((c, i) => [c, i]));
  }

  get vocabSize(): number {
    return this.chars.length;
  }

  /** Unknown characters are an error: the vocabulary is closed. */
  encode(s: string): Int32Array {
    const out = new Int32Array(s.length);
    for (let i = 0; i < s.length; i++) {
      const id = this.index.get(s[i]!);
      if (id === undefined) throw new RangeError(`CharTokenizer.encode: character ${JSON.stringify(s[i])} is not in the vocabulary`);
      out[i] = id;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let s = "";
    for (let i = 0; i < ids.length; i++) s += this.chars[ids[i]!] ?? "\uFFFD";
    return s;
  }
}
