// Throughput over a moving window of completed steps (the last 10 s, at most 50 steps): no
// first-frame spike (a rate needs two points) and no last-frame collapse (the window slides).
// Reset it around anything that is not training (validation, sampling, saving, pauses).
export class RateWindow {
  private pts: { t: number; step: number; tokens: number }[] = [];
  private tokens = 0;
  private last: { tokensPerSec: number; stepMs: number } | null = null;

  constructor(private readonly seconds = 10, private readonly maxSteps = 50) {}

  /** Records that `step` steps are complete after `tokensPerStep` more tokens. */
  add(step: number, tokensPerStep: number, now = performance.now()): void {
    this.tokens += tokensPerStep;
    this.pts.push({ t: now, step, tokens: this.tokens });
    while (this.pts.length > 2 && (this.pts.length > this.maxSteps + 1 || now - this.pts[0]!.t > this.seconds * 1000)) this.pts.shift();
  }

  /** Starts a new window from the next step (the time in between is not training). */
  reset(): void {
    this.pts = this.pts.slice(-1);
    if (this.pts[0]) this.pts[0].t = performance.now();
  }

  /** The window's rate; right after a reset, the last window's (null before any). */
  rate(): { tokensPerSec: number; stepMs: number } | null {
    const a = this.pts[0], b = this.pts.at(-1);
    if (!a || !b || b.step <= a.step || b.t <= a.t) return this.last;
    this.last = { tokensPerSec: ((b.tokens - a.tokens) * 1000) / (b.t - a.t), stepMs: (b.t - a.t) / (b.step - a.step) };
    return this.last;
  }
}
