"""One user question answered with networks written as data: would a small convnet, or one with batch norm, beat
the homework's MNIST MLP?

    python bench/network_question.py --url http://127.0.0.1:8000 [--repeats 3] [--epochs 4] [--train-size 12000]

Against a running service (`scripts/serve`, with the real MNIST in its data folder for figures worth reading), over
HTTP only, through the Python client: it checks each network with POST /networks/check (parameters, FLOPs per
example, activation memory), submits one sweep whose `variants` are the three networks, each run --repeats times
with distinct seeds, waits for it, and prints (and with --out, writes) the sweep's configuration table: mean, std
and 95% confidence interval of the best held-out validation accuracy and of the test accuracy, and whether a Welch
t-test tells each configuration from the next.

The key comes from --key, else EPOCHAL_API_KEY, else the state folder's api-key (as bench/homework.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench.* lives at the root

import httpx

from bench.homework import interval, versus  # the homework report's cells, so both read alike
from epochal.client import Client, default_key

RESHAPE = {"type": "Reshape", "target_shape": [28, 28, 1]}
SMALL_CONVNET: dict[str, Any] = {
    "layers": [
        RESHAPE,
        {"type": "Conv2D", "filters": 16, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 64, "activation": "relu"},
    ]
}
# The same convnet with batch norm after each convolution, the activation moved after it (the usual order).
BATCH_NORM_CONVNET: dict[str, Any] = {
    "layers": [
        RESHAPE,
        {"type": "Conv2D", "filters": 16, "kernel_size": 3, "use_bias": False},
        {"type": "BatchNormalization"},
        {"type": "Activation", "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "use_bias": False},
        {"type": "BatchNormalization"},
        {"type": "Activation", "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 64, "activation": "relu"},
    ]
}
# Keras' default momentum (0.99) makes the moving statistics that inference uses lag training by about a hundred
# steps; a short run (75 steps an epoch at the defaults here) validates on statistics still far from the batches'.
FAST_BATCH_NORM_CONVNET: dict[str, Any] = {
    "layers": [
        {**layer, "momentum": 0.9} if layer["type"] == "BatchNormalization" else layer
        for layer in BATCH_NORM_CONVNET["layers"]
    ]
}
NETWORKS: dict[str, Any] = {
    "homework MLP (preset mlp)": "mlp",
    "small convnet": SMALL_CONVNET,
    "convnet + batch norm (momentum 0.99)": BATCH_NORM_CONVNET,
    "convnet + batch norm (momentum 0.9)": FAST_BATCH_NORM_CONVNET,
}


def shape_of(network: Any) -> Any:
    """What tells the networks apart as the service answers them back (with every argument's default filled in)."""
    if isinstance(network, str):
        return network
    return tuple((layer["type"], layer.get("momentum", 0.99)) for layer in network["layers"])


def check_table(http: httpx.Client, base: dict[str, Any]) -> str:
    lines = [
        "| network | parameters | FLOPs per example | activation memory per training batch |",
        "|---|---|---|---|",
    ]
    for name, network in NETWORKS.items():
        body = {"network": network, "dataset": base["dataset"], "batch_size": base["batch_size"]}
        answer = http.post("/networks/check", json=body)
        answer.raise_for_status()
        figures = answer.json()["figures"]
        lines.append(
            f"| {name} | {figures['total_params']:,} | {figures['flops_per_example']:,} | "
            f"{figures['activation_bytes_training'] / 2**20:.1f} MiB |"
        )
    return "\n".join(lines)


def configuration_table(sweep: dict[str, Any], names: dict[int, str]) -> str:
    lines = [
        "| rank | network | runs ok / asked | best val acc: mean ± std [95% CI] | test acc: mean ± std [95% CI] | "
        "vs next, val (Welch) | vs next, test (Welch) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sweep["configurations"]:
        lines.append(
            f"| {row['rank']} | {names[row['experiment_ids'][0]]} | "
            f"{row['succeeded']} / {len(row['experiment_ids'])} | "
            f"{interval(row['best_val_accuracy'])} | {interval(row['test_accuracy'])} | {versus(row['vs_next'])} | "
            f"{versus(row['test_vs_next'])} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=default_key(), help="API key; default: EPOCHAL_API_KEY or var/api-key")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=12000, help="MNIST training examples (default 12000)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, help="write the tables to this Markdown file too")
    args = parser.parse_args()
    client = Client(args.url, args.key)
    http = httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {args.key}"}, timeout=60)
    base = {
        "dataset": "mnist",
        "optimizer": "adam",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_size": args.train_size,
    }
    checks = check_table(http, base)
    print(checks, flush=True)
    variants = [{"network": network} for network in NETWORKS.values()]
    created = client.create_sweep(name="mlp vs convnets", base=base, grid={"variants": variants}, repeats=args.repeats)
    began, deadline = time.monotonic(), time.monotonic() + args.timeout
    while True:
        sweep: Any = client.sweep(created["id"])
        states = [e["status"] for e in sweep["experiments"]]
        done = sum(s in {"succeeded", "failed", "cancelled"} for s in states)
        print(f"{time.monotonic() - began:6.0f} s: {done} of {len(states)} finished", flush=True)
        if done == len(states):
            break
        if time.monotonic() > deadline:
            print("timed out", file=sys.stderr)
            return 1
        time.sleep(10)
    by_shape = {shape_of(network): name for name, network in NETWORKS.items()}
    names = {e["id"]: by_shape[shape_of(e["network"])] for e in sweep["experiments"]}
    table = configuration_table(sweep, names)
    print(table)
    wall = time.monotonic() - began
    print(f"{len(states)} runs in {wall:.0f} s")
    if args.out:
        args.out.write_text(
            f"{checks}\n\n{table}\n\n{len(states)} runs, {args.repeats} per network, in {wall:.0f} s of wall time.\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
