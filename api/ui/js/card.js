// A version's model card (#/models/NAME/versions/N), GET /models/NAME/versions/N/card as tables: its figures,
// dataset, spec, input contract and training record. Nested values (the head, a network's layers, a schedule)
// become small tables of their own, never JSON.
import { api, modelPath } from "./api.js";
import { clockTime, fmt, h, pct } from "./dom.js";
import { showError } from "./list.js";
import { modelHash } from "./models.js";

const label = (key) => key.replaceAll("_", " ");
const isPlain = (v) => v === null || typeof v !== "object";

// Any JSON value as something to read: a list of objects is a table with a column per key, an object a
// two-column table, a list of plain values a comma-separated line.
export function valueView(value) {
  if (value === null || value === undefined) return "–";
  if (isPlain(value)) return String(value);
  if (Array.isArray(value)) {
    if (value.every(isPlain)) return value.map((v) => (v === null ? "–" : String(v))).join(", ");
    const columns = [...new Set(value.flatMap((item) => (isPlain(item) ? [] : Object.keys(item))))];
    return h("table", { class: "nested" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), columns.map((c) => h("th", {}, label(c))))),
      h("tbody", {}, value.map((item, i) => h("tr", {}, h("td", { class: "num" }, i),
        columns.map((c) => h("td", {}, isPlain(item) ? "" : valueView(item[c])))))));
  }
  return pairs(Object.entries(value), { class: "nested" });
}

function pairs(entries, attrs = {}) {
  return h("table", attrs, h("tbody", {}, entries.map(([k, v]) =>
    h("tr", {}, h("th", {}, label(k)), h("td", {}, v instanceof Node ? v : valueView(v))))));
}

function section(title, id, ...content) {
  return h("div", { class: "card", id }, h("h2", {}, title), ...content);
}

function cardView(card) {
  const f = card.figures;
  const t = card.training;
  const input = card.input;
  return [
    section("Figures", "card-figures", pairs([
      ["best epoch chosen on", f.selected_on], ["best epoch", f.best_epoch],
      ["validation accuracy", pct(f.validation_accuracy)], ["validated on", f.validation_count ?? "–"],
      ["test accuracy", pct(f.test_accuracy)], ["test loss", fmt(f.test_loss)]])),
    section("Dataset", "card-dataset", pairs([["name", card.dataset.name], ["description", card.dataset.description]])),
    section("Spec", "card-spec", h("p", { class: "muted" }, "As POST /experiments takes it."),
      h("div", { class: "scroll" }, pairs(Object.entries(card.spec)))),
    section("What it expects as input", "card-input", pairs([
      ["shape", `(${input.input_shape.map((d) => d ?? "batch").join(", ")})`], ["dtype", input.input_dtype],
      ["pixel range", `${input.input_range[0]}..${input.input_range[1]}, raw`], ["preprocessing", input.preprocessing]])),
    section("Training record", "card-training", pairs([
      ["seed", t.seed], ["device", t.device], ["python", t.python], ["tensorflow", t.tensorflow], ["keras", t.keras],
      ["numpy", t.numpy], ["service version", t.service_version],
      ["trained at", t.trained_at ? clockTime(t.trained_at) : "–"]]),
    h("h3", {}, "Attempts"), h("div", { class: "scroll" }, valueView(t.attempts.map((a) => ({
      ...a, started_at: clockTime(a.started_at), ended_at: a.ended_at ? clockTime(a.ended_at) : null }))))),
  ];
}

export function renderCard(view, name, number) {
  const body = h("div", { id: "version-card" }, h("p", { class: "muted" }, "Loading…"));
  view.replaceChildren(h("h1", {}, h("a", { href: modelHash(name) }, name), ` version ${number}: model card`), body);
  api(modelPath(name, `/versions/${number}/card`)).then((card) => {
    body.replaceChildren(h("p", {}, "Made from ", h("a", { href: `#/experiments/${card.experiment_id}` },
      `experiment #${card.experiment_id}`), ". Predict with it as ", h("code", {}, `${name}:${number}`), "."),
    ...cardView(card));
  }).catch((error) => showError(body, error));
}
