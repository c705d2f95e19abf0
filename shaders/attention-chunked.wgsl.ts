// The elementwise kernels of the chunked attention backward (src/ops/attention-chunked.ts). That
// backward recomputes the scores of a chunk of c heads, one row panel of queries at a time and
// with the keys cut into `pieces` (extra GEMM batch entries), with the fast batched GEMM and does
// its five products there; these kernels do everything between the products, one pass each:
// - gather: rows [row0, row0 + rows) of the chunk's q and dO (written once per key piece, so the
//   GEMM pairs every piece with them), or of its k and v (the same addressing as the fused
//   kernels: the contiguous [..., T, D] and the packed [B, T, 3C] layouts) into contiguous f32
//   scratch, which the GEMM reads with a plain batch stride;
// - probs: a panel's scores S [c, pieces, rows, keys/pieces] → P = exp(scale·S − L) in place (0
//   above the diagonal when causal), and with dropout also Pd = P·keep/(1 − p), the keep mask
//   regenerated from the counter RNG at (key, b·h, i·T + j) exactly as the fused forward drew it;
// - dscores: dP → dS = P ∘ (dPd − Δ)·scale in place (dPd: dP through the same mask);
// - accumulate: a panel's dK or dV [c, keys, D] into a chunk's f32 [c, T, D] (assigned by the
//   first panel, added by the others);
// - scatter: one of dQ, dK, dV (f32 [c, split, rows, D]: dQ's partial sums over the key pieces,
//   added here) into the gradient's layout and dtype at rows [row0, row0 + rows).
// One invocation per element over a linear index folded into a 2-D grid (grid1d).
// Params: the fused kernels' block (ATTN_PARAMS words, shaders/attention.wgsl.ts), then
// [17]=first b·h of the chunk [18]=elements of this dispatch [19]=D [20]=row0 (the panel's
// first query, or the first gathered/scattered row) [21]=rows [22]=keys per piece [23]=pieces.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { RNG_WGSL } from "./fill.wgsl.ts";
import { ATTN_COMMON, keepTest } from "./attention.wgsl.ts";

type F = "f32" | "f16";

export const CHUNK_WORKGROUP = 256;

/** idx → (chunk head, row t, d) of a [c, rows, D] block starting at row row0; bh is the global head. */
const ROW_INDEX = `let idx = linearIndex(wid, nwg, lid);
  if (idx >= pu(18u)) { return; }
  let T = T_();
  let D = pu(19u);
  let rows = pu(21u);
  let d = idx % D;
  let r = idx / D;
  let t = pu(20u) + r % rows;
  let bh = pu(17u) + r / rows;`;

/** The shared head of the per-row gather and scatter kernels: helpers and main up to the row's (bh, t, d). */
const ROW_MAIN = `${ATTN_COMMON}
${linearIndexFn(CHUNK_WORKGROUP)}
@compute @workgroup_size(${CHUNK_WORKGROUP})
fn main(${MAIN_ARGS}) {
  ${ROW_INDEX}`;

/** idx → (chunk head, query i, key j) of a panel's [c, pieces, rows, keys/pieces] scores; bh is the global head. */
const SCORE_INDEX = `let idx = linearIndex(wid, nwg, lid);
  if (idx >= pu(18u)) { return; }
  let T = T_();
  let kp = pu(22u);
  let rows = pu(21u);
  let pieces = pu(23u);
  let r = idx / kp;
  let r2 = r / rows;
  let i = pu(20u) + r % rows;
  let j = (r2 % pieces) * kp + idx % kp;
  let bh = pu(17u) + r2 / pieces;`;

const sum = (n: number, term: (i: number) => string): string => Array.from({ length: n }, (_, i) => term(i)).join(" + ");

/**
 * Bindings: a, b (read, dtype), then ac, bc (rw, f32 [c, rep, rows, D]: each row written `rep`
 * times). `qg`: a = q, b = dO (O's addressing); otherwise a = k, b = v.
 */
export const attentionChunkGatherKernel = kernelFamily("attentionChunkGather", (dtype: F, qg: boolean, rep: number) => {
  const g = bindGroup([
    { name: "a", access: "read", type: `array<${dtype}>` },
    { name: "b", access: "read", type: `array<${dtype}>` },
    { name: "ac", access: "rw", type: "array<f32>" },
    { name: "bc", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ROW_MAIN}
  let ro = inRow(bh, t) + d;
#if ${qg}
  let av = f32(a[pu(5u) + ro]);
  let bv = f32(b[outRow(bh, t) + d]);
#else
  let av = f32(a[pu(6u) + ro]);
  let bv = f32(b[pu(7u) + ro]);
#endif
  let piece = rows * D;
  let at = (r / rows) * ${rep}u * piece + (r % rows) * D + d;
${Array.from({ length: rep }, (_, i) => `  ac[at + ${i}u * piece] = av;\n  bc[at + ${i}u * piece] = bv;`).join("\n")}
}
`;
  return { code, group: g };
});

/**
 * One of dQ, dK, dV (`which` 0, 1, 2: the q, k or v base) into the gradient. Bindings: src (read,
 * f32 [c, split, rows, D]), dst (rw, dtype).
 */
export const attentionChunkScatterKernel = kernelFamily("attentionChunkScatter", (dtype: F, which: 0 | 1 | 2, split: number) => {
  const g = bindGroup([
    { name: "src", access: "read", type: "array<f32>" },
    { name: "dst", access: "rw", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ROW_MAIN}
  let piece = rows * D;
  let first = (r / rows) * ${split}u * piece + (t - pu(20u)) * D + d;
  dst[pu(${5 + which}u) + inRow(bh, t) + d] = ${dtype}(${sum(split, (i) => `src[first + ${i}u * piece]`)});
}
`;
  return { code, group: g };
});

/**
 * acc[:, 0:keys] = (or += unless `assign`) part. Bindings: acc (rw, f32 [c, T, D]), part (read,
 * f32 [c, keys, D]). Params [21] = keys (the rows written).
 */
export const attentionChunkAccumulateKernel = kernelFamily("attentionChunkAccumulate", (assign: boolean) => {
  const g = bindGroup([
    { name: "acc", access: "rw", type: "array<f32>" },
    { name: "part", access: "read", type: "array<f32>" },
  ]);
  const code = wgsl`${g.decls}
${ATTN_COMMON}
${linearIndexFn(CHUNK_WORKGROUP)}
@compute @workgroup_size(${CHUNK_WORKGROUP})
fn main(${MAIN_ARGS}) {
  let idx = linearIndex(wid, nwg, lid);
  if (idx >= pu(18u)) { return; }
  let T = T_();
  let D = pu(19u);
  let keys = pu(21u);
  let d = idx % D;
  let r = idx / D;
  let t = r % keys;
  let n = r / keys;
  let s = part[idx];
  let at = (n * T + t) * D + d;
#if ${assign}
  acc[at] = s;
#else
  acc[at] = acc[at] + s;
#endif
}
`;
  return { code, group: g };
});

/** The shared head of the two per-score kernels: helpers, the RNG with dropout, and main up to the score's (bh, i, j). */
const scoreMain = (dropout: boolean) => `${ATTN_COMMON}
${dropout ? RNG_WGSL : ""}
${linearIndexFn(CHUNK_WORKGROUP)}
@compute @workgroup_size(${CHUNK_WORKGROUP})
fn main(${MAIN_ARGS}) {
  ${SCORE_INDEX}`;

/**
 * S → P in place. Bindings: s (rw, f32 [c, pieces, rows, keys/pieces]), lse (read, f32 [B·H, T]),
 * and with dropout pd (rw, the shape of s).
 */
export const attentionChunkProbsKernel = kernelFamily("attentionChunkProbs", (causal: boolean, dropout: boolean) => {
  const g = bindGroup([
    { name: "s", access: "rw", type: "array<f32>" },
    { name: "lse", access: "read", type: "array<f32>" },
    dropout && { name: "pd", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${g.decls}
${scoreMain(dropout)}
  let e = exp(pf(11u) * s[idx] - lse[bh * T + i]);
#if ${causal}
  let p = select(0.0, e, j <= i);
#else
  let p = e;
#endif
  s[idx] = p;
#if ${dropout}
  pd[idx] = select(0.0, p * pf(15u), ${keepTest("i", "j")});
#endif
}
`;
  return { code, group: g };
});

/** dP → dS in place. Bindings: dp (rw, f32 [c, pieces, rows, keys/pieces]), p (read, the same shape), delta (read, f32 [B·H, T]). */
export const attentionChunkDScoresKernel = kernelFamily("attentionChunkDScores", (dropout: boolean) => {
  const g = bindGroup([
    { name: "dp", access: "rw", type: "array<f32>" },
    { name: "p", access: "read", type: "array<f32>" },
    { name: "delta", access: "read", type: "array<f32>" },
  ]);
  const code = wgsl`${g.decls}
${scoreMain(dropout)}
#if ${dropout}
  let dpd = select(0.0, dp[idx] * pf(15u), ${keepTest("i", "j")});
#else
  let dpd = dp[idx];
#endif
  dp[idx] = p[idx] * (dpd - delta[bh * T + i]) * pf(11u);
}
`;
  return { code, group: g };
});
