// The decode kernels of 2:4 spmm (Y = X·S^T + b for M ≤ 16 rows of X, the serving / tiny-batch
// case), bound by weight bytes: every byte of S's values and meta is read once, coalesced.
//
// A workgroup of 256 invocations is 32 teams of 8 lanes; a team owns one row of S (an "item")
// and lane l reads the vec4s l, l+8, l+16, … of that row's values (two 2:4 groups = 8 columns
// each), so the 8 lanes of a team read 128 consecutive bytes per step, and one byte of the meta
// word (four lanes share a word). X is staged per K sub-chunk into workgroup memory once for all
// the workgroup's rows, transposed to one vec4 per k and 4 rows of X (C = ⌈M/4⌉ vec4s per k), and
// read at the kept columns: N/M of the multiply-adds, each a workgroup read (no transposed copy of
// X, no extra dispatch). Lanes of a team end with partial sums, added by lane 0 after one exchange.
//
// Three variants of one kernel:
// - split (`split`): when d_out alone gives too few workgroups, wid.y takes a K range of `len`
//   columns and the kernel writes f32 partial sums P [splits, M, d_out]; spmmSplitSumKernel then
//   adds the splits and the bias (two passes, no atomics).
// - one pass: the whole K per workgroup, bias in the epilogue, 32 rows of S per workgroup.
// - fused merged inference (`lowRank`, docs/slope.md §5): S = [W; Lᵀ] (d_out + r rows) and
//   Y = act(X·Wᵀ + b + (X·L)·Rs) in ONE dispatch. A workgroup owns 16 output rows; its other teams
//   (and, for r > 16, further rounds of all teams) compute the r rows of Z = X·L redundantly in
//   every workgroup: r·K/2 extra reads, served by L2, where a second dispatch would cost more at
//   decode sizes. The row sums land in workgroup memory (reusing the X stage), then every
//   invocation finishes one (row of X, output) pair: bias, Σ_j Z[m, j]·Rs[j, o], the activation.
// Only 2:4 with K a multiple of 8 (the vec4 values of a row); other patterns take the small kernel
// of spmm.wgsl.ts.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, enables, linearIndexFn, MAIN_ARGS } from "./kernel.ts";
import { kernelFamily } from "./kernel.ts";
import { ACT, type Activation, GELU4_FN } from "./matmul.wgsl.ts";
import type { SpDType } from "./sparse24.wgsl.ts";

export const DECODE_MAX_ROWS = 16;
/** Rows of S per workgroup (teams) and lanes per row. */
export const DECODE_ROWS = 32;
export const DECODE_LANES = 8;
/** Output rows per workgroup of the fused merged variant (the rest of its teams compute Z = X·L). */
export const FUSED_ROWS = 16;
/** Most rounds of 32 rows per team in the fused variant (registers: rounds × ⌈M/4⌉ vec4 accumulators). */
export const FUSED_MAX_ROUNDS = 4;
/** Steps of 8 columns each lane keeps in flight (loads issued before the first multiply-add). */
const DECODE_UNROLL = 4;
/** Workgroup bytes for the staged X sub-chunk (the exchange takes 4 KiB more). */
const XS_BYTES = 12288;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Columns of X staged per sub-chunk for C vec4s per k: a multiple of 64 (8 lanes × 8 columns). */
export function decodeChunk(c: number): number {
  return Math.floor(XS_BYTES / (16 * c) / 64) * 64;
}

/** Rounds of 32 rows each team of the fused variant runs for rank r: ⌈(16 + r) / 32⌉. */
export function fusedRounds(r: number): number {
  return Math.ceil((FUSED_ROWS + r) / DECODE_ROWS);
}

/** Largest rank the fused variant takes: its rounds fit the registers, and its row sums the X stage for any M ≤ 16. */
export const FUSED_MAX_RANK = Math.min(FUSED_MAX_ROUNDS, Math.floor(decodeChunk(4) / DECODE_ROWS)) * DECODE_ROWS - FUSED_ROWS;

export interface DecodeVariant {
  dtype: SpDType;
  /** ⌈M/4⌉: vec4s of X rows per k. */
  c: number;
  /** "split": f32 partials per K slice; "one": one pass with the bias; "fused": merged [W; Lᵀ] with the low-rank add. */
  mode: "split" | "one" | "fused";
  bias: boolean;
  /** fused: rounds of 32 items per team (fusedRounds(r)); 1 otherwise. */
  rounds: number;
  /** fused: the epilogue's activation. */
  act: Activation;
}

/**
 * Bindings: X [M, K] (read), values [rows of S, K/2] as vec4 (read), meta (read u32), out (rw):
 * Y [M, d_out] ("one", "fused") or f32 partials [splits, M, d_out] ("split"); then [bias] (not
 * "split"; [d_out] at least), then Rs [r, d_out] f32 ("fused").
 * Params: [0]=M [1]=K [2]=d_out [3]=meta words/row [4]=values/row [5]=len (columns per split, a
 * multiple of 64; K otherwise) [6]=r (fused). Dispatch: [⌈d_out/32⌉, splits] (split, one) or
 * [⌈d_out/16⌉, 1] (fused).
 */
export const spmmDecodeKernel = kernelFamily("spmm_decode", (v: DecodeVariant) => {
  const { dtype, c, mode, rounds } = v;
  const fused = mode === "fused", split = mode === "split";
  const XC = decodeChunk(c), C = range(c), Q = range(rounds);
  const ro = fused ? FUSED_ROWS : DECODE_ROWS;
  const g = bindGroup([
    { name: "X", access: "read", type: `array<${dtype}>` },
    { name: "values", access: "read", type: `array<vec4<${dtype}>>` },
    { name: "mbits", access: "read", type: "array<u32>" },
    { name: "Y", access: "rw", type: split ? "array<f32>" : `array<${dtype}>` },
    !split && v.bias && { name: "bias", access: "read", type: `array<${dtype}>` },
    fused && { name: "Rs", access: "read", type: "array<f32>" },
  ]);
  // item q of this team: an output row (< ro) of this workgroup's block, or (fused) row j of Lᵀ
  const items = Q.map((q) => fused
    ? `  let it${q} = team + ${32 * q}u;
  let live${q} = (it${q} < ${ro}u && wid.x * ${ro}u + it${q} < dOut) || (it${q} >= ${ro}u && it${q} - ${ro}u < r);
  let row${q} = min(select(dOut + it${q} - ${ro}u, wid.x * ${ro}u + it${q}, it${q} < ${ro}u), dOut + r - 1u);`
    : `  let live${q} = wid.x * ${ro}u + team < dOut;
  let row${q} = min(wid.x * ${ro}u + team, dOut - 1u);`).join("\n");
  // U steps of 8 columns per lane in flight: their loads are issued before any is used, so a
  // long row (fc2's K = 4d) costs ⌈K/(64·U)⌉ memory latencies per lane, not K/64
  const step = (q: number, us: number[]) => `      if (live${q}) {
${us.map((u) => `        let v${u} = vec4<f32>(values[row${q} * (vpr / 4u) + (kb + ${8 * DECODE_LANES * u}u) / 8u]);
        let w${u} = mbits[row${q} * ws + (kb + ${8 * DECODE_LANES * u}u) / 32u];`).join("\n")}
${us.map((u) => `        {
          let byte = (w${u} >> ((kb + ${8 * DECODE_LANES * u}u) % 32u)) & 255u;
          let g0 = byte & 15u; let g1 = byte >> 4u;
          let kl = p * 8u + ${8 * DECODE_LANES * u}u;
          let i0 = kl + min(countTrailingZeros(g0), 3u);
          let i1 = kl + min(countTrailingZeros(g0 & (g0 - 1u)), 3u);
          let i2 = kl + 4u + min(countTrailingZeros(g1), 3u);
          let i3 = kl + 4u + min(countTrailingZeros(g1 & (g1 - 1u)), 3u);
${C.map((i) => `          acc${q}_${i} = acc${q}_${i} + Xs[i0 * ${c}u + ${i}u] * v${u}.x + Xs[i1 * ${c}u + ${i}u] * v${u}.y + Xs[i2 * ${c}u + ${i}u] * v${u}.z + Xs[i3 * ${c}u + ${i}u] * v${u}.w;`).join("\n")}
        }`).join("\n")}
      }`;
  const unrolled = Q.map((q) => step(q, range(DECODE_UNROLL))).join("\n");
  const single = Q.map((q) => step(q, [0])).join("\n");
  // lane 0 of a team holds the row sum s (4 rows of X) of item q, vec4 i
  const finish = (q: number, i: number) => {
    if (fused) return `    Xs[it${q} * ${c}u + ${i}u] = s;`;
    return range(4).map((j) => {
      const r = 4 * i + j;
      return split
        ? `    if (${r}u < nX) { Y[(wid.y * nX + ${r}u) * dOut + row${q}] = s.${"xyzw"[j]}; }`
        : `    if (${r}u < nX) { Y[${r}u * dOut + row${q}] = ${dtype}(s.${"xyzw"[j]} + b); }`;
    }).join("\n");
  };
  const reduce = Q.flatMap((q) => C.map((i) => `  workgroupBarrier();
  red[tid] = acc${q}_${i};
  workgroupBarrier();
  if (lane == 0u && live${q}) {
    let s = ${range(8).map((l) => `red[tid + ${l}u]`).join(" + ")};
${finish(q, i)}
  }`)).join("\n");
  const code = wgsl`${enables(dtype)}
${g.decls}
var<workgroup> Xs: array<vec4<f32>, ${XC * c}>;
var<workgroup> red: array<vec4<f32>, 256>;
${fused && v.act === "gelu" ? GELU4_FN : ""}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let nX = pu(0u); let K = pu(1u); let dOut = pu(2u); let ws = pu(3u); let vpr = pu(4u); let len = pu(5u);
  let r = pu(6u);
  let tid = lid.x; let lane = tid % ${DECODE_LANES}u; let team = tid / ${DECODE_LANES}u;
${items}
  let ks = wid.y * len; let ke = min(ks + len, K);
${Q.flatMap((q) => C.map((i) => `  var acc${q}_${i} = vec4<f32>(0.0);`)).join("\n")}
  for (var xc = ks; xc < ke; xc = xc + ${XC}u) {
    let n = min(ke - xc, ${XC}u);
    workgroupBarrier();
    // stage X[:, xc..xc+n) transposed: coalesced along k, one vec4 per (k, 4 rows)
    for (var e = tid; e < n * nX; e = e + 256u) {
      let i = e / n; let k = e % n;
      Xs[k * ${c}u + i / 4u][i % 4u] = f32(X[i * K + xc + k]);
    }
    workgroupBarrier();
    var p = lane;
    for (; p + ${DECODE_LANES * (DECODE_UNROLL - 1)}u < n / 8u; p = p + ${DECODE_LANES * DECODE_UNROLL}u) {
      let kb = xc + p * 8u;
${unrolled}
    }
    for (; p < n / 8u; p = p + ${DECODE_LANES}u) {
      let kb = xc + p * 8u;
${single}
    }
  }
#if ${mode === "one" && v.bias}
  let b = f32(bias[row0]);
#else
  let b = 0.0;
#endif
${reduce}
#if ${fused}
  // every invocation finishes (row m of X, output o) pairs: row sums of W and Z are in Xs
  workgroupBarrier();
  for (var e = tid; e < ${ro}u * nX; e = e + 256u) {
    let m = e / ${ro}u; let ol = e % ${ro}u;
    let o = wid.x * ${ro}u + ol;
    if (o < dOut) {
      var y = Xs[ol * ${c}u + m / 4u][m % 4u];
#if ${v.bias}
      y = y + f32(bias[o]);
#endif
      for (var j = 0u; j < r; j = j + 1u) {
        y = y + Xs[(${ro}u + j) * ${c}u + m / 4u][m % 4u] * Rs[j * dOut + o];
      }
      Y[m * dOut + o] = ${dtype}((${ACT[v.act]("vec4<f32>(y)")}).x);
    }
  }
#endif
}
`;
  return { code, group: g };
});

/**
 * The second pass of split-K: Y[e] = Σ_s parts[s·M·d_out + e] (+ bias[e % d_out]).
 * Bindings: parts (read f32), Y (rw), [bias]. Params: [0]=M·d_out [1]=d_out [2]=splits.
 * Dispatch: grid1d(M·d_out, 256).
 */
export const spmmSplitSumKernel = kernelFamily("spmm_split_sum", (dtype: SpDType, bias: boolean) => {
  const g = bindGroup([
    { name: "parts", access: "read", type: "array<f32>" },
    { name: "Y", access: "rw", type: `array<${dtype}>` },
    bias && { name: "bias", access: "read", type: `array<${dtype}>` },
  ]);
  const code = wgsl`${enables(dtype)}
${g.decls}
${linearIndexFn(256)}

@compute @workgroup_size(256)
fn main(${MAIN_ARGS}) {
  let total = pu(0u); let dOut = pu(1u); let splits = pu(2u);
  let e = linearIndex(wid, nwg, lid);
  if (e >= total) { return; }
  var s = 0.0;
  for (var i = 0u; i < splits; i = i + 1u) { s = s + parts[i * total + e]; }
#if ${bias}
  s = s + f32(bias[e % dOut]);
#endif
  Y[e] = ${dtype}(s);
}
`;
  return { code, group: g };
});
