// The training step's reductions and optimizer step on their own: column sums (bias and
// LayerNorm gradients, [B·T, C] over B·T) and last-axis / whole-tensor sums, against the old
// one-invocation-per-output column kernel (--naive); then AdamW over a GPT's parameters and
// clipGradNorm, fused over flat arenas against one dispatch per parameter.
//
//   deno run -A bench/reduce.ts [--quick] [--naive] [--json out.json]
//   node .bench-dist/reduce.mjs [...]   (after npm run bench:build)
//   npm run bench:browser -- reduce [...]   (Chromium, bench/browser/)
import * as ws from "../src/index.ts";
import { GPT } from "../src/nn/index.ts";
import { AdamW, clipGradNorm } from "../src/optim/index.ts";
import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";
import { bindGroup, kernelFamily, MAIN_ARGS } from "../shaders/kernel.ts";
import { exit, flags, runtimeGpu, writeText } from "./env.ts";
import { QUICK_TIMING, randomF32, timeBatches } from "./timing.ts";

const naiveGroup = bindGroup([{ name: "src", access: "read", type: "array<f32>" }, { name: "dst", access: "rw", type: "array<f32>" }]);

/** The column kernel before the tiled one: one invocation per output, looping over all R rows. */
const naiveColumnKernel = kernelFamily("benchNaiveColumnSum", () => ({
  code: wgsl`
${naiveGroup.decls}
@compute @workgroup_size(256)
fn main(${MAIN_ARGS}) {
  let j = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  let R = pu(0u);
  let inner = pu(1u);
  if (j >= inner) { return; }
  var acc = 0.0;
  for (var k = 0u; k < R; k = k + 1u) { acc = acc + src[j + k * inner]; }
  dst[j] = acc;
}
`,
  group: naiveGroup,
}));

interface ReduceRow { what: string; shape: number[]; axes: number[]; ms: number; gbps: number; naiveMs?: number }
interface OptimRow { config: string; params: number; tensors: number; fusedStepMs: number; perTensorStepMs: number; fusedClipMs: number; perTensorClipMs: number }

const CONFIGS: Record<string, { nLayer: number; nEmbd: number; nHead: number; blockSize: number }> = {
  tiny: { nLayer: 2, nEmbd: 64, nHead: 2, blockSize: 32 }, // --quick (CI)
  small: { nLayer: 6, nEmbd: 384, nHead: 6, blockSize: 256 },
  gpt2: { nLayer: 12, nEmbd: 768, nHead: 12, blockSize: 1024 },
};

async function main(): Promise<void> {
  const f = await flags({ quick: { type: "boolean", default: false }, naive: { type: "boolean", default: false }, json: { type: "string" } });
  const quick = f.quick;
  const { gpu, engine } = await runtimeGpu({ dawnToggles: f["dawn-toggles"] });
  const ctx = await ws.init({ gpu });
  console.log(`engine: ${engine}; adapter: ${ctx.info.adapterName}`);
  const sync = () => ctx.sync();
  const timing = quick ? QUICK_TIMING : { warmupMs: 500 };

  // ---- reductions ----------------------------------------------------------------------------
  const cases: [string, number[], number[]][] = quick
    ? [["column sum (bias grad)", [1024, 256], [0]], ["row sum", [1024, 256], [1]]]
    : [
      ["column sum (small: bias / LN grad)", [16384, 384], [0]],
      ["column sum (small: fc1 bias grad)", [16384, 1536], [0]],
      ["column sum (gpt2: bias / LN grad)", [8192, 768], [0]],
      ["column sum (gpt2: fc1 bias grad)", [8192, 3072], [0]],
      ["column max", [16384, 384], [0]],
      ["column sum, inner = 3", [1 << 20, 3], [0]],
      ["row sum (last axis)", [16384, 384], [1]],
      ["whole-tensor sum (a gradient norm)", [10_800_000], [0]],
    ];
  const reduceRows: ReduceRow[] = [];
  for (const [what, shape, axes] of cases) {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = ws.tensor(randomF32(n, n % 97), shape);
    const kind = what.includes("max") ? "max" : "sum";
    const t = await timeBatches(async (k) => { for (let i = 0; i < k; i++) x[kind](axes).dispose(); await sync(); }, timing);
    const row: ReduceRow = { what, shape, axes, ms: t.medianMs, gbps: (n * 4) / (t.medianMs * 1e-3) / 1e9 };
    if (f.naive && shape.length === 2 && axes[0] === 0 && kind === "sum") {
      const [R, inner] = shape as [number, number];
      const out = ws.zeros([inner]);
      const groups = Math.ceil(inner / 256);
      const tn = await timeBatches(async (k) => {
        for (let i = 0; i < k; i++) ctx.launcher.dispatch(naiveColumnKernel(), [x.buffer(), out.buffer()], [groups], [R, inner]);
        await sync();
      }, timing);
      row.naiveMs = tn.medianMs;
      out.dispose();
    }
    reduceRows.push(row);
    console.log(`${what} [${shape}] over ${axes}: ${t.medianMs.toFixed(4)} ms (${row.gbps.toFixed(0)} GB/s)` +
      (row.naiveMs !== undefined ? `; one invocation per column: ${row.naiveMs.toFixed(4)} ms (${(row.naiveMs / t.medianMs).toFixed(1)}× slower)` : ""));
    x.dispose();
  }

  // ---- optimizer step and gradient clipping ------------------------------------------------------
  const optimRows: OptimRow[] = [];
  for (const name of quick ? ["tiny"] : ["small", "gpt2"]) {
    const model = new GPT({ vocabSize: 65, ...CONFIGS[name]!, seed: 1 });
    const params = model.parameters();
    const nParams = params.reduce((s, p) => s + p.size, 0);
    const opt = new AdamW(params, { lr: 1e-4, weightDecay: 0.1 });
    // Fused: gradients that backward wrote into the arena slots (kept across the timed steps).
    ws.tidy(() => {
      let loss: ws.Tensor | null = null;
      for (const p of params) { const s = p.sum(); loss = loss ? loss.add(s) : s; }
      loss!.backward();
    });
    const step = () => timeBatches(async (k) => { for (let i = 0; i < k; i++) opt.step(); await sync(); }, timing);
    const clip = () => timeBatches(async (k) => { for (let i = 0; i < k; i++) clipGradNorm(params, 1e9).dispose(); await sync(); }, timing);
    const fusedStep = await step(), fusedClip = await clip();
    // Per tensor: the same gradients as separate tensors (what the optimizer gets without arenas).
    for (const p of params) { const g = p.grad!; p.grad = g.mul(1); g.dispose(); }
    const perStep = await step(), perClip = await clip();
    const row: OptimRow = {
      config: name, params: nParams, tensors: params.length,
      fusedStepMs: fusedStep.medianMs, perTensorStepMs: perStep.medianMs, fusedClipMs: fusedClip.medianMs, perTensorClipMs: perClip.medianMs,
    };
    optimRows.push(row);
    console.log(`AdamW ${name} (${(nParams / 1e6).toFixed(1)}M params in ${params.length} tensors): fused ${row.fusedStepMs.toFixed(4)} ms, ` +
      `per tensor ${row.perTensorStepMs.toFixed(4)} ms; clipGradNorm fused ${row.fusedClipMs.toFixed(4)} ms, per tensor ${row.perTensorClipMs.toFixed(4)} ms`);
    opt.zeroGrad(); opt.dispose(); model.dispose();
    ctx.pool.trim();
  }

  console.log(`\n| reduction | shape | axes | ms | GB/s | one invocation per column, ms |  (${engine})\n|---|---|---|---|---|---|`);
  for (const r of reduceRows) console.log(`| ${r.what} | [${r.shape}] | ${r.axes} | ${r.ms.toFixed(4)} | ${r.gbps.toFixed(0)} | ${r.naiveMs?.toFixed(4) ?? "–"} |`);
  console.log(`\n| config | params | tensors | AdamW fused ms | AdamW per tensor ms | clip fused ms | clip per tensor ms |\n|---|---|---|---|---|---|---|`);
  for (const r of optimRows) {
    console.log(`| ${r.config} | ${(r.params / 1e6).toFixed(1)}M | ${r.tensors} | ${r.fusedStepMs.toFixed(4)} | ${r.perTensorStepMs.toFixed(4)} | ${r.fusedClipMs.toFixed(4)} | ${r.perTensorClipMs.toFixed(4)} |`);
  }
  const json = f.json;
  if (json) {
    await writeText(json, JSON.stringify({ bench: "reduce", date: new Date().toISOString(), engine, adapter: ctx.info.adapterName, reductions: reduceRows, optimizer: optimRows }, null, 1));
  }
}

await main();
exit();
