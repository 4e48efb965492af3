// A ready upload's image browser on its dataset's page: one class of one split at a time, a page of thumbnails
// from GET /datasets/{name}/images, with previous and next. Each image is read with the key (an <img src> could
// not send it) and shown from a blob: URL, as the sample grid is. Nothing is read until the browser is opened.
// Class names are the uploader's words: an option's text, a query value, never markup.
import { api, datasetPath } from "./api.js";
import { h } from "./dom.js";

export const THUMBS = 24;  // thumbnails on one page

const select = (name, values) => h("select", { name }, values.map((v) => h("option", { value: v }, v)));

export function imageBrowser(name, v) {
  const number = v.version;
  const classes = select("class", v.class_names);
  const splits = select("split", Object.keys(v.counts || { train: 0, test: 0 }));
  const info = h("span", { class: "muted", "aria-live": "polite" });
  const grid = h("div", { class: "thumbs", dataset: { state: "idle" } });
  let offset = 0;
  let asked = 0;  // the latest page asked for: an earlier answer arriving late is dropped
  const previous = h("button", { type: "button", class: "images-previous", disabled: true,
    onclick: () => show(Math.max(0, offset - THUMBS)) }, "< previous");
  const next = h("button", { type: "button", class: "images-next", disabled: true,
    onclick: () => show(offset + THUMBS) }, "next >");

  // `data-state` on each image says what it came to: asked, shown or failed (its caption then says so).
  function thumb(item) {
    const img = h("img", { alt: `${item.class} image ${item.index} (${item.split})`, title: `${item.split} #${item.index}`,
      dataset: { state: "asked" } });
    const caption = h("figcaption", { class: "muted" }, `#${item.index}`);
    api(item.url, { raw: true }).then(async (response) => {
      const url = URL.createObjectURL(await response.blob());
      img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
      img.src = url;
      img.dataset.state = "shown";
    }).catch((error) => {
      img.dataset.state = "failed";
      img.title = `image ${item.index} could not be read: ${error.message}`;
      caption.className = "error";
      caption.textContent = `#${item.index} unread`;
    });
    return h("figure", { dataset: { index: item.index } }, img, caption);
  }

  async function show(from) {
    const mine = ++asked;
    offset = from;
    grid.dataset.state = "loading";
    previous.disabled = next.disabled = true;
    const query = new URLSearchParams({ version: number, split: splits.value, class: classes.value, offset: from,
      limit: THUMBS });
    try {
      const page = await api(`${datasetPath(name, "/images")}?${query}`);
      if (mine !== asked) return;
      grid.replaceChildren(...page.items.map(thumb));
      if (!page.items.length) grid.append(h("p", { class: "muted" }, `No ${splits.value} image of this class.`));
      info.textContent = page.total ? `${from + 1}-${from + page.items.length} of ${page.total}` : "none";
      previous.disabled = from === 0;
      next.disabled = page.next_offset === null;
      grid.dataset.state = "shown";
      grid.dataset.offset = String(from);
    } catch (error) {
      if (mine !== asked) return;
      grid.dataset.state = "failed";
      grid.replaceChildren(h("p", { class: "error", role: "alert" }, `The images could not be read: ${error.message}`));
    }
  }

  for (const control of [classes, splits]) control.addEventListener("change", () => show(0));
  const browser = h("details", { class: "image-browser", id: `images-${number}` },
    h("summary", {}, "Browse its images"),
    h("div", { class: "filters" }, h("label", {}, "class ", classes), h("label", {}, "split ", splits),
      previous, info, next),
    grid);
  browser.addEventListener("toggle", () => { if (browser.open && grid.dataset.state === "idle") show(0); });
  return browser;
}
