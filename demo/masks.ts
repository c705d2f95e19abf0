// Draws one mask window (|w| at kept positions, black where pruned) as a heat map on a canvas;
// the worker sends the window already cut out and oriented.

export function drawMask(canvas: HTMLCanvasElement, data: Float32Array, n: number, color: [number, number, number]): void {
  const ctx = canvas.getContext("2d")!;
  const img = ctx.createImageData(n, n);
  let max = 1e-12;
  for (const v of data) max = Math.max(max, v);
  for (let i = 0; i < n * n; i++) {
    const v = data[i]!;
    const t = v > 0 ? 0.25 + 0.75 * Math.sqrt(v / max) : 0;
    img.data[4 * i] = color[0] * t; img.data[4 * i + 1] = color[1] * t; img.data[4 * i + 2] = color[2] * t; img.data[4 * i + 3] = 255;
  }
  const off = new OffscreenCanvas(n, n);
  off.getContext("2d")!.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
}
