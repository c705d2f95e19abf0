// The loss chart (uPlot): per run a smoothed training-loss line and validation points, the x axis
// fixed to the whole run, and a marker where the lazy adapters enter. Points are kept by step and
// drawn sorted, whatever order they arrive in; the legend shows each series' latest value while
// the cursor is off the plot, and the value under the cursor when it is on.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series { label: string; color: string }

const fmt = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? "…" : v.toFixed(3));

export class LossChart {
  private plot: uPlot;
  private rows = new Map<number, (number | null)[]>();
  private xs: number[] = [];
  private ys: (number | null)[][] = [];
  private latest: (number | null)[];
  private marker: number | null = null;
  private total: number;

  constructor(el: HTMLElement, series: Series[], total: number) {
    this.total = total;
    this.latest = series.flatMap(() => [null, null]);
    this.ys = this.latest.map(() => []);
    const value = (si: number) => (_u: uPlot, raw: number | null, _sidx: number, idx: number | null) => {
      if (idx === null || idx === undefined) return fmt(this.latest[si]);
      // under the cursor: the value at that step, or the nearest earlier one (val points are sparse)
      for (let i = idx; i >= 0; i--) { const v = this.ys[si]![i]; if (v !== null && v !== undefined) return fmt(v); }
      return fmt(raw);
    };
    const s: uPlot.Series[] = [{ label: "step", value: (_u, v, _s, idx) => (idx === null ? `${this.xs.at(-1) ?? 0}` : `${v}`) }];
    series.forEach((r, i) => {
      // the first run's line is drawn wider: at this scale dense and SLoPe curves often coincide
      s.push({ label: `${r.label} train`, stroke: r.color, width: i === 0 ? 4 : 1.75, spanGaps: true, points: { show: false }, value: value(2 * i) });
      s.push({ label: `${r.label} val`, stroke: r.color, width: 0, points: { show: true, size: 8, fill: "#0f1216", stroke: r.color, width: 2 }, spanGaps: false, value: value(2 * i + 1) });
    });
    const size = () => ({ width: Math.max(320, el.clientWidth - 8), height: 300 });
    this.plot = new uPlot({
      ...size(), series: s,
      scales: { x: { time: false, range: () => [0, this.total] } },
      axes: [
        { stroke: "#8b95a3", grid: { stroke: "#222831" }, label: "step" },
        { stroke: "#8b95a3", grid: { stroke: "#222831" }, label: "cross-entropy (nats)", size: 56 },
      ],
      legend: { live: true },
      hooks: { draw: [(u) => this.drawMarker(u)] },
    }, [[], ...this.ys] as uPlot.AlignedData, el);
    new ResizeObserver(() => this.plot.setSize(size())).observe(el);
  }

  /** Sets run `i`'s train (smoothed) and/or val value at `step`. */
  push(step: number, i: number, train: number | null, val: number | null = null): void {
    let row = this.rows.get(step);
    if (!row) { row = this.latest.map(() => null); this.rows.set(step, row); }
    if (train !== null) { row[2 * i] = train; this.latestAt(2 * i, step, train); }
    if (val !== null) { row[2 * i + 1] = val; this.latestAt(2 * i + 1, step, val); }
  }

  private latestStep: number[] = [];
  private latestAt(si: number, step: number, v: number): void {
    if ((this.latestStep[si] ?? -1) <= step) { this.latestStep[si] = step; this.latest[si] = v; }
  }

  /** Run `i`'s smoothed training curve, sorted by step (for the test hook). */
  curve(i: number): [number, number][] {
    return [...this.rows].filter(([, r]) => r[2 * i] !== null).sort((a, b) => a[0] - b[0]).map(([s, r]) => [s, r[2 * i]!]);
  }

  /** Run `i`'s newest smoothed training loss. */
  latestTrain(i: number): number | null {
    return this.latest[2 * i] ?? null;
  }

  setMarker(step: number | null): void {
    this.marker = step;
  }

  redraw(): void {
    this.xs = [...this.rows.keys()].sort((a, b) => a - b);
    this.ys = this.latest.map((_, si) => this.xs.map((x) => this.rows.get(x)![si] ?? null));
    this.plot.setData([this.xs, ...this.ys] as uPlot.AlignedData);
    this.plot.setLegend({ idx: this.plot.cursor.idx ?? undefined });
  }

  /** The legend's text, for the test and for screen readers. */
  legendText(): string {
    return this.plot.root.querySelector(".u-legend")?.textContent ?? "";
  }

  private drawMarker(u: uPlot): void {
    if (this.marker === null) return;
    const x = u.valToPos(this.marker, "x", true);
    const ctx = u.ctx;
    const dpr = devicePixelRatio;
    ctx.save();
    ctx.strokeStyle = "#e9c46a";
    ctx.setLineDash([5 * dpr, 4 * dpr]);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillStyle = "#e9c46a";
    ctx.font = `${12 * dpr}px system-ui`;
    // keep the label inside the plot: to the left of the line when the line is near the right edge
    const label = "adapters in";
    const w = ctx.measureText(label).width;
    const right = x + 4 * dpr + w <= u.bbox.left + u.bbox.width;
    ctx.textAlign = right ? "left" : "right";
    ctx.fillText(label, right ? x + 4 * dpr : x - 4 * dpr, u.bbox.top + 14 * dpr);
    ctx.restore();
  }
}
