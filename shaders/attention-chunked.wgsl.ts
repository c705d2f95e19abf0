// The elementwise kernels of the chunked attention backward (src/ops/attention-chunked.ts). That
// backward recomputes the scores of a chunk of c heads with the fast batched GEMM and does its
// five products there; these kernels do everything between the products, each one pass over
// memory:
// - gather: the chunk's q, k, v rows (the same addressing as the fused kernels, so both the
//   contiguous [..., T, D] and the packed [B, T, 3C] layouts) and its dO rows into contiguous f32
//   [c, T, D] scratch, which the GEMM reads with a plain batch stride;
// - probs: S → P = exp(scale·S − L) in place (0 above the diagonal when causal), and with dropout
//   also Pd = P·keep/(1 − p), the keep mask regenerated from the counter RNG at
//   (key, b·h, i·T + j) exactly as the fused forward drew it;
// - dscores: dP → dS = P ∘ (dPd − Δ)·scale in place (dPd: dP through the same mask);
// - scatter: the chunk's f32 dQ, dK, dV back into the gradient's layout (and dtype), adding up
//   dK's and dV's partial sums (their products are split along the queries, see the front-end).
// One invocation per element over a linear index folded into a 2-D grid (grid1d).
// Params: the fused kernels' block (ATTN_PARAMS words, shaders/attention.wgsl.ts), then
// [17]=first b·h of the chunk [18]=elements of this dispatch [19]=D.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, kernelFamily, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { RNG_WGSL } from "./fill.wgsl.ts";
import { ATTN_COMMON, keepTest } from "./attention.wgsl.ts";

type F = "f32" | "f16";

export const CHUNK_WORKGROUP = 256;
/** Params words of the chunk kernels (the fused block plus h0, count, D). */
export const CHUNK_PARAMS = 20;

/** idx → (n, t, d) of a [c, T, D] chunk; bh is the global head. */
const ROW_INDEX = `let idx = linearIndex(wid, nwg, lid);
  if (idx >= pu(18u)) { return; }
  let T = T_();
  let D = pu(19u);
  let d = idx % D;
  let r = idx / D;
  let t = r % T;
  let bh = pu(17u) + r / T;`;

/** idx → (n, i, j) of a [c, T, T] chunk of scores; bh is the global head. */
const SCORE_INDEX = `let idx = linearIndex(wid, nwg, lid);
  if (idx >= pu(18u)) { return; }
  let T = T_();
  let j = idx % T;
  let r = idx / T;
  let i = r % T;
  let bh = pu(17u) + r / T;`;

/** Bindings: q, k, v, dO (read, dtype), then qc, kc, vc, gc (rw, f32 [c, T, D]). */
export const attentionChunkGatherKernel = kernelFamily("attentionChunkGather", (dtype: F) => {
  const g = bindGroup([
    { name: "q", access: "read", type: `array<${dtype}>` },
    { name: "k", access: "read", type: `array<${dtype}>` },
    { name: "v", access: "read", type: `array<${dtype}>` },
    { name: "g", access: "read", type: `array<${dtype}>` },
    { name: "qc", access: "rw", type: "array<f32>" },
    { name: "kc", access: "rw", type: "array<f32>" },
    { name: "vc", access: "rw", type: "array<f32>" },
    { name: "gc", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ATTN_COMMON}
${linearIndexFn(CHUNK_WORKGROUP)}
@compute @workgroup_size(${CHUNK_WORKGROUP})
fn main(${MAIN_ARGS}) {
  ${ROW_INDEX}
  let ro = inRow(bh, t) + d;
  qc[idx] = f32(q[pu(5u) + ro]);
  kc[idx] = f32(k[pu(6u) + ro]);
  vc[idx] = f32(v[pu(7u) + ro]);
  gc[idx] = f32(g[outRow(bh, t) + d]);
}
`;
  return { code, group: g };
});

/**
 * Bindings: dqc (read, f32 [c, T, D]), dkc, dvc (read, f32 [c, split, T, D]: partial sums over
 * `split` pieces of the queries, added here), then dq, dk, dv (rw, dtype), or one dqkv (rw) when
 * `packed` (the three are columns of one [B, T, 3C] gradient).
 */
export const attentionChunkScatterKernel = kernelFamily("attentionChunkScatter", (dtype: F, packed: boolean, split: number) => {
  const [dq, dk, dv] = packed ? ["dqkv", "dqkv", "dqkv"] : ["dq", "dk", "dv"];
  const g = bindGroup([
    { name: "dqc", access: "read", type: "array<f32>" },
    { name: "dkc", access: "read", type: "array<f32>" },
    { name: "dvc", access: "read", type: "array<f32>" },
    ...(packed ? [{ name: "dqkv", access: "rw", type: `array<${dtype}>` } as const]
      : (["dq", "dk", "dv"] as const).map((name) => ({ name, access: "rw", type: `array<${dtype}>` } as const))),
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${ATTN_COMMON}
${linearIndexFn(CHUNK_WORKGROUP)}
@compute @workgroup_size(${CHUNK_WORKGROUP})
fn main(${MAIN_ARGS}) {
  ${ROW_INDEX}
  let ro = inRow(bh, t) + d;
  let piece = T * D;
  let first = ((r / T) * ${split}u) * piece + t * D + d;
  ${dq}[pu(5u) + ro] = ${dtype}(dqc[idx]);
  ${dk}[pu(6u) + ro] = ${dtype}(${Array.from({ length: split }, (_, i) => `dkc[first + ${i}u * piece]`).join(" + ")});
  ${dv}[pu(7u) + ro] = ${dtype}(${Array.from({ length: split }, (_, i) => `dvc[first + ${i}u * piece]`).join(" + ")});
}
`;
  return { code, group: g };
});

/**
 * S → P in place. Bindings: s (rw, f32 [c, T, T]), lse (read, f32 [B·H, T]), and with dropout
 * pd (rw, f32 [c, T, T]).
 */
export const attentionChunkProbsKernel = kernelFamily("attentionChunkProbs", (causal: boolean, dropout: boolean) => {
  const g = bindGroup([
    { name: "s", access: "rw", type: "array<f32>" },
    { name: "lse", access: "read", type: "array<f32>" },
    dropout && { name: "pd", access: "rw", type: "array<f32>" },
  ]);
  const code = wgsl`${g.decls}
${ATTN_COMMON}
#if ${dropout}
${RNG_WGSL}
#endif
${linearIndexFn(CHUNK_WORKGROUP)}
@compute @workgroup_size(${CHUNK_WORKGROUP})
fn main(${MAIN_ARGS}) {
  ${SCORE_INDEX}
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

/** dP → dS in place. Bindings: dp (rw, f32 [c, T, T]), p (read, f32 [c, T, T]), delta (read, f32 [B·H, T]). */
export const attentionChunkDScoresKernel = kernelFamily("attentionChunkDScores", (dropout: boolean) => {
  const g = bindGroup([
    { name: "dp", access: "rw", type: "array<f32>" },
    { name: "p", access: "read", type: "array<f32>" },
    { name: "delta", access: "read", type: "array<f32>" },
  ]);
  const code = wgsl`${g.decls}
${ATTN_COMMON}
#if ${dropout}
${RNG_WGSL}
#endif
${linearIndexFn(CHUNK_WORKGROUP)}
@compute @workgroup_size(${CHUNK_WORKGROUP})
fn main(${MAIN_ARGS}) {
  ${SCORE_INDEX}
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
