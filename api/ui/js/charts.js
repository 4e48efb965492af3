// Line charts with uPlot (vendored; loaded as window.uPlot by index.html).
const COLORS = ["#2563eb", "#dc6803", "#067647", "#b42318", "#7a5af8", "#0e9384", "#c11574", "#4e5ba6"];

export const color = (i) => COLORS[i % COLORS.length];

// series: [{label, points: Map(epoch -> value)}]; x is the epoch number shared by all series.
export function lineChart(container, title, series, { width = 520, height = 260 } = {}) {
  const epochs = [...new Set(series.flatMap((s) => [...s.points.keys()]))].sort((a, b) => a - b);
  const data = [epochs, ...series.map((s) => epochs.map((e) => (s.points.has(e) ? s.points.get(e) : null)))];
  const options = {
    title, width, height,
    scales: { x: { time: false } },
    // Epochs are whole numbers: ticks at 1, 2, 5, 10... and never at 1.2.
    axes: [{ label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}],
    series: [{ label: "epoch" }, ...series.map((s, i) => ({
      label: s.label, stroke: s.color || color(i), width: 2, dash: s.dash, spanGaps: true, points: { show: true, size: 6 },
    }))],
  };
  container.replaceChildren();
  return new window.uPlot(options, data, container);
}
