// Incremental decoding for GPT: a KV cache holds every block's keys and values [B, H, capacity, D]
// of the tokens seen so far, so each new token costs one forward of one position instead of a
// forward over the whole prefix. A decode step's attention is one kernel per layer
// (src/ops/attention-decode.ts: the new key and value written into the cache in place, the query
// attended over it, heads merged) — the unfused form (permute, split, concat of the whole cache,
// q·Kᵀ, scale, softmax, ·V, merge) took 13 dispatches and copied the cache every token; each
// residual add runs inside the norm that follows it (addLayerNorm), 7 dispatches a block. The
// projections go through the layers' own forward, so a pruned or merged SLoPe model
// (mergeAdapters) decodes with its fused sparse kernels. Inference only (no autograd, no dropout).
import { ShapeError, WebslopeError, fmtShape } from "../errors.ts";
import { DECODE_ATTN_MAX_HEAD_DIM, kvCacheAppend, kvCacheAttention } from "../ops/attention-decode.ts";
import { addLayerNorm } from "../ops/layernorm.ts";
import { arange } from "../ops/creation.ts";
import { matmul } from "../ops/matmul.ts";
import { stridedCopy } from "../ops/raw/copy.ts";
import { stridesOf } from "../ops/util.ts";
import { keep, noGrad } from "../scope.ts";
import type { DType } from "../dtype.ts";
import { Tensor } from "../tensor.ts";
import type { GPT } from "./gpt.ts";
import type { LayerNorm } from "./layers.ts";
import type { Block } from "./transformer.ts";

/** The smallest capacity allocated (positions); capacities are powers of two (a long prompt takes its own at once), capped at blockSize. */
const MIN_CAPACITY = 64;

export class KVCache {
  /**
   * Per block: keys and values [B, H, capacity, D]; positions 0..length-1 hold the cached tokens,
   * the rest is unwritten room (null before the first forward). The storage doubles as needed up
   * to the model's blockSize and is kept across reset(), so a new prompt allocates nothing.
   */
  readonly k: (Tensor | null)[];
  readonly v: (Tensor | null)[];
  /** Positions cached (the next token's position). */
  length = 0;

  constructor(readonly model: GPT) {
    this.k = model.blocks.map(() => null);
    this.v = model.blocks.map(() => null);
  }

  /** Positions the storage holds before it must grow (0 before the first forward). */
  get capacity(): number {
    return this.k[0]?.shape[2] ?? 0;
  }

  /** Empties the cache for a new prompt; the storage stays for reuse (dispose() frees it). */
  reset(): void {
    this.length = 0;
  }

  /** Frees every cached tensor; the cache is empty and unallocated again. */
  dispose(): void {
    for (const a of [this.k, this.v]) a.forEach((t, i) => { t?.dispose(); a[i] = null; });
    this.length = 0;
  }

  /**
   * Block i's [kCache, vCache] with room for `need` positions of a [B, H, ·, D] layout: allocated
   * on first use (or when B, H, D or the dtype change), doubled with the cached positions copied
   * over when full.
   */
  reserve(i: number, B: number, H: number, D: number, need: number, dtype: DType): [Tensor, Tensor] {
    const old = [this.k[i], this.v[i]] as const;
    const fits = old[0] && old[0].dtype === dtype && old[0].shape[0] === B && old[0].shape[1] === H && old[0].shape[3] === D;
    if (fits && old[0]!.shape[2]! >= need) return [old[0]!, old[1]!];
    const want = Math.max(need, 2 * (fits ? old[0]!.shape[2]! : 0), MIN_CAPACITY);
    const cap = Math.min(this.model.config.blockSize, 2 ** Math.ceil(Math.log2(want)));
    const made = old.map((t) => {
      const n = keep(Tensor.empty([B, H, cap, D], dtype, "KVCache"));
      if (t && fits && this.length > 0) {
        const shape = [B, H, this.length, D];
        stridedCopy("KVCache", t, n, shape, stridesOf(t.shape), stridesOf(n.shape));
      }
      t?.dispose();
      return n;
    }) as [Tensor, Tensor];
    [this.k[i], this.v[i]] = made;
    return made;
  }
}

/**
 * One block on new positions, given its input x (the residual stream) and h = ln1(x): writes the
 * new keys and values into the cache, attends over cached + new keys (a decode step in one kernel;
 * a prefill through the block's own causal attention on the same qkv), then the MLP. Each residual
 * add is fused with the norm after it (ln2, then `next`: the next block's ln1 or the final norm),
 * so a block is seven dispatches. Returns [x2, next(x2)].
 */
function blockStep(b: Block, i: number, x: Tensor, h: Tensor, next: LayerNorm, cache: KVCache): [Tensor, Tensor] {
  const [B, T, C] = x.shape as [number, number, number];
  const H = b.attn.nHead, D = C / H, start = cache.length;
  const qkv = b.attn.qkv.forward(h);
  const [kc, vc] = cache.reserve(i, B, H, D, start + T, qkv.dtype);
  let y: Tensor;
  if (start === 0) { kvCacheAppend(qkv, kc, vc, 0, H); y = b.attn.attend(qkv); }
  else y = kvCacheAttention(qkv, kc, vc, start, H);
  const a = b.attn.proj.forward(y);
  const [x1, h2] = addLayerNorm(x, a, b.ln2.weight, b.ln2.bias, b.ln2.eps);
  const m = b.mlp.forward(h2);
  const out = addLayerNorm(x1, m, next.weight, next.bias, next.eps);
  for (const t of [qkv, y, a, x1, h2, m]) t.dispose();
  return out;
}

/** Whether the cached decode runs this model: a head dim up to DECODE_ATTN_MAX_HEAD_DIM (generate() falls back to the whole window otherwise). */
export function kvCacheSupports(model: GPT): boolean {
  return model.config.nEmbd / model.config.nHead <= DECODE_ATTN_MAX_HEAD_DIM;
}

/**
 * Logits [B, T, vocab] of tokens idx [B, T] (i32) at positions cache.length.. — the whole prompt
 * on an empty cache, then one token at a time — and appends their keys and values to `cache`.
 * The cache holds at most blockSize positions (GPT's learned position embeddings end there).
 */
export function forwardCached(model: GPT, idx: Tensor, cache: KVCache): Tensor {
  if (cache.model !== model) throw new WebslopeError("forwardCached: the cache belongs to another model");
  if (!kvCacheSupports(model)) {
    const { nEmbd, nHead } = model.config;
    throw new ShapeError("forwardCached", `head dim ${nEmbd / nHead} (nEmbd ${nEmbd} / nHead ${nHead}) is over the decode kernel's ${DECODE_ATTN_MAX_HEAD_DIM}; run model.forward on the whole window (generate does with kvCache: false)`);
  }
  if (idx.ndim !== 2 || idx.dtype !== "i32") throw new ShapeError("forwardCached", `token ids must be i32 [B, T], got ${idx.dtype} ${fmtShape(idx.shape)}`);
  const T = idx.shape[1]!;
  if (cache.length > 0 && T !== 1) throw new ShapeError("forwardCached", `a filled cache takes one new token at a time, got ${T}; reset() it to start a new prompt`);
  if (cache.length + T > model.config.blockSize) {
    throw new ShapeError("forwardCached", `positions ${cache.length}..${cache.length + T - 1} pass blockSize ${model.config.blockSize}; reset() the cache and re-feed the last blockSize tokens`);
  }
  const k0 = cache.k[0];
  if (cache.length > 0 && k0 && k0.shape[0] !== idx.shape[0]) throw new ShapeError("forwardCached", `batch ${idx.shape[0]} differs from the cache's ${k0.shape[0]}`);
  return noGrad(() => {
    const pos = arange(cache.length, cache.length + T, 1, { dtype: "i32" });
    const tok = model.wte.forward(idx), pe = model.wpe.forward(pos);
    let x = tok.add(pe);
    for (const t of [pos, tok, pe]) t.dispose();
    const blocks = model.blocks;
    let h = blocks.length ? blocks[0]!.ln1.forward(x) : model.lnF.forward(x);
    blocks.forEach((b, i) => {
      const [x2, h2] = blockStep(b, i, x, h, blocks[i + 1]?.ln1 ?? model.lnF, cache);
      x.dispose(); h.dispose();
      x = x2; h = h2;
    });
    x.dispose();
    const logits = matmul(h, model.wte.weight, { transB: true });
    h.dispose();
    cache.length += T;
    return logits;
  });
}
