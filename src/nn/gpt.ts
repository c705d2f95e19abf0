// GPT: a small GPT-2-style language model (token + position embeddings, pre-norm blocks, final
// LayerNorm, lm_head tied to the token embedding), initialised as GPT-2 / SLoPe's GPT runs do.
import { ShapeError, ValueError, fmtShape } from "../errors.ts";
import { checkNumber, checkOptional } from "../validate.ts";
import { arange } from "../ops/creation.ts";
import { matmul } from "../ops/matmul.ts";
import { crossEntropy } from "../ops/crossentropy.ts";
import { dropout } from "../ops/dropout.ts";
import type { Tensor } from "../tensor.ts";
import { Embedding, LayerNorm } from "./layers.ts";
import { Module } from "./module.ts";
import { type AttentionImpl, Block, seedStream } from "./transformer.ts";

export interface GPTConfig {
  vocabSize: number;
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  dropout?: number;
  /** Attention implementation of every block (see BlockConfig.attention); default "fused". */
  attention?: AttentionImpl;
  /**
   * Seeds every weight (embeddings and every Linear, through per-layer seeds derived from it):
   * the same seed gives the same model. Without it, init draws from the global generator
   * (manualSeed).
   */
  seed?: number;
}

/** Checks every option before anything is allocated: a bad config throws and leaves no tensors behind. */
function checkConfig(cfg: GPTConfig): void {
  const op = "GPT";
  if (typeof cfg !== "object" || cfg === null) throw new ValueError(op, "needs a config { vocabSize, blockSize, nLayer, nHead, nEmbd }");
  for (const k of ["vocabSize", "blockSize", "nHead", "nEmbd"] as const) checkNumber(op, k, cfg[k], { integer: true, min: 1 });
  checkNumber(op, "nLayer", cfg.nLayer, { integer: true, min: 0 });
  if (cfg.nEmbd % cfg.nHead !== 0) throw new ShapeError(op, `nEmbd=${cfg.nEmbd} is not divisible by nHead=${cfg.nHead}; pick nHead dividing nEmbd`);
  checkOptional(op, "dropout", cfg.dropout, { min: 0, below: 1 });
  checkOptional(op, "seed", cfg.seed, { integer: true });
  if (cfg.attention !== undefined && cfg.attention !== "fused" && cfg.attention !== "unfused") {
    throw new ValueError(op, `attention must be "fused" or "unfused", got ${JSON.stringify(cfg.attention)}`);
  }
}

export class GPT extends Module {
  readonly config: Required<Omit<GPTConfig, "seed">> & Pick<GPTConfig, "seed">;
  wte: Embedding;
  wpe: Embedding;
  blocks: Block[];
  lnF: LayerNorm;

  constructor(cfg: GPTConfig) {
    super();
    checkConfig(cfg);
    this.config = { dropout: 0, attention: "fused", ...cfg };
    const seed = seedStream(cfg.seed);
    this.wte = this.module("wte", new Embedding(cfg.vocabSize, cfg.nEmbd, { std: 0.02, seed: seed() }));
    this.wpe = this.module("wpe", new Embedding(cfg.blockSize, cfg.nEmbd, { std: 0.02, seed: seed() }));
    this.blocks = Array.from({ length: cfg.nLayer }, (_, i) => this.module(`blocks.${i}`, new Block({ ...cfg, seed: seed() })));
    this.lnF = this.module("lnF", new LayerNorm(cfg.nEmbd));
  }

  /** Token ids [B, T] (i32) → logits [B, T, vocab]. */
  forward(idx: Tensor): Tensor {
    idx.buffer("GPT.forward");
    if (idx.ndim !== 2 || idx.dtype !== "i32") throw new ShapeError("GPT", `token ids must be i32 [B, T], got ${idx.dtype} ${fmtShape(idx.shape)}`);
    if (idx.size === 0) throw new ShapeError("GPT", `token ids ${fmtShape(idx.shape)} are empty; pass at least one token per row`);
    const T = idx.shape[1]!;
    if (T > this.config.blockSize) throw new ShapeError("GPT", `sequence length ${T} is over blockSize ${this.config.blockSize}`);
    const pos = arange(0, T, 1, { dtype: "i32" });
    const tok = this.wte.forward(idx);
    const pe = this.wpe.forward(pos);
    const sum = tok.add(pe);
    let x = this.training && this.config.dropout > 0 ? dropout(sum, this.config.dropout) : sum;
    for (const t of [pos, tok, pe]) t.dispose();
    if (x !== sum) sum.dispose();
    for (const b of this.blocks) { const y = b.forward(x); x.dispose(); x = y; }
    const h = this.lnF.forward(x);
    x.dispose();
    const logits = matmul(h, this.wte.weight, { transB: true });
    h.dispose();
    return logits;
  }

  /** Mean cross-entropy of next-token targets [B, T] (i32); ignoreIndex −100 like PyTorch. */
  loss(idx: Tensor, targets: Tensor): Tensor {
    targets.buffer("GPT.loss");
    if (targets.dtype !== "i32" || targets.shape.join() !== idx.shape.join()) {
      throw new ShapeError("GPT.loss", `targets must be i32 of the ids' shape ${fmtShape(idx.shape)}, got ${targets.dtype} ${fmtShape(targets.shape)}`);
    }
    const logits = this.forward(idx);
    const V = this.config.vocabSize;
    const flat = logits.reshape([-1, V]);
    const tflat = targets.reshape([-1]);
    const loss = crossEntropy(flat, tflat);
    for (const t of [logits, flat, tflat]) t.dispose();
    return loss;
  }
}
