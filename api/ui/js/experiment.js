// One experiment: its spec and status, live curves from the event stream while it trains, then its test
// evaluation, its checkpoint with the input contract, registering it as a model, and predictions on a dropped image.
import { api } from "./api.js";
import { datasetLabel, fmt, h, pct, standing, statusBadge } from "./dom.js";
import { showError } from "./list.js";
import { checkBody, checkErrors, errorView, summaryView } from "./network.js";
import { drawCurves, evaluationCard, modelCard, predictionCard } from "./results.js";
import { registerCard } from "./register.js";
import { follow } from "./sse.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const STANDING_MS = 10000;  // how often a queued job's place and estimate are read again

// The training options, shown only where a spec sets them (an experiment without them reads as before).
const OPTIONS = ["early_stopping", "lr_schedule", "weight_decay", "clipnorm", "clipvalue", "label_smoothing", "class_weight"];
const shown = (v) => (typeof v === "object" ? JSON.stringify(v) : v);
const networkName = (n) => (typeof n === "string" ? n : `custom graph of ${n.layers.length} layers`);

function specTable(e) {
  const options = OPTIONS.filter((k) => e[k] != null).map((k) => [k.replaceAll("_", " "), shown(e[k])]);
  const rows = [["dataset", datasetLabel(e)], ["network", networkName(e.network)], ["optimizer", e.optimizer],
    ["learning rate", e.learning_rate ?? "Keras default"], ["head", `${e.head.units} × ${e.head.activation}`],
    ["loss", e.loss], ["epochs × batch", `${e.epochs} × ${e.batch_size}`], ["train size", e.train_size ?? "all"],
    ...options, ["best epoch chosen on", e.selected_on], ["seed", e.seed], ["device", e.device ?? "–"], ["worker", e.worker ?? "–"]];
  return h("table", {}, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
}

export function renderExperiment(view, id) {
  const status = h("span", { id: "status" });
  const place = h("span", { id: "standing", class: "muted" });
  const progress = h("p", { id: "progress", class: "muted" });
  const curves = h("div", { class: "grid2", id: "curves", "data-points": "0" });
  const summary = h("div", { id: "summary" });
  const results = h("div", { id: "results" });
  const network = h("div", { id: "network-summary" }, h("p", { class: "muted" }, "checking…"));
  const clone = h("button", { type: "button", id: "clone", onclick: () => { location.hash = `#/new?clone=${id}`; } },
    "Clone");
  view.replaceChildren(h("h1", {}, `Experiment #${id} `, status, " ", place), summary, h("p", {}, clone,
    h("span", { class: "muted" }, " a new experiment from this one's spec and network, editable first")), progress,
    h("div", { class: "card" }, h("h2", {}, "Learning curves"), curves),
    h("div", { class: "card" }, h("h2", {}, "Network"), network), results);
  const metrics = new Map();
  let stop = () => {};
  let alive = true;
  let timer = null;
  let checked = false;

  const setStatus = (value) => status.replaceChildren(statusBadge(value));
  // While queued: where it stands, read again every few seconds (others submit, finish, get priorities).
  function showStanding(experiment) {
    clearTimeout(timer);
    place.replaceChildren(standing(experiment) || "");
    if (experiment.status === "queued") {
      timer = setTimeout(() => api(`/experiments/${id}`).then((e) => alive && showStanding(e)).catch(() => {}),
        STANDING_MS);
    }
  }
  async function showResults(experiment) {
    const parts = [];
    if (experiment.error) parts.push(h("div", { class: "card error", role: "alert" }, experiment.error));
    if (experiment.status === "succeeded") {
      const [evaluation, artifacts] = await Promise.all([
        api(`/experiments/${id}/evaluation`), api(`/experiments/${id}/artifacts`)]);
      parts.push(evaluationCard(evaluation), modelCard(id, artifacts), registerCard(id), predictionCard(id));
    }
    if (alive) results.replaceChildren(...parts);
  }
  // The experiment answer has the network (a preset's name or a graph), not its summary: the check works it out,
  // on the experiment's dataset, head and batch size.
  async function showNetwork(experiment) {
    try {
      const answer = await api("/networks/check", { method: "POST", json: checkBody(experiment) });
      if (alive) network.replaceChildren(summaryView(answer));
    } catch (error) {
      if (alive) network.replaceChildren(errorView(checkErrors(error)));
    }
  }
  async function load() {
    const experiment = await api(`/experiments/${id}`);
    setStatus(experiment.status);
    showStanding(experiment);
    const s = experiment.summary;
    summary.replaceChildren(h("p", {}, experiment.name ? `${experiment.name}. ` : "",
      `Best validation accuracy ${pct(s.best_val_accuracy)} (epoch ${s.best_epoch ?? "–"}), `,
      `test accuracy ${pct(s.test_accuracy)}, test loss ${fmt(s.test_loss)}.`,
      s.stopped_early_at ? ` Stopped early after epoch ${s.stopped_early_at}.` : "",
      experiment.sweep_id ? h("a", { href: `#/sweeps/${experiment.sweep_id}` }, ` Part of sweep ${experiment.sweep_id}.`) : ""),
      h("details", {}, h("summary", {}, "Spec"), specTable(experiment)));
    if (!checked) {
      checked = true;
      showNetwork(experiment);
    }
    for (const m of await api(`/experiments/${id}/metrics`)) metrics.set(m.epoch, m);
    drawCurves(curves, metrics);
    return experiment;
  }

  (async () => {
    try {
      const experiment = await load();
      if (FINISHED.has(experiment.status)) return showResults(experiment);
      // Live: each finished epoch adds its points; the final status loads the results.
      stop = follow(`/experiments/${id}/events`, (event, data) => {
        if (event === "epoch") {
          metrics.set(data.epoch, data);
          drawCurves(curves, metrics);
          progress.textContent = `epoch ${data.epoch} done in ${fmt(data.seconds, 1)} s`;
        } else if (event === "progress") {
          progress.textContent = `epoch ${data.epoch}: batch ${data.batch}/${data.batches}, loss ${fmt(data.loss)}, `
            + `accuracy ${pct(data.accuracy)}`;
        } else if (event === "status") {
          setStatus(data.status);
          if (data.status !== "queued") showStanding(data);
          else api(`/experiments/${id}`).then((e) => alive && showStanding(e)).catch(() => {});
          if (FINISHED.has(data.status)) {
            progress.textContent = "";
            load().then(showResults).catch((error) => showError(results, error));
            return true;
          }
        }
        return false;
      }, { onError: (error) => { progress.textContent = `live view interrupted (${error.message}); reconnecting…`; } });
    } catch (error) {
      showError(results, error);
    }
  })();
  return () => { alive = false; clearTimeout(timer); stop(); };
}
