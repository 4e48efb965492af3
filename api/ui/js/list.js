// The experiment list: one page at a time from the API's limit/offset (it stays quick at thousands of
// experiments), filtered by status, dataset (a built-in or an upload) and optimizer, refreshed every few seconds
// for live status.
import { api } from "./api.js";
import { BUILTIN_DATASETS, datasetLabel, fmt, h, pct, standing, statusBadge } from "./dom.js";

export const PAGE = 25;
const REFRESH_MS = 3000;
export const FILTERS = {
  status: ["queued", "running", "succeeded", "failed", "cancelled"],
  dataset: BUILTIN_DATASETS,
  optimizer: ["sgd", "sgd_nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"],
};

export function showError(container, error) {
  const hint = error.status === 401 ? " Check the API key above." : "";
  container.replaceChildren(h("p", { class: "error", role: "alert" }, `${error.message}${hint}`));
}

// The dataset filter's uploads: each uploaded name the caller may see (GET /datasets; experiments record the name,
// the version apart), after the built-ins, and the one filtered on even where the list no longer has it.
function uploadedNames(select, chosen) {
  api("/datasets").catch(() => []).then((all) => {
    const names = new Set(all.filter((d) => !d.builtin).map((d) => d.name));
    if (chosen && !FILTERS.dataset.includes(chosen)) names.add(chosen);
    if (!names.size) return;
    select.append(h("optgroup", { label: "uploaded" },
      [...names].sort().map((v) => h("option", { value: v, selected: v === chosen, dataset: { upload: "" } }, v))));
  });
}

function filterBar(params) {
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) (v ? next.set(k, v) : next.delete(k));
    location.hash = `#/experiments?${next}`;
  };
  return h("div", { class: "filters" }, Object.entries(FILTERS).map(([name, values]) => {
    const select = h("select", { name, onchange: (e) => go({ [name]: e.target.value, offset: "" }) },
      h("option", { value: "" }, "any"),
      values.map((v) => h("option", { value: v, selected: params.get(name) === v }, v)));
    if (name === "dataset") uploadedNames(select, params.get(name));
    return h("label", {}, `${name} `, select);
  }));
}

function row(e) {
  const s = e.summary;
  const place = standing(e);
  return h("tr", { dataset: { id: e.id } },
    h("td", {}, h("a", { href: `#/experiments/${e.id}` }, `#${e.id}`)),
    h("td", {}, e.name || ""), h("td", {}, statusBadge(e.status), place && [" ", place]),
    h("td", { class: "dataset" }, datasetLabel(e)), h("td", {}, e.optimizer),
    h("td", { class: "num" }, `${s.epochs_done}/${e.epochs}`), h("td", { class: "num" }, pct(s.best_val_accuracy)),
    h("td", { class: "num" }, pct(s.test_accuracy)), h("td", { class: "num" }, fmt(s.test_loss)),
    h("td", {}, e.sweep_id ? h("a", { href: `#/sweeps/${e.sweep_id}` }, `sweep ${e.sweep_id}`) : ""));
}

export function renderList(view, params) {
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const table = h("table", { id: "experiments" }, h("thead", {}, h("tr", {},
    ["id", "name", "status", "dataset", "optimizer", "epochs", "best val acc", "test acc", "test loss", "sweep"]
      .map((c) => h("th", {}, c)))), body);
  view.replaceChildren(h("h1", {}, "Experiments"), filterBar(params), pager, h("div", { class: "scroll" }, table));
  const query = new URLSearchParams({ limit: PAGE, offset });
  for (const name of Object.keys(FILTERS)) if (params.get(name)) query.set(name, params.get(name));

  const page = (to) => { const next = new URLSearchParams(params); next.set("offset", to); return `#/experiments?${next}`; };
  let timer = null;
  let alive = true;
  async function refresh() {
    try {
      const data = await api(`/experiments?${query}`);
      const items = data.items;
      if (!alive) return;
      body.replaceChildren(...items.map(row));
      if (!data.items.length) body.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No experiments here yet.")));
      const last = Math.min(offset + data.items.length, data.total);
      const link = (id, to, text) => (to === null ? h("span", { class: "muted" }, text) : h("a", { id, href: page(to) }, text));
      pager.replaceChildren(
        link("page-newer", offset > 0 ? Math.max(0, offset - PAGE) : null, "< newer"),
        h("span", { id: "page-info" }, `${data.total ? offset + 1 : 0}-${last} of ${data.total}`),
        link("page-older", last < data.total ? offset + PAGE : null, "older >"));
      timer = setTimeout(refresh, REFRESH_MS);
    } catch (error) {
      if (alive) showError(pager, error);
    }
  }
  refresh();
  return () => { alive = false; clearTimeout(timer); };
}
