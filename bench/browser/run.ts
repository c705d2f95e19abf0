// Runs one benchmark in headless Chromium through Playwright, as a user's CI with a GPU runner
// would: the same bench module that Node and Deno run (bench/<name>.ts), bundled with
// bench/browser/page.ts by esbuild, served on 127.0.0.1 (a secure context, which WebGPU needs) on
// a free port together with the corpus at /data/ ($WEBSLOPE_DATA_DIR or ../shared/data, as the
// demo's server does). The page's console is printed here, the files the bench wrote (--json,
// traces) are saved relative to the current directory, and the exit status is 1 when the bench
// threw or did not finish in time. `npm run bench:browser` bundles this file into .bench-dist/.
//
//   npm run bench:browser -- [--adapter swiftshader|gpu] [--timeout S] NAME [the bench's flags]
//   npm run bench:browser -- train --quick --json train-chromium.json
//
// --adapter: WebGPU on SwiftShader (CPU) or on the machine's GPU (Vulkan); by default
// $WEBSLOPE_BROWSER_ADAPTER, else the GPU where /dev/nvidia0 or /dev/dri/renderD128 exists.
// $CHROMIUM_PATH picks the browser (default /usr/bin/chromium), $WEBSLOPE_BENCH_PORT a fixed port.
import { createReadStream, existsSync, statSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { dirname, extname, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { chromium } from "@playwright/test";
import { CHROMIUM, chromiumArgs, defaultAdapter, type BrowserAdapter } from "../../test/browser/chromium.ts";
import type { BrowserBench } from "../env.ts";

/** The repository root: this file runs bundled as .bench-dist/browser-run.mjs. */
const root = fileURLToPath(new URL("..", import.meta.url));
const outdir = resolve(root, ".bench-dist/browser");
/** The corpus folder: $WEBSLOPE_DATA_DIR, else the team's data folder beside the checkout (or beside a worktree's parent). */
const dataDir = process.env.WEBSLOPE_DATA_DIR ??
  ["../shared/data", "../../shared/data"].map((p) => resolve(root, p)).find((d) => existsSync(d)) ?? resolve(root, "../shared/data");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".txt": "text/plain; charset=utf-8",
  ".json": "application/json", ".wasm": "application/wasm",
};

/** Splits the command line: the runner's flags (all `--flag value`), then the bench's name and its own flags. */
function commandLine(argv: string[]): { adapter: BrowserAdapter; timeoutS: number; name: string; args: string[] } {
  const own: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith("--")) {
    own.push(argv[i]!);
    if (!argv[i]!.includes("=")) own.push(argv[i + 1] ?? "");
    i += argv[i]!.includes("=") ? 1 : 2;
  }
  const { values } = parseArgs({ args: own, strict: true, options: { adapter: { type: "string" }, timeout: { type: "string", default: "900" } } });
  const name = argv[i];
  if (!name) throw new Error("usage: npm run bench:browser -- [--adapter swiftshader|gpu] [--timeout S] NAME [flags]  (NAME: train, matmul, sparse, attention, reduce, lowrank, decode, precision)");
  const adapter = values.adapter ?? defaultAdapter();
  if (adapter !== "swiftshader" && adapter !== "gpu") throw new Error(`--adapter ${adapter}: use swiftshader or gpu`);
  const timeoutS = Number(values.timeout);
  if (!(timeoutS > 0)) throw new Error(`--timeout ${values.timeout}: a number of seconds`);
  return { adapter, timeoutS, name, args: argv.slice(i + 1) };
}

/** The file a request names, or null: the page, its bundle under .bench-dist/browser/, a corpus file under /data/. */
function fileFor(url: string): string | null {
  const path = decodeURIComponent(url.split("?")[0]!);
  if (path === "/" || path === "/index.html") return resolve(root, "bench/browser/index.html");
  const [base, rel] = path.startsWith("/data/") ? [dataDir, path.slice(6)] : [outdir, path.slice(1)];
  const file = resolve(base, rel);
  return file.startsWith(base + sep) && existsSync(file) && statSync(file).isFile() ? file : null;
}

function serve(): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const file = fileFor(req.url ?? "/");
    if (!file) { res.statusCode = 404; res.end(); return; }
    res.setHeader("Content-Type", TYPES[extname(file)] ?? "application/octet-stream");
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(Number(process.env.WEBSLOPE_BENCH_PORT ?? 0), "127.0.0.1", () => ok({ server, port: (server.address() as { port: number }).port }));
  });
}

async function main(): Promise<number> {
  const { adapter, timeoutS, name, args } = commandLine(process.argv.slice(2));
  await rm(outdir, { recursive: true, force: true }); // no chunks of earlier builds
  await build({
    entryPoints: [resolve(root, "bench/browser/page.ts")],
    outdir, bundle: true, splitting: true, format: "esm", platform: "browser", target: "es2022",
    // Node-only branches of bench/env.ts (node:util, node:fs, the npm `webgpu` addon) never run in the page.
    external: ["node:*", "webgpu"],
    // @pkgjs/parseargs (node:util's parseArgs for the page) reads Node's `global`
    define: { global: "globalThis" },
    logLevel: "warning",
  });
  const { server, port } = await serve();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs(adapter), headless: true });
  try {
    const page = await browser.newPage();
    page.on("console", (m) => {
      const t = m.type();
      console.log(t === "log" || t === "info" ? m.text() : `[${t}] ${m.text()}`);
    });
    page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
    console.log(`Chromium ${browser.version()} (${adapter === "gpu" ? "the machine's GPU" : "SwiftShader"}): ${name} ${args.join(" ")}`);
    await page.goto(`http://127.0.0.1:${port}/?bench=${encodeURIComponent(name)}&args=${encodeURIComponent(JSON.stringify(args))}`);
    // (these functions run in the page: no closures over this file)
    try {
      await page.waitForFunction(() => (globalThis as unknown as { __bench?: BrowserBench }).__bench?.done === true, null, { timeout: timeoutS * 1000, polling: 250 });
    } catch (e) {
      console.error(`${name} did not finish in Chromium within ${timeoutS} s (--timeout): ${(e as Error).message.split("\n")[0]}`);
      return 1;
    }
    const state = await page.evaluate(() => (globalThis as unknown as { __bench: BrowserBench }).__bench);
    for (const [path, text] of Object.entries(state.files)) {
      const file = resolve(process.cwd(), path);
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, text);
      console.log(`saved ${path} from the page`);
    }
    if (state.error) {
      console.error(`${name} failed in Chromium: ${state.error}`);
      return 1;
    }
    return 0;
  } finally {
    await browser.close();
    server.close();
  }
}

process.exitCode = await main();
