// The shape of the code base itself: the import graph keeps the layering of docs/design.md §1
// with no cycle (read from the source tree with the TypeScript compiler: Deno and Node only),
// the checker really finds cycles and upward imports (synthetic graphs: every runner), every op
// has a backward rule registered, and a bundle of the public entry keeps the registering modules
// although package.json says "sideEffects" for them only.
import type { OpName } from "../../src/autograd/ops.ts";
import { registeredOps, ruleFor, type RuleTable } from "../../src/autograd/rules.ts";
import { attentionRules } from "../../src/ops/attention.ts";
import { crossEntropyRules } from "../../src/ops/crossentropy.ts";
import { dropoutRules } from "../../src/ops/dropout.ts";
import { elementwiseRules } from "../../src/ops/elementwise.ts";
import { embeddingRules } from "../../src/ops/embedding.ts";
import { layerNormRules } from "../../src/ops/layernorm.ts";
import { layoutRules } from "../../src/ops/layout.ts";
import { matmulRules } from "../../src/ops/matmul.ts";
import { reduceRules } from "../../src/ops/reduce.ts";
import { softmaxRules } from "../../src/ops/softmax.ts";
import { maskedLinearRules } from "../../src/sparse/masked-linear.ts";
import { sparseRules } from "../../src/sparse/ops.ts";
import { type ImportEdge, importCycles, layerViolations, parseImports } from "../lib/import-graph.ts";
import { assert, assertEquals } from "../lib/assert.ts";
import { test } from "../lib/harness.ts";

/**
 * The one typed check that the rule records cover every op: an op added to OpAttrs without a rule
 * (or a rule module left out here) fails to compile.
 */
const EVERY_RULE = {
  ...elementwiseRules, ...reduceRules, ...layoutRules, ...matmulRules, ...softmaxRules, ...layerNormRules,
  ...embeddingRules, ...crossEntropyRules, ...dropoutRules, ...attentionRules, ...sparseRules, ...maskedLinearRules,
} satisfies RuleTable;

test("autograd: every op has its backward rule registered with the tape", () => {
  const ops = Object.keys(EVERY_RULE) as OpName[];
  for (const op of ops) assert(ruleFor(op) === EVERY_RULE[op], `the registered rule of ${op} is the one its module defines`);
  assertEquals(registeredOps().sort(), [...ops].sort(), "no rule registered for an op that does not exist");
});

const e = (from: string, to: string, typeOnly = false): ImportEdge => ({ from, to, typeOnly });

test("import graph checker: finds a run-time cycle, ignores a type-only one", () => {
  const loop = [e("src/ops/a.ts", "src/ops/b.ts"), e("src/ops/b.ts", "src/ops/c.ts"), e("src/ops/c.ts", "src/ops/a.ts"), e("src/ops/c.ts", "src/ops/util.ts")];
  assertEquals(importCycles(loop), [["src/ops/a.ts", "src/ops/b.ts", "src/ops/c.ts"]]);
  assertEquals(importCycles([e("src/ops/a.ts", "src/ops/a.ts")]), [["src/ops/a.ts"]], "a self-import is a cycle");
  assertEquals(importCycles([e("src/tensor.ts", "src/autograd/graph.ts"), e("src/autograd/graph.ts", "src/tensor.ts", true)]), [],
    "a loop closed by a type-only import is erased at compile time");
  // Two separate loops and a long chain (the iterative walk must not blow the stack).
  const chain = Array.from({ length: 5000 }, (_, i) => e(`src/ops/n${i}.ts`, `src/ops/n${i + 1}.ts`));
  const two = [...chain, e("src/nn/x.ts", "src/nn/y.ts"), e("src/nn/y.ts", "src/nn/x.ts"), e("src/ops/n5000.ts", "src/ops/n0.ts")];
  assertEquals(importCycles(two).map((c) => c.length).sort((a, b) => a - b), [2, 5001]);
});

test("import graph checker: an upward import, even type-only, is a violation; downward and same-layer are not", () => {
  assertEquals(layerViolations([e("src/tensor.ts", "src/ops/elementwise.ts")]).length, 1, "tensor → ops");
  assertEquals(layerViolations([e("src/autograd/graph.ts", "src/sparse/ops.ts", true)]).length, 1, "autograd → sparse, type-only");
  assertEquals(layerViolations([e("src/ops/raw/map.ts", "src/ops/elementwise.ts")]).length, 1, "a kernel launcher → a front-end");
  assertEquals(layerViolations([e("src/gpu/pool.ts", "test/lib/assert.ts")]).length, 1, "the library → outside it");
  assertEquals(layerViolations([
    e("src/ops/matmul.ts", "src/ops/raw/map.ts"), e("src/sparse/spmm.ts", "src/ops/util.ts"), e("src/slope/prune.ts", "src/nn/layers.ts"),
    e("src/nn/index.ts", "src/ops/register.ts"), e("src/tensor.ts", "shaders/kernel.ts"), e("src/ops/layout.ts", "src/ops/raw/copy.ts"),
  ]), []);
});

// ---- Deno and Node: the real tree ---------------------------------------------------------------

/** Loaded by a computed name so that the browser bundler never sees them. */
async function nodeModule<T>(name: string): Promise<T> {
  return (await import(/* @vite-ignore */ name)) as T;
}

interface Fs { readdirSync(p: string, o: { withFileTypes: true }): { name: string; isDirectory(): boolean }[]; readFileSync(p: string, enc: "utf8"): string; existsSync(p: string): boolean }

async function repoRoot(fs: Fs): Promise<string> {
  const proc = await nodeModule<{ cwd(): string }>("node:process");
  let dir = proc.cwd();
  while (!fs.existsSync(`${dir}/package.json`) || !fs.readFileSync(`${dir}/package.json`, "utf8").includes('"name": "webslope"')) {
    const up = dir.replace(/\/[^/]+$/, "");
    if (up === dir || up === "") throw new Error(`no webslope package.json above ${proc.cwd()}`);
    dir = up;
  }
  return dir;
}

function listTs(fs: Fs, root: string, dir: string): string[] {
  const out: string[] = [];
  for (const d of fs.readdirSync(`${root}/${dir}`, { withFileTypes: true })) {
    const rel = `${dir}/${d.name}`;
    if (d.isDirectory()) out.push(...listTs(fs, root, rel));
    else if (d.name.endsWith(".ts") && !d.name.endsWith(".d.ts")) out.push(rel);
  }
  return out;
}

test("import graph of src/ and shaders/: no upward import, no cycle (Deno and Node only: reads the source tree)", async () => {
  const fs = await nodeModule<Fs>("node:fs");
  const ts = (await nodeModule<{ default: unknown }>("typescript")).default;
  // The parser itself: value, type-only and mixed imports, re-exports, bare specifiers.
  const probe = parseImports(ts, "src/ops/x.ts", [
    `import { a } from "./a.ts";`, `import type { B } from "../tensor.ts";`, `import { type C, d } from "./raw/d.ts";`,
    `import { type E } from "../autograd/e.ts";`, `export { f } from "../../shaders/f.wgsl.ts";`, `export type { G } from "./g.ts";`,
    `import "./register.ts";`, `import { wgsl } from "wgsl-preprocessor/wgsl-preprocessor.js";`,
  ].join("\n"));
  assertEquals(probe, [
    e("src/ops/x.ts", "src/ops/a.ts"), e("src/ops/x.ts", "src/tensor.ts", true), e("src/ops/x.ts", "src/ops/raw/d.ts"),
    e("src/ops/x.ts", "src/autograd/e.ts", true), e("src/ops/x.ts", "shaders/f.wgsl.ts"), e("src/ops/x.ts", "src/ops/g.ts", true),
    e("src/ops/x.ts", "src/ops/register.ts"),
  ]);
  const root = await repoRoot(fs);
  const files = [...listTs(fs, root, "src"), ...listTs(fs, root, "shaders")];
  assert(files.length > 50 && files.includes("src/tensor.ts"), `read the tree (${files.length} files)`);
  const edges = files.flatMap((f) => parseImports(ts, f, fs.readFileSync(`${root}/${f}`, "utf8")));
  assert(edges.length > 200, `parsed the imports (${edges.length})`);
  const known = new Set(files);
  const missing = edges.filter((x) => !known.has(x.to) && !x.to.endsWith(".d.ts") && !x.to.endsWith(".js"));
  assertEquals(missing.map((x) => `${x.from} → ${x.to}`), [], "every relative import names a file of the tree");
  assertEquals(layerViolations(edges), [], "no import from a higher layer");
  assertEquals(importCycles(edges), [], "no import cycle");
}, { browser: false });

test("a bundle of the public entry keeps every registering module (esbuild; Deno and Node only)", async () => {
  const fs = await nodeModule<Fs>("node:fs");
  const esbuild = await nodeModule<{ build(o: object): Promise<{ outputFiles: { text: string }[] }>; stop?(): void }>("esbuild");
  const root = await repoRoot(fs);
  // A user who touches only `tensor` and methods: the methods and rules must still be there.
  const r = await esbuild.build({
    stdin: { contents: `import { tensor } from "./src/index.ts"; tensor([1, 2]).add(1).sum().backward();`, resolveDir: root, loader: "ts" },
    bundle: true, write: false, format: "esm", platform: "neutral", external: ["wgsl-preprocessor/*"], logLevel: "silent",
  });
  const js = r.outputFiles[0]!.text;
  for (const rules of ["elementwiseRules", "reduceRules", "layoutRules", "matmulRules", "softmaxRules", "layerNormRules", "embeddingRules", "crossEntropyRules", "dropoutRules", "attentionRules"]) {
    assert(js.includes(`registerRules(${rules})`), `the bundle registers ${rules}`);
  }
  assert(/defineTensorMethods\(\{\s*add\(/.test(js), "the bundle attaches the elementwise methods");
  esbuild.stop?.();
}, { browser: false });
