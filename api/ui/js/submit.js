// Submit an experiment or a sweep. The browser does not validate (novalidate): the API's 422 answer is
// the one truth, and each of its errors is shown next to the field its `loc` names.
import { api } from "./api.js";
import { h } from "./dom.js";
import { FILTERS } from "./list.js";
import { networkEditor } from "./network.js";

function field(prefix, name, label, control, hint = "") {
  control.id = `${prefix}-${name}`;
  control.name = name;
  return h("label", {}, label, control, h("span", {},
    h("span", { class: "muted" }, hint), h("span", { class: "field-error", "data-error-for": name, role: "alert" })));
}
const select = (values, chosen) => h("select", {}, values.map((v) => h("option", { value: v, selected: v === chosen }, v)));

// The ready uploads the caller may see (GET /datasets), read once for the page's two forms; none if the list fails.
const readyUploads = () => api("/datasets")
  .then((all) => all.filter((d) => !d.builtin && d.status === "ready")).catch(() => []);

// The dataset picker: the built-ins, as they always were, then the ready uploads as NAME@VERSION once read (an
// upload's name is its owner's words: an option's text, never markup). `hold(value)` makes sure the select has
// the value, for a clone's or a link's dataset the list has not brought (yet), and picks it.
function datasetPicker(uploads) {
  const control = select(FILTERS.dataset, "mnist");
  const group = h("optgroup", { label: "uploaded" });
  const has = (value) => [...control.options].some((o) => o.value === value);
  const add = (value, text = value) => {
    group.append(h("option", { value, dataset: { upload: "" } }, text));
    if (!group.parentNode) control.append(group);
  };
  uploads.then((ready) => {
    for (const d of ready) {
      const value = `${d.name}@${d.version}`;
      if (!has(value)) add(value, `${value} (${d.class_names.length} classes, ${d.input_shape.join("×")})`);
    }
    control.dataset.uploads = String(ready.length);  // read: how many were offered
  });
  const hold = (value) => {
    if (value && !has(value)) add(value);
    control.value = value;
  };
  return { control, hold };
}
const number = (value = "", step = "1") => h("input", { type: "number", value, step });

// The JSON body from the form: empty fields are left out so the API applies its defaults.
function values(form, numeric) {
  const out = {};
  for (const el of form.querySelectorAll("input[name], select[name]")) {
    if (el.type === "checkbox") continue;
    if (el.value.trim() === "") continue;
    out[el.name] = numeric.has(el.name) ? Number(el.value) : el.value.trim();
  }
  return out;
}

export function showValidation(form, error) {
  form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
  const general = form.querySelector(".form-error");
  general.textContent = "";
  const detail = error.body?.detail;
  if (error.status !== 422 || !Array.isArray(detail)) {
    general.textContent = error.message;
    return;
  }
  const unplaced = [];
  for (const item of detail) {
    const path = (item.loc || []).filter((p) => p !== "body");
    // "base.epochs" in a sweep is the epochs field; "head.units" falls back to the whole head.
    const candidates = [path.join("."), path.filter((p) => p !== "base").join("."), String(path.at(-1)), String(path[0])];
    const slot = candidates.map((c) => form.querySelector(`[data-error-for="${CSS.escape(c)}"]`)).find(Boolean);
    const text = String(item.msg || "").replace(/^Value error, /, "");
    if (slot) slot.textContent = slot.textContent ? `${slot.textContent}; ${text}` : text;
    else unplaced.push(`${path.join(".") || "body"}: ${text}`);
  }
  general.textContent = unplaced.length ? unplaced.join("; ") : "Fix the fields marked above.";
}

const NUMERIC = new Set(["learning_rate", "epochs", "batch_size", "train_size", "repeats", "seed", "validation_split"]);

// What a clone carries from its experiment beyond the form's fields, unchanged: the head, the loss, the seed,
// the queue and the training options.
const CARRIED = ["head", "loss", "validation_split", "seed", "mixed_precision", "deterministic", "jit_compile",
  "early_stopping", "lr_schedule", "weight_decay", "clipnorm", "clipvalue", "label_smoothing", "class_weight", "queue"];
const FORM_FIELDS = ["dataset", "optimizer", "learning_rate", "epochs", "batch_size", "train_size", "validation"];
const shown = (k, v) => (k === "head" ? `${v.units} × ${v.activation}` : typeof v === "object" ? JSON.stringify(v) : String(v));
// false is these options' default: not worth a mention, nor sending.
const OFF_BY_DEFAULT = new Set(["mixed_precision", "deterministic"]);

function experimentForm(uploads) {
  let carried = {};
  const carriedNote = h("p", { id: "carried", class: "muted" });
  const form = h("form", { class: "spec card", id: "experiment-form", novalidate: true });
  const control = (name) => form.elements.namedItem(name);
  const spec = () => ({ ...carried, ...values(form, NUMERIC) });
  const network = networkEditor(spec);
  const dataset = datasetPicker(uploads);
  form.append(
    h("h2", {}, "New experiment"),
    field("exp", "name", "name", h("input", { type: "text" })),
    field("exp", "dataset", "dataset", dataset.control, "a built-in, or an upload of yours or a public one"),
    field("exp", "network", "network", network.control, "custom: edit a preset's graph; its summary follows"),
    network.panel,
    field("exp", "optimizer", "optimizer", select(FILTERS.optimizer, "adam")),
    field("exp", "learning_rate", "learning rate", number("", "any"), "empty: the optimizer's Keras default"),
    field("exp", "epochs", "epochs", number(3)),
    field("exp", "batch_size", "batch size", number(128)),
    field("exp", "train_size", "train size", number(""), "empty: all training examples"),
    field("exp", "validation", "validation", select(["held_out", "test"], "held_out"),
      "test: select the best epoch on the test split (optimistic)"),
    field("exp", "repeats", "repeats", number(1), "more than 1: a sweep of one configuration"),
    carriedNote,
    h("button", { type: "submit" }, "Train"), h("p", { class: "form-error error", role: "alert" }));
  // The summary depends on the dataset and the batch size too.
  for (const name of ["dataset", "batch_size"]) control(name).addEventListener("input", network.recheck);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const { network: _choice, ...fields } = values(form, NUMERIC);
      const body = { ...carried, ...fields, network: network.value() };
      const created = await api("/experiments", { method: "POST", json: body });
      location.hash = `#/experiments/${created.id}`;
    } catch (error) { showValidation(form, error); }
  });
  // A clone: the form filled with an experiment's spec and network, all editable; the rest is carried unchanged.
  let source = null;
  function describeCarried() {
    const items = Object.entries(carried).map(([k, v]) => `${k.replaceAll("_", " ")} ${shown(k, v)}`);
    carriedNote.textContent = items.length ? `Also from #${source.id}, unchanged: ${items.join(", ")}.` : "";
  }
  // What the stored spec spells out for its dataset (head, loss) or its validation (the split) is carried only while
  // those stay as cloned: another dataset gets its own defaults, validation on test takes no split.
  function recarry() {
    if (!source) return;
    const follows = { head: "dataset", loss: "dataset", validation_split: "validation" };
    for (const [k, on] of Object.entries(follows)) {
      if (control(on).value === source[on] && source[k] != null) carried[k] = source[k];
      else delete carried[k];
    }
    describeCarried();
  }
  for (const name of ["dataset", "validation"]) control(name).addEventListener("input", recarry);
  form.fill = (experiment) => {
    source = experiment;
    form.querySelector("h2").textContent = `New experiment, cloned from #${experiment.id}`;
    control("name").value = experiment.name ? `${experiment.name} (clone)` : "";
    dataset.hold(experiment.dataset);
    for (const name of FORM_FIELDS) control(name).value = experiment[name] ?? "";
    control("repeats").value = 1;
    const kept = (k) => experiment[k] != null && !(OFF_BY_DEFAULT.has(k) && experiment[k] === false);
    carried = Object.fromEntries(CARRIED.filter(kept).map((k) => [k, experiment[k]]));
    describeCarried();
    return network.set(experiment.network);
  };
  form.pick = (value) => { dataset.hold(value); recarry(); network.recheck(); };
  return form;
}

function sweepForm(uploads) {
  const optimizers = h("span", { id: "sweep-optimizers" }, FILTERS.optimizer.map((o) =>
    h("label", {}, h("input", { type: "checkbox", value: o, checked: ["sgd", "adam"].includes(o) }), o)));
  const form = h("form", { class: "spec card", id: "sweep-form", novalidate: true },
    h("h2", {}, "New sweep: one experiment per optimizer"),
    field("sweep", "name", "name", h("input", { type: "text" })),
    field("sweep", "dataset", "dataset", datasetPicker(uploads).control),
    field("sweep", "epochs", "epochs", number(3)),
    field("sweep", "batch_size", "batch size", number(128)),
    field("sweep", "train_size", "train size", number(""), "empty: all training examples"),
    h("label", {}, "optimizers", optimizers, h("span", { class: "field-error", "data-error-for": "grid" })),
    field("sweep", "repeats", "repeats", number(1), "runs per optimizer, with distinct seeds"),
    h("button", { type: "submit" }, "Start sweep"), h("p", { class: "form-error error", role: "alert" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { name, repeats, ...base } = values(form, NUMERIC);
    const chosen = [...optimizers.querySelectorAll("input:checked")].map((el) => el.value);
    const body = { name, base, grid: { optimizer: chosen }, ...(repeats !== undefined ? { repeats } : {}) };
    try {
      const sweep = await api("/sweeps", { method: "POST", json: body });
      location.hash = `#/sweeps/${sweep.id}`;
    } catch (error) { showValidation(form, error); }
  });
  return form;
}

// #/new, #/new?clone=ID (the experiment form filled from experiment ID) or #/new?dataset=NAME@VERSION (a dataset's
// page's "Train on it": the experiment form's dataset picked).
export function renderNew(view, params = new URLSearchParams()) {
  const uploads = readyUploads();
  const form = experimentForm(uploads);
  view.replaceChildren(h("h1", {}, "Train something"), h("div", { class: "grid2" }, form, sweepForm(uploads)));
  if (params.get("dataset")) form.pick(params.get("dataset"));
  const source = params.get("clone");
  if (source) {
    api(`/experiments/${Number(source)}`).then(form.fill).catch((error) => {
      const hint = error.status === 401 ? " Check the API key above." : "";
      form.querySelector(".form-error").textContent = `Experiment #${source} could not be read: ${error.message}${hint}`;
    });
  }
}
