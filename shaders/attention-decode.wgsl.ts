// Attention of new positions over a KV cache, in one dispatch per layer (decoding). The qkv
// projection's output [B, T, 3C] is read in place: each workgroup owns one (batch, new position,
// head), writes that position's key and value into the cache [B, H, capacity, D] and attends
// its query over the cached keys 0..start-1 and the new keys start..start+t (causal), the new
// ones read from qkv itself so no workgroup waits on another's writes. The keys are walked in
// chunks of WG: one key's score per invocation, the chunk's max and Σexp in two tree
// reductions, a running (max, sum) rescaled per chunk (online softmax), and P·V summed by
// column with the workgroup split into WG / D groups of D columns (coalesced V rows). y is
// written as [B, T, C] (heads concatenated), the layout the output projection reads. This
// replaces the unfused decode's permute, split, two concats, q·Kᵀ, scale, softmax, ·V and head
// merge (13 dispatches per layer). Past one span of keys ("partial") the keys split across
// workgroups, each writing its running (max, Σp, Σp·v), merged by attentionDecodeCombineKernel:
// one workgroup per head alone was latency-bound on a long cache. Mode "append" only writes the
// cache (the prefill, whose attention the flash kernel does).
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, MAIN_ARGS } from "./kernel.ts";
import { NEG_BIG, treeReduce } from "./softmax.wgsl.ts";

type F = "f32" | "f16";

/** Invocations per workgroup and keys per chunk. */
export const DECODE_ATTN_WG = 256;
/** Head dims up to this run in the kernel: up to WG columns per invocation group, at most 4 per invocation above. */
export const DECODE_ATTN_MAX_HEAD_DIM = 4 * DECODE_ATTN_WG;

/** Columns each invocation accumulates: 1 for D ≤ WG (WG / D groups share the keys), else ⌈D / WG⌉ (one group). */
export const decodeAttnCols = (D: number): 1 | 2 | 4 => (D <= DECODE_ATTN_WG ? 1 : D <= 2 * DECODE_ATTN_WG ? 2 : 4);

/**
 * "attend": the whole key range per workgroup, y written. "partial": the keys split into S spans
 * of `span` (a multiple of WG) per query, each workgroup writing its unnormalised Σp·v, running
 * max and Σp to `part` [B·T·H, S, D + 2] for attentionDecodeCombineKernel (long caches: one
 * workgroup per head alone is latency-bound). "append": only the cache writes.
 */
export type DecodeAttnMode = "attend" | "partial" | "append";

/**
 * Bindings: qkv (read), kc (rw), vc (rw), then y (rw, "attend") or part (rw f32, "partial").
 * Params: [0]=B [1]=T (new positions) [2]=H [3]=D [4]=start (cached positions) [5]=capacity
 * [6]=scale (f32 bits) [7]=span [8]=S ("partial"). Grid: B·T·H·S workgroups, index
 * ((b·T + t)·H + h)·S + split; the y row of (b, t, h) is (b·T + t)·H + h (y is [B, T, H·D]).
 */
export const attentionDecodeKernel = kernelFamily("attention_decode", (dtype: F, mode: DecodeAttnMode, cols: 1 | 2 | 4) => {
  const WG = DECODE_ATTN_WG;
  const attend = mode !== "append", partial = mode === "partial";
  const g = bindGroup([
    { name: "qkv", access: "read", type: `array<${dtype}>` },
    { name: "kc", access: "rw", type: `array<${dtype}>` },
    { name: "vc", access: "rw", type: `array<${dtype}>` },
    mode === "attend" && { name: "y", access: "rw", type: `array<${dtype}>` },
    partial && { name: "part", access: "rw", type: "array<f32>" },
  ]);
  const R = [...Array(cols).keys()];
  // q·k over D from buffer `buf` at `kr`, four independent partial sums (the loads of a step
  // are in flight together; a single running sum waits on each load in turn)
  const dot = (buf: string) => `        var s0: f32 = 0.0; var s1: f32 = 0.0; var s2: f32 = 0.0; var s3: f32 = 0.0;
        var d = 0u;
        for (; d + 4u <= D; d = d + 4u) {
          s0 = s0 + qs[d] * f32(${buf}[kr + d]);
          s1 = s1 + qs[d + 1u] * f32(${buf}[kr + d + 1u]);
          s2 = s2 + qs[d + 2u] * f32(${buf}[kr + d + 2u]);
          s3 = s3 + qs[d + 3u] * f32(${buf}[kr + d + 3u]);
        }
        for (; d < D; d = d + 1u) { s0 = s0 + qs[d] * f32(${buf}[kr + d]); }
        dot = (s0 + s1) + (s2 + s3);`;
  // a${r} += Σ over `keys` (chunk-local indices) of p·v at value row `row(jk)`, column d${r} = col + r·WG
  const pv = (keys: string[], row: (jk: string) => string) => R.map((r) => {
    const terms = keys.map((k) => `ps[${k}] * f32(${row(`c0 + ${k}`)} + d${r}])`).join(" + ");
    return `        if (d${r} < D) { a${r} = a${r} + ${terms}; }`;
  }).join("\n");
  const cacheRow = (jk: string) => `vc[(head + ${jk}) * D`;
  const qkvRow = (jk: string) => `qkv[(rowB + ${jk} - start) * C3 + 2u * C + h * D`;
  const code = wgsl`${enables(dtype)}
${g.decls}
#if ${attend}
var<workgroup> qs: array<f32, ${WG * cols}>;
var<workgroup> ps: array<f32, ${WG}>;
var<workgroup> red: array<f32, ${WG}>;
#endif
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let B = pu(0u); let T = pu(1u); let H = pu(2u); let D = pu(3u);
  let start = pu(4u); let cap = pu(5u);
  let wgi = wid.y * nwg.x + wid.x;
  let S = ${partial ? "pu(8u)" : "1u"};     // key splits per query
  if (wgi >= B * T * H * S) { return; }
  let split = wgi % S;
  let row = wgi / S;                      // (b·T + t)·H + h
  let h = row % H;
  let t = (row / H) % T;
  let b = row / (H * T);
  let C = H * D;
  let C3 = 3u * C;
  let rowB = b * T;                       // qkv row of the batch's first new position
  let qb = (rowB + t) * C3 + h * D;       // this position's q; k at + C, v at + 2C
  let head = (b * H + h) * cap;           // cache row of position 0 of this (batch, head)
  let pos = start + t;
  for (var d = lid.x; d < D; d = d + ${WG}u) {
    if (split == 0u) {
      kc[(head + pos) * D + d] = qkv[qb + C + d];
      vc[(head + pos) * D + d] = qkv[qb + 2u * C + d];
    }
#if ${attend}
    qs[d] = f32(qkv[qb + d]);
#endif
  }
#if ${attend}
  workgroupBarrier();
  let scale = pf(6u);
  let n = pos + 1u;                       // keys this query sees
  let kBeg = ${partial ? "split * pu(7u)" : "0u"};
  let kEnd = ${partial ? "min(n, kBeg + pu(7u))" : "n"};    // this workgroup's keys (none when kBeg ≥ n)
  let G = max(1u, ${WG}u / D);            // invocation groups over the keys
  let grp = lid.x / D;
  let col = lid.x % D;
  let busy = ${cols === 1 ? "grp < G" : "true"};
  var m: f32 = ${NEG_BIG};
  var s: f32 = 0.0;
  ${R.map((r) => `var a${r}: f32 = 0.0;`).join(" ")}
  for (var c0 = kBeg; c0 < kEnd; c0 = c0 + ${WG}u) {
    let j = c0 + lid.x;
    var sc: f32 = ${NEG_BIG};
    if (j < kEnd) {
      var dot: f32 = 0.0;
      if (j < start) {
        let kr = (head + j) * D;
${dot("kc")}
      } else {
        let kr = (rowB + j - start) * C3 + C + h * D;
${dot("qkv")}
      }
      sc = dot * scale;
    }
    red[lid.x] = sc;
${treeReduce(WG, (w) => `    red[lid.x] = max(red[lid.x], red[lid.x + ${w}u]);`)}
    let mNew = max(m, red[0]);
    workgroupBarrier();
    var p: f32 = 0.0;
    if (j < kEnd) { p = exp(sc - mNew); }
    ps[lid.x] = p;
    red[lid.x] = p;
${treeReduce(WG, (w) => `    red[lid.x] = red[lid.x] + red[lid.x + ${w}u];`)}
    let alpha = exp(m - mNew);
    s = s * alpha + red[0];
    m = mNew;
    ${R.map((r) => `a${r} = a${r} * alpha;`).join(" ")}
    if (busy) {
      let end = min(${WG}u, kEnd - c0);
      let cached = min(end, select(0u, start - c0, start > c0)); // keys below it are in the cache
      ${R.map((r) => `let d${r} = col + ${r * WG}u;`).join(" ")}
      var jj = grp;
      for (; jj + 3u * G < cached; jj = jj + 4u * G) {
${pv(["jj", "jj + G", "jj + 2u * G", "jj + 3u * G"], cacheRow)}
      }
      for (; jj < cached; jj = jj + G) {
${pv(["jj"], cacheRow)}
      }
      for (; jj < end; jj = jj + G) {
${pv(["jj"], qkvRow)}
      }
    }
    workgroupBarrier();
  }
#if ${cols === 1}
  red[lid.x] = select(0.0, a0, busy);
  workgroupBarrier();
  if (lid.x < D) {
    var tot: f32 = 0.0;
    for (var q = 0u; q < G; q = q + 1u) { tot = tot + red[q * D + lid.x]; }
    ${partial ? "part[wgi * (D + 2u) + lid.x] = tot;" : `y[row * D + lid.x] = ${dtype}(tot / s);`}
  }
#else
  ${R.map((r) => `if (col + ${r * WG}u < D) { ${partial ? `part[wgi * (D + 2u) + col + ${r * WG}u] = a${r};` : `y[row * D + col + ${r * WG}u] = ${dtype}(a${r} / s);`} }`).join("\n  ")}
#endif
#if ${partial}
  if (lid.x == 0u) { part[wgi * (D + 2u) + D] = m; part[wgi * (D + 2u) + D + 1u] = s; }
#endif
#endif
}
`;
  return { code, group: g };
});

/**
 * The splits of "partial" merged: y[row, d] = Σ_s e^(m_s − M)·acc_s[d] / Σ_s e^(m_s − M)·sum_s with
 * M = max_s m_s. One workgroup per row. Bindings: part (read f32), y (rw). Params: [0]=rows [1]=S [2]=D.
 */
export const attentionDecodeCombineKernel = kernelFamily("attention_decode_combine", (dtype: F) => {
  const WG = DECODE_ATTN_WG;
  const g = bindGroup([
    { name: "part", access: "read", type: "array<f32>" },
    { name: "y", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
@compute @workgroup_size(${WG})
fn main(${MAIN_ARGS}) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= pu(0u)) { return; }
  let S = pu(1u); let D = pu(2u);
  let base = row * S * (D + 2u);
  var M: f32 = ${NEG_BIG};
  for (var q = 0u; q < S; q = q + 1u) { M = max(M, part[base + q * (D + 2u) + D]); }
  for (var d = lid.x; d < D; d = d + ${WG}u) {
    var num: f32 = 0.0;
    var den: f32 = 0.0;
    for (var q = 0u; q < S; q = q + 1u) {
      let o = base + q * (D + 2u);
      let w = exp(part[o + D] - M);
      num = num + w * part[o + d];
      den = den + w * part[o + D + 1u];
    }
    y[row * D + d] = ${dtype}(num / den);
  }
}
`;
  return { code, group: g };
});
