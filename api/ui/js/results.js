// Result views shared by the experiment page: curves, confusion-matrix heatmap, classification report,
// the model's input contract, and the prediction drop zone with its probability bars.
import { api, download } from "./api.js";
import { lineChart } from "./charts.js";
import { fmt, h, pct } from "./dom.js";

// metrics: Map(epoch -> {loss, accuracy, val_loss, val_accuracy}); draws accuracy and loss side by side.
export function drawCurves(container, metrics) {
  const pick = (key) => new Map([...metrics].map(([epoch, m]) => [epoch, m[key]]));
  const acc = h("div", { class: "chart", id: "chart-accuracy" });
  const loss = h("div", { class: "chart", id: "chart-loss" });
  container.replaceChildren(acc, loss);
  container.dataset.points = String(metrics.size);  // how many epochs are drawn, for people and tests
  lineChart(acc, "accuracy", [{ label: "train", points: pick("accuracy") }, { label: "validation", points: pick("val_accuracy") }]);
  lineChart(loss, "loss", [{ label: "train", points: pick("loss") }, { label: "validation", points: pick("val_loss") }]);
}

export function heatmap(cm) {
  const max = Math.max(1, ...cm.matrix.flat());
  return h("table", { class: "heatmap", id: "confusion-matrix" },
    h("thead", {}, h("tr", {}, h("th", {}, "true \\ predicted"), cm.labels.map((l) => h("th", {}, l)))),
    h("tbody", {}, cm.matrix.map((counts, i) => h("tr", {}, h("th", {}, cm.labels[i]), counts.map((n, j) => {
      const share = n / max;
      const hue = i === j ? "37, 99, 235" : "180, 35, 24";  // the diagonal is right: blue; mistakes red
      const style = { background: `rgba(${hue}, ${share.toFixed(3)})`, color: share > 0.55 ? "#fff" : "inherit" };
      return h("td", { style, title: `true ${cm.labels[i]}, predicted ${cm.labels[j]}: ${n}` }, n);
    })))));
}

export function reportTable(report) {
  const metrics = ["precision", "recall", "f1-score", "support"];
  const rows = Object.entries(report).filter(([, v]) => v && typeof v === "object");
  return h("table", { id: "classification-report" },
    h("thead", {}, h("tr", {}, h("th", {}, "class"), metrics.map((m) => h("th", {}, m)))),
    h("tbody", {}, rows.map(([name, v]) => h("tr", {}, h("th", {}, name),
      metrics.map((m) => h("td", { class: "num" }, m === "support" ? v[m] : fmt(v[m], 3)))))),
    typeof report.accuracy === "number" ? h("tfoot", {}, h("tr", {}, h("th", {}, "accuracy"),
      h("td", { class: "num", colspan: 4 }, fmt(report.accuracy, 4)))) : null);
}

export function evaluationCard(evaluation) {
  return h("div", { class: "card", id: "evaluation" },
    h("h2", {}, `Test evaluation: accuracy ${pct(evaluation.test_accuracy)}, loss ${fmt(evaluation.test_loss)}`),
    h("details", { id: "confusion-details", open: true }, h("summary", {}, "Confusion matrix (rows: true class)"),
      h("div", { class: "scroll" }, heatmap(evaluation.confusion_matrix))),
    h("h2", {}, "Classification report"), h("div", { class: "scroll" }, reportTable(evaluation.classification_report)));
}

export function modelCard(experimentId, artifacts) {
  const model = artifacts.find((a) => a.name.endsWith(".h5"));
  if (!model) return h("div", { class: "card muted" }, "No checkpoint yet: best_model.h5 appears once an epoch is best.");
  return h("div", { class: "card", id: "model-card" },
    h("h2", {}, "Model: ", model.name),
    h("button", { id: "download-model", onclick: () => download(model.url, model.name) },
      `Download ${model.name} (${(model.size / 1e6).toFixed(2)} MB)`),
    h("span", { class: "muted" }, ` sha256 ${model.sha256.slice(0, 16)}…`),
    h("h2", {}, "What it expects as input"),
    h("dl", { class: "contract", id: "model-contract" },
      h("dt", {}, "shape"), h("dd", {}, `(${model.input_shape.map((d) => d ?? "batch").join(", ")})`),
      h("dt", {}, "dtype"), h("dd", {}, model.input_dtype),
      h("dt", {}, "pixel range"), h("dd", {}, `${model.input_range[0]}..${model.input_range[1]}, raw`),
      h("dt", {}, "preprocessing"), h("dd", {}, model.preprocessing)),
    h("p", { class: "warn" }, "Feed raw 0..255 pixels. The network divides by 255 itself: dividing first, as many ",
      "Keras tutorials do, scales twice and gives near-chance accuracy without any error."));
}

function probabilityBars(prediction) {
  const entries = Object.entries(prediction.probabilities || {}).sort((a, b) => b[1] - a[1]);
  return h("div", { class: "bars", id: "probabilities" }, entries.flatMap(([label, p]) => [
    h("span", {}, label),
    h("div", {}, h("div", { class: `bar${label === prediction.label ? " top" : ""}`, style: { width: `${(p * 100).toFixed(1)}%` } })),
    h("span", { class: "num" }, pct(p))]));
}

export function predictionCard(experimentId) {
  const result = h("div", { id: "prediction", "aria-live": "polite" });
  const input = h("input", { type: "file", accept: "image/png,image/jpeg", id: "predict-file" });
  async function predict(file) {
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name || "image.png");
    result.replaceChildren(h("span", { class: "muted" }, "Predicting…"));
    try {
      const p = await api(`/experiments/${experimentId}/predictions`, { method: "POST", body: form });
      const preview = h("img", { src: URL.createObjectURL(file), alt: "uploaded image", height: 56 });
      result.replaceChildren(preview, h("p", {}, "Predicted: ", h("strong", { id: "prediction-label" }, p.label)),
        p.probabilities ? probabilityBars(p) : h("p", { class: "muted" }, `Raw outputs: ${p.outputs?.join(", ")}`));
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
  }
  input.addEventListener("change", () => predict(input.files[0]));
  const zone = h("div", { class: "dropzone", id: "dropzone" }, "Drop an image here, or ", input);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); predict(e.dataTransfer.files[0]); });
  return h("div", { class: "card" }, h("h2", {}, "Try it: predict an image"), zone, result);
}
