"""Reproduce the course homework with a running Epochal service, over HTTP only.

    python bench/homework.py --url http://127.0.0.1:8000            # full data, 3 repeats, writes docs/results/
    python bench/homework.py --url http://127.0.0.1:8000 --quick    # small slices: a smoke test

It submits two sweeps, (a) optimizers on MNIST with the mlp network and (b) the five output
head/loss configurations on cats vs dogs with the convnet, each configuration `--repeats` times with
distinct seeds, waits for them with progress output, and writes `homework.md` with, per sweep, the
configuration table (n, mean, std, 95% CI, collapsed runs, which neighbours a Welch t-test tells
apart) and every run, the best MNIST network's test evaluation, and the plots as PNG files beside it.
`--validation held_out` (the default) selects the best epoch on held-out training data and touches the
test split once; `test` selects on the test split as the course did; `both` runs each configuration
both ways, side by side. `--resume A,B` reports on existing sweeps instead of submitting new ones.

The API key comes from `--key`, else EPOCHAL_API_KEY, else the file api-key in the state folder
(EPOCHAL_STATE_DIR, `var/` by default), where `scripts/serve` writes the first admin's key. It talks to
the service through the Python client, epochal.client (scripts/bootstrap installs it into .venv).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from epochal.client import ApiError, Client, EpochalError, default_key

OPTIMIZERS = ["sgd_nesterov", "adagrad", "rmsprop", "adadelta", "adam"]
HEAD_LOSS_VARIANTS = [
    {"head": {"units": 1, "activation": "sigmoid"}, "loss": "binary_crossentropy"},
    {"head": {"units": 1, "activation": "sigmoid"}, "loss": "mse"},
    {"head": {"units": 2, "activation": "softmax"}, "loss": "categorical_crossentropy"},
    {"head": {"units": 2, "activation": "softmax"}, "loss": "mse"},
    {"head": {"units": 1, "activation": "relu"}, "loss": "mse"},
]
SWEEP_METRICS = ["val_accuracy", "accuracy", "val_loss", "loss"]
VALIDATIONS = {"held_out": ["held_out"], "test": ["test"], "both": ["held_out", "test"]}


@dataclass(frozen=True)
class Plan:
    mnist_epochs: int
    mnist_batch_size: int
    cats_epochs: int
    cats_batch_size: int
    cats_learning_rate: float
    mnist_train_size: int | None
    cats_train_size: int | None
    repeats: int = 3
    mnist_validation: str = "held_out"
    cats_validation: str = "held_out"

    @staticmethod
    def _validate(base: dict[str, Any], grid: dict[str, Any], validation: str) -> None:
        ways = VALIDATIONS[validation]
        if len(ways) == 1:
            base["validation"] = ways[0]
        else:
            grid["validation"] = ways

    def mnist_sweep(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "dataset": "mnist",
            "network": "mlp",
            "loss": "sparse_categorical_crossentropy",
            "epochs": self.mnist_epochs,
            "batch_size": self.mnist_batch_size,
        }
        if self.mnist_train_size:
            base["train_size"] = self.mnist_train_size
        grid: dict[str, Any] = {"optimizer": OPTIMIZERS}
        self._validate(base, grid, self.mnist_validation)
        return {"name": "homework 1: optimizers on MNIST", "base": base, "grid": grid, "repeats": self.repeats}

    def cats_sweep(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "dataset": "cats_vs_dogs",
            "network": "convnet",
            "optimizer": "rmsprop",
            "learning_rate": self.cats_learning_rate,
            "epochs": self.cats_epochs,
            "batch_size": self.cats_batch_size,
        }
        if self.cats_train_size:
            base["train_size"] = self.cats_train_size
        grid: dict[str, Any] = {"variants": HEAD_LOSS_VARIANTS}
        self._validate(base, grid, self.cats_validation)
        return {
            "name": "homework 2: output head and loss on cats vs dogs",
            "base": base,
            "grid": grid,
            "repeats": self.repeats,
        }


def plan_from(args: argparse.Namespace) -> Plan:
    mnist_validation = args.mnist_validation or args.validation
    cats_validation = args.cats_validation or args.validation
    if args.quick:
        repeats = args.repeats or 2
        return Plan(1, 64, 1, 16, args.cats_learning_rate, 300, 32, repeats, mnist_validation, cats_validation)
    return Plan(
        args.mnist_epochs,
        args.mnist_batch_size,
        args.cats_epochs,
        args.cats_batch_size,
        args.cats_learning_rate,
        args.mnist_train_size,
        args.cats_train_size,
        args.repeats or 3,
        mnist_validation,
        cats_validation,
    )


def wait_for(client: Client, sweep_ids: list[int], poll_s: float, timeout_s: float) -> list[dict[str, Any]]:
    """Poll the sweeps, printing progress, until every experiment finished."""
    started = time.monotonic()
    last_line = ""
    while True:
        sweeps = [cast(dict[str, Any], client.sweep(i)) for i in sweep_ids]
        parts = []
        for sweep in sweeps:
            experiments = sweep["experiments"]
            done = sum(e["status"] in ("succeeded", "failed", "cancelled") for e in experiments)
            running = [e for e in experiments if e["status"] == "running"]
            now = ", ".join(f"{e['name']} epoch {e['summary']['epochs_done']}/{e['epochs']}" for e in running)
            parts.append(f"sweep {sweep['id']}: {done}/{len(experiments)} finished" + (f" ({now})" if now else ""))
        line = f"[{time.monotonic() - started:6.0f}s] " + "; ".join(parts)
        if line.split("] ", 1)[1] != last_line.split("] ", 1)[-1]:
            print(line, flush=True)
            last_line = line
        if all(s["finished"] for s in sweeps):
            return sweeps
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"sweeps {sweep_ids} did not finish in {timeout_s:.0f}s")
        time.sleep(poll_s)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ranked_table(sweep: dict[str, Any]) -> str:
    header = (
        "| rank | configuration | status | seed | selected on | best epoch | best val acc | final val acc | "
        "best train acc | final train acc | final val loss | final train loss | test acc | time (s) |"
    )
    lines = [header, "|" + " --- |" * 14]
    for row in sweep["comparison"]:
        lines.append(
            f"| {fmt(row['rank'])} | {row['label']} | {row['status']} | {row['seed']} | {row['selected_on']} | "
            f"{fmt(row['best_epoch'])} | "
            f"{fmt(row['best_val_accuracy'])} | {fmt(row['final_val_accuracy'])} | {fmt(row['best_accuracy'])} | "
            f"{fmt(row['final_accuracy'])} | {fmt(row['final_val_loss'])} | {fmt(row['final_loss'])} | "
            f"{fmt(row['test_accuracy'])} | {row['training_seconds']:.1f} |"
        )
    return "\n".join(lines)


def interval(cell: dict[str, Any]) -> str:
    """mean ± std [95% CI] of one metric of a configuration, as far as its n allows."""
    if cell["mean"] is None:
        return "n/a"
    text = f"{cell['mean']:.4f}"
    if cell["std"] is not None:
        text += f" ± {cell['std']:.4f} [{cell['ci95_low']:.4f}, {cell['ci95_high']:.4f}]"
    return text


def versus(distinction: dict[str, Any] | None) -> str:
    if distinction is None:
        return "(last)"
    if distinction["p_value"] is None:
        return "not testable (n < 2)"
    verdict = "**distinguishable**" if distinction["distinguishable"] else "not distinguishable"
    return f"{verdict} (p = {distinction['p_value']:.3g})"


def configuration_table(sweep: dict[str, Any]) -> str:
    header = (
        "| rank | configuration | selected on | runs ok / asked | best val acc: mean ± std [95% CI] | "
        "test acc: mean ± std [95% CI] | collapsed | vs next, val (Welch) | vs next, test (Welch) |"
    )
    lines = [header, "|" + " --- |" * 9]
    for row in sweep["configurations"]:
        lines.append(
            f"| {fmt(row['rank'])} | {row['label']} | {row['selected_on']} | "
            f"{row['succeeded']} / {len(row['experiment_ids'])} | {interval(row['best_val_accuracy'])} | "
            f"{interval(row['test_accuracy'])} | {row['collapsed']} of {row['succeeded']} | "
            f"{versus(row['vs_next'])} | {versus(row['test_vs_next'])} |"
        )
    return "\n".join(lines)


def matrix_table(labels: list[str], matrix: list[list[int]]) -> str:
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|" + " --- |" * (len(labels) + 1)]
    lines += [
        f"| **{label}** | " + " | ".join(str(v) for v in row) + " |" for label, row in zip(labels, matrix, strict=True)
    ]
    return "\n".join(lines)


def report_table(report: dict[str, Any], labels: list[str]) -> str:
    lines = ["| class | precision | recall | f1-score | support |", "| --- | --- | --- | --- | --- |"]
    for key in [*labels, "macro avg", "weighted avg"]:
        r = report[key]
        lines.append(
            f"| {key} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1-score']:.4f} | {int(r['support'])} |"
        )
    lines.append(f"| accuracy | | | {report['accuracy']:.4f} | {int(report['macro avg']['support'])} |")
    return "\n".join(lines)


def backprop_section(client: Client) -> str:
    """The worked single-neuron example, every step as the service computes it (float64, shown to 17 digits)."""
    trace = client.backprop_single_neuron()
    given = trace["inputs"]
    examples = ", ".join(f"({e['x0']:g}, {e['x1']:g}, {e['y']:g})" for e in given["examples"])
    lines = [
        f"Start w0 = {given['w0']:g}, w1 = {given['w1']:g}, b = {given['b']:g}; "
        f"learning rate {given['learning_rate']:g}; examples (x0, x1, y) = {examples}; "
        f"{given['epochs']} epochs; L = (y_hat - y)^2, one example per step.",
        "",
        "| epoch | step | (x0, x1, y) | z | y_hat | loss | dL/dw0 | dL/dw1 | dL/db | w0, w1, b after |",
        "|" + " --- |" * 10,
    ]
    for step in trace["steps"]:
        after = step["weights_after"]
        cells = [
            str(step["epoch"]),
            str(step["step"]),
            f"({step['x0']:g}, {step['x1']:g}, {step['y']:g})",
            *(f"{step[key]:.17g}" for key in ("z", "y_hat", "loss", "grad_w0", "grad_w1", "grad_b")),
            f"{after['w0']:.17g}, {after['w1']:.17g}, {after['b']:.17g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    final = trace["final_weights"]
    lines += ["", f"Final weights: w0 = {final['w0']:.17g}, w1 = {final['w1']:.17g}, b = {final['b']:.17g}."]
    return "\n".join(lines)


def save(content: bytes, target: Path) -> str:
    target.write_bytes(content)
    return target.name


def wall_time(*sweeps: dict[str, Any]) -> float:
    """Seconds from the first experiment's creation to the last one's end, read from the service."""
    experiments = [e for sweep in sweeps for e in sweep["experiments"]]
    started = min(datetime.fromisoformat(e["created_at"]) for e in experiments)
    finished = max(datetime.fromisoformat(e["finished_at"]) for e in experiments if e["finished_at"])
    return (finished - started).total_seconds()


def without_resume(argv: list[str]) -> list[str]:
    """The command line that submits the sweeps: argv without a `--resume` option."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return kept


def validation_words(validation: str, test_split: str) -> str:
    held_out = f"best epoch selected on a stratified 10% of the training data, tested once on the {test_split}"
    course = f"best epoch selected on the {test_split}, which also tests it (selected on test)"
    return {"held_out": held_out, "test": course, "both": f"both ways side by side: {held_out}; and {course}"}[
        validation
    ]


def write_report(
    client: Client,
    mnist: dict[str, Any],
    cats: dict[str, Any],
    plan: Plan,
    out: Path,
    *,
    quick: bool,
    resumed: bool,
) -> Path:
    """Write homework.md and its PNGs into `out` from two finished sweeps."""
    out.mkdir(parents=True, exist_ok=True)
    # The best run selected on held-out data where there is one: a run selected on test has an optimistic figure.
    ranked = [r for r in mnist["comparison"] if r["rank"] is not None]
    best_row = next((r for r in ranked if r["validation"] == "held_out"), ranked[0] if ranked else None)
    if best_row is None:
        raise SystemExit("no MNIST experiment finished with validation results; see GET /sweeps/{id}")
    best_id = best_row["experiment_id"]
    evaluation = client.evaluation(best_id)
    labels = evaluation["confusion_matrix"]["labels"]
    images = {f"mnist_{m}": save(client.sweep_plot(mnist["id"], m), out / f"mnist_{m}.png") for m in SWEEP_METRICS}
    images |= {
        f"cats_{m}": save(client.sweep_plot(cats["id"], m), out / f"cats_vs_dogs_{m}.png") for m in SWEEP_METRICS
    }
    images["best_history"] = save(client.history_plot(best_id), out / "mnist_best_history.png")
    images["best_matrix"] = save(client.confusion_matrix_plot(best_id), out / "mnist_best_confusion_matrix.png")
    devices = sorted({str(e["device"]) for s in (mnist, cats) for e in s["experiments"]})
    command = "python " + " ".join(shlex.quote(a) for a in without_resume(sys.argv))
    resumed_note = (
        f" (this report was written from its sweeps with `--resume {mnist['id']},{cats['id']}`)" if resumed else ""
    )
    quick_note = "\n**Quick mode: small slices of the data, a smoke test, not results.**\n" if quick else ""
    text = f"""# The homework, run by Epochal
{quick_note}
- Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
- Command: `{command}` against a service started with `scripts/serve`{resumed_note}
- Client machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPU cores, \
Python {platform.python_version()}
- Trained on: {", ".join(devices)} (as reported by the workers), one worker, one job at a time
- Wall time from submitting the sweeps to the last result: {wall_time(mnist, cats) / 60:.1f} minutes
- Repeats: {plan.repeats} runs per configuration, repeat i with seed (42 + i x 1,000,003) mod 2^31.
- MNIST: {plan.mnist_epochs} epochs, batch {plan.mnist_batch_size}, \
train size {plan.mnist_train_size or "60,000 (all)"}, {validation_words(plan.mnist_validation, "10,000 test images")}, \
mlp 784-512-128-10.
- Cats vs dogs: {plan.cats_epochs} epochs, batch {plan.cats_batch_size}, rmsprop at {plan.cats_learning_rate}, \
train size {plan.cats_train_size or "2,000 (all)"}, \
{validation_words(plan.cats_validation, "1,000 validation images (the test split here)")}, convnet on 150x150 RGB.

How to read the configuration tables: each row is one configuration over its repeats. Ranked by mean
best validation accuracy (on held-out training data unless the row says "selected on test", whose
figures are then optimistic). Mean ± sample standard deviation, and the 95% confidence interval of the
mean (Student t, n - 1 degrees of freedom). "vs next" is Welch's two-sided t-test against the next row
at alpha 0.05: "not distinguishable" means these runs cannot tell the two apart, whatever the order.
"Collapsed": test accuracy within 1.5 points of chance (the majority-class rate, or 1 / classes).

## 1. Optimizers on MNIST (sweep {mnist["id"]})

{configuration_table(mnist)}

Every run, ranked by best validation accuracy; the best epoch's checkpoint is what was evaluated:

{ranked_table(mnist)}

![validation accuracy per optimizer]({images["mnist_val_accuracy"]})
![training accuracy per optimizer]({images["mnist_accuracy"]})
![validation loss per optimizer]({images["mnist_val_loss"]})
![training loss per optimizer]({images["mnist_loss"]})

### The best network: {best_row["label"]} (experiment {best_id})

`best_model.h5` (epoch {best_row["best_epoch"]}) reloaded and evaluated on the test set:
test loss **{fmt(evaluation["test_loss"])}**, test accuracy **{fmt(evaluation["test_accuracy"])}**.

![history of the best network]({images["best_history"]})

Confusion matrix (rows: true digit, columns: predicted digit):

{matrix_table(labels, evaluation["confusion_matrix"]["matrix"])}

![confusion matrix]({images["best_matrix"]})

Classification report:

{report_table(evaluation["classification_report"], labels)}

## 2. Output head and loss on cats vs dogs (sweep {cats["id"]})

Compared by accuracy: loss values of different losses are not comparable. Some configurations are
bad on purpose (a relu unit under mse, a softmax pair under mse); they are run and reported, not refused.

{configuration_table(cats)}

Every run:

{ranked_table(cats)}

![validation accuracy per head and loss]({images["cats_val_accuracy"]})
![training accuracy per head and loss]({images["cats_accuracy"]})
![validation loss per head and loss]({images["cats_val_loss"]})
![training loss per head and loss]({images["cats_loss"]})

## 3. Backpropagation by hand for one sigmoid neuron

From `POST /backprop/single-neuron` with no body (the tests check every step against
`tf.GradientTape`).

{backprop_section(client)}

## TensorBoard

Every run on its own and all runs of a sweep together:

```sh
curl -o mnist.tar.gz {client.url}/sweeps/{mnist["id"]}/tensorboard && mkdir -p tb && tar -xzf mnist.tar.gz -C tb
tensorboard --logdir tb
```
"""
    report = out / "homework.md"
    report.write_text(text)
    return report


def run(args: argparse.Namespace, plan: Plan) -> Path:
    with Client(args.url, args.key, timeout=120) as client:
        client.health()
        if args.resume:
            ids = [int(i) for i in args.resume.split(",")]
        else:
            ids = [client.create_sweep(body)["id"] for body in (plan.mnist_sweep(), plan.cats_sweep())]
            print(f"submitted sweeps {ids[0]} (MNIST optimizers) and {ids[1]} (cats vs dogs heads)", flush=True)
        mnist, cats = wait_for(client, ids, args.poll, args.timeout)
        return write_report(client, mnist, cats, plan, args.out, quick=args.quick, resumed=bool(args.resume))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--quick", action="store_true", help="small slices and one epoch: a smoke test")
    parser.add_argument("--mnist-epochs", type=int, default=10)
    parser.add_argument("--mnist-batch-size", type=int, default=128)
    parser.add_argument("--cats-epochs", type=int, default=12)
    parser.add_argument("--cats-batch-size", type=int, default=20)
    parser.add_argument("--cats-learning-rate", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, help="runs per configuration (default 3; --quick: 2)")
    parser.add_argument(
        "--validation",
        choices=sorted(VALIDATIONS),
        default="held_out",
        help="held_out: select the best epoch on held-out training data (default); test: on the test split, as "
        "the course did; both: each configuration both ways",
    )
    parser.add_argument("--mnist-validation", choices=sorted(VALIDATIONS), help="overrides --validation for MNIST")
    parser.add_argument("--cats-validation", choices=sorted(VALIDATIONS), help="overrides --validation for cats")
    parser.add_argument("--mnist-train-size", type=int, help="cap on MNIST training examples (default: all)")
    parser.add_argument("--cats-train-size", type=int, help="cap on cats vs dogs training examples (default: all)")
    parser.add_argument("--resume", help="report on existing sweeps MNIST_ID,CATS_ID instead of submitting")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between progress checks")
    parser.add_argument("--timeout", type=float, default=3 * 3600)
    parser.add_argument("--key", default=default_key(), help="API key; default: EPOCHAL_API_KEY or var/api-key")
    args = parser.parse_args()
    if not args.key:
        parser.error("no API key: pass --key, set EPOCHAL_API_KEY, or run where var/api-key is (scripts/serve made it)")
    plan = plan_from(args)
    try:
        report = run(args, plan)
    except EpochalError as error:
        # The request and the API's own message, as the script always said: enough to fix the cause.
        request = error.response.request if isinstance(error, ApiError) and error.response is not None else None
        raise SystemExit(f"{request.method} {request.url} -> {error}" if request else str(error)) from None
    print(f"wrote {report}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
