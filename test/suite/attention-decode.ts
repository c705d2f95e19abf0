// Attention over a KV cache (src/ops/attention-decode.ts) against the float64 reference: the
// new positions' outputs equal causal attention over the whole sequence (cached prefix + new
// tokens), the cache holds the new keys and values at their positions afterwards and nothing past
// them is touched. Odd shapes: head dims 5 and 300 (two columns per invocation), one and three
// heads, B = 2, several new positions at once (causal among themselves), 256 and 257 keys (one
// span exactly; one key into a second, split across workgroups and merged), three spans, a span
// empty for one query, an exactly full cache. Bad input is refused before any write.
import * as ws from "../../src/index.ts";
import { DECODE_ATTN_SPAN, kvCacheAppend, kvCacheAttention } from "../../src/ops/attention-decode.ts";
import { assertClose, assertEquals, assertThrows } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";
import { type Arr, arr, randArr } from "../ref/cpu.ts";
import { fromArr } from "../ref/convert.ts";
import { attention as refAttention, mergeHeads, splitQkv } from "../ref/attention.ts";

const SENTINEL = 7;

interface Case { B: number; H: number; D: number; start: number; T: number; cap: number }

/** qkv of the whole sequence [B, S, 3C], its reference outputs [B, S, C] and keys / values [B, H, S, D]. */
function reference(c: Case, seed: number) {
  const S = c.start + c.T, C = c.H * c.D;
  const full = randArr([c.B, S, 3 * C], seed, -1.5, 1.5);
  full.data.forEach((x, i) => { full.data[i] = Math.fround(x); }); // f32 values: the cache copies are exact
  const [q, k, v] = splitQkv(full, c.H);
  const y = mergeHeads(refAttention(q, k, v, { causal: true }));
  return { full, k, v, y, S, C };
}

/** Rows [from, to) of a [B, S, W] array. */
function rows(a: Arr, from: number, to: number): Arr {
  const [B, S, W] = a.shape as [number, number, number];
  const out = arr([B, to - from, W]);
  for (let b = 0; b < B; b++) out.data.set(a.data.subarray((b * S + from) * W, (b * S + to) * W), b * (to - from) * W);
  return out;
}

/** A [B, H, cap, D] cache holding positions < n of `src` [B, H, S, D], SENTINEL elsewhere. */
function cacheOf(src: Arr, c: Case, n: number): Arr {
  const S = src.shape[2]!;
  const out = arr([c.B, c.H, c.cap, c.D], new Float64Array(c.B * c.H * c.cap * c.D).fill(SENTINEL));
  for (let bh = 0; bh < c.B * c.H; bh++) {
    out.data.set(src.data.subarray(bh * S * c.D, (bh * S + n) * c.D), bh * c.cap * c.D);
  }
  return out;
}

const CASES: Case[] = [
  { B: 2, H: 3, D: 5, start: 9, T: 1, cap: 16 },
  { B: 1, H: 2, D: 8, start: 3, T: 4, cap: 7 },      // four new positions, causal among themselves; cache exactly full
  { B: 1, H: 2, D: 16, start: 255, T: 1, cap: 260 }, // 256 keys: one chunk exactly
  { B: 1, H: 1, D: 16, start: 256, T: 1, cap: 257 }, // 257 keys: one into the second chunk
  { B: 1, H: 1, D: 300, start: 6, T: 2, cap: 9 },    // head dim over the workgroup: two columns per invocation
  { B: 2, H: 3, D: 5, start: 254, T: 4, cap: 300 },  // keys split in two spans and merged; the first query's second span is empty
  { B: 1, H: 1, D: 300, start: 520, T: 1, cap: 521 }, // three spans at two columns per invocation
];

test(`kvCacheAttention: new positions' outputs and the written cache equal the float64 reference at ${CASES.length} odd shapes`, async () => {
  for (const [n, c] of CASES.entries()) {
    const msg = JSON.stringify(c);
    const r = reference(c, 40 + n);
    const qkv = fromArr(rows(r.full, c.start, r.S));
    const kc = fromArr(cacheOf(r.k, c, c.start)), vc = fromArr(cacheOf(r.v, c, c.start));
    const d0 = ws.gpu().launcher.stats.dispatches;
    const y = kvCacheAttention(qkv, kc, vc, c.start, c.H);
    assertEquals(ws.gpu().launcher.stats.dispatches - d0, r.S > DECODE_ATTN_SPAN ? 2 : 1, `${msg} dispatches (split and merged past one span)`);
    assertEquals(y.shape, [c.B, c.T, r.C]);
    assertClose(await y.toArray(), rows(r.y, c.start, r.S).data, { rtol: 1e-4, atol: 1e-5, msg: `${msg} y` });
    assertClose(await kc.toArray(), cacheOf(r.k, c, r.S).data, { rtol: 0, atol: 0, msg: `${msg} keys` });
    assertClose(await vc.toArray(), cacheOf(r.v, c, r.S).data, { rtol: 0, atol: 0, msg: `${msg} values` });
    for (const t of [qkv, kc, vc, y]) t.dispose();
  }
});

test("kvCacheAppend writes a prefill's keys and values and nothing else; bad input is refused before any write", async () => {
  const c: Case = { B: 2, H: 3, D: 5, start: 0, T: 4, cap: 6 };
  const r = reference(c, 77);
  const qkv = fromArr(r.full);
  const kc = fromArr(cacheOf(r.k, c, 0)), vc = fromArr(cacheOf(r.v, c, 0));
  kvCacheAppend(qkv, kc, vc, 0, c.H);
  assertClose(await kc.toArray(), cacheOf(r.k, c, 4).data, { rtol: 0, atol: 0, msg: "keys" });
  assertClose(await vc.toArray(), cacheOf(r.v, c, 4).data, { rtol: 0, atol: 0, msg: "values" });
  const before = await kc.toArray();
  await assertThrows(() => kvCacheAttention(qkv, kc, vc, 3, c.H), ws.ShapeError, "kvCacheAttention", "3..6", "capacity 6");
  await assertThrows(() => kvCacheAttention(qkv, kc, vc, 0, 4), ws.ShapeError, "kvCacheAttention", "nHead 4");
  await assertThrows(() => kvCacheAttention(qkv, kc, kc, 0, c.H), ws.ShapeError, "same tensor");
  const ints = ws.cast(kc, "i32");
  await assertThrows(() => kvCacheAttention(qkv, ints, vc, 0, c.H), ws.DTypeError, "kCache is i32");
  const wide = ws.zeros([c.B, c.H, 6, 4]);
  await assertThrows(() => kvCacheAppend(qkv, wide, vc, 0, c.H), ws.ShapeError, "kvCacheAppend", "[2, 3, capacity, 5]");
  assertClose(await kc.toArray(), before, { rtol: 0, atol: 0, msg: "a refused call writes nothing" });
  for (const t of [qkv, kc, vc, ints, wide]) t.dispose();
});
