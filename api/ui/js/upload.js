// Uploading a dataset, on #/datasets: a file (a zip or tar of class folders, or an .npz), its name, visibility and
// the preparation's options, sent as the whole body of POST /datasets with a bar of the bytes sent; then its version
// read again every second until the worker has prepared it: ready (classes and counts), duplicate, or failed (each
// problem with the entry it is in). The API checks everything: the form sends what was typed, and a 4xx is shown in
// its words, a 422 next to the option it names.
import { api, datasetPath, upload } from "./api.js";
import { bytes, h, statusBadge } from "./dom.js";
import { showValidation } from "./submit.js";

const POLL_MS = 1000;
const ACCEPT = ".zip,.tar,.tar.gz,.tgz,.tar.bz2,.tar.xz,.npz";
const OPTIONS = ["visibility", "image_size", "fit", "color_mode", "test_fraction", "seed"];
const SETTLED = new Set(["ready", "duplicate", "failed"]);

// A dataset name from a file name: "My Flowers.tar.gz" suggests "my-flowers" (the API has the last word).
export function suggestedName(fileName) {
  const stem = fileName.toLowerCase().replace(/\.(zip|npz|tgz|tar(\.(gz|bz2|xz))?)$/, "");
  return stem.replace(/[^a-z0-9_-]+/g, "-").replace(/^[-_]+|[-_]+$/g, "").slice(0, 40).replace(/[-_]+$/, "");
}

function labelled(name, label, control, hint = "") {
  control.name = name;
  control.id = `upload-${name}`;
  return h("label", {}, label, control, h("span", {},
    h("span", { class: "muted" }, hint), h("span", { class: "field-error", "data-error-for": name, role: "alert" })));
}
const choice = (values, empty) => h("select", {}, h("option", { value: "" }, empty),
  values.map((v) => h("option", { value: v }, v)));

// A version's counts: a row per class, a column per split, and the totals.
export function countsTable(version, attrs = {}) {
  const splits = Object.keys(version.counts || {});
  const classes = version.class_names || [];
  const total = (split) => Object.values(version.counts[split]).reduce((a, b) => a + b, 0);
  return h("table", { class: "counts", ...attrs },
    h("thead", {}, h("tr", {}, h("th", {}, "class"), splits.map((s) => h("th", {}, s)), h("th", {}, "all"))),
    h("tbody", {}, classes.map((c) => h("tr", { dataset: { class: c } }, h("td", {}, c),
      splits.map((s) => h("td", { class: "num" }, version.counts[s][c] ?? 0)),
      h("td", { class: "num" }, splits.reduce((n, s) => n + (version.counts[s][c] ?? 0), 0))))),
    h("tfoot", {}, h("tr", {}, h("th", {}, "all"), splits.map((s) => h("td", { class: "num" }, total(s))),
      h("td", { class: "num" }, splits.reduce((n, s) => n + total(s), 0)))));
}

export const errorsList = (version) => h("ul", { class: "error dataset-errors", role: "alert" },
  version.errors.map((e) => h("li", {}, h("code", {}, e.entry), ": ", e.reason)));

export const shape = (dims) => (dims && dims.length ? dims.join(" × ") : "–");

// What a settled version came to, as the upload's result.
function outcome(version, link) {
  if (version.status === "ready") {
    return [h("p", { class: "ok" }, `Ready: version ${version.version}, ${version.class_names.length} classes, `,
      `${version.images} images of ${shape(version.input_shape)}. `, link), countsTable(version, { id: "upload-counts" })];
  }
  if (version.status === "duplicate") {
    return [h("p", {}, `The same content as version ${version.duplicate_of}: nothing new was stored. `, link)];
  }
  return [h("p", { class: "error" }, `Version ${version.version} failed:`), errorsList(version)];
}

// The upload card; `uploaded()` is called once a version has settled (the list shows it then).
export function uploadCard(uploaded = () => {}) {
  const file = h("input", { type: "file", accept: ACCEPT });
  const name = h("input", { type: "text", placeholder: "flowers", size: 24 });
  const form = h("form", { class: "spec", id: "upload-form", novalidate: true },
    labelled("file", "file", file, "a zip or tar of class folders (optionally under train/ and test/), or an .npz"),
    labelled("name", "name", name, "lowercase letters, digits, - and _; yours: a new upload is its next version"),
    labelled("visibility", "visibility", h("select", {}, h("option", { value: "private" }, "private"),
      h("option", { value: "public" }, "public")), "private: you and the admins; public: every user"),
    labelled("image_size", "image size", h("input", { type: "text", placeholder: "64x64", size: 10 }),
      "HEIGHTxWIDTH or one side; empty: the most common size, at most 256"),
    labelled("fit", "fit", choice(["resize", "crop", "pad"], "default (resize)")),
    labelled("color_mode", "color mode", choice(["grayscale", "rgb"], "default (grayscale if every image is)")),
    labelled("test_fraction", "test fraction", h("input", { type: "number", step: "any", placeholder: "0.2" }),
      "held out for testing when the upload has no test/ folder"),
    labelled("seed", "seed", h("input", { type: "number", step: "1", placeholder: "42" }), "the hold-out's seed"),
    h("button", { type: "submit" }, "Upload"), h("p", { class: "form-error error", role: "alert" }));
  const bar = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const sent = h("span", { id: "upload-sent", class: "muted" });
  const cancel = h("button", { type: "button", id: "upload-cancel", hidden: true }, "Cancel upload");
  const state = h("p", { id: "upload-state", "aria-live": "polite" });
  const result = h("div", { id: "upload-result" });
  let suggested = "";
  file.addEventListener("change", () => {
    // The file's name fills an empty name (or the one it filled before), never one that was typed.
    const chosen = file.files[0];
    if (chosen && (!name.value || name.value === suggested)) name.value = suggested = suggestedName(chosen.name);
  });

  let alive = true;
  let timer = null;
  let aborter = null;
  cancel.addEventListener("click", () => aborter?.abort());

  function progress(done, total) {
    bar.max = total || 1;
    bar.value = done;
    bar.dataset.sent = done;
    sent.textContent = `${bytes(done)} of ${bytes(total)} sent (${total ? Math.round((100 * done) / total) : 100}%)`;
  }

  // The version read again until the worker settles it; the page's other work goes on meanwhile.
  function poll(version) {
    const link = h("a", { href: `#/datasets/${encodeURIComponent(version.name)}`, id: "uploaded-dataset" },
      `See ${version.name}`);
    state.replaceChildren(`Version ${version.version} of ${version.name}: `, statusBadge(version.status),
      SETTLED.has(version.status) ? "" : " the worker is preparing it…");
    if (SETTLED.has(version.status)) {
      result.replaceChildren(...outcome(version, link));
      uploaded(version);
      return;
    }
    timer = setTimeout(async () => {
      try {
        const dataset = await api(datasetPath(version.name));
        const now = dataset.versions.find((v) => v.version === version.version);
        if (!alive) return;
        if (!now) state.replaceChildren(h("span", { class: "error" }, `Version ${version.version} is gone (deleted).`));
        else poll(now);
      } catch (error) {
        if (!alive) return;
        state.replaceChildren(h("span", { class: "error" }, `Reading version ${version.version} failed: `,
          `${error.message}; trying again…`));
        timer = setTimeout(() => poll(version), POLL_MS);
      }
    }, POLL_MS);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    form.querySelector(".form-error").textContent = "";
    result.replaceChildren();
    state.replaceChildren();
    const chosen = file.files[0];
    if (!chosen) return void (form.querySelector("[data-error-for=file]").textContent = "Choose a file to upload.");
    const query = new URLSearchParams({ name: name.value.trim() });
    for (const option of OPTIONS) {
      const value = form.elements.namedItem(option).value.trim();
      if (value) query.set(option, value);
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    cancel.hidden = false;
    bar.hidden = false;
    progress(0, chosen.size);
    aborter = new AbortController();
    try {
      // The service tells the format from the first bytes, never from the name or the type sent.
      const version = await upload(`/datasets?${query}`, chosen, { onProgress: progress, signal: aborter.signal });
      if (alive) poll(version);
    } catch (error) {
      if (alive) showValidation(form, error);
    } finally {
      submit.disabled = false;
      cancel.hidden = true;
    }
  });

  const card = h("div", { class: "card", id: "upload" }, h("h2", {}, "Upload a dataset"), form,
    h("div", { class: "upload-progress" }, bar, " ", sent, " ", cancel), state, result);
  return { card, stop: () => { alive = false; clearTimeout(timer); } };
}
