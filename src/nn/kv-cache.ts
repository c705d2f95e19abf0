// Incremental decoding for GPT: a KV cache holds every block's keys and values [B, H, L, D] of
// the tokens seen so far, so each new token costs one forward of one position (its q·Kᵀ over
// the cache, softmax, ·V) instead of a forward over the whole prefix. The projections go through
// the layers' own forward, so a pruned or merged SLoPe model (mergeAdapters) decodes with its
// fused sparse kernels. Inference only (no autograd, no dropout).
import { ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { arange } from "../ops/creation.ts";
import { concat } from "../ops/layout.ts";
import { matmul } from "../ops/matmul.ts";
import { softmax } from "../ops/softmax.ts";
import { keep, noGrad } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { GPT } from "./gpt.ts";
import type { Block } from "./transformer.ts";

export class KVCache {
  /** Per block: keys and values [B, H, length, D] (null before the first forward). */
  readonly k: (Tensor | null)[];
  readonly v: (Tensor | null)[];
  /** Positions cached (the next token's position). */
  length = 0;

  constructor(readonly model: GPT) {
    this.k = model.blocks.map(() => null);
    this.v = model.blocks.map(() => null);
  }

  /** Frees every cached tensor; the cache is empty again. */
  reset(): void {
    for (const a of [this.k, this.v]) a.forEach((t, i) => { t?.dispose(); a[i] = null; });
    this.length = 0;
  }

  dispose(): void {
    this.reset();
  }
}

/** One block on new positions: attention over cached + new keys, then the MLP; appends k, v to the cache. */
function blockStep(b: Block, i: number, x: Tensor, cache: KVCache): Tensor {
  const [B, T, C] = x.shape as [number, number, number];
  const H = b.attn.nHead, D = C / H;
  const h1 = b.ln1.forward(x);
  const qkv = b.attn.qkv.forward(h1);
  const split5 = qkv.reshape([B, T, 3, H, D]);
  const heads = split5.permute([2, 0, 3, 1, 4]);              // [3, B, H, T, D]
  const [q, k, v] = heads.split(1, 0).map((t) => { const r = t.reshape([B, H, T, D]); t.dispose(); return r; }) as [Tensor, Tensor, Tensor];
  const pk = cache.k[i], pv = cache.v[i];
  const K = pk ? concat([pk, k], 2) : k, V = pv ? concat([pv, v], 2) : v;
  const scores = matmul(q, K, { transB: true });              // [B, H, T, L]
  const scaled = scores.mul(1 / Math.sqrt(D));
  const att = softmax(scaled, -1, { causal: T > 1 });         // T > 1 only on an empty cache: square
  const y = matmul(att, V);                                   // [B, H, T, D]
  const yt = y.permute([0, 2, 1, 3]);
  const merged = yt.reshape([B, T, C]);
  const a = b.attn.proj.forward(merged);
  const x1 = x.add(a);
  const h2 = b.ln2.forward(x1);
  const m = b.mlp.forward(h2);
  const x2 = x1.add(m);
  for (const t of [h1, qkv, split5, heads, q, scores, scaled, att, y, yt, merged, a, x1, h2, m]) t.dispose();
  if (K !== k) k.dispose();
  if (V !== v) v.dispose();
  pk?.dispose(); pv?.dispose();
  cache.k[i] = keep(K);
  cache.v[i] = keep(V);
  return x2;
}

/**
 * Logits [B, T, vocab] of tokens idx [B, T] (i32) at positions cache.length.. — the whole prompt
 * on an empty cache, then one token at a time — and appends their keys and values to `cache`.
 * The cache holds at most blockSize positions (GPT's learned position embeddings end there).
 */
export function forwardCached(model: GPT, idx: Tensor, cache: KVCache): Tensor {
  if (cache.model !== model) throw new WebslopeError("forwardCached: the cache belongs to another model");
  if (idx.ndim !== 2 || idx.dtype !== "i32") throw new ShapeError("forwardCached", `token ids must be i32 [B, T], got ${idx.dtype} ${fmtShape(idx.shape)}`);
  const T = idx.shape[1]!;
  if (cache.length > 0 && T !== 1) throw new ShapeError("forwardCached", `a filled cache takes one new token at a time, got ${T}; reset() it to start a new prompt`);
  if (cache.length + T > model.config.blockSize) {
    throw new ShapeError("forwardCached", `positions ${cache.length}..${cache.length + T - 1} pass blockSize ${model.config.blockSize}; reset() the cache and re-feed the last blockSize tokens`);
  }
  const k0 = cache.k[0];
  if (k0 && k0.shape[0] !== idx.shape[0]) throw new ShapeError("forwardCached", `batch ${idx.shape[0]} differs from the cache's ${k0.shape[0]}`);
  return noGrad(() => {
    const pos = arange(cache.length, cache.length + T, 1, { dtype: "i32" });
    const tok = model.wte.forward(idx), pe = model.wpe.forward(pos);
    let x = tok.add(pe);
    for (const t of [pos, tok, pe]) t.dispose();
    model.blocks.forEach((b, i) => { const y = blockStep(b, i, x, cache); x.dispose(); x = y; });
    const h = model.lnF.forward(x);
    x.dispose();
    const logits = matmul(h, model.wte.weight, { transB: true });
    h.dispose();
    cache.length += T;
    return logits;
  });
}
