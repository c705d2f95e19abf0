// Dense matmul: C = act(op(A)·op(B) + bias), batched, with op() an optional transpose read in
// place (no materialised transpose). One template emits every variant:
// - a tile shape: 16×16 invocations, each owning a tm×tn block of C (tm, tn ∈ {4, 8}) held in
//   named vec4 registers c<row>_<colgroup>, so a workgroup covers (16·tm)×(16·tn) of C; bk is
//   the depth of one step through K.
// - a load mode: `vec` reads A, B (and writes C) as vec4 when every contiguous dimension is a
//   multiple of 4; the general mode reads scalars with bounds checks, for any M, N, K.
// The K loop is software-pipelined: the next tile is fetched into named registers while the
// current one is multiplied out of workgroup memory, and the per-k body is unrolled in the
// emitted text (no loop-indexed local arrays: wgpu compiles those badly on NVIDIA, DESIGN.md §6).
// Workgroup tiles are stored k-major as vec4 along M and N, so the inner loop reads vec4s; rows
// written by a scatter (an operand whose contiguous axis is K) get one vec4 of padding per k-row
// to spread the scatter over memory banks. The workgroup arrays are 2-D ([k][vec4]) so that the
// inner loop indexes them with a constant k and `tx`/`ty` only: the bounds clamps WebGPU engines
// insert then reduce to a few loop-invariant values. f16 variants read f16 and accumulate in f32.
// Measured on an H200 (bench/README.md): 128×128 k8 reaches 33–38 TFLOP/s from N = 2048 in both
// Dawn and wgpu, 64×64 wins below ~200 workgroups.
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { enables, kernelFamily, paramsDecl, storage } from "./kernel.ts";

export type MatmulAct = "none" | "relu" | "gelu";

/** Work per invocation (tm rows × tn columns) and the K depth of one workgroup-memory step. */
export interface MatmulTile {
  tm: 4 | 8;
  tn: 4 | 8;
  bk: 8 | 16;
}

/**
 * The tile shapes (each loads ≥ 1 vec4 per invocation per operand). The front-end chooses 64x64,
 * 128x64 or 128x128k8 (src/ops/matmul.ts); 128x128 (k-depth 16) was slower on the H200 and is
 * kept as a benchmark option.
 */
export const MATMUL_TILES = {
  "64x64": { tm: 4, tn: 4, bk: 16 },
  "128x64": { tm: 8, tn: 4, bk: 16 },
  "128x128": { tm: 8, tn: 8, bk: 16 },
  "128x128k8": { tm: 8, tn: 8, bk: 8 },
} as const satisfies Record<string, MatmulTile>;
export type MatmulTileName = keyof typeof MATMUL_TILES;

/** Invocations per workgroup (16 × 16) for every tile: WebGPU guarantees 256 on every adapter. */
export const MM_THREADS = 256;

export interface MatmulVariant extends MatmulTile {
  transA: boolean;
  transB: boolean;
  bias: boolean;
  act: MatmulAct;
  /** Also write the pre-activation (for the activation's backward). */
  aux: boolean;
  dtype: "f32" | "f16";
  /** vec4 global loads and stores: A's and B's contiguous dims and N are multiples of 4. */
  vec: boolean;
}

/** Rows (M) and columns (N) of C covered by one workgroup. */
export function tileExtent(t: MatmulTile): { bm: number; bn: number } {
  return { bm: 16 * t.tm, bn: 16 * t.tn };
}

/** Workgroup-memory bytes a variant needs (padding included), to check against the adapter limit. */
export function matmulSharedBytes(t: MatmulTile, transA: boolean, transB: boolean): number {
  const { bm, bn } = tileExtent(t);
  return 16 * t.bk * (bm / 4 + (transA ? 0 : 1) + bn / 4 + (transB ? 1 : 0));
}

const ACT: Record<MatmulAct, (v: string) => string> = {
  none: (v) => v,
  relu: (v) => `max(${v}, vec4<f32>(0.0))`,
  gelu: (v) => `gelu4(${v})`,
};

const XYZW = ["x", "y", "z", "w"] as const;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** One operand's tile traffic: register declarations, loop-invariant setup, fetch and store code. */
interface Operand {
  decl: string;
  setup: string;
  /** Fetch the tile at K offset `kk` (a WGSL u32 expression) into the registers. */
  fetch: (kk: string) => string;
  /** Write the registers into workgroup memory. */
  store: string;
}

/**
 * Loads of one operand tile into its workgroup array [k][vec4 along rows]. `rows` is the
 * operand's tile extent along M (or N). `kMajor`: the operand is stored with K as its slow axis
 * (A transposed, B plain), so its contiguous axis runs along M/N and rows go straight into
 * workgroup memory; otherwise K is contiguous and each fetched value is scattered to k-rows.
 */
function operand(o: {
  name: "A" | "B"; shared: "As" | "Bs"; rows: number; bk: number; kMajor: boolean; vec: boolean;
  /** WGSL expressions: extent along rows, the global first row of the tile, the batch offset, the row pitch. */
  extent: string; row0: string; base: string;
}): Operand {
  const { name, shared, rows, bk, kMajor, vec } = o;
  const p = name.toLowerCase();
  const T = vec ? "vec4<f32>" : "f32";
  const zero = vec ? "vec4<f32>(0.0)" : "0.0";
  const perThread = (rows * bk) / (vec ? 4 : 1) / MM_THREADS;
  const lines = { decl: [] as string[], setup: [] as string[], fetch: [] as string[], store: [] as string[] };
  for (const j of range(perThread)) {
    const r = `${p}r${j}`;
    lines.decl.push(`var ${r}: ${T} = ${zero};`);
    // In-tile coordinates of element j: (row, k) with the contiguous one fastest across threads.
    // Global index = g (loop-invariant) + kk·kStep; ok = row in range (loop-invariant).
    const idx = `(tid + ${j * MM_THREADS}u)`;
    if (kMajor) {
      // stored [K][rows]: contiguous along rows
      const per = vec ? rows / 4 : rows;
      lines.setup.push(`let ${p}k${j} = ${idx} / ${per}u; let ${p}c${j} = ${idx} % ${per}u;`);
      if (vec) {
        lines.setup.push(`let ${p}ok${j} = ${o.row0} + ${p}c${j} * 4u < ${o.extent};`);
        lines.setup.push(`let ${p}g${j} = ${o.base} / 4u + ${p}k${j} * (${o.extent} / 4u) + ${o.row0} / 4u + ${p}c${j};`);
        lines.fetch.push(`${r} = vec4<f32>(0.0); if (${p}ok${j} && kk + ${p}k${j} < K) { ${r} = vec4<f32>(${name}[${p}g${j} + kk * (${o.extent} / 4u)]); }`);
        lines.store.push(`${shared}[${p}k${j}][${p}c${j}] = ${r};`);
      } else {
        lines.setup.push(`let ${p}ok${j} = ${o.row0} + ${p}c${j} < ${o.extent};`);
        lines.setup.push(`let ${p}g${j} = ${o.base} + ${p}k${j} * ${o.extent} + ${o.row0} + ${p}c${j};`);
        lines.fetch.push(`${r} = 0.0; if (${p}ok${j} && kk + ${p}k${j} < K) { ${r} = f32(${name}[${p}g${j} + kk * ${o.extent}]); }`);
        lines.store.push(`${shared}[${p}k${j}][${p}c${j} >> 2u][${p}c${j} & 3u] = ${r};`);
      }
    } else {
      // stored [rows][K]: contiguous along K
      const per = vec ? bk / 4 : bk;
      lines.setup.push(`let ${p}c${j} = ${idx} / ${per}u; let ${p}k${j} = (${idx} % ${per}u)${vec ? " * 4u" : ""};`);
      lines.setup.push(`let ${p}ok${j} = ${o.row0} + ${p}c${j} < ${o.extent};`);
      lines.setup.push(`let ${p}s${j} = ${p}c${j} >> 2u; let ${p}m${j} = ${p}c${j} & 3u;`);
      if (vec) {
        lines.setup.push(`let ${p}g${j} = (${o.base} + (${o.row0} + ${p}c${j}) * K + ${p}k${j}) / 4u;`);
        lines.fetch.push(`${r} = vec4<f32>(0.0); if (${p}ok${j} && kk + ${p}k${j} < K) { ${r} = vec4<f32>(${name}[${p}g${j} + kk / 4u]); }`);
        for (const i of range(4)) lines.store.push(`${shared}[${p}k${j} + ${i}u][${p}s${j}][${p}m${j}] = ${r}.${XYZW[i]};`);
      } else {
        lines.setup.push(`let ${p}g${j} = ${o.base} + (${o.row0} + ${p}c${j}) * K + ${p}k${j};`);
        lines.fetch.push(`${r} = 0.0; if (${p}ok${j} && kk + ${p}k${j} < K) { ${r} = f32(${name}[${p}g${j} + kk]); }`);
        lines.store.push(`${shared}[${p}k${j}][${p}s${j}][${p}m${j}] = ${r};`);
      }
    }
  }
  return {
    decl: lines.decl.join("\n  "),
    setup: lines.setup.join("\n  "),
    fetch: (kk) => `{ let kk = ${kk};\n    ${lines.fetch.join("\n    ")} }`,
    store: lines.store.join("\n    "),
  };
}

/** Params: [0]=M [1]=N [2]=K [3]=batch stride A [4]=batch stride B [5]=batch stride C (elements). */
export const matmulKernel = kernelFamily("matmul", (v: MatmulVariant) => {
  const T = v.dtype;
  const { bm, bn } = tileExtent(v);
  const bk = v.bk;
  if ((bm * bk) / 4 < MM_THREADS || (bn * bk) / 4 < MM_THREADS) throw new Error(`matmul: tile ${bm}x${bn}x${bk} is too small for ${MM_THREADS} invocations`);
  // vec4s per k-row of As / Bs (one of padding where the operand is scattered)
  const sa = bm / 4 + (v.transA ? 0 : 1);
  const sb = bn / 4 + (v.transB ? 1 : 0);
  const ET = v.vec ? `vec4<${T}>` : T;
  const bindings: ("read" | "rw")[] = ["read", "read", "rw"];
  const decls = [
    storage(0, "A", "read", `array<${ET}>`),
    storage(1, "B", "read", `array<${ET}>`),
    storage(2, "C", "rw", `array<${ET}>`),
  ];
  if (v.bias) { decls.push(storage(bindings.length, "bias", "read", `array<${ET}>`)); bindings.push("read"); }
  if (v.aux) { decls.push(storage(bindings.length, "Z", "rw", `array<${ET}>`)); bindings.push("rw"); }

  // A is "k-major" when transposed (stored [K][M]); B when plain (stored [K][N]).
  const A = operand({ name: "A", shared: "As", rows: bm, bk, kMajor: v.transA, vec: v.vec, extent: "M", row0: "row0", base: "aBase" });
  const B = operand({ name: "B", shared: "Bs", rows: bn, bk, kMajor: !v.transB, vec: v.vec, extent: "N", row0: "col0", base: "bBase" });

  const ga = v.tm / 4, gb = v.tn / 4; // vec4 groups per invocation along M and N
  const accs = range(v.tm).flatMap((r) => range(gb).map((h) => `c${r}_${h}`));
  const steps = range(bk).map((k) => {
    const loads = [
      ...range(ga).map((g) => `let a${g} = As[${k}][ty${g ? ` + ${g * 16}u` : ""}];`),
      ...range(gb).map((h) => `let b${h} = Bs[${k}][tx${h ? ` + ${h * 16}u` : ""}];`),
    ];
    const fmas = range(v.tm).flatMap((r) => range(gb).map((h) =>
      `c${r}_${h} = c${r}_${h} + a${r >> 2}.${XYZW[r & 3]} * b${h};`));
    return `    {\n      ${loads.join(" ")}\n      ${fmas.join("\n      ")}\n    }`;
  }).join("\n");
  // Row r of the invocation's block is tile row (r/4)·64 + ty·4 + r%4; column group h starts at h·64 + tx·4.
  const stores = range(v.tm).flatMap((r) => range(gb).map((h) =>
    `  put(cBase, row0 + ${(r >> 2) * 64 + (r & 3)}u + ty * 4u, col0 + ${h * 64}u + tx * 4u, c${r}_${h}, M, N);`)).join("\n");

  const code = wgsl`${enables(T)}
${decls.join("\n")}
${paramsDecl(bindings.length)}
var<workgroup> As: array<array<vec4<f32>, ${sa}>, ${bk}>;
var<workgroup> Bs: array<array<vec4<f32>, ${sb}>, ${bk}>;

fn gelu4(x: vec4<f32>) -> vec4<f32> {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let t = exp(-2.0 * abs(u));
  return 0.5 * x * (1.0 + sign(u) * (1.0 - t) / (1.0 + t));
}

fn put(cBase: u32, r: u32, c: u32, acc: vec4<f32>, M: u32, N: u32) {
  if (r >= M || c >= N) { return; }
  let o = cBase + r * N + c;
#if ${v.vec}
#if ${v.bias}
  let z = acc + vec4<f32>(bias[c / 4u]);
#else
  let z = acc;
#endif
  let y = ${ACT[v.act]("z")};
  C[o / 4u] = vec4<${T}>(y);
#if ${v.aux}
  Z[o / 4u] = vec4<${T}>(z);
#endif
#else
#if ${v.bias}
  var bv = vec4<f32>(f32(bias[c]), 0.0, 0.0, 0.0);
  if (c + 1u < N) { bv.y = f32(bias[c + 1u]); }
  if (c + 2u < N) { bv.z = f32(bias[c + 2u]); }
  if (c + 3u < N) { bv.w = f32(bias[c + 3u]); }
  let z = acc + bv;
#else
  let z = acc;
#endif
  let y = ${ACT[v.act]("z")};
  C[o] = ${T}(y.x);
  if (c + 1u < N) { C[o + 1u] = ${T}(y.y); }
  if (c + 2u < N) { C[o + 2u] = ${T}(y.z); }
  if (c + 3u < N) { C[o + 3u] = ${T}(y.w); }
#if ${v.aux}
  Z[o] = ${T}(z.x);
  if (c + 1u < N) { Z[o + 1u] = ${T}(z.y); }
  if (c + 2u < N) { Z[o + 2u] = ${T}(z.z); }
  if (c + 3u < N) { Z[o + 3u] = ${T}(z.w); }
#endif
#endif
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = pu(0u); let N = pu(1u); let K = pu(2u);
  let tx = lid.x; let ty = lid.y;
  let tid = ty * 16u + tx;
  let row0 = wid.y * ${bm}u; let col0 = wid.x * ${bn}u;
  let aBase = wid.z * pu(3u); let bBase = wid.z * pu(4u); let cBase = wid.z * pu(5u);
  ${A.setup}
  ${B.setup}
  ${A.decl}
  ${B.decl}
  ${accs.map((c) => `var ${c} = vec4<f32>(0.0);`).join(" ")}
  ${A.fetch("0u")}
  ${B.fetch("0u")}
  for (var k0 = 0u; k0 < K; k0 = k0 + ${bk}u) {
    workgroupBarrier();
    ${A.store}
    ${B.store}
    workgroupBarrier();
    if (k0 + ${bk}u < K) {
      ${A.fetch(`k0 + ${bk}u`)}
      ${B.fetch(`k0 + ${bk}u`)}
    }
${steps}
  }
${stores}
}
`;
  return { code, bindings, params: true };
});
