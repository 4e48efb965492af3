// The dashboard's router: #/experiments, #/experiments/ID, #/sweeps, #/sweeps/ID, #/new.
import { forgetKey, getKey, setKey } from "./api.js";
import { h } from "./dom.js";
import { renderExperiment } from "./experiment.js";
import { renderList } from "./list.js";
import { renderNew } from "./submit.js";
import { renderSweep, renderSweeps } from "./sweep.js";

const view = document.getElementById("view");
let cleanup = () => {};

function keyState() {
  document.getElementById("key-state").textContent = getKey() ? "key set" : "no key: paste one to start";
}

function route() {
  cleanup();
  cleanup = () => {};
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  if (!getKey()) {
    view.replaceChildren(h("div", { class: "card" }, h("h1", {}, "Welcome to Epochal"),
      h("p", {}, "Paste your API key above. The first start of the service wrote the admin's key to var/api-key; ",
        "an admin makes keys for others (POST /users). The key stays in this browser's local storage.")));
    return;
  }
  let stop;
  if (parts[0] === "experiments" && parts[1]) stop = renderExperiment(view, Number(parts[1]));
  else if (parts[0] === "sweeps" && parts[1]) stop = renderSweep(view, Number(parts[1]));
  else if (parts[0] === "sweeps") stop = renderSweeps(view);
  else if (parts[0] === "new") stop = renderNew(view, params);
  else stop = renderList(view, params);
  if (typeof stop === "function") cleanup = stop;
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("key-input");
  if (input.value.trim()) setKey(input.value);
  input.value = "";
  keyState();
  route();
});
document.getElementById("key-forget").addEventListener("click", () => { forgetKey(); keyState(); route(); });
window.addEventListener("hashchange", route);
keyState();
route();
