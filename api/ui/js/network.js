// Networks in the dashboard: the summary of one (POST /networks/check), and the form's network editor, a choice
// of preset or a custom graph edited as JSON with its summary beside it, checked as the person types.
// JSON, not YAML: the dashboard has no build step and no YAML parser vendored, and JSON.parse is the browser's.
import { api } from "./api.js";
import { bytes, h } from "./dom.js";

const CHECK_DELAY_MS = 400;  // wait for a pause in typing before asking the API
const count = (n) => Number(n).toLocaleString("en-US");

// Where in the graph a schema error is: ["body", "network", "NetworkGraph", "layers", 0, "Dense", "units"] reads
// "layers[0] Dense.units".
function where(loc) {
  let out = "";
  for (const p of loc.filter((part) => !["body", "network", "NetworkGraph"].includes(part))) {
    out += typeof p === "number" ? `[${p}]` : /^[A-Z]/.test(p) ? ` ${p}` : out ? `.${p}` : p;
  }
  return out;
}

// A 422's errors as lines for people. The check's own already name their layer ("layers[3] MaxPooling2D: ...");
// a schema error gets its place in front. A graph that does not fit the schema also fails to be a preset's name:
// that half of pydantic's answer is left out when there is another.
export function checkErrors(error) {
  const detail = error.body?.detail;
  if (error.status !== 422 || !Array.isArray(detail)) return [error.message];
  const relevant = detail.filter((item) => !(item.loc || []).includes("str-enum[Network]"));
  return (relevant.length ? relevant : detail).map((item) => {
    const text = String(item.msg || "").replace(/^Value error, /, "");
    const place = where(item.loc || []);
    return place && !text.startsWith(place) ? `${place}: ${text}` : text;
  });
}

// The body POST /networks/check takes for a spec's network, dataset, head and batch size.
export function checkBody(spec) {
  const body = { network: spec.network, dataset: spec.dataset };
  if (spec.head) body.head = spec.head;
  if (Number.isInteger(spec.batch_size)) body.batch_size = spec.batch_size;
  return body;
}

// Keras' summary, as the check answers it: a row per layer, then the figures and the limits they are held to.
export function summaryView(check) {
  const f = check.figures;
  const rows = check.layers.map((l) => h("tr", {},
    h("td", {}, l.name), h("td", {}, l.type), h("td", {}, `(${l.output_shape.join(", ")})`),
    h("td", { class: "num" }, count(l.params))));
  return h("div", { class: "network-check" },
    h("p", { class: "network-figures", "data-params": f.total_params },
      `${count(f.total_params)} parameters (${count(f.trainable_params)} trainable), `,
      `${count(f.flops_per_example)} FLOPs per example, `,
      `${bytes(f.activation_bytes_training)} of activations per training batch of ${check.batch_size}.`),
    h("p", { class: "muted" }, `Limits: ${count(check.limits.params)} parameters, `,
      `${count(check.limits.flops_per_example)} FLOPs, ${bytes(check.limits.activation_bytes_training)}.`),
    h("div", { class: "scroll" }, h("table", { class: "layers" },
      h("thead", {}, h("tr", {}, ["layer", "type", "output shape", "parameters"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows))));
}

export const errorView = (lines) =>
  h("ul", { class: "error network-errors", role: "alert" }, lines.map((line) => h("li", {}, line)));

// The presets, once per page load: each with its graph, which a custom network starts from.
let presets = null;
export function loadPresets() {
  presets = presets || api("/networks").catch((error) => { presets = null; throw error; });
  return presets;
}

const CUSTOM = "custom";

// A graph as a person would write it: a stored one spells out every unset field as null, which means the default.
export function withoutNulls(value) {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]);
  return Object.fromEntries(entries.sort(([a], [b]) => (b === "type") - (a === "type")));  // a layer's type first
}

// The form's network: `control` is the preset/custom choice (a select the form labels), `panel` the editor and the
// summary. `spec()` gives the form's dataset, head and batch size for the check; `value()` the spec's network
// (undefined: the dataset's default; a preset's name; or the parsed graph, throwing on JSON that does not parse).
export function networkEditor(spec) {
  const control = h("select", {},
    h("option", { value: "" }, "the dataset's default"), h("option", { value: CUSTOM }, "custom (edit as JSON)"));
  const editor = h("textarea", { id: "network-json", rows: 16, cols: 48, spellcheck: "false", hidden: true,
    "aria-label": "custom network graph, as JSON", "aria-describedby": "network-summary" });
  const summary = h("div", { id: "network-summary", "aria-live": "polite" });
  const panel = h("div", { class: "network-editor" }, editor, summary);
  let timer = null;
  let asked = 0;  // only the latest check's answer is shown: an older one may arrive after it

  function value() {
    if (control.value !== CUSTOM) return control.value || undefined;
    try {
      return JSON.parse(editor.value);
    } catch (error) {
      throw new SyntaxError(`the network is not valid JSON: ${error.message}`);
    }
  }

  async function check() {
    const number = ++asked;
    let body;
    try {
      const network = value();
      body = checkBody({ ...spec(), network });
      if (network === undefined) {
        const preset = (await loadPresets()).find((p) => p.default_for.includes(body.dataset));
        if (!preset) return summary.replaceChildren();
        body.network = preset.name;
      }
    } catch (error) {
      if (number === asked) summary.replaceChildren(errorView([error.message]));
      return;
    }
    summary.replaceChildren(h("p", { class: "muted" }, "checking…"));
    try {
      const answer = await api("/networks/check", { method: "POST", json: body });
      if (number === asked) summary.replaceChildren(summaryView(answer));
    } catch (error) {
      if (number === asked) summary.replaceChildren(errorView(checkErrors(error)));
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(check, CHECK_DELAY_MS); };

  // Custom starts from the chosen preset's graph (the dataset's default one when none is chosen).
  async function startCustom(from) {
    try {
      const all = await loadPresets();
      const dataset = spec().dataset;
      const preset = all.find((p) => p.name === from) || all.find((p) => p.default_for.includes(dataset));
      if (preset && !editor.value.trim()) editor.value = JSON.stringify(withoutNulls(preset.network), null, 2);
    } catch (error) {
      summary.replaceChildren(errorView([`the presets could not be read: ${error.message}`]));
    }
  }

  let chosen = "";
  control.addEventListener("change", async () => {
    if (control.value === CUSTOM) {
      editor.hidden = false;
      await startCustom(chosen);
    } else {
      editor.hidden = true;
      chosen = control.value;
    }
    check();
  });
  editor.addEventListener("input", later);

  // The presets join the choice once read; a clone's network (a name or a graph) is set with set().
  const ready = loadPresets().then((all) => {
    control.lastChild.before(...all.map((p) => h("option", { value: p.name, title: p.description }, p.name)));
  }).catch((error) => summary.replaceChildren(errorView([`the presets could not be read: ${error.message}`])));

  async function set(network) {
    await ready;
    if (typeof network === "string") {
      control.value = network;
      chosen = network;
      editor.hidden = true;
    } else if (network) {
      control.value = CUSTOM;
      editor.hidden = false;
      editor.value = JSON.stringify(withoutNulls(network), null, 2);
    }
    check();
  }
  ready.then(check);
  return { control, panel, value, recheck: later, set };
}
