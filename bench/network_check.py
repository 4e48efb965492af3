"""How long the network check takes for a 50-layer graph, the work POST /networks/check does on every call.

    python bench/network_check.py [--repeats 200]                    # in process: parse, check, answer
    python bench/network_check.py --url http://127.0.0.1:8000 --key KEY [--repeats 200]   # over HTTP

In process it times what the route does beyond the key check: validating the JSON body into the graph's models,
the check's arithmetic, and writing the answer as JSON. Over HTTP it times the whole request against a running API
(the key check's database read included). Prints the median and the 90th percentile of N calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def fifty_layers() -> dict[str, Any]:
    """A residual convnet with augmentation for cats_vs_dogs: 50 layers, 4 of them joins."""
    layers: list[dict[str, Any]] = [
        {"type": "RandomFlip", "mode": "horizontal"},
        {"type": "RandomRotation", "factor": 0.1},
        {"type": "Conv2D", "filters": 16, "kernel_size": 3, "strides": 2, "padding": "same"},
    ]
    for stage, filters in enumerate((16, 32, 64, 128)):
        entry = f"s{stage}"
        layers += [
            {"type": "Conv2D", "filters": filters, "kernel_size": 1, "name": entry},
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"},
            {"type": "SeparableConv2D", "filters": filters, "kernel_size": 3, "padding": "same"},
            {"type": "BatchNormalization"},
            {"type": "Activation", "activation": "relu"},
            {"type": "Conv2D", "filters": filters, "kernel_size": 3, "padding": "same"},
            {"type": "BatchNormalization"},
            {"type": "Add", "inputs": [entry, f"batch_normalization_{len(layers) + 7}"]},
            {"type": "Activation", "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
        ]
    layers += [
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dropout", "rate": 0.3},
        {"type": "Dense", "units": 64, "activation": "relu"},
    ]
    assert len(layers) == 50, len(layers)
    return {"network": {"layers": layers}, "dataset": "cats_vs_dogs", "batch_size": 32}


def in_process(body: bytes, repeats: int) -> list[float]:
    from api.routers.networks import check_network
    from api.schemas.networks import NetworkCheck
    from config import get_settings
    from models.users import User

    settings, caller = get_settings(), User()  # a caller without overrides: the settings' limits
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = check_network(NetworkCheck.model_validate_json(body), None, settings, caller)  # type: ignore[arg-type]
        answer.model_dump_json()
        seconds.append(time.perf_counter() - started)
    return seconds


def over_http(url: str, key: str, body: bytes, repeats: int) -> list[float]:
    import httpx

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    seconds = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        http.post("/networks/check", content=body).raise_for_status()  # a first call: connection, caches
        for _ in range(repeats):
            started = time.perf_counter()
            http.post("/networks/check", content=body).raise_for_status()
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--url")
    parser.add_argument("--key")
    args = parser.parse_args()
    body = json.dumps(fifty_layers()).encode()
    if args.url:
        seconds = over_http(args.url, args.key, body, args.repeats)
        where = f"over HTTP at {args.url}"
    else:
        in_process(body, 20)  # warm-up: pydantic's first validations build their caches
        seconds = in_process(body, args.repeats)
        where = "in process (validate, check, answer)"
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    print(f"50-layer network check, {where}: median {statistics.median(ms):.2f} ms, p90 {p90:.2f} ms, n={len(ms)}")


if __name__ == "__main__":
    main()
