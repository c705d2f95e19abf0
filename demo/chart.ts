// The loss chart (uPlot): one smoothed training-loss series per run, validation points, and a
// marker where the lazy adapters enter.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series { label: string; color: string }

export class LossChart {
  private plot: uPlot;
  private xs: number[] = [];
  private ys: (number | null)[][];
  private marker: number | null = null;

  constructor(el: HTMLElement, series: Series[]) {
    this.ys = series.flatMap(() => [[], []]);
    const s: uPlot.Series[] = [{ label: "step" }];
    for (const r of series) {
      s.push({ label: `${r.label} train`, stroke: r.color, width: 2, spanGaps: true });
      s.push({ label: `${r.label} val`, stroke: r.color, width: 0, points: { show: true, size: 7, fill: r.color }, spanGaps: false });
    }
    this.plot = new uPlot({
      width: Math.max(320, el.clientWidth - 8), height: 320, series: s,
      scales: { x: { time: false } },
      axes: [{ stroke: "#8b95a3", grid: { stroke: "#222831" } }, { stroke: "#8b95a3", grid: { stroke: "#222831" }, label: "cross-entropy (nats)" }],
      hooks: { draw: [(u) => this.drawMarker(u)] },
    }, [[], ...this.ys], el);
    new ResizeObserver(() => this.plot.setSize({ width: Math.max(320, el.clientWidth - 8), height: 320 })).observe(el);
  }

  /** Adds a point for run `i` at `step` (train loss smoothed by the caller; val may be null). */
  push(step: number, i: number, train: number | null, val: number | null = null): void {
    let at = this.xs.indexOf(step);
    if (at < 0) {
      this.xs.push(step);
      for (const y of this.ys) y.push(null);
      at = this.xs.length - 1;
    }
    if (train !== null) this.ys[2 * i]![at] = train;
    if (val !== null) this.ys[2 * i + 1]![at] = val;
  }

  setMarker(step: number | null): void {
    this.marker = step;
  }

  redraw(): void {
    this.plot.setData([this.xs, ...this.ys] as uPlot.AlignedData);
  }

  private drawMarker(u: uPlot): void {
    if (this.marker === null) return;
    const x = u.valToPos(this.marker, "x", true);
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#e9c46a";
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillStyle = "#e9c46a";
    ctx.font = `${12 * devicePixelRatio}px system-ui`;
    ctx.fillText("adapters in", x + 4, u.bbox.top + 14 * devicePixelRatio);
    ctx.restore();
  }
}
