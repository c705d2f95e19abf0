// The import graph of the library (src/ and shaders/) and the two rules it must keep
// (docs/design.md §1): no file imports from a layer above its own, and no cycle among the
// imports that exist at run time (type-only imports are erased, so they may close a loop, e.g.
// Tensor ↔ the autograd node type, but they still count for the layering). The checks are pure
// functions over edges, so they run in every runner; parsing the sources needs the TypeScript
// compiler and the file system (Deno and Node).

export interface ImportEdge {
  from: string;
  to: string;
  /** `import type`, `export type`, or only `type` specifiers: erased when compiled. */
  typeOnly: boolean;
}

/** Layers from the bottom up: a file may import its own layer or one below (never above). */
export const LAYERS: readonly { name: string; rank: number; test: (path: string) => boolean }[] = [
  { name: "shaders", rank: 0, test: (p) => p.startsWith("shaders/") },
  { name: "errors/dtype/validate", rank: 0, test: (p) => ["src/errors.ts", "src/dtype.ts", "src/validate.ts"].includes(p) },
  { name: "gpu", rank: 1, test: (p) => p.startsWith("src/gpu/") },
  { name: "tensor/autograd", rank: 2, test: (p) => ["src/tensor.ts", "src/scope.ts", "src/random.ts"].includes(p) || p.startsWith("src/autograd/") },
  { name: "ops/raw (kernel launchers)", rank: 3, test: (p) => p.startsWith("src/ops/raw/") || p === "src/ops/util.ts" },
  { name: "ops/sparse", rank: 4, test: (p) => p.startsWith("src/ops/") || p.startsWith("src/sparse/") },
  { name: "nn/optim/slope", rank: 5, test: (p) => /^src\/(nn|optim|slope)\//.test(p) },
  { name: "train", rank: 6, test: (p) => p.startsWith("src/train/") },
  { name: "cli", rank: 7, test: (p) => p.startsWith("src/cli/") },
];

/** Public entry points (src/index.ts, src/<sub>/index.ts) sit above everything they re-export. */
const ENTRY_RANK = 100;

export function layerOf(path: string): { name: string; rank: number } | null {
  if (path === "src/index.ts" || /^src\/[^/]+\/index\.ts$/.test(path)) return { name: "entry", rank: ENTRY_RANK };
  const l = LAYERS.find((x) => x.test(path));
  return l ? { name: l.name, rank: l.rank } : null;
}

/** Imports that run upward (or out of the library, or into a file of no layer), as messages. */
export function layerViolations(edges: readonly ImportEdge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const a = layerOf(e.from), b = layerOf(e.to);
    if (!a) { out.push(`${e.from} is in no layer (add it to LAYERS)`); continue; }
    if (!b) { out.push(`${e.from} imports ${e.to}, which is outside the library's layers`); continue; }
    if (b.rank > a.rank) out.push(`${e.from} (${a.name}) imports ${e.to} (${b.name}), a higher layer`);
  }
  return [...new Set(out)];
}

/** Every cycle of run-time imports, one per strongly connected component (Tarjan), as file lists. */
export function importCycles(edges: readonly ImportEdge[]): string[][] {
  const adj = new Map<string, string[]>();
  for (const e of edges) {
    if (e.typeOnly) continue;
    if (!adj.has(e.from)) adj.set(e.from, []);
    if (!adj.has(e.to)) adj.set(e.to, []);
    adj.get(e.from)!.push(e.to);
  }
  let next = 0;
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], onStack = new Set<string>();
  const cycles: string[][] = [];
  // Iterative Tarjan: frames of (node, position in its adjacency list).
  for (const root of adj.keys()) {
    if (index.has(root)) continue;
    const frames: [string, number][] = [[root, 0]];
    index.set(root, next); low.set(root, next); next++;
    stack.push(root); onStack.add(root);
    while (frames.length) {
      const frame = frames[frames.length - 1]!;
      const [v, i] = frame;
      const succ = adj.get(v)!;
      if (i < succ.length) {
        frame[1]++;
        const w = succ[i]!;
        if (!index.has(w)) {
          index.set(w, next); low.set(w, next); next++;
          stack.push(w); onStack.add(w);
          frames.push([w, 0]);
        } else if (onStack.has(w)) {
          low.set(v, Math.min(low.get(v)!, index.get(w)!));
        }
        continue;
      }
      frames.pop();
      if (frames.length) { const p = frames[frames.length - 1]![0]; low.set(p, Math.min(low.get(p)!, low.get(v)!)); }
      if (low.get(v) === index.get(v)) {
        const comp: string[] = [];
        let w: string;
        do { w = stack.pop()!; onStack.delete(w); comp.push(w); } while (w !== v);
        if (comp.length > 1 || succ.includes(v)) cycles.push(comp.sort());
      }
    }
  }
  return cycles;
}

/** The subset of the TypeScript compiler API the parser uses. */
// deno-lint-ignore no-explicit-any
type TS = any;

/**
 * The relative imports and re-exports of one source file, resolved to repository paths.
 * Bare specifiers (npm packages) are left out: they are not the library's files.
 */
export function parseImports(ts: TS, path: string, text: string): ImportEdge[] {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const edges: ImportEdge[] = [];
  const dir = path.split("/").slice(0, -1);
  const resolve = (spec: string): string => {
    const parts = [...dir];
    for (const seg of spec.split("/")) {
      if (seg === "..") parts.pop();
      else if (seg !== ".") parts.push(seg);
    }
    return parts.join("/");
  };
  for (const st of sf.statements) {
    let spec: string | undefined, typeOnly = false;
    if (ts.isImportDeclaration(st)) {
      spec = st.moduleSpecifier.text;
      const clause = st.importClause;
      if (clause) {
        const named = clause.namedBindings;
        const allTypeSpecifiers = !clause.name && named && ts.isNamedImports(named) && named.elements.length > 0 &&
          named.elements.every((e: { isTypeOnly: boolean }) => e.isTypeOnly);
        typeOnly = clause.isTypeOnly || !!allTypeSpecifiers;
      }
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier) {
      spec = st.moduleSpecifier.text;
      const named = st.exportClause;
      const allTypeSpecifiers = named && ts.isNamedExports(named) && named.elements.length > 0 &&
        named.elements.every((e: { isTypeOnly: boolean }) => e.isTypeOnly);
      typeOnly = st.isTypeOnly || !!allTypeSpecifiers;
    }
    if (spec === undefined || !spec.startsWith(".")) continue;
    edges.push({ from: path, to: resolve(spec), typeOnly });
  }
  return edges;
}
