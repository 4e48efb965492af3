// The model registry's pages: #/models (yours and the public ones) and #/models/NAME (its versions with their
// figures, its aliases with each one's history, and "move here" on a version's row for its owner or an admin).
// A version's card is its own page (card.js).
import { api, modelPath, whoAmI } from "./api.js";
import { clockTime, fmt, h, pct } from "./dom.js";
import { showError } from "./list.js";

export const modelHash = (name, rest = "") => `#/models/${encodeURIComponent(name)}${rest}`;
const aliasList = (aliases) => Object.entries(aliases).map(([alias, version]) => `${alias} → ${version}`).join(", ");
const when = (iso) => h("time", { datetime: iso }, clockTime(iso));
// The API names a mover by id; the reader is "you".
const who = (id, user) => (id === user.id ? "you" : `user #${id}`);
export const mayChange = (model, user) => user.admin || model.owner === user.name;

export function renderModels(view) {
  const body = h("tbody");
  const state = h("div");
  view.replaceChildren(h("h1", {}, "Models"),
    h("p", { class: "muted" }, "Yours and every public one. Register an experiment's checkpoint as a version from ",
      "its page (a succeeded experiment: Register as a model)."), state,
    h("div", { class: "scroll" }, h("table", { id: "models" }, h("thead", {}, h("tr", {},
      ["name", "owner", "visibility", "versions", "aliases", "description"].map((c) => h("th", {}, c)))), body)));
  (async () => {
    try {
      const models = await api("/models");
      body.replaceChildren(...models.map((m) => h("tr", { dataset: { name: m.name } },
        h("td", {}, h("a", { href: modelHash(m.name) }, m.name)), h("td", {}, m.owner),
        h("td", {}, h("span", { class: `visibility visibility-${m.visibility}` }, m.visibility)),
        h("td", { class: "num" }, m.latest_version ?? 0), h("td", {}, aliasList(m.aliases) || "–"),
        h("td", { class: "wrap" }, m.description || ""))));
      if (!models.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No models yet.")));
    } catch (error) {
      showError(state, error);
    }
  })();
}

// The figures of each version, from its card (the version itself names only its experiment).
async function figuresOf(name, versions) {
  const cards = await Promise.all(versions.map((v) =>
    api(modelPath(name, `/versions/${v.number}/card`)).catch(() => null)));
  return new Map(versions.map((v, i) => [v.number, cards[i]?.figures ?? null]));
}

function versionsTable(model, figures, user, move) {
  const writable = mayChange(model, user);
  const known = Object.keys(model.aliases);
  const choices = h("datalist", { id: "alias-choices" }, [...new Set(["production", "staging", ...known])]
    .map((a) => h("option", { value: a })));
  const rows = model.versions.map((v) => {
    const f = figures.get(v.number);
    const cells = [
      h("td", { class: "num" }, v.number),
      h("td", {}, h("a", { href: `#/experiments/${v.experiment_id}` }, `#${v.experiment_id}`)),
      h("td", { class: "num" }, pct(f?.validation_accuracy)), h("td", { class: "num" }, pct(f?.test_accuracy)),
      h("td", { class: "num" }, fmt(f?.test_loss)), h("td", {}, v.aliases.join(", ")),
      h("td", {}, when(v.created_at), ` by ${who(v.created_by, user)}`),
      h("td", {}, h("a", { href: modelHash(model.name, `/versions/${v.number}`) }, "card"))];
    if (writable) {
      const input = h("input", { list: "alias-choices", size: 12, "aria-label": `alias for version ${v.number}`,
        value: known.includes("production") || !known.length ? "production" : known[0] });
      cells.push(h("td", {}, input, " ", h("button", { type: "button", class: "move-here",
        onclick: () => move(input.value.trim(), v.number) }, "move here")));
    }
    return h("tr", { dataset: { version: v.number } }, cells);
  });
  const head = ["version", "experiment", "val acc", "test acc", "test loss", "aliases", "registered", "model card"];
  if (writable) head.push("point an alias here");
  return h("div", { class: "scroll" }, choices, h("table", { id: "versions" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: head.length, class: "muted" },
      "No versions yet: register a succeeded experiment from its page.")))));
}

function aliasesView(model, user, remove) {
  const names = [...new Set([...Object.keys(model.aliases), ...model.history.map((m) => m.alias)])].sort();
  if (!names.length) return h("p", { class: "muted", id: "aliases" }, "No aliases yet.");
  const writable = mayChange(model, user);
  const version = (n) => (n === null ? "–" : `version ${n}`);
  return h("div", { id: "aliases" }, names.map((alias) => {
    const points = model.aliases[alias];
    const moves = model.history.filter((m) => m.alias === alias);
    return h("div", { class: "alias", dataset: { alias } },
      h("h3", {}, alias, " → ", points === undefined ? h("span", { class: "muted" }, "removed") : `version ${points}`,
        writable && points !== undefined
          ? [" ", h("button", { type: "button", class: "remove-alias", onclick: () => remove(alias) }, "remove")] : ""),
      h("table", { class: "history", id: `history-${alias}` },
        h("thead", {}, h("tr", {}, ["when", "who", "from", "to"].map((c) => h("th", {}, c)))),
        h("tbody", {}, moves.map((m) => h("tr", {}, h("td", {}, when(m.moved_at)), h("td", {}, who(m.moved_by, user)),
          h("td", {}, version(m.from_version)), h("td", {}, version(m.to_version)))))));
  }));
}

export function renderModel(view, name) {
  const title = h("h1", {}, "Model ", name);
  const about = h("div", { id: "model-about" });
  const message = h("p", { id: "model-message", "aria-live": "polite" });
  const versions = h("div", { id: "model-versions" }, h("p", { class: "muted" }, "Loading…"));
  const aliases = h("div", { id: "model-aliases" });
  view.replaceChildren(title, about, message, h("div", { class: "card" }, h("h2", {}, "Versions"), versions),
    h("div", { class: "card" }, h("h2", {}, "Aliases and their history"), aliases));
  const say = (cls, text) => {
    message.className = cls;
    if (cls === "error") message.setAttribute("role", "alert"); else message.removeAttribute("role");
    message.textContent = text;
  };

  async function change(request, done) {
    try {
      await request();
      say("ok", done);
      await load();
    } catch (error) {
      say("error", error.message);  // a 403 (not yours), a 422 (a bad alias name): the API's words
    }
  }
  const move = (alias, number) => change(
    () => api(modelPath(name, `/aliases/${encodeURIComponent(alias)}`), { method: "PUT", json: { version: number } }),
    `Alias ${alias} now points at version ${number}.`);
  const remove = (alias) => change(
    () => api(modelPath(name, `/aliases/${encodeURIComponent(alias)}`), { method: "DELETE" }), `Alias ${alias} removed.`);

  async function load() {
    const [user, model] = await Promise.all([whoAmI(), api(modelPath(name))]);
    const figures = await figuresOf(name, model.versions);
    about.replaceChildren(h("p", {}, `Owned by ${model.owner}, `,
      h("span", { class: `visibility visibility-${model.visibility}`, id: "model-visibility" }, model.visibility),
      `, created ${clockTime(model.created_at)}. `, model.description || "",
      mayChange(model, user) ? "" : h("span", { class: "muted" }, " Read only: only its owner or an admin changes it.")));
    versions.replaceChildren(versionsTable(model, figures, user, move));
    aliases.replaceChildren(aliasesView(model, user, remove));
  }
  load().catch((error) => showError(versions, error));
}
