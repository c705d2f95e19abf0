// Runs a subgroup-matrix kernel where the feature is missing (lavapipe, SwiftShader): rewrites its
// WGSL so that each invocation of an emulated subgroup (tid / subgroupSize) holds its share of
// each 16×16 result, as the hardware does — a left or right operand is its place in a workgroup
// array (which array, offset, stride, majorness), read when it is multiplied: the matmul reads its
// left operands from As and right ones from Bs, the attention forward (shaders/
// attention-subgroup.wgsl.ts) from Qs / Ps and Ks / Vs; a multiply-accumulate sums 16 products
// per held element; a store writes the held elements. The rest of the kernel (staging, its barriers and stage
// buffers, bounds, offsets, the epilogue) runs as generated, so its logic is checked against the
// float64 reference on any adapter; only the builtins' own semantics are modelled, as the kernels
// that pass on the H200 use them. An operand element outside its array reads as NaN and a store
// outside writes nothing, so a wrong offset fails the comparison. Also used by the structure checks
// to find each builtin call and its arguments.

/** One builtin call in WGSL text: where it starts and ends, its template and call arguments. */
export interface SgCall {
  fn: string;
  start: number;
  end: number;
  template: string[];
  args: string[];
}

/** Splits `s` at top-level commas (outside (), <> and []). */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0, from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "(" || c === "[" || c === "<") depth++;
    else if (c === ")" || c === "]" || c === ">") depth--;
    else if (c === "," && depth === 0) { out.push(s.slice(from, i).trim()); from = i + 1; }
  }
  out.push(s.slice(from).trim());
  return out.filter((x) => x.length);
}

/** Every call of `fn` in `code` (with its optional <template> list), in order. */
export function findCalls(code: string, fn: string): SgCall[] {
  const calls: SgCall[] = [];
  const re = new RegExp(`\\b${fn}\\b`, "g");
  for (let m = re.exec(code); m; m = re.exec(code)) {
    let i = m.index + fn.length;
    let template: string[] = [];
    if (code[i] === "<") {
      let d = 0, j = i;
      for (; j < code.length; j++) { if (code[j] === "<") d++; else if (code[j] === ">" && --d === 0) break; }
      template = splitTop(code.slice(i + 1, j));
      i = j + 1;
    }
    if (code[i] !== "(") continue; // a mention, not a call
    let d = 0, j = i;
    for (; j < code.length; j++) { if (code[j] === "(") d++; else if (code[j] === ")" && --d === 0) break; }
    calls.push({ fn, start: m.index, end: j + 1, template, args: splitTop(code.slice(i + 1, j)) });
    re.lastIndex = j + 1;
  }
  return calls;
}

function replaceCalls(code: string, fn: string, make: (c: SgCall) => string): string {
  let out = "", at = 0;
  for (const c of findCalls(code, fn)) { out += code.slice(at, c.start) + make(c); at = c.end; }
  return out + code.slice(at);
}

/** The params word the emulation reads its loop bound from (unused by the kernels). */
const EMU_PARAM = 63;

/** A kernel's params with the emulation's loop bound (its elements per lane) added. */
export function emulatedParams(params: readonly number[], subgroupSize: number): number[] {
  const p = Array.from({ length: EMU_PARAM + 1 }, (_, i) => params[i] ?? 0);
  p[EMU_PARAM] = 256 / subgroupSize;
  return p;
}

/**
 * The emulating rewrite of a subgroup-matrix kernel (sgMatmulKernel, attentionUnitsForwardKernel;
 * majorness spelling) for subgroups of `subgroupSize`. Its main() must take
 * `@builtin(local_invocation_index) tid: u32` last, or followed only by `@builtin(subgroup_id) sgid: u32`.
 * With `halfAsF32` (adapters without shader-f16, such as lavapipe under Deno) a kernel whose
 * storage is f32 and whose only f16 are its workgroup arrays and scalar f16(…) conversions runs
 * with those arrays in f32 and each conversion rounding to the nearest f16 (pack2x16float), so
 * it computes what it computes with f16 arrays.
 */
export function emulateSubgroupMatrices(code: string, subgroupSize: number, o: { halfAsF32?: boolean } = {}): string {
  const sizes = new Map([...code.matchAll(/var<workgroup> (\w+): array<(\w+), (\d+)>;/g)].map((m) => [m[1]!, { type: m[2]!, n: Number(m[3]) }]));
  const per = 256 / subgroupSize;
  if (!Number.isInteger(per)) throw new Error(`emulateSubgroupMatrices: subgroups of ${subgroupSize} do not divide a 16×16 matrix`);
  const arrayOf = (ptr: string, want?: string) => {
    const name = ptr.replace(/^&\s*/, "");
    if (!sizes.has(name) || (want && name !== want)) throw new Error(`emulateSubgroupMatrices: ${ptr} is not a workgroup array this emulation reads there`);
    return name;
  };
  // The workgroup arrays operands are loaded from, numbered: an operand carries its array's number.
  const operandArrays: string[] = [];
  const idOf = (name: string) => { if (!operandArrays.includes(name)) operandArrays.push(name); return operandArrays.indexOf(name); };
  // Element (r, c) of a matrix at offset `off`: row-major off + r·ld + c, column-major off + c·ld + r.
  const at = (m: string, r: string, c: string) => `${m}.off + select(${r} * ${m}.ld + ${c}, ${c} * ${m}.ld + ${r}, ${m}.col)`;
  // A left / right operand is where it lies in As / Bs, read when multiplied: the kernels store
  // into a stage only after a barrier or after that stage's products, never between load and product.
  let out = replaceCalls(code, "subgroupMatrixLoad", (c) => {
    const ty = c.template[0]!, major = c.template[1]!;
    const left = ty.startsWith("subgroup_matrix_left");
    if (!left && !ty.startsWith("subgroup_matrix_right")) throw new Error(`emulateSubgroupMatrices: loads of ${ty} are not emulated`);
    const arr = arrayOf(c.args[0]!);
    if (sizes.get(arr)!.type !== "f16") throw new Error(`emulateSubgroupMatrices: operand array ${arr} is not f16`);
    return `${left ? "SgA" : "SgB"}(${idOf(arr)}u, ${c.args[1]}, ${c.args[2]}, ${major === "col_major"})`;
  });
  const stores = new Set<string>();
  out = replaceCalls(out, "subgroupMatrixStore", (c) => {
    const arr = arrayOf(c.args[0]!), major = c.template[0]!;
    const { n, type } = sizes.get(arr)!;
    stores.add(`fn sgStore_${arr}_${major}(off: u32, m: SgC, ld: u32) {
  let s = SgA(0u, off, ld, ${major === "col_major"});
  for (var q = 0u; q < sgPer(); q = q + 1u) {
    let i = sgLane * ${per}u + q;
    let e = ${at("s", "(i / 16u)", "(i % 16u)")};
    if (e < ${n}u) { ${arr}[e] = ${type}(m.v[q]); }
  }
}`);
    return `sgStore_${arr}_${major}(${c.args[1]}, ${c.args[2]}, ${c.args[3]})`;
  });
  out = replaceCalls(out, "subgroupMatrixMultiplyAccumulate", (c) => `sgMma(${c.args.join(", ")})`);
  out = out.replace(/subgroup_matrix_left<f16, 16, 16>/g, "SgA").replace(/subgroup_matrix_right<f16, 16, 16>/g, "SgB").replace(/subgroup_matrix_result<f32, 16, 16>/g, "SgC");
  out = out.replace(/^enable chromium_experimental_subgroup_matrix;\n/m, "").replace(/^enable subgroups;\n/m, "");
  out = out.replace(/@builtin\(local_invocation_index\) tid: u32(, @builtin\(subgroup_id\) sgid: u32)?\) \{/, (_m, sg) =>
    `@builtin(local_invocation_index) tid: u32) {\n  sgLane = tid % ${subgroupSize}u;${sg ? `\n  let sgid = tid / ${subgroupSize}u;` : ""}`);
  if (/subgroup_matrix|subgroupMatrix|subgroup_id/.test(out) || !out.includes("sgLane = tid")) throw new Error("emulateSubgroupMatrices: a subgroup-matrix form this emulation does not know is left");
  const nan = "bitcast<f32>(0x7fc00000u)";
  const read = (arr: string, e: string) => `select(${nan}, f32(${arr}[min(${e}, ${sizes.get(arr)!.n - 1}u)]), ${e} < ${sizes.get(arr)!.n}u)`;
  const readFn = `fn sgRead(arr: u32, e: u32) -> f32 {
${operandArrays.map((a, i) => `  if (arr == ${i}u) { return ${read(a, "e")}; }`).join("\n")}
  return ${nan};
}`;
  const lib = `// Emulated subgroup matrices: lane sgLane of a subgroup holds result elements sgLane·${per} … +${per - 1}.
struct SgA { arr: u32, off: u32, ld: u32, col: bool }
struct SgB { arr: u32, off: u32, ld: u32, col: bool }
struct SgC { v: array<f32, ${per}> }
var<private> sgLane: u32;
// The loop bounds come from the params block (emulatedParams), so that the shader compiler does
// not unroll every product's loops (lavapipe took ~20 s per kernel when it did).
fn sgPer() -> u32 { return pu(${EMU_PARAM}u); }
${readFn}
fn sgMma(a: SgA, b: SgB, c: SgC) -> SgC {
  var r = c;
  for (var q = 0u; q < sgPer(); q = q + 1u) {
    let i = sgLane * ${per}u + q; let row = i / 16u; let col = i % 16u;
    var s = 0.0;
    for (var k = 0u; k < sgPer() * ${subgroupSize / 16}u; k = k + 1u) {
      let ea = ${at("a", "row", "k")}; let eb = ${at("b", "k", "col")};
      s = s + sgRead(a.arr, ea) * sgRead(b.arr, eb);
    }
    r.v[q] = r.v[q] + s;
  }
  return r;
}
${[...stores].join("\n")}
`;
  const f = out.indexOf("\nfn ");
  out = out.slice(0, f + 1) + lib + out.slice(f + 1);
  // naga (Deno's wgpu) has no bitcast from u32 to vec2<f16> (the packedF16 staging's split of a
  // word into its halves): the same halves through unpack2x16float, exact for every f16.
  out = out.replace(/bitcast<vec2<f16>>\(/g, "sgSplitHalves(");
  if (out.includes("sgSplitHalves(")) out = out.slice(0, out.indexOf("\nfn ") + 1) + "fn sgSplitHalves(w: u32) -> vec2<f16> { return vec2<f16>(unpack2x16float(w)); }\n" + out.slice(out.indexOf("\nfn ") + 1);
  if (!o.halfAsF32) return out;
  out = out.replace(/^enable f16;\n/m, "").replace(/var<workgroup> (\w+): array<f16, /g, "var<workgroup> $1: array<f32, ").replace(/\bf16\(/g, "sgHalf(");
  if (/\bf16\b/.test(out)) throw new Error("emulateSubgroupMatrices: halfAsF32 needs a kernel whose f16 are workgroup arrays and scalar f16(…) conversions only");
  const g = out.indexOf("\nfn ");
  return `${out.slice(0, g + 1)}// f16 rounding without shader-f16 (halfAsF32).
fn sgHalf(x: f32) -> f32 { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }
${out.slice(g + 1)}`;
}
