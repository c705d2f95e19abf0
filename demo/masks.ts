// Draws a layer's kept-weight masks as heat maps: brightness = |w| at kept positions.
import type { SparseLinear } from "../src/nn/index.ts";
import { decompress24 } from "../src/sparse/index.ts";

const N = 48;

async function draw(canvas: HTMLCanvasElement, data: Float32Array | Int32Array, cols: number, color: [number, number, number]): Promise<number> {
  const ctx = canvas.getContext("2d")!;
  const img = ctx.createImageData(N, N);
  let max = 1e-12, kept = 0;
  for (let r = 0; r < N; r++) for (let c = 0; c < N; c++) max = Math.max(max, Math.abs(data[r * cols + c]!));
  for (let r = 0; r < N; r++) for (let c = 0; c < N; c++) {
    const v = Math.abs(data[r * cols + c]!);
    const k = (r * N + c) * 4;
    const t = v > 0 ? 0.25 + 0.75 * Math.sqrt(v / max) : 0;
    if (v > 0) kept++;
    img.data[k] = color[0] * t; img.data[k + 1] = color[1] * t; img.data[k + 2] = color[2] * t; img.data[k + 3] = 255;
  }
  const off = new OffscreenCanvas(N, N);
  off.getContext("2d")!.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  return kept / (N * N);
}

/** Redraws both masks of `layer` (compressed SparseLinear). Returns the W_RC density of the window. */
export async function drawMasks(layer: SparseLinear, rCanvas: HTMLCanvasElement, rcCanvas: HTMLCanvasElement): Promise<number> {
  if (!layer.w || !layer.wT) return NaN;
  const w = decompress24(layer.w), wt = decompress24(layer.wT);
  const [wData, wtData] = await Promise.all([w.toArray(), wt.toArray()]);
  w.dispose(); wt.dispose();
  // W_RC^T is [d_in, d_out]: transpose the window to W's orientation
  const rc = new Float32Array(N * layer.inFeatures);
  for (let r = 0; r < N; r++) for (let c = 0; c < N; c++) rc[r * layer.inFeatures + c] = wtData[c * layer.outFeatures + r]!;
  await draw(rCanvas, wData, layer.inFeatures, [46, 196, 182]);
  return draw(rcCanvas, rc, layer.inFeatures, [233, 196, 106]);
}
