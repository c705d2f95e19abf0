// The demo's model presets, named as the library's configs (tiny, mid, small; custom is the user's
// own), their parameter counts, and which preset and sample length suit the adapter: a software
// adapter (SwiftShader, lavapipe) gets tiny and short samples so something happens within seconds.

export type PresetName = "tiny" | "mid" | "small" | "custom";

export interface ModelShape {
  nLayer: number;
  nEmbd: number;
  nHead: number;
  blockSize: number;
  dropout: number;
  /** "fused" flash-style attention (the library's default) or the unfused reference path. */
  attention: "fused" | "unfused";
}

export interface Preset {
  model: ModelShape;
  batchSize: number;
  totalSteps: number;
  lr: number;
}

/** mid and small are the shapes of bench/train (small is nanoGPT's shakespeare_char). */
export const PRESETS: Record<Exclude<PresetName, "custom">, Preset> = {
  tiny: { model: { nLayer: 2, nEmbd: 64, nHead: 4, blockSize: 32, dropout: 0, attention: "fused" }, batchSize: 8, totalSteps: 300, lr: 3e-3 },
  mid: { model: { nLayer: 4, nEmbd: 256, nHead: 4, blockSize: 128, dropout: 0, attention: "fused" }, batchSize: 32, totalSteps: 2000, lr: 1e-3 },
  small: { model: { nLayer: 6, nEmbd: 384, nHead: 6, blockSize: 256, dropout: 0.2, attention: "fused" }, batchSize: 64, totalSteps: 5000, lr: 1e-3 },
};

/**
 * Trainable parameters of the GPT (lm_head tied to wte): embeddings, per block the qkv/proj/fc1/fc2
 * weights and biases (12C² + 9C) and two LayerNorms (4C), and the final LayerNorm.
 */
export function paramCount(m: ModelShape, vocabSize: number): number {
  const C = m.nEmbd;
  return vocabSize * C + m.blockSize * C + m.nLayer * (12 * C * C + 13 * C) + 2 * C;
}

export function fmtCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} K`;
}

/** A software rasteriser or CPU Vulkan: orders of magnitude slower than a GPU. */
export function isSoftwareAdapter(name: string): boolean {
  return /swiftshader|llvmpipe|lavapipe|software|warp|basic render/i.test(name);
}
