// The GPU's matrix units through WebGPU: webslope's subgroup-matrix matmul (each tile that compiles
// on this device, f32 operands rounded to f16 on staging and f16 operands, f32 accumulation)
// against our f32 shader-core matmul in the same run, N×N×N, TFLOP/s = 2N³/t. Node + Dawn only:
// Dawn exposes the feature when made with create(dawnFlags()) (on NVIDIA's Vulkan driver that also
// turns on f16). PyTorch's figures for the same shapes come from bench/torch/matmul.py.
//
//   node .bench-dist/matmul-units.mjs [--sizes 2048,4096,8192] [--json out.json] [--batch-ms 250]
//        [--tiles 128x256s8,128x128s4d2,...] (a subset of the compiled tiles; all by default)
//        [--mu-rule 192:0,128:0.85] (the chooser's own pick under each rule, f32 and f16 in: see setMatrixUnitRule)
//        [--no-robustness] (Dawn's disable_robustness toggle: no index clamping in any shader — an
//        unsafe measurement of what the clamps on every staging load/store cost; never the library's default)
import * as ws from "../src/index.ts";
import { chooseMatrixUnitTile } from "../src/ops/raw/precision.ts";
import { setMatmulTile, setMatrixUnitRule } from "../src/ops/matmul.ts";
import { SG_TILES, type SgTile, type SgTileName, sgMatmulKernel } from "../shaders/matmul-subgroup.wgsl.ts";
import { randomF32, tflops, timeBatches } from "./timing.ts";
import { argv, exit, writeText } from "./env.ts";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: argv(),
  options: { sizes: { type: "string", default: "2048,4096,8192" }, json: { type: "string" }, "batch-ms": { type: "string", default: "250" }, diagnose: { type: "boolean", default: false },
    tiles: { type: "string" }, "no-robustness": { type: "boolean", default: false }, "mu-rule": { type: "string", default: "192:0.85" } },
});
const sizes = values.sizes!.split(",").map(Number);
const batchMs = Number(values["batch-ms"]);

const pkg = "webgpu";
const { create, globals } = (await import(pkg)) as { create: (f: string[]) => GPU; globals: Record<string, unknown> };
Object.assign(globalThis, globals);
const flags = ws.dawnFlags({ matrixUnits: true });
const dawn = create(values["no-robustness"] ? flags.map((f) => f.startsWith("enable-dawn-features=") ? `${f},disable_robustness` : f) : flags);
const ctx = await ws.init({ gpu: dawn, matrixUnits: true });
const mu = ctx.matrixUnits;
const configs = ctx.info.subgroupMatrixConfigs.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`);
console.log(`adapter ${ctx.info.adapterName}; features ${[...ctx.features].join(", ")}`);
console.log(`subgroup sizes ${ctx.info.subgroupMinSize}-${ctx.info.subgroupMaxSize}; configs ${configs.join(", ") || "none"}`);
console.log(`matrix-unit tiles: ${mu.tiles.join(", ") || "none"}; note: ${mu.note}`);
const wanted = values.tiles?.split(",");
for (const t of wanted ?? []) if (!(t in SG_TILES)) throw new Error(`--tiles: unknown tile ${t}; one of ${Object.keys(SG_TILES).join(", ")}`);
/** The compiled tiles this run measures. */
const tiles = mu.tiles.filter((t) => !wanted || wanted.includes(t));
if (wanted) console.log(`measuring ${tiles.join(", ") || "none"} (not compiled here: ${wanted.filter((t) => !mu.tiles.includes(t as SgTileName)).join(", ") || "none"})`);

/** --diagnose: compile every tile × subgroup-index form × prefetch and print the compiler's messages. */
const diagnosis: Record<string, string> = {};
if (values.diagnose) {
  const device = ctx.info.device;
  for (const name of Object.keys(SG_TILES) as SgTileName[]) for (const prefetch of [true, false]) for (const sgSyntax of ["majorness", "bool"] as const) {
    if (!prefetch && ((SG_TILES[name] as SgTile).stages === 2 || (SG_TILES[name] as SgTile).f16Staging)) continue; // these always prefetch
    const k = sgMatmulKernel({ ...SG_TILES[name], transA: false, transB: true, bias: true, act: "gelu", aux: false, inType: "f32", outType: "f32", vec: true, subgroupSize: mu.subgroupSize || 32, prefetch, sgSyntax });
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ label: k.key, code: k.code });
    let failed = "";
    try { await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } }); } catch (e) { failed = (e as Error).message; }
    const scoped = await device.popErrorScope();
    const msgs = (await module.getCompilationInfo()).messages.filter((m) => m.type !== "warning" || !m.message.includes("deprecated"));
    const key = `${name} ${sgSyntax} prefetch=${prefetch}`;
    diagnosis[key] = (failed || scoped ? "FAILED " : "ok ") + msgs.map((m) => `${m.type} ${m.lineNum}:${m.linePos} ${m.message}`).join(" | ").slice(0, 1500);
    console.log(`diagnose ${key}: ${diagnosis[key]}`);
  }
}

/** Max |x − y| / (1 + |y|) of the GPU product against a float64 product of f16-rounded inputs. */
async function check(tile: SgTileName, dtype: "f32" | "f16"): Promise<number> {
  const [M, K, N] = [200, 160, 136];
  const a = randomF32(M * K, 11), b = randomF32(K * N, 12);
  const A = ws.tensor(a, [M, K]).to("f16"), B = ws.tensor(b, [K, N]).to("f16");
  const a16 = await A.toArray(), b16 = await B.toArray();
  setMatmulTile(tile);
  const y = dtype === "f16" ? ws.matmul(A, B) : ws.matmul(ws.tensor(a16, [M, K]), ws.tensor(b16, [K, N]));
  setMatmulTile(null);
  const got = await y.toArray();
  let e = 0;
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += a16[i * K + k]! * b16[k * N + j]!;
    e = Math.max(e, Math.abs(got[i * N + j]! - s) / (1 + Math.abs(s)));
  }
  return e;
}

interface Row { variant: string; N: number; tflops: number; ms: number }
const rows: Row[] = [];
const errors: Record<string, string> = {};
const checks: Record<string, number> = {};
ws.setFloat32MatmulPrecision("medium");
for (const t of tiles) for (const d of ["f32", "f16"] as const) {
  try { checks[`${t} ${d}`] = await check(t, d); } catch (e) { errors[`check ${t} ${d}`] = String((e as Error).stack ?? e); }
}
console.log(`checks (max rel. error vs float64 of f16-rounded inputs): ${JSON.stringify(checks)}`);

for (const N of sizes) {
  const A = ws.tensor(randomF32(N * N, 3), [N, N]), B = ws.tensor(randomF32(N * N, 4), [N, N]);
  const A16 = A.to("f16"), B16 = B.to("f16");
  const variants: [string, () => void][] = [["f32 shader cores (auto)", () => { ws.setFloat32MatmulPrecision("highest"); setMatmulTile(null); }]];
  // The chooser's own pick under each --mu-rule ("bigGrid:minFill"), as ws.matmul makes it.
  for (const r of values["mu-rule"]!.split(",").filter(Boolean)) for (const d of ["f32", "f16"] as const) {
    const [bigGrid, minFill] = r.split(":").map(Number);
    const rule = { bigGrid: bigGrid!, minFill: minFill ?? 0 };
    setMatrixUnitRule(rule);
    ws.setFloat32MatmulPrecision("medium");
    const pick = chooseMatrixUnitTile(N, N, N, 1, d, mu.tiles, N % 8 === 0);
    ws.setFloat32MatmulPrecision("highest");
    variants.push([`auto (rule ${r}: ${pick}) ${d} in`, () => { ws.setFloat32MatmulPrecision("medium"); setMatmulTile(null); setMatrixUnitRule(rule); }]);
  }
  setMatrixUnitRule(null);
  for (const t of tiles) {
    variants.push([`${t} f32 in`, () => { ws.setFloat32MatmulPrecision("medium"); setMatmulTile(t); }]);
    variants.push([`${t} f16 in`, () => { ws.setFloat32MatmulPrecision("medium"); setMatmulTile(t); }]);
  }
  let first = true;
  for (const [name, set] of variants) {
    try {
      set();
      const [x, y] = name.endsWith("f16 in") ? [A16, B16] : [A, B];
      const timing = await timeBatches(async (n) => {
        for (let i = 0; i < n; i++) ws.matmul(x, y).dispose();
        await ctx.sync();
      }, { warmupMs: first ? 1000 : 300, batchMs });
      first = false;
      const r = { variant: name, N, tflops: tflops(N, N, N, timing.medianMs), ms: timing.medianMs };
      rows.push(r);
      console.log(`N=${N} ${name}: ${r.tflops.toFixed(1)} TFLOP/s (${r.ms.toFixed(3)} ms)`);
    } catch (e) {
      errors[`${name}@${N}`] = String((e as Error).stack ?? e);
      console.log(`N=${N} ${name} failed: ${(e as Error).message}`);
    }
  }
  setMatmulTile(null);
  setMatrixUnitRule(null);
  ws.setFloat32MatmulPrecision("highest");
  for (const t of [A, B, A16, B16]) t.dispose();
}
if (values.json) {
  await writeText(values.json, JSON.stringify({
    bench: "matmul-units", date: new Date().toISOString(), adapter: ctx.info.adapterName, configs,
    subgroupSize: [ctx.info.subgroupMinSize, ctx.info.subgroupMaxSize], tiles: mu.tiles, measured: tiles, robustness: !values["no-robustness"], sgSyntax: mu.sgSyntax, note: mu.note, diagnosis, checks, rows, errors,
  }, null, 1));
}
void dawn;
exit();
