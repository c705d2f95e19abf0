// The pieces of a GPT-2-style block: causal self-attention (fused qkv projection, then fused
// flash-style attention read straight from the qkv output, or the unfused reference path:
// scores through a transposed matmul, causal softmax, ·v) and the MLP (GELU fused into fc1's
// epilogue).
import { ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { dropout } from "../ops/dropout.ts";
import { softmax } from "../ops/softmax.ts";
import { qkvAttention } from "../ops/attention.ts";
import { matmul } from "../ops/matmul.ts";
import type { Tensor } from "../tensor.ts";
import { LayerNorm, Linear, type LinearLike } from "./layers.ts";
import { Module } from "./module.ts";
import { Generator } from "../random.ts";

export interface BlockConfig {
  nEmbd: number;
  nHead: number;
  nLayer: number;
  dropout?: number;
  /**
   * "fused" (default): one flash-style kernel family reading q, k, v from the qkv projection in
   * place, memory O(B·T·C). "unfused": matmul → causal softmax → dropout → matmul with [B, H, T, T]
   * scores kept for the backward (the reference path).
   */
  attention?: AttentionImpl;
  /** Seeds every weight of the module (a stream of per-layer seeds is derived from it). */
  seed?: number;
}

export type AttentionImpl = "fused" | "unfused";

/**
 * The unfused attention core on a qkv projection's output [B, T, 3C] → [B, T, C]: permute and
 * split into heads, q·kᵀ [B, H, T, T], scale, causal softmax, dropout, ·v, merge the heads.
 */
export function unfusedCausalAttention(qkv: Tensor, nHead: number, pDrop: number): Tensor {
  const [B, T, C3] = qkv.shape as [number, number, number];
  const C = C3 / 3, H = nHead, D = C / H;
  const split5 = qkv.reshape([B, T, 3, H, D]);
  const heads = split5.permute([2, 0, 3, 1, 4]);          // [3, B, H, T, D]
  const [q, k, v] = heads.split(1, 0).map((t) => { const r = t.reshape([B, H, T, D]); t.dispose(); return r; }) as [Tensor, Tensor, Tensor];
  const scores = matmul(q, k, { transB: true });            // [B, H, T, T]
  const scaled = scores.mul(1 / Math.sqrt(D));
  const att = softmax(scaled, -1, { causal: true });
  const attD = pDrop > 0 ? dropout(att, pDrop) : att;
  const y = matmul(attD, v);                                // [B, H, T, D]
  const yt = y.permute([0, 2, 1, 3]);
  const merged = yt.reshape([B, T, C]);
  for (const t of [split5, heads, q, k, v, scores, scaled, att, y, yt]) t.dispose();
  if (attD !== att) attD.dispose();
  return merged;
}

const gptInit = (cfg: BlockConfig, residual: boolean, seed: number | undefined) => ({ std: residual ? 0.02 / Math.sqrt(2 * cfg.nLayer) : 0.02, seed });

/** Per-layer seeds derived from one seed (undefined: every layer draws from the global generator). */
export function seedStream(seed: number | undefined): () => number | undefined {
  const g = seed === undefined ? null : new Generator(seed);
  return () => g?.nextU32();
}

export class CausalSelfAttention extends Module {
  qkv: LinearLike;
  proj: LinearLike;
  readonly nHead: number;
  readonly nEmbd: number;
  readonly pDrop: number;
  readonly impl: AttentionImpl;

  constructor(cfg: BlockConfig) {
    super();
    const impl = cfg.attention ?? "fused";
    if (impl !== "fused" && impl !== "unfused") throw new WebslopeError(`CausalSelfAttention: attention must be "fused" or "unfused", got ${JSON.stringify(impl)}`);
    this.impl = impl;
    if (cfg.nEmbd % cfg.nHead !== 0) throw new ShapeError("CausalSelfAttention", `nEmbd=${cfg.nEmbd} is not divisible by nHead=${cfg.nHead}`);
    this.nHead = cfg.nHead;
    this.nEmbd = cfg.nEmbd;
    this.pDrop = cfg.dropout ?? 0;
    const seed = seedStream(cfg.seed);
    this.qkv = this.module("qkv", new Linear(cfg.nEmbd, 3 * cfg.nEmbd, gptInit(cfg, false, seed())));
    this.proj = this.module("proj", new Linear(cfg.nEmbd, cfg.nEmbd, gptInit(cfg, true, seed())));
  }

  /** The causal attention core on the qkv projection's output [B, T, 3C] → [B, T, C] (this.impl; dropout while training). */
  attend(qkv: Tensor): Tensor {
    const p = this.training ? this.pDrop : 0;
    return this.impl === "fused" ? qkvAttention(qkv, this.nHead, { causal: true, dropoutP: p }) : unfusedCausalAttention(qkv, this.nHead, p);
  }

  /** x [B, T, C] → [B, T, C]. Temporaries are disposed as soon as the graph no longer needs them. */
  forward(x: Tensor): Tensor {
    if (x.ndim !== 3 || x.shape[2] !== this.nEmbd) throw new ShapeError("CausalSelfAttention", `input ${fmtShape(x.shape)} must be [B, T, ${this.nEmbd}]`);
    const qkv = this.qkv.forward(x);                         // [B, T, 3C]
    const y = this.attend(qkv);
    const out = this.proj.forward(y);
    qkv.dispose(); y.dispose();
    return out;
  }
}

export class MLP extends Module {
  fc1: LinearLike;
  fc2: LinearLike;
  constructor(cfg: BlockConfig) {
    super();
    const seed = seedStream(cfg.seed);
    this.fc1 = this.module("fc1", new Linear(cfg.nEmbd, 4 * cfg.nEmbd, { ...gptInit(cfg, false, seed()), activation: "gelu" }));
    this.fc2 = this.module("fc2", new Linear(4 * cfg.nEmbd, cfg.nEmbd, gptInit(cfg, true, seed())));
  }
  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x);
    const y = this.fc2.forward(h);
    h.dispose();
    return y;
  }
}

/** Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x)). */
export class Block extends Module {
  ln1: LayerNorm;
  attn: CausalSelfAttention;
  ln2: LayerNorm;
  mlp: MLP;
  readonly pDrop: number;
  constructor(cfg: BlockConfig) {
    super();
    this.pDrop = cfg.dropout ?? 0;
    const seed = seedStream(cfg.seed);
    this.ln1 = this.module("ln1", new LayerNorm(cfg.nEmbd));
    this.attn = this.module("attn", new CausalSelfAttention({ ...cfg, seed: seed() }));
    this.ln2 = this.module("ln2", new LayerNorm(cfg.nEmbd));
    this.mlp = this.module("mlp", new MLP({ ...cfg, seed: seed() }));
  }
  private residual(x: Tensor, branch: Tensor): Tensor {
    const b = this.training && this.pDrop > 0 ? dropout(branch, this.pDrop) : branch;
    const y = x.add(b);
    if (b !== branch) b.dispose();
    return y;
  }
  forward(x: Tensor): Tensor {
    const h1 = this.ln1.forward(x);
    const a = this.attn.forward(h1);
    const x1 = this.residual(x, a);
    const h2 = this.ln2.forward(x1);
    const m = this.mlp.forward(h2);
    const x2 = this.residual(x1, m);
    for (const t of [h1, a, x1, h2, m]) t.dispose();
    return x2;
  }
}
