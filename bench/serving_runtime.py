"""Which runtime should the API serve predictions with: Keras on TensorFlow (what it does now), or onnxruntime on the
ONNX export? Measured side by side on the same networks, in this process for speed and in fresh processes for
memory.

    python bench/serving_runtime.py [--calls 2000] [--networks mlp,convnet]

For each preset network (random weights, the shape is what matters: `mlp` on MNIST, `convnet` on cats vs dogs) it
writes the `best_model.h5` a worker would, exports it as ONNX the way `GET .../export?format=onnx` does
(training/exports.py), checks the two agree to 1e-5 on the same inputs, then times --calls calls of one image and of
a batch of 8 through each: `training.prediction.Predictor` (a `tf.function`, the API's model call) and an
`onnxruntime.InferenceSession` with one intra-op thread per core. Then, in a fresh process each, the peak memory of
importing the runtime and loading the network: what an API process pays before its first request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

# In a fresh process: import one runtime, load one network, call it once, print the peak RSS in MiB.
MEMORY_PROBE = """
import json, sys
runtime, path, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
import numpy as np
x = np.zeros((1, *shape), dtype="float32")
if runtime == "onnxruntime":
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: x})
else:
    import keras
    import tensorflow as tf
    network = keras.models.load_model(path, compile=False)
    call = tf.function(lambda v: network(v, training=False))
    call(tf.constant(x))
# VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's at the fork, and this parent holds TensorFlow.
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kib / 1024)
"""


def timed(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Median and p99 of `calls` calls, in ms, after 50 to warm up."""
    for _ in range(50):
        call()
    seconds = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    seconds.sort()
    return statistics.median(seconds) * 1e3, seconds[int(len(seconds) * 0.99) - 1] * 1e3


def peak_mib(runtime: str, path: Path, shape: tuple[int, ...]) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, runtime, str(path), json.dumps(list(shape))],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return float(result.stdout.strip().splitlines()[-1])


def measure(name: str, calls: int, folder: Path) -> list[str]:
    import onnxruntime

    from training.exports import ExportFormat, export_checkpoint
    from training.networks import build_network
    from training.prediction import Predictor
    from training.spec import ExperimentSpec

    dataset = "mnist" if name == "mlp" else "cats_vs_dogs"
    spec = ExperimentSpec.model_validate({"dataset": dataset, "network": name, "epochs": 1})
    checkpoint = folder / f"{name}.h5"
    build_network(spec).save(checkpoint)
    onnx_path = folder / f"{name}.onnx"
    onnx_path.write_bytes(export_checkpoint(checkpoint.read_bytes(), ExportFormat.ONNX).content)

    info = spec.info
    predictor = Predictor.from_file(checkpoint, info, spec.head.activation)  # type: ignore[union-attr]
    threads = os.cpu_count() or 1
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    lines = []
    for batch in (1, 8):
        x = rng.uniform(0, 255, (batch, *info.input_shape)).astype("float32")
        keras_out = predictor.predict_batch(x)
        onnx_out = session.run(None, {input_name: x})[0]
        difference = float(np.max(np.abs(keras_out - onnx_out)))
        tf_p50, tf_p99 = timed(partial(predictor.predict_batch, x), calls)
        ort_p50, ort_p99 = timed(partial(session.run, None, {input_name: x}), calls)
        lines.append(
            f"| {name} | {batch} | {tf_p50:.3f} / {tf_p99:.3f} | {ort_p50:.3f} / {ort_p99:.3f} | "
            f"{tf_p50 / ort_p50:.2f}x | {difference:.1e} |"
        )
    tf_mib = peak_mib("tensorflow", checkpoint, info.input_shape)
    ort_mib = peak_mib("onnxruntime", onnx_path, info.input_shape)
    lines.append(f"| {name} | memory | {tf_mib:.0f} MiB | {ort_mib:.0f} MiB | {tf_mib / ort_mib:.1f}x | |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls of each runtime per batch size")
    parser.add_argument("--networks", default="mlp,convnet", help="presets to measure, comma-separated")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    print("| network | batch | Keras/TF p50 / p99 (ms) | onnxruntime p50 / p99 (ms) | TF / ORT p50 | max abs diff |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="epochal-serving-runtime-") as folder:
        for name in args.networks.split(","):
            for line in measure(name.strip(), args.calls, Path(folder)):
                print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
