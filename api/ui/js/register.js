// "Register as a model" on a succeeded experiment's page: one of your models, or a new name (created first,
// private unless chosen otherwise), then the new version, and optionally an alias moved to it. Each step's
// refusal is the API's own message (409 a name taken, 422 a bad name or alias, 403 another's model).
import { api, modelPath, whoAmI } from "./api.js";
import { h } from "./dom.js";

const NEW = "";  // the select's value for "a new model"

export function registerCard(experimentId) {
  const form = h("form", { id: "register-form", class: "register", novalidate: true });
  const message = h("p", { id: "register-message", "aria-live": "polite" });
  const pick = h("select", { name: "model", "aria-label": "model" }, h("option", { value: NEW }, "a new model…"));
  const name = h("input", { name: "name", placeholder: "digits", size: 24, "aria-label": "new model name" });
  const visibility = h("select", { name: "visibility", "aria-label": "visibility" },
    h("option", { value: "private" }, "private"), h("option", { value: "public" }, "public"));
  const alias = h("input", { name: "alias", placeholder: "production (optional)", size: 20, "aria-label": "alias" });
  const submit = h("button", { type: "submit" }, "Register");
  const fresh = h("span", { class: "new-model" }, " named ", name, " ", visibility);
  pick.addEventListener("change", () => { fresh.hidden = pick.value !== NEW; });
  form.append(h("label", {}, "Model ", pick), fresh, h("label", {}, " alias ", alias), " ", submit);

  // Your own models to add a version to (the API lets an admin add to anyone's; the page offers your own).
  Promise.all([whoAmI(), api("/models")]).then(([user, models]) => {
    const mine = models.filter((m) => m.owner === user.name);
    pick.append(...mine.map((m) => h("option", { value: m.name }, `${m.name} (${m.latest_version ?? 0} versions)`)));
  }).catch(() => {});  // the new-model path still works without the list

  const say = (cls, ...parts) => {
    message.className = cls;
    if (cls === "error") message.setAttribute("role", "alert"); else message.removeAttribute("role");
    message.replaceChildren(...parts);
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = pick.value === NEW ? name.value.trim() : pick.value;
    const wanted = alias.value.trim();
    if (!chosen) return say("error", "Type a name for the new model, or pick one of yours.");
    submit.disabled = true;
    say("muted", "Registering…");
    try {
      if (pick.value === NEW) {
        await api("/models", { method: "POST", json: { name: chosen, visibility: visibility.value } });
        // Made: a retry after a later refusal adds to it rather than asking for the name again (a 409).
        pick.append(h("option", { value: chosen }, `${chosen} (new)`));
        pick.value = chosen;
        fresh.hidden = true;
      }
      const version = await api(modelPath(chosen, "/versions"), { method: "POST", json: { experiment_id: experimentId } });
      let moved = "";
      if (wanted) {
        await api(modelPath(chosen, `/aliases/${encodeURIComponent(wanted)}`),
          { method: "PUT", json: { version: version.number } });
        moved = `, alias ${wanted} points at it`;
      }
      say("ok", `Registered as version ${version.number} of `,
        h("a", { id: "registered-model", href: `#/models/${encodeURIComponent(chosen)}` }, chosen), `${moved}.`);
    } catch (error) {
      say("error", error.message);
    } finally {
      submit.disabled = false;
    }
  });
  return h("div", { class: "card", id: "register" }, h("h2", {}, "Register as a model"),
    h("p", { class: "muted" }, "Its checkpoint becomes the next version of a model, served by name "
      + "(POST /models/NAME/predictions, NAME@ALIAS or NAME:VERSION)."), form, message);
}
