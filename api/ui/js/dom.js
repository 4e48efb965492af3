// A tiny element builder: h("td", {class: "num"}, "0.98"). Text is always set as text, never as HTML.
// `style` takes an object of CSS properties, set through the CSSOM: the page's Content-Security-Policy
// refuses style attributes (setAttribute("style", ...)), as it refuses inline scripts.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") Object.assign(el.style, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const fmt = (value, digits = 4) =>
  value === null || value === undefined ? "–" : typeof value === "number" ? Number(value.toFixed(digits)) : value;

export const pct = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(2)}%`);

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export const BUILTIN_DATASETS = ["mnist", "fashion_mnist", "cats_vs_dogs"];

// An experiment's dataset as a spec names it: an upload with the version it trained on ("flowers@2"), a built-in
// (one version only) by its name alone.
export const datasetLabel = (e) =>
  (BUILTIN_DATASETS.includes(e.dataset) || !e.dataset_version ? e.dataset : `${e.dataset}@${e.dataset_version}`);

export const statusBadge = (status) => h("span", { class: `status status-${status}`, "data-status": status }, status);

const pad = (n) => String(n).padStart(2, "0");

// A time from the API on the reader's clock: HH:MM today, with the date on another day.
export function clockTime(iso) {
  const d = new Date(iso);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.toDateString() === new Date().toDateString()
    ? hm : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}

// Where a queued job stands, as the API works it out for a read or a list ("position 3 · starts ~14:05 (estimate)");
// null for any other job, and for a submission's answer, which carries no position.
export function standing(e) {
  if (e.status !== "queued" || e.queue_position === null || e.queue_position === undefined) return null;
  const start = e.estimated_start
    ? ["starts ~", h("time", { datetime: e.estimated_start }, clockTime(e.estimated_start)), " (estimate)"]
    : ["no start estimate yet"];
  return h("span", { class: "standing", "data-position": e.queue_position }, `position ${e.queue_position} · `, start);
}
