// Peak-memory measurement for the tests: the bytes a forward + backward holds above what was live
// before it, from the buffer pool's peak tracking (memoryStats()). One helper so every memory
// bound in the suite is measured the same way.
import * as ws from "../../src/index.ts";

/**
 * Runs y = forward(x), y.sum().backward(), waits for x's gradient, and returns the peak bytes
 * over the live baseline, with y (the caller disposes it and x.grad).
 */
export async function backwardPeak(forward: (x: ws.Tensor) => ws.Tensor, x: ws.Tensor): Promise<{ peak: number; y: ws.Tensor }> {
  await ws.gpu().sync();
  ws.gpu().pool.resetPeak();
  const base = ws.memoryStats().liveBytes;
  const y = forward(x);
  y.sum().backward();
  await x.grad!.toArray();
  return { peak: ws.memoryStats().peakBytes - base, y };
}
