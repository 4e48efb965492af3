"""Where an MLP epoch's time goes: plain Keras against the service's training loop, in one process.

    python bench/epoch_steps.py [--data-dir DIR] [--rounds 5] [--batch-size 128]

Each round trains one epoch of every variant in turn, so they share the machine's noise:
  - plain Keras: `fit()` on numpy arrays, Keras' defaults (one step per call, no XLA on a CPU);
  - the service's pipeline (training/data.py), one step per call;
  - the same, 32 steps per call (the service's default for the MLP);
  - the same, 32 steps per call and XLA.
It prints the median epoch over rounds 2.. (round 1 includes tracing and compilation, reported
separately) and the ratio to plain Keras. A last, profiled epoch of each (cProfile; it slows Python,
so it is not timed with the others) splits the time between TensorFlow's executor (the compiled
steps and validation) and everything else: the Python that runs between calls (callbacks,
iterators, dispatch).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np

from training.data import load_splits
from training.networks import STEPS_PER_EXECUTION, build_network, compile_network
from training.spec import ExperimentSpec

EXECUTE = "TFE_Py_Execute"


def executor_seconds(profile: cProfile.Profile) -> float:
    stats = pstats.Stats(profile)
    return sum(
        row[2]  # total time of the built-in itself
        for (_file, _line, name), row in stats.stats.items()  # type: ignore[attr-defined]
        if EXECUTE in name
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EPOCHAL_DATA_DIR", "data")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    spec = ExperimentSpec.model_validate(
        {"dataset": "mnist", "optimizer": "adam", "batch_size": args.batch_size, "validation": "test"}
    )
    with np.load(args.data_dir / "mnist.npz") as f:
        x, y, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    splits = load_splits(spec, args.data_dir)
    variants: dict[str, tuple[bool, bool, int]] = {  # name: (plain arrays, XLA, steps per call)
        "plain Keras (arrays, defaults)": (True, False, 1),
        "service pipeline, 1 step/call": (False, False, 1),
        f"service pipeline, {STEPS_PER_EXECUTION} steps/call": (False, False, STEPS_PER_EXECUTION),
        f"service pipeline, {STEPS_PER_EXECUTION} steps/call, XLA": (False, True, STEPS_PER_EXECUTION),
    }
    networks = {}
    for name, (_plain, jit, steps) in variants.items():
        keras.utils.set_random_seed(spec.seed)
        networks[name] = compile_network(build_network(spec), spec, jit_compile=jit, steps_per_execution=steps)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outside: dict[str, float] = {}

    def epoch(name: str, index: int) -> None:
        plain, network = variants[name][0], networks[name]
        fit_args: dict[str, Any] = {"epochs": index + 1, "initial_epoch": index, "verbose": 0}
        if plain:
            network.fit(x, y, batch_size=args.batch_size, validation_data=(x_test, y_test), **fit_args)
        else:
            network.fit(
                splits.train.epochs(index, index + 1),
                steps_per_epoch=splits.train.steps_per_epoch,
                validation_data=splits.validation,
                shuffle=False,
                **fit_args,
            )

    for round_ in range(args.rounds):
        for name in variants:
            started = time.perf_counter()
            epoch(name, round_)
            seconds[name].append(time.perf_counter() - started)
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{s[-1]:.2f}" for s in seconds.values()), flush=True)
    for name in variants:
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        epoch(name, args.rounds)
        profile.disable()
        elapsed = time.perf_counter() - started
        outside[name] = (elapsed - executor_seconds(profile)) / elapsed
    base = statistics.median(seconds["plain Keras (arrays, defaults)"][1:])
    print(f"\n{os.cpu_count()} CPUs, MNIST MLP, batch {args.batch_size}, one epoch = 60k train + 10k validation")
    print(f"{'variant':<46} {'first':>7} {'median':>7} {'ratio':>6}  outside the TF executor (profiled)")
    for name in variants:
        median = statistics.median(seconds[name][1:])
        print(f"{name:<46} {seconds[name][0]:6.2f}s {median:6.2f}s {median / base:5.2f}x  {outside[name]:4.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
