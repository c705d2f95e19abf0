// What every benchmark needs from its runtime: the GPU (navigator.gpu in Deno, the `webgpu`
// package's Dawn in Node), command-line arguments (parsed in each bench by node:util parseArgs,
// which Node and Deno both have), and writing the JSON result.

type G = Record<string, unknown> & {
  Deno?: { args: string[]; version: { deno: string }; writeTextFile(p: string, s: string): Promise<void> };
  process?: { argv: string[]; versions: { node: string }; exit(c: number): void };
};
const G = globalThis as unknown as G;
export const isDeno = typeof G.Deno === "object";

export function argv(): string[] {
  return isDeno ? G.Deno!.args : G.process!.argv.slice(2);
}

export async function runtimeGpu(): Promise<{ gpu: GPU; engine: string; globals: Record<string, unknown> }> {
  if (isDeno) {
    const gpu = (G.navigator as { gpu?: GPU } | undefined)?.gpu;
    if (!gpu) throw new Error("Deno has no navigator.gpu here (no Vulkan driver?)");
    return { gpu, engine: `wgpu (Deno ${G.Deno!.version.deno})`, globals: {} };
  }
  const pkg = "webgpu";
  const { create, globals } = (await import(pkg)) as { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  return { gpu: create([]), engine: `Dawn (Node ${G.process!.versions.node}, npm webgpu)`, globals };
}

export async function writeText(path: string, text: string): Promise<void> {
  if (isDeno) return G.Deno!.writeTextFile(path, text);
  const fs = await import("node:fs/promises");
  await fs.writeFile(path, text);
}

export function exit(): void {
  if (!isDeno) G.process!.exit(0);
}
