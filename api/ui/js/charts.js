// Line charts with uPlot (vendored; loaded as window.uPlot by index.html).
const COLORS = ["#2563eb", "#dc6803", "#067647", "#b42318", "#7a5af8", "#0e9384", "#c11574", "#4e5ba6"];
const MIN_WIDTH = 200;

export const color = (i) => COLORS[i % COLORS.length];

// series: [{label, points: Map(epoch -> value)}]; x is the epoch number shared by all series. The chart is as
// wide as its container and follows it (a phone, a resized window): uPlot itself draws at a fixed pixel size.
export function lineChart(container, title, series, { height = 260 } = {}) {
  const epochs = [...new Set(series.flatMap((s) => [...s.points.keys()]))].sort((a, b) => a - b);
  const data = [epochs, ...series.map((s) => epochs.map((e) => (s.points.has(e) ? s.points.get(e) : null)))];
  const strokes = [null, ...series.map((s, i) => s.color || color(i))];
  const width = () => Math.max(MIN_WIDTH, Math.floor(container.clientWidth));
  const options = {
    title, width: width(), height,
    scales: { x: { time: false } },
    // Epochs are whole numbers: ticks at 1, 2, 5, 10... and never at 1.2.
    axes: [{ label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, {}],
    // A legend, not a read-out: a filled swatch and a name per line, without the empty value cells that a
    // live legend shows until the pointer is over the chart.
    legend: { live: false, markers: { fill: (u, i) => strokes[i] } },
    series: [{ label: "epoch" }, ...series.map((s, i) => ({
      label: s.label, stroke: strokes[i + 1], width: 2, dash: s.dash, spanGaps: true, points: { show: true, size: 6 },
    }))],
  };
  container.replaceChildren();
  const plot = new window.uPlot(options, data, container);
  const resized = new ResizeObserver(() => {
    if (!container.isConnected) {  // replaced by a redraw: let it go
      resized.disconnect();
      plot.destroy();
    } else if (width() !== plot.width) {
      plot.setSize({ width: width(), height });
    }
  });
  resized.observe(container);
  return plot;
}
