// The one register-tiled GEMM core of the kernel suite, shared by the dense matmul
// (matmul.wgsl.ts), spmm's expand kernel (spmm.wgsl.ts), sddmm's dense-tile kernel
// (sddmm.wgsl.ts) and the fused low-rank add (lowrank.wgsl.ts). As in ONNX Runtime Web's packed
// matmul (mm_readA / mm_readB / mm_write), the core owns what every tiled product has in common
// and each kernel plugs in the rest:
// - the tile table (GEMM_TILES) and the host-side chooser (chooseTile);
// - 16×16 invocations, each owning a tm×tn block of C in named vec4 registers c<row>_<colgroup>,
//   so a workgroup covers (16·tm)×(16·tn); the per-k body is unrolled in the emitted text (no
//   loop-indexed local arrays: wgpu compiles those 6–8× slower, docs/design.md §6);
// - workgroup tiles stored k-major as vec4 along M and N, 2-D ([k][vec4]) so the inner loop
//   indexes them with a constant k and tx/ty only (the bounds clamps of WebGPU engines then
//   hoist out of the loop);
// - the K loop, either software-pipelined (the next tile fetched into named registers while the
//   current one is multiplied out; tileOperand builds such an operand) or direct (the kernel's
//   own loads at the top of each step: spmm decodes its sparse tile there);
// - the hooks: how A and B reach workgroup memory, the accumulators' initial value (readC) and
//   the write of each finished 4-wide block (write: bias, activation, masked compressed stores).
// Extension point for new variants (subgroup matrices, faster 2:4 tiles): a kernel that keeps
// this register layout only writes its loaders and its write hook.

/** Work per invocation (tm rows × tn columns of C) and the K depth of one workgroup-memory step. */
export interface GemmTile {
  tm: 4 | 8;
  tn: 4 | 8;
  bk: 8 | 16;
}

/**
 * The tile shapes (each loads ≥ 1 vec4 per invocation per operand). Measured on an H200
 * (bench/README.md): 128×128 with k-depth 8 is the fastest from 2048² up in both Dawn and wgpu
 * (k-depth 16 is slower there, kept for benchmarks); below ~200 workgroups 64×64 wins.
 */
export const GEMM_TILES = {
  "64x64": { tm: 4, tn: 4, bk: 16 },
  "128x64": { tm: 8, tn: 4, bk: 16 },
  "128x128": { tm: 8, tn: 8, bk: 16 },
  "128x128k8": { tm: 8, tn: 8, bk: 8 },
} as const satisfies Record<string, GemmTile>;
export type GemmTileName = keyof typeof GEMM_TILES;

/** Invocations per workgroup (16 × 16) for every tile: WebGPU guarantees 256 on every adapter. */
export const GEMM_THREADS = 256;

/** Rows (M) and columns (N) of C covered by one workgroup. */
export function tileExtent(t: GemmTile): { bm: number; bn: number } {
  return { bm: 16 * t.tm, bn: 16 * t.tn };
}

/**
 * The host-side tile choice for an M×N output (nb products): the first of `candidates` (largest
 * first; the last is the fallback) that gives at least `bigGrid` workgroups, is not wider than
 * the output beyond 64 along either axis, and `fits` the adapter (workgroup memory).
 */
export function chooseTile<T extends GemmTileName>(
  M: number, N: number, nb: number, candidates: readonly T[], bigGrid: number, fits: (t: T) => boolean = () => true,
): T {
  for (const name of candidates.slice(0, -1)) {
    const { bm, bn } = tileExtent(GEMM_TILES[name]);
    if ((bm > 64 && M < bm) || (bn > 64 && N < bn)) continue;
    if (Math.ceil(M / bm) * Math.ceil(N / bn) * nb >= bigGrid && fits(name)) return name;
  }
  return candidates[candidates.length - 1]!;
}

/**
 * How wide a product's operand loads may be, decided in one place for the matmul, its split-K path
 * and their tests: vec4 needs A's and B's contiguous axes (and C's rows, N) to be multiples of 4;
 * vec8 (the packedF16 tiles' 8 halves a 16-byte load) needs those axes to be multiples of 8 too.
 */
export function operandWidths(M: number, N: number, K: number, transA: boolean, transB: boolean): { vec: boolean; vec8: boolean } {
  const aInner = transA ? M : K, bInner = transB ? K : N;
  const vec = aInner % 4 === 0 && bInner % 4 === 0 && N % 4 === 0;
  return { vec, vec8: vec && aInner % 8 === 0 && bInner % 8 === 0 };
}

export const XYZW = ["x", "y", "z", "w"] as const;
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** A pipelined operand: register declarations, loop-invariant setup, fetch (at K offset kk) and store code. */
export interface PipelinedOperand {
  decl: string;
  setup: string;
  /** Fetch the tile at K offset `kk` (a WGSL u32 expression) into the registers. */
  fetch: (kk: string) => string;
  /** Write the registers into workgroup memory. */
  store: string;
}

/**
 * The pipelined loader of one operand tile into its workgroup array [k][vec4 along rows]. `rows`
 * is the tile extent along M (or N). `kMajor`: the operand is stored with K as its slow axis, so
 * its contiguous axis runs along M/N and rows go straight into workgroup memory; otherwise K is
 * contiguous and each fetched value is scattered to k-rows (the workgroup array then has a vec4
 * of padding per k-row). The hooks: `read(i)` reads element (or vec4) i of the operand as f32,
 * `index` places an element: base + row·pitch + k (K contiguous) or base + k·extent + row.
 */
export function tileOperand(o: {
  prefix: "a" | "b"; shared: string; rows: number; bk: number; kMajor: boolean; vec: boolean;
  /** WGSL expressions: extent along rows (the bound), the global first row of the tile. */
  extent: string; row0: string;
  /** Global index of (row, k) for a K-contiguous operand; of (k, row) for a k-major one. */
  index: (row: string, k: string) => string;
  /** WGSL reading element (vec4 when vec) i as f32. */
  read: (i: string) => string;
  /** WGSL name of the reduction's extent (default K; sddmm reduces over its slice's nB rows). */
  bound?: string;
}): PipelinedOperand {
  const { prefix: p, shared, rows, bk, kMajor, vec } = o;
  const K = o.bound ?? "K";
  const T = vec ? "vec4<f32>" : "f32";
  const zero = vec ? "vec4<f32>(0.0)" : "0.0";
  const perThread = (rows * bk) / (vec ? 4 : 1) / GEMM_THREADS;
  const lines = { decl: [] as string[], setup: [] as string[], fetch: [] as string[], store: [] as string[] };
  for (const j of range(perThread)) {
    const r = `${p}r${j}`;
    lines.decl.push(`var ${r}: ${T} = ${zero};`);
    // In-tile coordinates of element j: (row, k) with the contiguous one fastest across threads.
    // Global index = g (loop-invariant) + kk·kStep; ok = row in range (loop-invariant).
    const idx = `(tid + ${j * GEMM_THREADS}u)`;
    if (kMajor) {
      // stored [K][rows]: contiguous along rows
      const per = vec ? rows / 4 : rows;
      lines.setup.push(`let ${p}k${j} = ${idx} / ${per}u; let ${p}c${j} = ${idx} % ${per}u;`);
      if (vec) {
        lines.setup.push(`let ${p}ok${j} = ${o.row0} + ${p}c${j} * 4u < ${o.extent};`);
        lines.setup.push(`let ${p}g${j} = ${o.index(`${p}c${j}`, `${p}k${j}`)};`);
        lines.fetch.push(`${r} = vec4<f32>(0.0); if (${p}ok${j} && kk + ${p}k${j} < ${K}) { ${r} = ${o.read(`${p}g${j} + kk * (${o.extent} / 4u)`)}; }`);
        lines.store.push(`${shared}[${p}k${j}][${p}c${j}] = ${r};`);
      } else {
        lines.setup.push(`let ${p}ok${j} = ${o.row0} + ${p}c${j} < ${o.extent};`);
        lines.setup.push(`let ${p}g${j} = ${o.index(`${p}c${j}`, `${p}k${j}`)};`);
        lines.fetch.push(`${r} = 0.0; if (${p}ok${j} && kk + ${p}k${j} < ${K}) { ${r} = ${o.read(`${p}g${j} + kk * ${o.extent}`)}; }`);
        lines.store.push(`${shared}[${p}k${j}][${p}c${j} >> 2u][${p}c${j} & 3u] = ${r};`);
      }
    } else {
      // stored [rows][K]: contiguous along K
      const per = vec ? bk / 4 : bk;
      lines.setup.push(`let ${p}c${j} = ${idx} / ${per}u; let ${p}k${j} = (${idx} % ${per}u)${vec ? " * 4u" : ""};`);
      lines.setup.push(`let ${p}ok${j} = ${o.row0} + ${p}c${j} < ${o.extent};`);
      lines.setup.push(`let ${p}s${j} = ${p}c${j} >> 2u; let ${p}m${j} = ${p}c${j} & 3u;`);
      if (vec) {
        lines.setup.push(`let ${p}g${j} = (${o.index(`${p}c${j}`, `${p}k${j}`)}) / 4u;`);
        lines.fetch.push(`${r} = vec4<f32>(0.0); if (${p}ok${j} && kk + ${p}k${j} < ${K}) { ${r} = ${o.read(`${p}g${j} + kk / 4u`)}; }`);
        for (const i of range(4)) lines.store.push(`${shared}[${p}k${j} + ${i}u][${p}s${j}][${p}m${j}] = ${r}.${XYZW[i]};`);
      } else {
        lines.setup.push(`let ${p}g${j} = ${o.index(`${p}c${j}`, `${p}k${j}`)};`);
        lines.fetch.push(`${r} = 0.0; if (${p}ok${j} && kk + ${p}k${j} < ${K}) { ${r} = ${o.read(`${p}g${j} + kk`)}; }`);
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

/** One product's use of the core: its tile, workgroup arrays, K loop, loaders and hooks. */
export interface GemmSpec {
  tile: GemmTile;
  /** The workgroup arrays of A and B tiles and their vec4s per k-row (padding included). */
  a: { shared: string; stride: number };
  b: { shared: string; stride: number };
  /** WGSL names of the tile's first row (M) and column (N). */
  row0: string;
  col0: string;
  /** The K loop: its variable and bound (WGSL). */
  loop: { k: string; bound: string };
  /**
   * How the tiles reach workgroup memory: two pipelined operands (prefetched one step ahead),
   * or `direct` code run at the top of each step before the barrier (it may use the loop variable).
   */
  loads: { pipelined: [PipelinedOperand, PipelinedOperand] } | { direct: string };
  /** mm_readC: the accumulator's initial vec4 at (row, col); zero when absent. */
  readC?: (row: string, col: string) => string;
  /** mm_write: the statement storing the finished vec4 `acc` at (row, col..col+3). */
  write: (row: string, col: string, acc: string) => string;
}

/** The workgroup arrays of a spec (declare at module scope). */
export function gemmShared(s: GemmSpec): string {
  const bk = s.tile.bk;
  return `var<workgroup> ${s.a.shared}: array<array<vec4<f32>, ${s.a.stride}>, ${bk}>;
var<workgroup> ${s.b.shared}: array<array<vec4<f32>, ${s.b.stride}>, ${bk}>;`;
}

/**
 * The body of the entry point from the accumulators to the stores. Expects `tx`, `ty` (the
 * invocation in the 16×16 workgroup) and `tid` in scope, and whatever the hooks name.
 */
export function gemmBody(s: GemmSpec): string {
  const { tm, tn, bk } = s.tile;
  const ga = tm / 4, gb = tn / 4; // vec4 groups per invocation along M and N
  // Row r of the invocation's block is tile row (r/4)·64 + ty·4 + r%4; column group h starts at h·64 + tx·4.
  const rowOf = (r: number) => `${s.row0} + ${(r >> 2) * 64 + (r & 3)}u + ty * 4u`;
  const colOf = (h: number) => `${s.col0} + ${h * 64}u + tx * 4u`;
  const blocks = range(tm).flatMap((r) => range(gb).map((h) => ({ r, h, c: `c${r}_${h}` })));
  const accs = s.readC
    ? blocks.map((b) => `var ${b.c} = ${s.readC!(rowOf(b.r), colOf(b.h))};`).join("\n  ")
    : blocks.map((b) => `var ${b.c} = vec4<f32>(0.0);`).join(" ");
  const steps = range(bk).map((k) => {
    const loads = [
      ...range(ga).map((g) => `let a${g} = ${s.a.shared}[${k}][ty${g ? ` + ${g * 16}u` : ""}];`),
      ...range(gb).map((h) => `let b${h} = ${s.b.shared}[${k}][tx${h ? ` + ${h * 16}u` : ""}];`),
    ];
    const fmas = blocks.map((b) => `${b.c} = ${b.c} + a${b.r >> 2}.${XYZW[b.r & 3]} * b${b.h};`);
    return `    {\n      ${loads.join(" ")}\n      ${fmas.join("\n      ")}\n    }`;
  }).join("\n");
  const stores = blocks.map((b) => s.write(rowOf(b.r), colOf(b.h), b.c)).join("\n");
  const { k, bound } = s.loop;
  const head = `for (var ${k} = 0u; ${k} < ${bound}; ${k} = ${k} + ${bk}u)`;
  if ("pipelined" in s.loads) {
    const [A, B] = s.loads.pipelined;
    return `${A.setup}
  ${B.setup}
  ${A.decl}
  ${B.decl}
  ${accs}
  ${A.fetch("0u")}
  ${B.fetch("0u")}
  ${head} {
    workgroupBarrier();
    ${A.store}
    ${B.store}
    workgroupBarrier();
    if (${k} + ${bk}u < ${bound}) {
      ${A.fetch(`${k} + ${bk}u`)}
      ${B.fetch(`${k} + ${bk}u`)}
    }
${steps}
  }
${stores}`;
  }
  return `${accs}
  ${head} {
${s.loads.direct}
    workgroupBarrier();
${steps}
    workgroupBarrier();
  }
${stores}`;
}
