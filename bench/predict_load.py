"""Prediction throughput and latency over HTTP, with closed-loop clients: per serving runtime, batching on and off,
against the floor app, in one run.

    python bench/predict_load.py [--data-dir DIR] [--seconds 5] [--repeats 2] [--clients 1,4,16]
                                 [--batch-images 8] [--routes single,raw,alias,batch] [--processes 2]
                                 [--runtimes onnx,keras] [--no-batching-off] [--no-floor]
                                 [--before-tree DIR [--before-window-ms 2]]
    python bench/predict_load.py --url http://127.0.0.1:8000 --key KEY --experiment ID [--model REF]

By default it starts its own service (`python -m epochal serve` in a temporary state folder), trains a
1-epoch MNIST experiment, registers it as model `bench-digits` with its alias `production`, then starts API
processes on the same database: one per runtime of --runtimes with batching on (EPOCHAL_PREDICT_BATCH_WINDOW_MS=2;
"onnx" is EPOCHAL_SERVING_RUNTIME=auto, which serves this network through onnxruntime, checked in the API's
/metrics; "keras" is EPOCHAL_SERVING_RUNTIME=keras), one with batching off (0) in the first runtime unless
--no-batching-off, and one with batching on and --processes API processes behind its port (EPOCHAL_API_WORKERS).
The floor app (bench/floor_app.py) serves the same checkpoint beside them unless --no-floor. With --before-tree
(a checkout of an older commit), another API runs that code (batching off unless --before-window-ms). Rows
alternate between the servers, repeat by repeat, so each comparison sees the same machine load; each row is 1, 4,
16... clients sending one image per request (the single route: a multipart part; "raw": the image as the whole
body; "alias": the image as the whole body to /models/bench-digits@production/predictions) or --batch-images per
request (the batch route) for --seconds. Images are MNIST test digits as PNGs. Figures: images per second, request
latency percentiles, the CPU time the API process spent per request (steadier than throughput on a shared machine),
and each server on the raw and alias routes against the floor's raw route.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np
import psutil
from PIL import Image

from bench.load import Result, api_cpu_seconds, closed_loop, http_request, multipart
from epochal.commands import api_argv, with_this_python
from tests.datagen import write_mnist
from tests.processes import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
UNLIMITED = "1000000000"  # the per-user prediction rate: what is measured here is the service, not the quota
MODEL, ALIAS = "bench-digits", "production"
# What --runtimes names, as EPOCHAL_SERVING_RUNTIME: auto serves through onnxruntime where the export checks out.
RUNTIME_SETTINGS = {"onnx": "auto", "keras": "keras"}


@dataclass
class Server:
    label: str
    url: str
    batch_route: bool = True
    raw_route: bool = True  # takes an image as the whole body (Content-Type: image/png)
    multipart_route: bool = True  # takes an image as a multipart part
    alias_route: bool = True  # serves /models/{ref}/predictions
    raw_path: str | None = None  # where the raw body goes, when not the service's route
    pid: int | None = None  # the API process, when this script started it: its CPU time per request is reported

    def cpu_seconds(self) -> float:
        return api_cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        """The resident memory of the API this script started, its processes together (NaN otherwise)."""
        if self.pid is None:
            return float("nan")
        process = psutil.Process(self.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(True)]) / 2**20


def mnist_pngs(data_dir: Path | None, count: int) -> list[bytes]:
    """`count` MNIST test digits as PNG files (generated digits when there is no mnist.npz)."""
    path = data_dir / "mnist.npz" if data_dir else None
    if path is None or not path.exists():
        path = Path(tempfile.mkdtemp(prefix="epochal-bench-")) / "mnist.npz"
        write_mnist(path, train=200, test=count)
    with np.load(path) as arrays:
        digits = arrays["x_test"][:count]
    pngs = []
    for digit in digits:
        buffer = io.BytesIO()
        Image.fromarray(digit.astype("uint8"), mode="L").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def train_one(url: str, key: str, timeout_s: float = 600) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    spec = {"name": "bench predict_load", "dataset": "mnist", "epochs": 1, "batch_size": 128}
    created = httpx.post(f"{url}/experiments", json=spec, headers=headers, timeout=30)
    created.raise_for_status()
    experiment_id = int(created.json()["id"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/experiments/{experiment_id}", headers=headers, timeout=30).json()["status"]
        if status == "succeeded":
            return experiment_id
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"the training job ended {status}")
        time.sleep(1)
    raise RuntimeError("the training job did not finish in time")


@dataclass(frozen=True)
class Route:
    name: str
    images: int  # per request
    raw: bool = False  # the image as the whole body, not a multipart part
    alias: bool = False  # to the model's alias (/models/{ref}/predictions), not the experiment

    def served_by(self, server: Server) -> bool:
        if self.alias:
            return server.alias_route and server.raw_route
        if self.raw:
            return server.raw_route
        return (self.images == 1 and server.multipart_route) or (self.images > 1 and server.batch_route)


@dataclass(frozen=True)
class Target:
    """What the requests name: the experiment, and the model reference its alias route serves it under."""

    key: str
    experiment_id: int
    model: str | None


def requests_for(server: Server, target: Target, pngs: list[bytes], route: Route) -> list[bytes]:
    """Ready-to-send requests cycling through the digits, one image each or `route.images` on the batch route."""
    headers = {"Authorization": f"Bearer {target.key}"}
    experiment_id = target.experiment_id
    built = []
    for start in range(0, len(pngs), route.images):
        group = pngs[start : start + route.images]
        if route.alias:
            content_type, body = "image/png", group[0]
            path = f"/models/{target.model}/predictions"
        elif route.raw:
            content_type, body = "image/png", group[0]
            path = server.raw_path or f"/experiments/{experiment_id}/predictions"
        elif route.images == 1:
            content_type, body = multipart([("file", "digit.png", group[0])])
            path = f"/experiments/{experiment_id}/predictions"
        else:
            content_type, body = multipart([("files", f"digit{i}.png", png) for i, png in enumerate(group)])
            path = f"/experiments/{experiment_id}/predictions/batch"
        built.append(http_request(server.url, "POST", path, {**headers, "Content-Type": content_type}, body))
    return built


def row(route: str, clients: int, label: str, result: Result, images: int, cpu_ms: float) -> str:
    failed = sum(result.failures.values())
    note = f"  FAILED {failed} {result.failures} {result.failure_sample!r}" if failed else ""
    return (
        f"{route:16s} {clients:3d} clients  {label:28s} {result.per_second(images):8.0f} images/s "
        f"{result.per_second():7.0f} req/s  p50 {result.percentile(50):7.2f} ms  p99 {result.percentile(99):7.2f} ms"
        f"  API CPU {cpu_ms:5.2f} ms/req{note}"
    )


def measure(args: argparse.Namespace, servers: list[Server], target: Target, pngs: list[bytes]) -> None:
    known = {
        "single": Route("single", 1),
        "raw": Route("single, raw body", 1, raw=True),
        "alias": Route("alias, raw body", 1, raw=True, alias=True),
        "batch": Route(f"batch of {args.batch_images}", args.batch_images),
    }
    routes = [known[name] for name in args.routes.split(",")]
    if target.model is None:
        routes = [route for route in routes if not route.alias]
    clients = [int(c) for c in args.clients.split(",")]
    # Every server answers once first: loads the network, so no row pays for that.
    for server in servers:
        for route in routes:
            if route.served_by(server):
                closed_loop(server.url, requests_for(server, target, pngs, route), 1, 0.5)
    results: dict[tuple[str, int, str], list[Result]] = {}
    cpu: dict[tuple[str, int, str], list[float]] = {}
    print(f"{'route':16s} {'':11s}  {'server':28s} (one line per run; rows alternate between servers)", flush=True)
    for repeat in range(args.repeats):
        for count in clients:
            # Routes and servers alternate within each client count, so the rows compared sit side by side in time;
            # the order flips every repeat, so no row always runs right after the same neighbour.
            for route in routes if repeat % 2 == 0 else list(reversed(routes)):
                for server in servers if repeat % 2 == 0 else list(reversed(servers)):
                    if not route.served_by(server):
                        continue
                    built = requests_for(server, target, pngs, route)
                    cpu_before = server.cpu_seconds()
                    result = closed_loop(server.url, built, count, args.seconds)
                    # CPU time of the API process per answered request: steadier than throughput on a busy machine.
                    cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / max(1, result.requests)
                    results.setdefault((route.name, count, server.label), []).append(result)
                    cpu.setdefault((route.name, count, server.label), []).append(cpu_ms)
                    print(row(route.name, count, server.label, result, route.images, cpu_ms), flush=True)
    print(f"\nmedian over {args.repeats} repeats of {args.seconds:g} s:")
    images = {route.name: route.images for route in routes}
    for (route_name, count, label), runs in results.items():
        per_request = images[route_name]
        throughput = statistics.median(r.per_second(per_request) for r in runs)
        p50 = statistics.median(r.percentile(50) for r in runs)
        p99 = statistics.median(r.percentile(99) for r in runs)
        cpu_ms = statistics.median(cpu[(route_name, count, label)])
        figures = f"{throughput:8.0f} images/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  API CPU {cpu_ms:5.2f} ms/req"
        print(f"{route_name:16s} {count:3d} clients  {label:28s} {figures}")
    floor = [server for server in servers if server.label == FLOOR]
    if floor and "raw" in args.routes.split(","):
        labels = [s.label for s in servers if s.label != FLOOR]
        against = [route.name for route in routes if route.raw]
        print_ratios(results, known["raw"].name, against, clients, labels)
        print_summary(results, known["raw"].name, against, clients, labels)


FLOOR = "floor (minimal app)"


Figures = tuple[float, float, float]  # medians over the repeats: p50 (ms), p99 (ms), requests per second


def medians(runs: list[Result]) -> Figures:
    return (
        statistics.median(r.percentile(50) for r in runs),
        statistics.median(r.percentile(99) for r in runs),
        statistics.median(r.per_second() for r in runs),
    )


def print_ratios(
    results: dict[tuple[str, int, str], list[Result]],
    floor_route: str,
    routes: list[str],
    clients: list[int],
    labels: list[str],
) -> None:
    """Each server on each of `routes` against the floor on its raw route, medians over the repeats: what the
    service adds."""
    print(
        f"\nagainst the floor ({floor_route} to the floor; p50 and p99: service / floor, lower is better; "
        "throughput: service / floor)"
    )
    for count in clients:
        base = results.get((floor_route, count, FLOOR))
        if not base:
            continue
        floor_p50, floor_p99, floor_rate = medians(base)
        for route in routes:
            for label in labels:
                runs = results.get((route, count, label))
                if not runs:
                    continue
                p50, p99, rate = medians(runs)
                print(
                    f"{route:16s} {count:3d} clients  {label:28s} p50 x{p50 / floor_p50:5.2f}  "
                    f"p99 x{p99 / floor_p99:5.2f}  throughput x{rate / floor_rate:5.2f}"
                )


def print_summary(
    results: dict[tuple[str, int, str], list[Result]],
    floor_route: str,
    routes: list[str],
    clients: list[int],
    labels: list[str],
) -> None:
    """One line per route and server: the fewest clients' p50 and p99 and the most clients' throughput, each with
    its ratio to the floor's (a Markdown table)."""
    few, many = min(clients), max(clients)
    floor_few, floor_many = results.get((floor_route, few, FLOOR)), results.get((floor_route, many, FLOOR))
    if not floor_few or not floor_many:
        return
    (floor_p50, floor_p99, _), (_, _, floor_rate) = medians(floor_few), medians(floor_many)
    print(f"\n| route | server | {few} client p50 | {few} client p99 | {many} clients images/s |")
    print("|---|---|---|---|---|")
    print(f"| {floor_route} | {FLOOR} | {floor_p50:.2f} ms | {floor_p99:.2f} ms | {floor_rate:.0f} |")
    for route in routes:
        for label in labels:
            runs_few, runs_many = results.get((route, few, label)), results.get((route, many, label))
            if not runs_few or not runs_many:
                continue
            (p50, p99, _), (_, _, rate) = medians(runs_few), medians(runs_many)
            print(
                f"| {route} | {label} | {p50:.2f} ms ({p50 / floor_p50:.2f}x) | {p99:.2f} ms ({p99 / floor_p99:.2f}x) "
                f"| {rate:.0f} ({rate / floor_rate:.2f}x) |"
            )


def start_api(
    cwd: Path, env: dict[str, str], window_ms: str, older: bool = False, processes: int = 1, runtime: str = "onnx"
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    # This tree's API starts with its own command (epochal/commands.py). An older tree without the launcher starts
    # uvicorn as it did; one that also predates uvloop and httptools in its requirements gets what uvicorn picked
    # without them, not what it would "auto"-pick from this venv.
    argv = with_this_python(api_argv("127.0.0.1", port))
    if older and not (cwd / "epochal" / "api_server.py").exists():
        argv = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
        if "uvloop" in (cwd / "requirements" / "base.txt").read_text():
            argv += ["--loop", "uvloop", "--http", "httptools"]
        else:
            argv += ["--loop", "asyncio", "--http", "h11"]
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env={
            **env,
            "EPOCHAL_PREDICT_BATCH_WINDOW_MS": window_ms,
            "EPOCHAL_API_WORKERS": str(processes),
            "EPOCHAL_SERVING_RUNTIME": RUNTIME_SETTINGS[runtime],
        },
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    return url, process


def own_service(args: argparse.Namespace, folder: Path, pngs: list[bytes]) -> None:
    state = folder / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    env |= {
        "EPOCHAL_STATE_DIR": str(state),
        "EPOCHAL_PREDICTIONS_PER_SECOND": UNLIMITED,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if args.data_dir:
        env["EPOCHAL_DATA_DIR"] = str(Path(args.data_dir).resolve())
    else:
        write_mnist(folder / "data" / "mnist.npz", train=2000, test=200)
        env["EPOCHAL_DATA_DIR"] = str(folder / "data")
    port = free_port()
    log = (folder / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "epochal", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, serve)
        key = (state / "api-key").read_text().strip()
        started = time.monotonic()
        experiment_id = train_one(url, key)
        print(f"trained experiment {experiment_id} (1 epoch of MNIST) in {time.monotonic() - started:.0f} s")
        model = register_model(url, key, experiment_id)
        # More API processes on the same database and broker, differing only in what is compared.
        shared = env | {
            "EPOCHAL_DATABASE_URL": f"sqlite:///{state.resolve() / 'epochal.db'}",
            "EPOCHAL_BROKER_URL": f"redis+socket://{state.resolve() / 'broker.sock'}",
        }
        # Every side is an API process started the same way: only the runtime, the batching window or the number of
        # processes differs.
        runtimes = args.runtimes.split(",")
        servers = []
        for runtime in runtimes:
            on_url, on = start_api(ROOT, shared, "2", runtime=runtime)
            processes.append(on)
            servers.append(Server(f"{runtime}, batching on", on_url, pid=on.pid))
        if args.batching_off:
            off_url, off = start_api(ROOT, shared, "0", runtime=runtimes[0])
            processes.append(off)
            servers.append(Server(f"{runtimes[0]}, batching off", off_url, pid=off.pid))
        if args.processes > 1:
            many_url, many = start_api(ROOT, shared, "2", processes=args.processes, runtime=runtimes[0])
            processes.append(many)
            servers.append(Server(f"{runtimes[0]}, {args.processes} processes", many_url, pid=many.pid))
        if args.before_tree:
            tree = Path(args.before_tree).resolve()
            before_url, before = start_api(tree, shared, args.before_window_ms, older=True)
            processes.append(before)
            # The routes the older tree has, read from its source: the batch route and raw bodies came later.
            routes = (tree / "api" / "routers" / "predictions.py").read_text()
            batch_route, raw_route = "/predictions/batch" in routes, "image/png" in routes
            name = f"before (older tree, window {args.before_window_ms} ms)"
            alias_route = "/models/{ref}/predictions" in routes
            older = Server(
                name, before_url, batch_route=batch_route, raw_route=raw_route, alias_route=alias_route, pid=before.pid
            )
            servers.append(older)
        if args.floor:
            floor_url, floor_process = start_floor(url, key, experiment_id, folder, env)
            processes.append(floor_process)
            servers.append(
                Server(
                    FLOOR,
                    floor_url,
                    batch_route=False,
                    multipart_route=False,
                    alias_route=False,
                    raw_path="/predict",
                    pid=floor_process.pid,
                )
            )
        target = Target(key, experiment_id, model)
        measure(args, servers, target, pngs)
        check_runtimes([s for s in servers if s.label != FLOOR and s.pid is not None], key)
    except Exception:
        print((folder / "serve.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        stop_all([*processes, serve])


def register_model(url: str, key: str, experiment_id: int) -> str:
    """The experiment as version 1 of model MODEL, with ALIAS pointing at it: the reference the alias route takes."""
    headers = {"Authorization": f"Bearer {key}"}
    steps = [
        ("POST", "/models", {"name": MODEL}),
        ("POST", f"/models/{MODEL}/versions", {"experiment_id": experiment_id}),
        ("PUT", f"/models/{MODEL}/aliases/{ALIAS}", {"version": 1}),
    ]
    for method, path, body in steps:
        httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=30).raise_for_status()
    return f"{MODEL}@{ALIAS}"


def check_runtimes(servers: list[Server], key: str) -> None:
    """Which runtime each API loaded its networks in, from its /metrics: a server labelled onnx that fell back to
    Keras (its log says why) would measure Keras under the wrong name."""
    for server in servers:
        answer = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        answer.raise_for_status()
        loads = {
            line.split('runtime="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in answer.text.splitlines()
            if line.startswith("epochal_prediction_network_loads_total{")
        }
        loaded = ", ".join(f"{runtime} x{count:.0f}" for runtime, count in sorted(loads.items()) if count)
        expected = server.label.split(",")[0]
        note = "" if expected not in RUNTIME_SETTINGS or set(loads) - {expected} == set() else "  NOT AS LABELLED"
        print(f"{server.label:28s} loaded its networks in: {loaded or 'nothing'}{note}; RSS {server.rss_mib():.0f} MiB")


def start_floor(
    url: str, key: str, experiment_id: int, folder: Path, env: dict[str, str]
) -> tuple[str, subprocess.Popen[bytes]]:
    """The minimal app (bench/floor_app.py) serving the same checkpoint, downloaded from the service."""
    checkpoint = folder / "floor_model.h5"
    answer = httpx.get(
        f"{url}/experiments/{experiment_id}/artifacts/best_model.h5",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    answer.raise_for_status()
    checkpoint.write_bytes(answer.content)
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "floor_app.py"), str(checkpoint), "--port", str(port)]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    floor_url = f"http://127.0.0.1:{port}"
    wait_healthy(floor_url, process)
    return floor_url, process


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Ask every process to stop at once, then kill those still running after 30 s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service to measure (then --key and --experiment are needed)")
    parser.add_argument("--key", default=os.environ.get("EPOCHAL_API_KEY"))
    parser.add_argument("--experiment", type=int, help="a succeeded MNIST experiment of the running service")
    parser.add_argument("--model", help="with --url: a model reference serving it (NAME@ALIAS), for the alias route")
    parser.add_argument("--data-dir", help="a folder with mnist.npz (default: generated digits)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--batch-images", type=int, default=8)
    parser.add_argument(
        "--routes",
        default="single,raw,alias,batch",
        help="of single, raw (image as the body), alias (raw, to the model's alias), batch",
    )
    parser.add_argument(
        "--runtimes", default="onnx,keras", help="an API with batching on per runtime, of onnx and keras"
    )
    parser.add_argument(
        "--no-batching-off", dest="batching_off", action="store_false", help="without the API with batching off"
    )
    parser.add_argument("--processes", type=int, default=2, help="also an API of this many processes (1: none)")
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="without the minimal app (bench/floor_app.py) beside"
    )
    parser.add_argument("--before-tree", help="a checkout of older code, run as a third API for 'before' figures")
    parser.add_argument(
        "--before-window-ms", default="0", help="the older tree's batching window (default 0: as before batching)"
    )
    args = parser.parse_args()
    if unknown := set(args.runtimes.split(",")) - set(RUNTIME_SETTINGS):
        parser.error(f"--runtimes takes onnx and keras, not {', '.join(sorted(unknown))}")
    pngs = mnist_pngs(Path(args.data_dir) if args.data_dir else None, 64)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    if args.url:
        if not (args.key and args.experiment):
            parser.error("--url needs --key (or EPOCHAL_API_KEY) and --experiment")
        measure(args, [Server("as configured", args.url)], Target(args.key, args.experiment, args.model), pngs)
    else:
        with tempfile.TemporaryDirectory(prefix="epochal-predict-load-") as folder:
            own_service(args, Path(folder), pngs)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
