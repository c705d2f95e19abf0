// Square f32 matmul N×N×N: webslope against TF.js (WebGPU backend) and jax-js, in the same run and
// the same engine, so the figures compare like with like. Runs in Node (Dawn, through the npm
// `webgpu` package), in Deno (wgpu, navigator.gpu) and in Chromium (bench/browser/). Per N and
// library: warm the GPU up for about a second, then time batches of products with one forced completion per batch, and report
// the median TFLOP/s = 2N³/t. See bench/README.md for how to build and run it (also on the H200).
//
//   deno run -A bench/matmul.ts --sizes 128,256 [--quick] [--json out.json] [--peers tfjs,jax|none]
//        [--tiles auto,64x64,128x64,128x128,128x128k8] [--f16] [--warmup 1000] [--rewarm 500] [--batch-ms 250]
//   node .bench-dist/matmul.mjs ...   (after npm run bench:build; the same bundle runs in Deno)
//   npm run bench:browser -- matmul ...   (Chromium through Playwright, bench/browser/)
// --tiles also times forced tile shapes; --f16 also times ours with f16 operands where the
// adapter has shader-f16. The first measurement of each N warms up for --warmup ms, the later
// ones (GPU already at full clock) for --rewarm ms.
import * as ws from "../src/index.ts";
import { chooseMatmulTile, setMatmulTile } from "../src/ops/matmul.ts";
import { GEMM_TILES as MATMUL_TILES, type GemmTileName as MatmulTileName } from "../shaders/gemm.ts";
import { type MatmulPeer, jaxPeer, setupNavigator, tfjsPeer } from "./peers.ts";
import { QUICK_TIMING, type Timing, randomF32, tflops, timeBatches } from "./timing.ts";
import { exit, flags, runtimeGpu, writeText } from "./env.ts";

interface Args {
  sizes: number[];
  json: string | null;
  peers: string[];
  tiles: ("auto" | MatmulTileName)[];
  warmupMs: number;
  rewarmMs: number;
  batchMs: number;
  batches: number;
  minItems: number;
  f16: boolean;
}

async function readArgs(): Promise<Args & { dawnToggles: boolean }> {
  const v = await flags({
    sizes: { type: "string", default: "2048,4096,8192" }, json: { type: "string" }, peers: { type: "string", default: "tfjs,jax" },
    tiles: { type: "string", default: "auto" }, warmup: { type: "string", default: "1000" }, rewarm: { type: "string", default: "500" },
    "batch-ms": { type: "string", default: "250" }, f16: { type: "boolean", default: false },
    /** CI: N = 256 (and the peers) with QUICK_TIMING, seconds on a software adapter. */
    quick: { type: "boolean", default: false },
  });
  const tiles = v.tiles.split(",") as Args["tiles"];
  for (const t of tiles) if (t !== "auto" && !(t in MATMUL_TILES)) throw new Error(`unknown tile ${t}; one of auto, ${Object.keys(MATMUL_TILES).join(", ")}`);
  return {
    sizes: (v.quick ? "256" : v.sizes).split(",").map(Number), json: v.json ?? null, peers: v.peers.split(",").filter((p) => p && p !== "none"), tiles,
    warmupMs: v.quick ? QUICK_TIMING.warmupMs : Number(v.warmup), rewarmMs: v.quick ? QUICK_TIMING.warmupMs / 2 : Number(v.rewarm),
    batchMs: v.quick ? QUICK_TIMING.batchMs : Number(v["batch-ms"]), batches: v.quick ? QUICK_TIMING.batches : 5,
    minItems: v.quick ? QUICK_TIMING.minItems : 20, f16: v.f16, dawnToggles: v["dawn-toggles"],
  };
}

/** Max |x - y| / (1 + |y|) over the elements. */
function relErr(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < y.length; i++) e = Math.max(e, Math.abs(x[i]! - y[i]!) / (1 + Math.abs(y[i]!)));
  return e;
}

function cpuMatmul(M: number, K: number, N: number, a: Float32Array, b: Float32Array): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) {
    const av = a[i * K + k]!;
    for (let j = 0; j < N; j++) c[i * N + j]! += av * b[k * N + j]!;
  }
  return c;
}

const fmt = (x: number) => (x >= 1 ? x.toFixed(2) : x.toPrecision(3));

interface Row { lib: string; variant: string; N: number; tflops: number; msPerProduct: number; timing: Timing }

async function main(): Promise<void> {
  const args = await readArgs();
  const { gpu, engine, globals } = await runtimeGpu({ dawnToggles: args.dawnToggles });
  setupNavigator(gpu, globals);
  const ctx = await ws.init({ gpu });
  console.log(`engine: ${engine}; adapter: ${ctx.info.adapterName}; features: ${[...ctx.features].join(", ")}`);
  console.log(`sizes ${args.sizes.join(", ")}; warm-up ${args.warmupMs} ms (then ${args.rewarmMs} ms), ${args.batches} batches of ~${args.batchMs} ms (≥ ${args.minItems} products)`);

  const peers: MatmulPeer[] = [];
  const peerErrors: Record<string, string> = {}; // and failures of our own variants
  for (const p of args.peers) {
    try {
      if (p === "tfjs") peers.push(await tfjsPeer());
      else if (p === "jax") peers.push(await jaxPeer());
      else throw new Error(`unknown peer ${p} (tfjs, jax)`);
    } catch (e) {
      peerErrors[p] = String((e as Error)?.stack ?? e);
      console.log(`peer ${p} failed to load: ${(e as Error)?.message ?? e}`);
    }
  }

  // Everyone computes the same small product correctly before anything is timed.
  {
    const [M, K, N] = [67, 33, 129];
    const a = randomF32(M * K, 1), b = randomF32(K * N, 2), ref = cpuMatmul(M, K, N, a, b);
    const y = ws.matmul(ws.tensor(a, [M, K]), ws.tensor(b, [K, N]));
    const errs: Record<string, number> = { webslope: relErr(await y.toArray(), ref) };
    for (const p of peers) errs[p.name] = relErr(await p.check(M, K, N, a, b), ref);
    console.log(`check ${M}x${K}x${N}, max relative error: ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(", ")}`);
    for (const [k, v] of Object.entries(errs)) if (!(v < 1e-4)) throw new Error(`${k} computes a wrong product (error ${v})`);
  }

  const rows: Row[] = [];
  let first = true;
  const opts = () => { const warmupMs = first ? args.warmupMs : args.rewarmMs; first = false; return { warmupMs, batchMs: args.batchMs, batches: args.batches, minItems: args.minItems }; };
  const report = (r: Row) => {
    rows.push(r);
    console.log(`N=${r.N} ${r.lib}${r.variant ? ` [${r.variant}]` : ""}: ${fmt(r.tflops)} TFLOP/s (${r.msPerProduct.toFixed(3)} ms/product, ${r.timing.items} products in batches of ${r.timing.perBatch})`);
  };
  for (const N of args.sizes) {
    first = true;
    const a = randomF32(N * N, 3), b = randomF32(N * N, 4);
    const A = ws.tensor(a, [N, N]), B = ws.tensor(b, [N, N]);
    for (const tile of args.tiles) {
      setMatmulTile(tile === "auto" ? null : tile);
      const variant = tile === "auto" ? `auto: ${chooseMatmulTile(N, N, 1, ctx.limits.maxComputeWorkgroupStorageSize)}` : tile;
      try {
        const timing = await timeBatches(async (n) => {
          for (let i = 0; i < n; i++) ws.matmul(A, B).dispose();
          await ctx.sync();
        }, opts());
        report({ lib: "webslope", variant, N, tflops: tflops(N, N, N, timing.medianMs), msPerProduct: timing.medianMs, timing });
      } catch (e) {
        console.log(`N=${N} webslope [${variant}] failed: ${(e as Error)?.message ?? e}`);
        peerErrors[`webslope ${variant}@${N}`] = String((e as Error)?.stack ?? e);
      }
    }
    setMatmulTile(null);
    if (args.f16 && ctx.features.has("shader-f16")) {
      const A16 = A.to("f16"), B16 = B.to("f16");
      const timing = await timeBatches(async (n) => {
        for (let i = 0; i < n; i++) ws.matmul(A16, B16).dispose();
        await ctx.sync();
      }, opts());
      report({ lib: "webslope", variant: `f16 operands, ${chooseMatmulTile(N, N, 1, ctx.limits.maxComputeWorkgroupStorageSize)}`, N, tflops: tflops(N, N, N, timing.medianMs), msPerProduct: timing.medianMs, timing });
      A16.dispose(); B16.dispose();
    }
    A.dispose(); B.dispose();
    ctx.pool.trim();
    for (const p of peers) {
      try {
        const r = await p.prepare(N, a, b);
        const timing = await timeBatches(r.run, opts());
        r.dispose();
        report({ lib: p.name, variant: "", N, tflops: tflops(N, N, N, timing.medianMs), msPerProduct: timing.medianMs, timing });
      } catch (e) {
        console.log(`N=${N} ${p.name} failed: ${(e as Error)?.message ?? e}`);
        peerErrors[`${p.name}@${N}`] = String((e as Error)?.stack ?? e);
      }
    }
  }

  // Markdown summary: one row per N, the best of ours and each peer.
  const libs = ["webslope", ...peers.map((p) => p.name)];
  console.log(`\n| N | ${libs.join(" | ")} |  (TFLOP/s, ${engine})\n|---|${libs.map(() => "---").join("|")}|`);
  for (const N of args.sizes) {
    const cell = (lib: string) => {
      const rs = rows.filter((r) => r.N === N && r.lib === lib);
      const auto = rs.find((r) => r.variant.startsWith("auto")) ?? rs[0];
      return auto ? `${fmt(auto.tflops)}${lib === "webslope" && auto.variant ? ` (${auto.variant})` : ""}` : "—";
    };
    console.log(`| ${N} | ${libs.map(cell).join(" | ")} |`);
  }
  if (args.json) {
    const out = {
      bench: "matmul", date: new Date().toISOString(), engine, adapter: ctx.info.adapterName, features: [...ctx.features],
      maxComputeWorkgroupStorageSize: ctx.limits.maxComputeWorkgroupStorageSize,
      peers: peers.map((p) => ({ name: p.name, version: p.version })), peerErrors, rows,
    };
    await writeText(args.json, JSON.stringify(out, null, 1));
    console.log(`wrote ${args.json}`);
  }
}

await main();
exit();
