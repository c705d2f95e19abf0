// Attention over a KV cache for decoding (shaders/attention-decode.wgsl.ts): new positions'
// queries, keys and values are read in place from the qkv projection's [B, T, 3C] output, their
// keys and values written into the cache [B, H, capacity, D] at positions start..start+T-1, and
// y [B, T, C] returned — one dispatch where the unfused decode took thirteen (two past
// DECODE_ATTN_SPAN keys: the keys split across workgroups, then merged). Inference only
// (no autograd). `kvCacheAppend` writes the cache and attends nothing (a prefill, whose causal
// attention the flash kernel of ./attention.ts does on the same qkv).
import { DTypeError, ShapeError, fmtShape } from "../errors.ts";
import { gpu } from "../gpu/context.ts";
import { f32bits } from "../gpu/launcher.ts";
import { Tensor } from "../tensor.ts";
import {
  DECODE_ATTN_MAX_HEAD_DIM, DECODE_ATTN_WG, attentionDecodeCombineKernel, attentionDecodeKernel, decodeAttnCols,
} from "../../shaders/attention-decode.wgsl.ts";
import { checkFloat, checkLive, fdt, rowGrid } from "./util.ts";

export { DECODE_ATTN_MAX_HEAD_DIM };

/**
 * Keys per workgroup once a query sees more than this many: one chunk of the kernel. Past it the
 * keys split across workgroups and a second dispatch merges them (at gpt2 with 930 cached keys,
 * one workgroup per head took 75 µs a layer on the H200, latency-bound).
 */
export const DECODE_ATTN_SPAN = DECODE_ATTN_WG;

interface Geometry { B: number; T: number; H: number; D: number; cap: number }

/** Validates before anything is allocated or recorded; returns the geometry. */
function check(op: string, qkv: Tensor, kCache: Tensor, vCache: Tensor, start: number, nHead: number): Geometry {
  checkLive(op, qkv, kCache, vCache);
  checkFloat(op, qkv);
  if (qkv.ndim !== 3 || !Number.isInteger(nHead) || nHead < 1 || qkv.shape[2]! % (3 * nHead) !== 0 || qkv.shape[2] === 0) {
    throw new ShapeError(op, `qkv must be [B, T, 3C] with C divisible by nHead, got qkv ${fmtShape(qkv.shape)}, nHead ${nHead}`);
  }
  const [B, T, C3] = qkv.shape as [number, number, number];
  const H = nHead, D = C3 / 3 / H;
  if (D > DECODE_ATTN_MAX_HEAD_DIM) {
    throw new ShapeError(op, `head dim ${D} is over the decode kernel's ${DECODE_ATTN_MAX_HEAD_DIM}; decode without the KV cache (kvCache: false) or use more heads`);
  }
  for (const [name, c] of [["kCache", kCache], ["vCache", vCache]] as const) {
    if (c.dtype !== qkv.dtype) throw new DTypeError(op, `${name} is ${c.dtype}, qkv ${qkv.dtype}; the cache must match the activations`);
    if (c.ndim !== 4 || c.shape[0] !== B || c.shape[1] !== H || c.shape[3] !== D) {
      throw new ShapeError(op, `${name} must be [B, H, capacity, D] = [${B}, ${H}, capacity, ${D}], got ${fmtShape(c.shape)}`);
    }
  }
  if (kCache.shape[2] !== vCache.shape[2]) throw new ShapeError(op, `kCache ${fmtShape(kCache.shape)} and vCache ${fmtShape(vCache.shape)} differ in capacity`);
  if (kCache.buffer(op) === vCache.buffer(op)) throw new ShapeError(op, "kCache and vCache are the same tensor; each needs its own storage");
  const cap = kCache.shape[2]!;
  if (!Number.isInteger(start) || start < 0 || start + T > cap) {
    throw new ShapeError(op, `positions ${start}..${start + T - 1} do not fit the cache's capacity ${cap}; grow the cache first`);
  }
  return { B, T, H, D, cap };
}

function launch(op: string, qkv: Tensor, kCache: Tensor, vCache: Tensor, start: number, g: Geometry, y: Tensor | null): void {
  if (g.B * g.T === 0) return;
  const { B, T, H, D } = g;
  const cols = decodeAttnCols(D), dt = fdt(qkv), L = gpu().launcher;
  const p = [B, T, H, D, start, g.cap, f32bits(1 / Math.sqrt(D))];
  const io = [qkv.buffer(op), kCache.buffer(op), vCache.buffer(op)];
  if (!y) { L.dispatch(attentionDecodeKernel(dt, "append", cols), io, rowGrid(B * T * H), p); return; }
  const S = Math.ceil((start + T) / DECODE_ATTN_SPAN);
  if (S <= 1) { L.dispatch(attentionDecodeKernel(dt, "attend", cols), [...io, y.buffer(op)], rowGrid(B * T * H), p); return; }
  // a long cache: the keys split across S workgroups per query, then merged
  const part = Tensor.empty([B * T * H, S, D + 2], "f32", op);
  L.dispatch(attentionDecodeKernel(dt, "partial", cols), [...io, part.buffer(op)], rowGrid(B * T * H * S), [...p, DECODE_ATTN_SPAN, S]);
  L.dispatch(attentionDecodeCombineKernel(dt), [part.buffer(op), y.buffer(op)], rowGrid(B * T * H), [B * T * H, S, D]);
  part.dispose();
}

/**
 * y [B, T, C] = softmax(q·Kᵀ/√D)·V of the T new positions (causal: position start + t sees keys
 * 0..start+t), where K, V are the cache's first `start` positions followed by the new ones; the new
 * keys and values are written into kCache, vCache [B, H, capacity, D] at start..start+T-1.
 */
export function kvCacheAttention(qkv: Tensor, kCache: Tensor, vCache: Tensor, start: number, nHead: number): Tensor {
  const op = "kvCacheAttention";
  const g = check(op, qkv, kCache, vCache, start, nHead);
  const y = Tensor.empty([g.B, g.T, g.H * g.D], qkv.dtype, op);
  launch(op, qkv, kCache, vCache, start, g, y);
  return y;
}

/** Writes the new positions' keys and values from qkv [B, T, 3C] into the cache at start..start+T-1. */
export function kvCacheAppend(qkv: Tensor, kCache: Tensor, vCache: Tensor, start: number, nHead: number): void {
  const op = "kvCacheAppend";
  launch(op, qkv, kCache, vCache, start, check(op, qkv, kCache, vCache, start, nHead), null);
}
