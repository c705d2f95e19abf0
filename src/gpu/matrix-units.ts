// Whether this device can run webslope's matrix-unit (subgroup-matrix) matmul, decided once at
// init(): the feature, f16 and an f16→f32 16×16×16 configuration must be offered, and the kernels
// must actually compile — the feature is experimental and its WGSL surface still moves, so each
// tile variant is compiled inside an error scope and only those that pass are used. Nothing here
// runs when the feature is absent; matmuls then stay on the shader-core kernels. The fused
// attention forward's matrix-unit kernel (shaders/attention-subgroup.wgsl.ts) is compiled the
// same way once a matmul tile has: `attention` says whether the attention op may use it.
import { ATTENTION_UNITS_TILES, attentionUnitsForwardKernel, attentionUnitsSharedBytes } from "../../shaders/attention-subgroup.wgsl.ts";
import type { Kernel } from "../../shaders/kernel.ts";
import { type SgSyntax, type SgTile, type SgTileName, sgMatmulKernel, sgSharedBytes, SG_TILES } from "../../shaders/matmul-subgroup.wgsl.ts";
import { type DeviceInfo, SUBGROUP_MATRIX } from "./device.ts";

export interface MatrixUnits {
  /** Tile variants that compiled on this device, fastest first (empty: matrix units unused). */
  readonly tiles: readonly SgTileName[];
  readonly subgroupSize: number;
  /** The load/store spelling this compiler accepted. */
  readonly sgSyntax: SgSyntax;
  /** The fused attention forward's matrix-unit kernel compiled here (src/ops/attention.ts uses it then). */
  readonly attention: boolean;
  /** Why the matrix units are not used, or the compiler's warnings when they are. */
  readonly note: string;
}

export const NO_MATRIX_UNITS: MatrixUnits = { tiles: [], subgroupSize: 0, sgSyntax: "majorness", attention: false, note: "not asked for: init({ matrixUnits: true })" };

/**
 * Preference order, measured on the H200 (bench/results/h200-matmul-units-dawn.json, f32 operands):
 * 128x256s8 117 / 109 / 86 TFLOP/s at N = 8192 / 4096 / 2048, 256x128s8 114 / 104 / 86,
 * 128x128s4 94 / 93 / 85, 128x128s8 98 / 91 / 81, 128x64s4 87 / 81 / 74, 64x64s4 86 / 78 / 70,
 * 128x128s4k64 88 / 87 / 76, 64x64s1 41 / 41 / 40. The chooser takes the first that still fills the GPU.
 * Measured since (bench/results/2026-12-02/g-matmul-units-new.json, f32 / f16 in, N = 2048 / 4096 / 8192):
 * the double-buffered tiles (…d2) are slower everywhere (128x128s4d2 36 / 36 / 36 f32 in, 128x128s8d2
 * 56 / 60 / 60, 128x256s8k16d2 66 / 77 / 76; the doubled workgroup memory and staging registers cost
 * more occupancy than the saved barrier gains): they stay for benchmarks only, after the rest.
 * 128x256s8h (f16 staging registers) wins with f16 operands at N = 2048 (104 against 90; 92 / 97
 * against 94 / 98 above), but preferring it for f16 products, with one workgroup per SM counted as
 * a full grid, made the mixed-f16 small training step 38.2 ms against 32.9 (h-train-dawn-last.json
 * against g-train-dawn-chunks-128.json): the chooser keeps this order. 64x64s1 stays last (the
 * chooser's fallback when 64x64s4 is missing).
 */
export const TILE_ORDER: readonly SgTileName[] = ["128x256s8", "256x128s8", "128x128s4", "128x128s8", "128x64s4", "64x64s4", "128x128s4k64",
  "128x128s4d2", "128x128s8d2", "128x128s8k16d2", "128x256s8k16d2", "128x256s8h", "128x256s8p", "256x128s8p", "128x128s8d2p", "64x64s1"];

/** A tile's workgroup memory at its largest layout (the transposes change the padded axis). */
export function sgSharedBytesMax(t: SgTile): number {
  return Math.max(...[false, true].flatMap((a) => [false, true].map((b) => sgSharedBytes(t, a, b))));
}

export async function probeMatrixUnits(info: DeviceInfo): Promise<MatrixUnits> {
  const { device } = info;
  if (!info.features.has(SUBGROUP_MATRIX)) return { ...NO_MATRIX_UNITS, note: `the adapter does not offer ${SUBGROUP_MATRIX}` };
  if (!info.features.has("shader-f16")) return { ...NO_MATRIX_UNITS, note: "the matrix units need shader-f16 (Node/Dawn on NVIDIA: create(dawnFlags()))" };
  const cfg = info.subgroupMatrixConfigs.find((c) => c.componentType === "f16" && c.resultComponentType === "f32" && c.M === 16 && c.N === 16 && c.K === 16);
  if (!cfg) {
    const have = info.subgroupMatrixConfigs.map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`).join(", ") || "none";
    return { ...NO_MATRIX_UNITS, note: `no f16→f32 16×16×16 subgroup-matrix configuration (offered: ${have})` };
  }
  const subgroupSize = info.subgroupMaxSize || 32;
  const tiles: SgTileName[] = [];
  const notes: string[] = [];
  let sgSyntax: SgSyntax | null = null;
  const maxShared = device.limits.maxComputeWorkgroupStorageSize;
  for (const name of TILE_ORDER) {
    const need = sgSharedBytesMax(SG_TILES[name]);
    if (need > maxShared) { notes.push(`${name}: needs ${need} bytes of workgroup memory, over this device's ${maxShared}`); continue; }
    // Newest spelling first; the older ones stay for older Dawn builds (npm webgpu pins one).
    const forms: SgSyntax[] = ["majorness", "bool"];
    const tried: string[] = [];
    for (const syntax of forms) {
      if (sgSyntax && syntax !== sgSyntax) continue;
      const k = sgMatmulKernel({ ...SG_TILES[name], transA: false, transB: true, bias: true, act: "gelu", aux: false, inType: "f32", outType: "f32", vec: true, subgroupSize, prefetch: (SG_TILES[name] as SgTile).prefetch ?? true, sgSyntax: syntax });
      const { failed, msgs } = await compiles(device, k);
      if (failed) { tried.push(`${syntax}: ${failed.slice(0, 500)}`); continue; }
      tiles.push(name);
      sgSyntax = syntax;
      const warns = new Set(msgs.map((m) => `${m.type}: ${m.message.split("\n")[0]}`));
      if (warns.size) tried.push(`${syntax} compiled (${[...warns].join("; ").slice(0, 200)})`);
      break;
    }
    if (tried.length) notes.push(`${name}: ${tried.join(" / ")}`);
  }
  // The attention forward: one variant (f32 in, head dim 64, causal) at the largest tile that fits.
  let attention = false;
  const at = subgroupSize >= 16 ? ATTENTION_UNITS_TILES.find((t) => attentionUnitsSharedBytes(t, 64) <= maxShared) : undefined;
  if (sgSyntax && at) {
    const k = attentionUnitsForwardKernel({ ...at, dtype: "f32", D: 64, causal: true, dropout: false, subgroupSize, sgSyntax });
    const { failed, msgs } = await compiles(device, k);
    attention = !failed;
    if (failed) notes.push(`attention: ${failed.slice(0, 500)}`);
    else if (msgs.length) notes.push(`attention compiled (${[...new Set(msgs.map((m) => `${m.type}: ${m.message.split("\n")[0]}`))].join("; ").slice(0, 200)})`);
  }
  return { tiles, subgroupSize, sgSyntax: sgSyntax ?? "majorness", attention, note: notes.join(" | ") || "ok" };
}

/** Compiles kernel `k` into a pipeline inside a validation error scope: the compiler's error (null when it compiled) and its messages. */
async function compiles(device: GPUDevice, k: Kernel): Promise<{ failed: string | null; msgs: readonly GPUCompilationMessage[] }> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ label: k.key, code: k.code });
  let failed: string | null = null;
  try {
    await device.createComputePipelineAsync({ label: k.key, layout: "auto", compute: { module, entryPoint: "main" } });
  } catch (e) {
    failed = (e as Error).message;
  }
  const scoped = await device.popErrorScope();
  if (scoped) failed = failed ?? scoped.message;
  const msgs = (await module.getCompilationInfo?.())?.messages ?? [];
  // The compiler's own messages say why; the pipeline error only says the module was invalid.
  const errs = msgs.filter((m) => m.type === "error").map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ");
  return { failed: failed ? errs || failed : null, msgs };
}
