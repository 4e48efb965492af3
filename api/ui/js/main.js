// The dashboard's router: #/experiments, #/experiments/ID, #/sweeps, #/sweeps/ID, #/new, #/models,
// #/models/NAME, #/models/NAME/versions/N (a version's model card), #/datasets and #/datasets/NAME.
import { forgetKey, getKey, setKey } from "./api.js";
import { h } from "./dom.js";
import { renderCard } from "./card.js";
import { renderDataset, renderDatasets } from "./datasets.js";
import { renderExperiment } from "./experiment.js";
import { renderList } from "./list.js";
import { renderModel, renderModels } from "./models.js";
import { renderNew } from "./submit.js";
import { renderSweep, renderSweeps } from "./sweep.js";

const view = document.getElementById("view");
let cleanup = () => {};

function keyState() {
  document.getElementById("key-state").textContent = getKey() ? "key set" : "no key: paste one to start";
}

// A model's or a dataset's name comes encoded in the hash; a malformed escape is left as typed (the API then answers 404).
function decoded(part) {
  try { return decodeURIComponent(part); } catch { return part; }
}

function route() {
  cleanup();
  cleanup = () => {};
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean).map(decoded);
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
  else if (parts[0] === "models" && parts[1] && parts[2] === "versions" && parts[3]) {
    stop = renderCard(view, parts[1], Number(parts[3]));
  } else if (parts[0] === "models" && parts[1]) stop = renderModel(view, parts[1]);
  else if (parts[0] === "models") stop = renderModels(view);
  else if (parts[0] === "datasets" && parts[1]) stop = renderDataset(view, parts[1]);
  else if (parts[0] === "datasets") stop = renderDatasets(view);
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
