"""Training through the service against plain Keras on the same spec, side by side in one run.

    python bench/overhead.py --url http://127.0.0.1:8000 [--rounds 3] [--data-dir DIR] [--skip-convnet]

Each round runs, one after the other (never at once, so they do not share the CPU):
  1. plain Keras in a fresh Python process, as a user's script would: numpy arrays and `fit()` for
     the MNIST MLP; `image_dataset_from_directory` for the cats-vs-dogs convnet;
  2. the same spec as a job through the service, with the service's defaults (on a CPU: no XLA, the
     same computation as plain Keras);
  3. for the MLP, the same spec with XLA on (the default on a GPU).
It prints seconds per epoch (epochs 2.., which excludes tracing and compilation: the lower quartile
over the rounds) and whole-run times (script start to evaluation; POST to `succeeded`), and their
ratios to plain Keras. The service must serve the default queue with an idle worker. The API key
comes from --key, else EPOCHAL_API_KEY, else <EPOCHAL_STATE_DIR>/api-key (var/ by default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from epochal.client import Client

PLAIN_MLP = r"""
import json, sys, time
started = time.perf_counter()
import keras, numpy as np
data_dir, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with np.load(f"{data_dir}/mnist.npz") as f:
    x, y, xt, yt = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
keras.utils.set_random_seed(42)
inputs = keras.Input((28, 28))
h = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
h = keras.layers.Dense(128, activation="relu")(keras.layers.Dense(512, activation="relu")(h))
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
seconds = []
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): seconds.append(time.perf_counter() - self.t)
model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=(xt, yt), callbacks=[Clock()], verbose=0)
loss, accuracy = model.evaluate(xt, yt, verbose=0)
print(json.dumps({"epoch_seconds": seconds, "total_s": time.perf_counter() - started, "test_accuracy": accuracy}))
"""

PLAIN_CONVNET = r"""
import json, sys, time
started = time.perf_counter()
import keras
data_dir, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
root = f"{data_dir}/cats_vs_dogs"
train = keras.utils.image_dataset_from_directory(
    f"{root}/train", image_size=(150, 150), batch_size=batch, label_mode="binary", seed=42, verbose=False)
validation = keras.utils.image_dataset_from_directory(
    f"{root}/validation", image_size=(150, 150), batch_size=batch, label_mode="binary", shuffle=False, verbose=False)
keras.utils.set_random_seed(42)
inputs = keras.Input((150, 150, 3))
h = keras.layers.Rescaling(1 / 255)(inputs)
for filters in (32, 64, 128, 128):
    h = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(filters, 3, activation="relu")(h))
h = keras.layers.Dense(512, activation="relu")(keras.layers.Flatten()(h))
model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="binary_crossentropy", metrics=["accuracy"])
seconds = []
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): seconds.append(time.perf_counter() - self.t)
model.fit(train, epochs=epochs, validation_data=validation, callbacks=[Clock()], verbose=0)
loss, accuracy = model.evaluate(validation, verbose=0)
print(json.dumps({"epoch_seconds": seconds, "total_s": time.perf_counter() - started, "test_accuracy": accuracy}))
"""


def default_key() -> str | None:
    if os.environ.get("EPOCHAL_API_KEY"):
        return os.environ["EPOCHAL_API_KEY"]
    key_file = Path(os.environ.get("EPOCHAL_STATE_DIR", "var")) / "api-key"
    return key_file.read_text().strip() if key_file.is_file() else None


def plain(script: str, data_dir: Path, epochs: int, batch: int) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-c", script, str(data_dir), str(epochs), str(batch)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True, timeout=3600)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def service(client: Client, spec: dict[str, Any]) -> dict[str, Any]:
    """One job, POST to its end, followed on the event stream as a user's `epochal run --watch` would.

    Not by polling: a GET every few milliseconds would take API CPU from the training it measures.
    """
    started = time.perf_counter()
    experiment = client.submit(spec)
    for progress in client.watch(experiment["id"]):
        if progress.finished:
            experiment = progress.experiment
            break
    total = time.perf_counter() - started
    if experiment["status"] != "succeeded":
        raise SystemExit(f"experiment {experiment['id']} ended {experiment['status']}: {experiment['error']}")
    return {
        "epoch_seconds": [m["seconds"] for m in client.metrics(experiment["id"])],
        "total_s": total,
        "test_accuracy": experiment["summary"]["test_accuracy"],
    }


def lower_quartile(values: list[float]) -> float:
    return statistics.quantiles(values, n=4)[0] if len(values) >= 2 else values[0]


def compare(name: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n{name}: seconds per epoch (epochs 2.., lower quartile), whole run (best round), ratio to plain")
    base_epoch = lower_quartile([s for r in runs["plain Keras"] for s in r["epoch_seconds"][1:]])
    base_total = min(r["total_s"] for r in runs["plain Keras"])
    for side, results in runs.items():
        epoch = lower_quartile([s for r in results for s in r["epoch_seconds"][1:]])
        total = min(r["total_s"] for r in results)
        accuracy = statistics.mean(r["test_accuracy"] for r in results)
        print(
            f"  {side:<24} {epoch:7.3f} s/epoch ({epoch / base_epoch:4.2f}x)   "
            f"{total:6.1f} s whole ({total / base_total:4.2f}x, +{total - base_total:4.1f} s)   "
            f"test accuracy {accuracy:.4f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=default_key())
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EPOCHAL_DATA_DIR", "data")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mlp-epochs", type=int, default=4)
    parser.add_argument("--convnet-epochs", type=int, default=3)
    parser.add_argument("--convnet-rounds", type=int, default=2)
    parser.add_argument("--skip-convnet", action="store_true")
    args = parser.parse_args()
    if not args.key:
        raise SystemExit("no API key: pass --key, set EPOCHAL_API_KEY, or run where the service wrote var/api-key")
    mlp = {"dataset": "mnist", "optimizer": "adam", "epochs": args.mlp_epochs, "batch_size": 128, "validation": "test"}
    cats = {
        "dataset": "cats_vs_dogs",
        "optimizer": "rmsprop",
        "learning_rate": 1e-4,
        "head": {"units": 1, "activation": "sigmoid"},
        "loss": "binary_crossentropy",
        "epochs": args.convnet_epochs,
        "batch_size": 20,
        "validation": "test",
    }
    print(f"{os.cpu_count()} CPUs; {args.rounds} MLP rounds, {args.convnet_rounds} convnet rounds, alternating")
    with Client(args.url, args.key) as client:
        mlp_sides = {"service, defaults": mlp, "service, XLA on": {**mlp, "jit_compile": True}}
        benches = [("MNIST MLP, batch 128", PLAIN_MLP, mlp_sides, args.rounds, args.mlp_epochs, 128)]
        if not args.skip_convnet:
            benches.append(
                (
                    "cats vs dogs convnet, batch 20",
                    PLAIN_CONVNET,
                    {"service, defaults": cats},
                    args.convnet_rounds,
                    args.convnet_epochs,
                    20,
                )
            )
        for name, script, sides, rounds, epochs, batch in benches:
            runs: dict[str, list[dict[str, Any]]] = {"plain Keras": [], **{side: [] for side in sides}}
            for round_ in range(1, rounds + 1):
                runs["plain Keras"].append(plain(script, args.data_dir, epochs, batch))
                for side, spec in sides.items():
                    runs[side].append(service(client, spec))
                print(f"{name}: round {round_}/{rounds} done", flush=True)
            compare(name, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
