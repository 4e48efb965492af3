// The datasets' pages: #/datasets (every version you may use, from GET /datasets, and the upload form) and
// #/datasets/NAME (GET /datasets/{name}: each version's status, classes, images per class of each split, the
// problems of a failed one, a grid of sample images and a browser of its images, deleting a version, and who it is
// shared with, for its owner or an admin).
// Names and class names are the uploaders' words: they only ever become text (dom.js h), never markup.
import { api, datasetPath, whoAmI } from "./api.js";
import { clockTime, h, statusBadge } from "./dom.js";
import { imageBrowser } from "./images.js";
import { showError } from "./list.js";
import { maySeeShares, sharesCard } from "./shares.js";
import { countsTable, errorsList, shape, uploadCard } from "./upload.js";

const POLL_MS = 2000;  // how often a dataset page reads its versions again while one is being prepared
export const datasetHash = (name) => `#/datasets/${encodeURIComponent(name)}`;
const visibility = (v) => h("span", { class: `visibility visibility-${v}` }, v);
const who = (id, user) => (id === null ? "the service (built in)" : id === user.id ? "you" : `user #${id}`);
const mayDelete = (version, user) => !version.builtin && (user.admin || version.owner_id === user.id);

// The class names in a cell: the count, then the names, cut short past a few (the dataset's page has them all).
function classesCell(names) {
  if (!names.length) return h("td", { class: "muted" }, "–");
  const shown = names.slice(0, 5).join(", ");
  return h("td", { class: "wrap", title: names.join(", ") },
    `${names.length}: ${shown}${names.length > 5 ? `, … (${names.length - 5} more)` : ""}`);
}

// The images of each uploaded version, which the list does not carry: one read of GET /datasets/{name} per upload's
// name (a built-in's count is its loader's, unknown here).
async function imagesOf(listed) {
  const names = [...new Set(listed.filter((d) => !d.builtin).map((d) => d.name))];
  const details = await Promise.all(names.map((name) => api(datasetPath(name)).catch(() => null)));
  const images = new Map();
  for (const detail of details.filter(Boolean)) {
    for (const v of detail.versions) images.set(`${detail.name}@${v.version}`, v.images);
  }
  return images;
}

export function renderDatasets(view) {
  const body = h("tbody");
  const state = h("div");
  const { card, stop } = uploadCard(() => load());
  view.replaceChildren(h("h1", {}, "Datasets"),
    h("p", { class: "muted" }, "The built-ins, every public dataset and yours, a row per version. An upload is ",
      "prepared by a worker (every entry checked, the images fitted to one input shape); a ready version can be ",
      "picked in the experiment form as NAME@VERSION."), state,
    h("div", { class: "scroll" }, h("table", { id: "datasets" }, h("thead", {}, h("tr", {},
      ["name", "version", "status", "visibility", "classes", "images", "input shape"].map((c) => h("th", {}, c)))),
    body)), card);

  async function load() {
    try {
      const listed = await api("/datasets");
      const images = await imagesOf(listed);
      body.replaceChildren(...listed.map((d) => h("tr", { dataset: { name: d.name, version: d.version } },
        h("td", {}, h("a", { href: datasetHash(d.name) }, d.name), d.builtin ? h("span", { class: "muted" }, " built in") : ""),
        h("td", { class: "num" }, d.version), h("td", {}, statusBadge(d.status)), h("td", {}, visibility(d.visibility)),
        classesCell(d.class_names), h("td", { class: "num" }, images.get(`${d.name}@${d.version}`) ?? "–"),
        h("td", {}, shape(d.input_shape)))));
    } catch (error) {
      showError(state, error);
    }
  }
  load();
  return stop;
}

// The sample grid, if the service draws one: read with the key (an <img src> could not send it) and shown from a
// blob: URL. A service without the route (404, or 405 where the path reads as a version) shows no image at all.
// `data-state` says which it came to: shown, absent or failed.
function samplesView(name, number) {
  const figure = h("figure", { class: "samples", id: `samples-${number}`, hidden: true, dataset: { state: "asked" } });
  api(datasetPath(name, `/samples.png?version=${number}`), { raw: true }).then(async (response) => {
    const url = URL.createObjectURL(await response.blob());
    figure.replaceChildren(h("img", { src: url, alt: `sample images of each class of ${name} version ${number}`,
      onload: () => URL.revokeObjectURL(url) }),
      h("figcaption", { class: "muted" }, "A few images of each class, as the network sees them."));
    figure.hidden = false;
    figure.dataset.state = "shown";
  }).catch((error) => {
    const absent = error.status === 404 || error.status === 405;
    figure.dataset.state = absent ? "absent" : "failed";
    if (!absent) {
      figure.replaceChildren(h("p", { class: "muted" }, `The sample images could not be read: ${error.message}`));
      figure.hidden = false;
    }
  });
  return figure;
}

function facts(v) {
  const rows = [["created", `${clockTime(v.created_at)}${v.finished_at ? `, prepared ${clockTime(v.finished_at)}` : ""}`]];
  if (v.images !== null) rows.push(["images", v.images]);
  if (v.input_shape) rows.push(["input shape", shape(v.input_shape)]);
  if (v.fit) rows.push(["fit", v.fit]);
  if (v.color_mode) rows.push(["color mode", v.color_mode]);
  if (v.held_out !== null) {
    rows.push(["test split", v.held_out ? `held out of the upload (${v.test_fraction}, seed ${v.seed})`
      : "the upload's own test/ folder"]);
  }
  if (v.source_format) rows.push(["uploaded as", v.source_format]);
  if (v.content_sha256) rows.push(["content sha256", h("code", {}, v.content_sha256)]);
  const asked = Object.entries(v.options);
  if (asked.length) rows.push(["options asked", asked.map(([k, x]) => `${k} ${Array.isArray(x) ? x.join("x") : x}`).join(", ")]);
  return h("table", { class: "facts" }, h("tbody", {}, rows.map(([k, x]) => h("tr", {}, h("th", {}, k), h("td", {}, x)))));
}

function versionCard(dataset, v, user, remove, browserOf) {
  const parts = [h("h2", {}, `Version ${v.version} `, statusBadge(v.status), " ", visibility(v.visibility),
    mayDelete(v, user) ? [" ", h("button", { type: "button", class: "delete-version",
      onclick: () => remove(v.version) }, "delete")] : "")];
  if (v.status === "processing") parts.push(h("p", { class: "muted" }, "A worker is preparing it…"));
  if (v.status === "duplicate") {
    parts.push(h("p", {}, `The same content as version ${v.duplicate_of}: nothing new was stored.`));
  }
  if (v.status === "failed") parts.push(h("p", { class: "error" }, "Its preparation failed:"), errorsList(v));
  if (!v.builtin) parts.push(facts(v));
  if (v.counts) parts.push(h("h3", {}, "Images per class"), h("div", { class: "scroll" }, countsTable(v, { id: `counts-${v.version}` })));
  else if (v.class_names?.length) parts.push(h("p", {}, `Classes: ${v.class_names.join(", ")}.`));
  if (v.status === "ready") {
    parts.push(h("p", {}, h("a", { href: `#/new?dataset=${encodeURIComponent(v.builtin ? v.name : `${v.name}@${v.version}`)}`,
      class: "train-on" }, "Train on it")));
    if (!v.builtin) parts.push(samplesView(dataset.name, v.version), browserOf(v));
  }
  return h("div", { class: "card dataset-version", id: `version-${v.version}`, dataset: { version: v.version } }, parts);
}

export function renderDataset(view, name) {
  const about = h("div", { id: "dataset-about" });
  const message = h("p", { id: "dataset-message", "aria-live": "polite" });
  const versions = h("div", { id: "dataset-versions" }, h("p", { class: "muted" }, "Loading…"));
  const sharing = h("div");
  view.replaceChildren(h("h1", {}, h("a", { href: "#/datasets" }, "Datasets"), " / ", name), about, message, sharing,
    versions);
  let alive = true;
  let timer = null;
  // Kept across the reads while a version is prepared, so an open browser stays on its page.
  const browsers = new Map();
  const browserOf = (v) => {
    if (!browsers.has(v.version)) browsers.set(v.version, imageBrowser(name, v));
    return browsers.get(v.version);
  };
  const say = (cls, text) => {
    message.className = cls;
    if (cls === "error") message.setAttribute("role", "alert"); else message.removeAttribute("role");
    message.textContent = text;
  };

  async function remove(number) {
    if (!window.confirm(`Delete version ${number} of ${name}? Its number is never given to another upload.`)) return;
    try {
      await api(datasetPath(name, `/${number}`), { method: "DELETE" });
      say("ok", `Version ${number} deleted.`);
    } catch (error) {
      say("error", error.message);  // a 403 (not yours, or a built-in), a 404 (gone already): the API's words
    }
    load();
  }

  async function load() {
    clearTimeout(timer);
    try {
      const [user, dataset] = await Promise.all([whoAmI(), api(datasetPath(name))]);
      if (!alive) return;
      const owner = who(dataset.owner_id, user);
      about.replaceChildren(h("p", {}, dataset.builtin ? "Built into the service." : `Uploaded by ${owner}. `,
        dataset.builtin || dataset.versions.some((v) => mayDelete(v, user)) ? ""
          : h("span", { class: "muted" }, "Read only: only its owner or an admin deletes a version.")));
      versions.replaceChildren(...dataset.versions.map((v) => versionCard(dataset, v, user, remove, browserOf)));
      if (maySeeShares(dataset, user) && !sharing.childElementCount) sharing.append(sharesCard(name, user));
      if (dataset.versions.some((v) => v.status === "processing")) timer = setTimeout(load, POLL_MS);
    } catch (error) {
      if (!alive) return;
      if (error.status === 404) {
        about.replaceChildren();
        sharing.replaceChildren();
        versions.replaceChildren(h("p", { class: "muted", id: "no-versions" }, `No version of ${name} you may see is left. `,
          h("a", { href: "#/datasets" }, "All datasets")));
      } else showError(versions, error);
    }
  }
  load();
  return () => { alive = false; clearTimeout(timer); };
}
