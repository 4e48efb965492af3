"""How long one prediction takes: Keras' `predict()` against the traced call the API uses.

    python bench/predict_latency.py [--calls 300]

Trains a small MNIST network on generated digits (no dataset needed), saves and reloads it as the
API does, then times single-image calls. Prints medians and the speed-up; compare ratios, not
absolute numbers, on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np

from tests.datagen import write_mnist
from training.prediction import Predictor
from training.runner import run_experiment
from training.spec import ExperimentSpec


def median_ms(call: Callable[[], object], calls: int) -> float:
    for _ in range(10):  # warm-up: tracing, first allocations
        call()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        write_mnist(data / "mnist.npz", train=1000, test=200)
        spec = ExperimentSpec(dataset="mnist", epochs=1, batch_size=64)  # type: ignore[arg-type]
        result = run_experiment(spec, data, data)
        assert result.checkpoint is not None
        network = keras.models.load_model(result.checkpoint, compile=False)
        predictor = Predictor.from_file(result.checkpoint, spec.info, spec.resolved_head.activation)
    image = np.random.default_rng(0).integers(0, 255, (1, 28, 28)).astype("float32")
    figures = {
        "model.predict(x)": median_ms(lambda: network.predict(image, verbose=0), args.calls),
        "model(x)": median_ms(lambda: network(image, training=False), args.calls),
        "Predictor (tf.function, as the API)": median_ms(lambda: predictor.predict_batch(image), args.calls),
    }
    for name, value in figures.items():
        print(f"{name:40s} median {value:8.3f} ms")
    speedup = figures["model.predict(x)"] / figures["Predictor (tf.function, as the API)"]
    print(f"speed-up of the API's call over predict(): {speedup:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
