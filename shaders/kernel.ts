// The contract between the WGSL kernel suite and the launcher: a kernel is WGSL text plus the
// access mode of each storage binding, in binding order, and whether it takes a params block
// (always the last binding, a uniform read at a per-dispatch dynamic offset). Each kernel
// describes its bindings once (bindGroup), which yields both the WGSL declarations and that
// access list. Builders are memoized by their parameters so a hot loop never rebuilds or
// re-hashes shader text.

export type Access = "read" | "rw";

export interface Kernel {
  /** Unique per distinct shader text: family name + builder parameters. */
  readonly key: string;
  readonly code: string;
  /** Storage bindings 0..n-1 of group 0. */
  readonly bindings: readonly Access[];
  /** A params uniform at binding n (bindings.length), 256 bytes: up to 64 u32 words. */
  readonly params: boolean;
}

/** Max 32-bit words in one dispatch's params block. */
export const PARAM_WORDS = 64;

/** One storage binding: the WGSL variable, its access and its type (e.g. `array<vec4<f32>>`). */
export interface BindingDesc {
  name: string;
  access: Access;
  type: string;
}

/** A kernel's bindings described once: the WGSL declarations and what the launcher needs. */
export interface BindGroup {
  /** The storage declarations (bindings 0..n-1) and, with params, the params block at n. */
  readonly decls: string;
  readonly bindings: readonly Access[];
  readonly params: boolean;
}

/**
 * The bind group of a kernel from its storage bindings in binding order (false / null entries
 * are left out, for optional bindings such as a bias) and whether a params block follows them.
 */
export function bindGroup(entries: readonly (BindingDesc | false | null | undefined)[], params = true): BindGroup {
  const list = entries.filter((e): e is BindingDesc => !!e);
  const decls = list.map((e, i) => storage(i, e.name, e.access, e.type));
  if (params) decls.push(paramsDecl(list.length));
  return { decls: decls.join("\n"), bindings: list.map((e) => e.access), params };
}

/**
 * The memo key of a builder's arguments: primitives joined with their type marked (a string
 * never equals a number or boolean), objects as JSON. Runs on every dispatch, so it avoids
 * JSON.stringify where it can.
 */
function argsKey(family: string, args: readonly unknown[]): string {
  let key = family;
  for (const a of args) {
    const t = typeof a;
    key += t === "string" ? `:s${a as string}` : t === "number" || t === "boolean" || a == null ? `:${String(a)}` : `:${JSON.stringify(a)}`;
  }
  return key;
}

/** Memoizes a kernel builder by its JSON-serializable arguments. */
export function kernelFamily<A extends unknown[]>(
  family: string,
  build: (...args: A) => { code: string; group: BindGroup },
): (...args: A) => Kernel {
  const cache = new Map<string, Kernel>();
  return (...args: A) => {
    const key = argsKey(family, args);
    let k = cache.get(key);
    if (!k) {
      const b = build(...args);
      k = { key, code: b.code, bindings: b.group.bindings, params: b.group.params };
      cache.set(key, k);
    }
    return k;
  };
}

/**
 * A memo for call sites that assemble a builder's options object per call (`{ ...tile, transA, ... }`):
 * under V8 an object spread with added fields costs microseconds, a hot cost on a decode step of
 * ~90 dispatches. The site names the variant in a short `key` and builds the kernel only once.
 */
export function kernelMemo(): (key: string, make: () => Kernel) => Kernel {
  const cache = new Map<string, Kernel>();
  return (key, make) => {
    let k = cache.get(key);
    if (!k) cache.set(key, (k = make()));
    return k;
  };
}

/** WGSL declaring the params block at `binding`, with accessors pu (u32), pi (i32), pf (f32). */
export function paramsDecl(binding: number): string {
  return `
@group(0) @binding(${binding}) var<uniform> P: array<vec4<u32>, ${PARAM_WORDS / 4}>;
fn pu(i: u32) -> u32 { return P[i / 4u][i % 4u]; }
fn pi(i: u32) -> i32 { return bitcast<i32>(P[i / 4u][i % 4u]); }
fn pf(i: u32) -> f32 { return bitcast<f32>(P[i / 4u][i % 4u]); }
`;
}

/** The entry-point arguments every 1-D or row-per-workgroup kernel takes (pairs with linearIndexFn). */
export const MAIN_ARGS = `@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>`;

/** WGSL storage binding declaration. */
export function storage(binding: number, name: string, access: Access, type: string): string {
  return `@group(0) @binding(${binding}) var<storage, ${access === "rw" ? "read_write" : "read"}> ${name}: ${type};`;
}

/**
 * Linear invocation index for 1-D work spread over a 2-D grid (dispatches wider than 65535
 * workgroups fold into y). Use with `grid1d` on the host side.
 */
export function linearIndexFn(workgroupSize: number): string {
  return `
fn linearIndex(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * ${workgroupSize}u + lid.x;
}
`;
}

/** `enable f16;` when a kernel touches f16 data. */
export function enables(...dtypes: string[]): string {
  return dtypes.includes("f16") ? "enable f16;\n" : "";
}
