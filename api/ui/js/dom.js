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

export const statusBadge = (status) => h("span", { class: `status status-${status}`, "data-status": status }, status);
