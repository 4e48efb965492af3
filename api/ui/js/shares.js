// Who an uploaded dataset is shared with, on its page, for its owner or an admin only (GET /datasets/{name}/shares);
// sharing with a user by id (PUT .../shares/{user_id}; an admin may pick the user from GET /users) and stopping
// (DELETE). The API decides: a refusal (an unknown user, the owner themself, another's dataset) is shown in its words.
// User names are people's words like any other: text only (dom.js h).
import { api, datasetPath } from "./api.js";
import { clockTime, h } from "./dom.js";

export const maySeeShares = (dataset, user) => !dataset.builtin && (user.admin || dataset.owner_id === user.id);

export function sharesCard(name, user) {
  const body = h("tbody");
  const message = h("p", { id: "share-message", "aria-live": "polite" });
  const input = h("input", { type: "number", name: "user_id", min: 1, step: 1, required: true, size: 8 });
  const form = h("form", { id: "share-form", class: "register", novalidate: true },
    h("label", {}, "user id ", input), h("button", { type: "submit" }, "Share"));
  let names = new Map();  // user id -> name, from GET /users (admins only)
  const userText = (id) => (id === null ? "–" : id === user.id ? "you"
    : names.has(id) ? `${names.get(id)} (#${id})` : `user #${id}`);
  const say = (cls, text) => {
    message.className = cls;
    if (cls === "error") message.setAttribute("role", "alert"); else message.removeAttribute("role");
    message.textContent = text;
  };

  async function load() {
    try {
      const shares = await api(datasetPath(name, "/shares"));
      body.replaceChildren(...shares.map((s) => h("tr", { dataset: { userId: s.user_id } },
        h("td", {}, userText(s.user_id)), h("td", {}, userText(s.shared_by)), h("td", {}, clockTime(s.created_at)),
        h("td", {}, h("button", { type: "button", class: "unshare", onclick: () => unshare(s.user_id) }, "stop sharing")))));
      if (!shares.length) body.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Shared with no one.")));
    } catch (error) {
      say("error", `Who it is shared with could not be read: ${error.message}`);
    }
  }

  // Resolves true once the API took the change; a refusal is shown and resolves false.
  async function change(method, id, done) {
    let took = false;
    try {
      await api(datasetPath(name, `/shares/${id}`), { method });
      say("ok", done);
      took = true;
    } catch (error) {
      say("error", error.message);  // 404 (no such user, or not shared with them), 403, 422 (its owner): the API's words
    }
    load();
    return took;
  }
  const unshare = (id) => change("DELETE", id, `No longer shared with ${userText(id)}.`);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = Number(input.value);
    if (!Number.isInteger(id) || id < 1) return say("error", "Give the user's id: a whole number from 1 (GET /users lists them).");
    change("PUT", id, `Shared with ${userText(id)}.`).then((took) => { if (took) form.reset(); });
  });

  // An admin picks from every user; an owner types the id they were given.
  if (user.admin) {
    const pick = h("select", { id: "share-pick", "aria-label": "pick a user" }, h("option", { value: "" }, "or pick a user…"));
    pick.addEventListener("change", () => { input.value = pick.value; });
    form.insertBefore(pick, form.lastChild);
    api("/users").then((users) => {
      names = new Map(users.map((u) => [u.id, u.name]));
      pick.append(...users.filter((u) => u.id !== user.id).map((u) => h("option", { value: u.id }, `${u.name} (#${u.id})`)));
      load();  // again, with the names
    }).catch(() => pick.remove());
  }
  load();
  return h("div", { class: "card", id: "dataset-sharing" }, h("h2", {}, "Shared with"),
    h("p", { class: "muted" }, "A private dataset is seen by its owner, the admins and the users it is shared with. ",
      "They see every version (one uploaded later too), train and predict on it, and change nothing. A public one ",
      "every user sees anyway."),
    h("div", { class: "scroll" }, h("table", { id: "dataset-shares" }, h("thead", {}, h("tr", {},
      ["user", "shared by", "since", ""].map((c) => h("th", {}, c)))), body)),
    form, message);
}
