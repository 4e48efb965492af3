// Sweeps: a paged list, and one sweep's overlaid curves with the ranked tables exactly as GET /sweeps/{id}
// returns them (configurations with their statistics, then every run), updated live from its event stream.
import { api } from "./api.js";
import { color, lineChart } from "./charts.js";
import { fmt, h, pct, statusBadge } from "./dom.js";
import { showError } from "./list.js";
import { follow } from "./sse.js";

const PAGE = 20;
// GET /sweeps/{id}'s `state`, in words: a sweep that finished is not a success unless its runs were.
const STATES = {
  running: "in progress", succeeded: "finished", partly_succeeded: "finished, not every run succeeded",
  failed: "failed", cancelled: "cancelled",
};

export function renderSweeps(view) {
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  view.replaceChildren(h("h1", {}, "Sweeps"), pager, h("table", { id: "sweeps" }, h("thead", {}, h("tr", {},
    ["id", "name", "runs", "statuses", "best configuration"].map((c) => h("th", {}, c)))), body));
  let offset = 0;
  async function load() {
    try {
      const sweeps = await api(`/sweeps?limit=${PAGE}&offset=${offset}`);
      body.replaceChildren(...sweeps.map((s) => h("tr", {},
        h("td", {}, h("a", { href: `#/sweeps/${s.id}` }, `#${s.id}`)), h("td", {}, s.name || ""),
        h("td", { class: "num" }, s.experiments.length),
        h("td", {}, Object.entries(s.status_counts).map(([k, n]) => `${k} ${n}`).join(", ")),
        h("td", {}, s.configurations[0]?.label ?? "–"))));
      pager.replaceChildren(
        h("button", { disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "‹ newer"),
        h("button", { disabled: sweeps.length < PAGE, onclick: () => { offset += PAGE; load(); } }, "older ›"));
    } catch (error) { showError(pager, error); }
  }
  load();
}

const stats = (s) => (s.n ? `${pct(s.mean)}${s.std !== null ? ` ± ${pct(s.std)}` : ""}` : "–");
const ci = (s) => (s.ci95_low !== null ? `[${pct(s.ci95_low)}, ${pct(s.ci95_high)}]` : "–");
function versus(d) {
  if (!d) return "–";
  if (d.distinguishable === null) return "untested (n < 2)";
  return `${d.distinguishable ? "distinct" : "tie"} (p = ${fmt(d.p_value, 3)})`;
}

function configurationTable(rows) {
  const heads = ["rank", "configuration", "selected on", "runs ok/running/failed/cancelled", "best val acc (mean ± std)",
    "95% CI", "vs next", "test acc (mean ± std)", "95% CI", "test vs next", "collapsed"];
  return h("table", { id: "configurations" }, h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("td", { class: "num" }, r.rank ?? "–"), h("td", {}, r.label ?? "base"),
      h("td", {}, r.selected_on), h("td", {}, `${r.succeeded}/${r.unfinished}/${r.failed}/${r.cancelled}`),
      h("td", { class: "num" }, stats(r.best_val_accuracy)), h("td", {}, ci(r.best_val_accuracy)), h("td", {}, versus(r.vs_next)),
      h("td", { class: "num" }, stats(r.test_accuracy)), h("td", {}, ci(r.test_accuracy)), h("td", {}, versus(r.test_vs_next)),
      h("td", { class: "num" }, r.collapsed)))));
}

function runTable(rows) {
  const heads = ["rank", "experiment", "label", "status", "best epoch", "best val acc", "test acc", "seconds", "seed",
    "selected on", "collapsed"];
  return h("table", { id: "comparison" }, h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("td", { class: "num" }, r.rank ?? "–"),
      h("td", {}, h("a", { href: `#/experiments/${r.experiment_id}` }, `#${r.experiment_id}`)), h("td", {}, r.label ?? "base"),
      h("td", {}, statusBadge(r.status)), h("td", { class: "num" }, r.best_epoch ?? "–"),
      h("td", { class: "num" }, pct(r.best_val_accuracy)), h("td", { class: "num" }, pct(r.test_accuracy)),
      h("td", { class: "num" }, fmt(r.training_seconds, 1)), h("td", { class: "num" }, r.seed), h("td", {}, r.selected_on),
      h("td", {}, r.collapsed === null ? "–" : r.collapsed ? "yes" : "no")))));
}

export function renderSweep(view, id) {
  const header = h("div");
  const charts = h("div", { class: "grid2", id: "sweep-curves" });
  const tables = h("div", { id: "sweep-tables" });
  view.replaceChildren(header, h("div", { class: "card" }, h("h2", {}, "Validation curves, every run"), charts), tables);
  const curves = new Map();  // experiment id -> Map(epoch -> metrics)
  let labels = new Map();
  let alive = true;
  let stop = () => {};
  let pending = null;

  let finished = false;

  function draw() {
    const ids = [...curves.keys()].sort((a, b) => a - b);
    if (![...curves.values()].some((points) => points.size)) {  // no axes and legends around nothing
      charts.replaceChildren(h("p", { class: "muted", id: "no-curves" }, finished
        ? "No run finished an epoch: there are no curves to draw." : "No run has finished an epoch yet."));
      return;
    }
    const series = (key) => ids.map((eid, i) => ({ label: labels.get(eid) || `#${eid}`, color: color(i),
      points: new Map([...curves.get(eid)].map(([epoch, m]) => [epoch, m[key]])) }));
    const acc = h("div", { class: "chart" });
    const loss = h("div", { class: "chart" });
    charts.replaceChildren(acc, loss);
    lineChart(acc, "validation accuracy", series("val_accuracy"));
    lineChart(loss, "validation loss", series("val_loss"));
  }
  async function load(withMetrics) {
    const sweep = await api(`/sweeps/${id}`);
    if (!alive) return sweep;
    labels = new Map(sweep.comparison.map((r) => [r.experiment_id, `#${r.experiment_id} ${r.label ?? ""} r${r.repeat}`]));
    finished = sweep.finished;
    header.replaceChildren(h("h1", {}, `Sweep #${id}${sweep.name ? `: ${sweep.name}` : ""} `,
      h("span", { id: "sweep-state", class: `status status-${sweep.state}`, "data-state": sweep.state },
        STATES[sweep.state] ?? sweep.state)),
      h("p", { class: "muted" }, Object.entries(sweep.status_counts).map(([k, n]) => `${k}: ${n}`).join(", ")));
    const notes = Object.entries(sweep.statistics).map(([k, v]) => h("li", {}, h("strong", {}, k.replace(/_/g, " ")), `: ${v}`));
    tables.replaceChildren(h("div", { class: "card" }, h("h2", {}, "Configurations, ranked (repeats together)"),
      h("p", { class: "muted" }, "Read the ranking only as far as neighbours are distinct: a tie is a tie whatever the order."),
      h("div", { class: "scroll" }, configurationTable(sweep.configurations)), h("ul", { class: "muted" }, notes)),
      h("div", { class: "card" }, h("h2", {}, "Every run"), h("div", { class: "scroll" }, runTable(sweep.comparison))));
    if (withMetrics) {
      const all = await Promise.all(sweep.experiments.map((e) => api(`/experiments/${e.id}/metrics`)));
      sweep.experiments.forEach((e, i) => curves.set(e.id, new Map(all[i].map((m) => [m.epoch, m]))));
      draw();
    }
    return sweep;
  }
  // Many runs can finish epochs at once: redraw and reload at most once a second.
  let reloadWanted = false;
  const soon = (reload) => {
    reloadWanted ||= reload;
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      draw();
      if (reloadWanted) { reloadWanted = false; load(false).catch(() => {}); }
    }, 1000);
  };

  (async () => {
    try {
      const sweep = await load(true);
      if (sweep.finished) return;
      stop = follow(`/sweeps/${id}/events`, (event, data) => {
        if (event === "epoch") {
          if (!curves.has(data.experiment_id)) curves.set(data.experiment_id, new Map());
          curves.get(data.experiment_id).set(data.epoch, data);
          soon(false);
        } else if (event === "status") {
          if (data.final) { load(true).catch((error) => showError(tables, error)); return true; }
          soon(true);
        }
        return false;
      });
    } catch (error) { showError(tables, error); }
  })();
  return () => { alive = false; stop(); clearTimeout(pending); };
}
