"""What one user's open event streams, and a flood of large images, cost everyone else: on loopback, bounded.

    python bench/abuse_load.py [--streams 64] [--seconds 8] [--clients 4] [--flood-seconds 10]
                               [--before-tree DIR]

It starts its own service (`python -m epochal serve` in a temporary state folder), trains a 1-epoch MNIST
experiment (predictions need one), then starts an API process of this tree on the same database and broker
(and, with --before-tree, one of an older checkout), on a queue no worker serves, so the experiments the
streams follow stay queued and their streams stay open. For each API:

(a) Streams. A bystander's GET /me and GET /experiments latency (closed loop, --clients clients, --seconds)
    with no streams open, then with --streams streams open by another user, sent --settle-s before (the
    per-user cap is raised to that many for the run; one more is then asked for, to show the cap's 429).
    Rows alternate, twice (once for the older tree, whose every row waits out the pool's timeout).
(b) Decoding. A flood of 6000 x 6600 16-bit grey PNGs (80 KB each, 75.5 MiB of pixels) in batches of 20
    on the batch route, then of 6000 x 6600 8-bit grey PNGs (37.8 MiB each, under the per-image cap) in
    batches of 5, each for --flood-seconds: the answers by status, the API process's peak resident memory
    (sampled every 5 ms) and the CPU time it spent.

Figures go to stdout; docs/results/abuse.md has a run.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
from PIL import Image

from bench.load import Result, api_cpu_seconds, closed_loop, http_request, multipart
from bench.predict_load import UNLIMITED, start_api, stop_all, train_one
from tests.datagen import write_mnist
from tests.image_corpus import deep_png
from tests.processes import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
IDLE_QUEUE = "bench-idle"  # no worker serves it: the followed experiments stay queued, their streams open


@dataclass
class Api:
    label: str
    url: str
    pid: int


class PeakMemory:
    """Samples a process's resident memory every 5 ms in a background thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send_stream_request(url: str, path: str, key: str, timeout_s: float = 60) -> socket.socket:
    """A GET of an event stream sent on its own connection, its answer not read yet."""
    parsed = httpx.URL(url)
    assert parsed.port is not None
    connection = socket.create_connection((parsed.host, parsed.port), timeout=timeout_s)
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    return connection


def answer_status(connection: socket.socket) -> int:
    """The status of the answer on `connection` (0 when it closed or timed out before one came)."""
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            chunk = connection.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError:
        return 0
    return int(head.split(b" ", 2)[1]) if head else 0


@contextmanager
def streams_open(api: Api, path: str, key: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` stream requests of `path` sent at once, their answers not awaited (a server that cannot answer them
    all at once keeps the rest waiting while other users are measured). Closed on exit."""
    connections = [send_stream_request(api.url, path, key) for _ in range(count)]
    try:
        yield connections
    finally:
        for connection in connections:
            connection.close()


def latency_row(label: str, result: Result) -> str:
    failed = sum(result.failures.values())
    note = f"  FAILED {failed} {result.failures} {result.failure_sample[:120]!r}" if failed else ""
    return (
        f"  {label:34s} {result.requests:6d} answered  p50 {result.percentile(50):8.2f} ms  "
        f"p99 {result.percentile(99):8.2f} ms{note}"
    )


def measure_streams(
    args: argparse.Namespace, api: Api, streamer: str, bystander: str, experiment_id: int, repeats: int
) -> None:
    requests = [
        http_request(api.url, "GET", "/me", {"Authorization": f"Bearer {bystander}"}, b""),
        http_request(api.url, "GET", "/experiments?limit=10", {"Authorization": f"Bearer {bystander}"}, b""),
    ]
    path = f"/experiments/{experiment_id}/events"
    closed_loop(api.url, requests, 1, 0.5)  # warm: the key's first use, the pool's first connections
    results: dict[str, list[Result]] = {"without streams": [], f"with {args.streams} streams open": []}
    print(f"\n{api.label}: a bystander's GET /me and GET /experiments, {args.clients} clients, {args.seconds:g} s")
    for _repeat in range(repeats):
        quiet = closed_loop(api.url, requests, args.clients, args.seconds)
        results["without streams"].append(quiet)
        print(latency_row("without streams", quiet), flush=True)
        with streams_open(api, path, streamer, args.streams) as connections:
            # Open and held, as the target has them: the opening of 64 at once is a burst of its own.
            time.sleep(args.settle_s)
            busy = closed_loop(api.url, requests, args.clients, args.seconds)
            statuses = [answer_status(connection) for connection in connections]
            counts = {status: statuses.count(status) for status in sorted(set(statuses))}
            label = f"with {args.streams} streams open"
            results[label].append(busy)
            print(latency_row(label, busy) + f"  (the streams' answers: {counts})", flush=True)
            extra = send_stream_request(api.url, path, streamer, timeout_s=40)
            print(f"  one stream more for the same user: {answer_status(extra)}", flush=True)
            extra.close()
    for label, runs in results.items():
        p50 = statistics.median(r.percentile(50) for r in runs)
        p99 = statistics.median(r.percentile(99) for r in runs)
        print(f"  median of {repeats}, {label:28s} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms")


def measure_flood(args: argparse.Namespace, api: Api, key: str, experiment_id: int) -> None:
    floods = [
        ("16-bit 6000 x 6600 PNGs, batches of 20", deep_png(), 20),
        ("8-bit 6000 x 6600 PNGs, batches of 5", deep_png(depth=8), 5),
    ]
    # One ordinary prediction first: TensorFlow and the network are loaded before the memory is measured.
    digit = io.BytesIO()
    Image.new("L", (28, 28)).save(digit, format="PNG")
    warm = httpx.post(
        f"{api.url}/experiments/{experiment_id}/predictions",
        files={"file": ("digit.png", digit.getvalue(), "image/png")},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    warm.raise_for_status()
    print(f"\n{api.label}: floods on the batch route, {args.flood_clients} clients, {args.flood_seconds:g} s each")
    for label, image, per_batch in floods:
        content_type, body = multipart([("files", f"big{i}.png", image) for i in range(per_batch)])
        headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
        request = http_request(api.url, "POST", f"/experiments/{experiment_id}/predictions/batch", headers, body)
        cpu_before = api_cpu_seconds(api.pid)
        with PeakMemory(api.pid) as memory:
            result = closed_loop(api.url, [request], args.flood_clients, args.flood_seconds)
        cpu = api_cpu_seconds(api.pid) - cpu_before
        answers = {200: result.requests, **result.failures}
        print(
            f"  {label:40s} {len(body) / 1e6:5.2f} MB a request; answers {answers}; API resident "
            f"{memory.start / MiB:5.0f} MiB before, peak {memory.peak / MiB:5.0f} MiB "
            f"(+{(memory.peak - memory.start) / MiB:5.0f}); API CPU {cpu:5.1f} s in {result.seconds:4.1f} s"
            + (f"; a refusal: {result.failure_sample[:160]!r}" if result.failures else ""),
            flush=True,
        )


def new_user(url: str, admin_key: str, name: str) -> str:
    response = httpx.post(f"{url}/users", json={"name": name}, headers={"Authorization": f"Bearer {admin_key}"})
    response.raise_for_status()
    return str(response.json()["api_key"])


def run(args: argparse.Namespace, folder: Path) -> None:
    state = folder / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    env |= {"EPOCHAL_STATE_DIR": str(state), "EPOCHAL_PREDICTIONS_PER_SECOND": UNLIMITED, "TF_CPP_MIN_LOG_LEVEL": "2"}
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
        admin = (state / "api-key").read_text().strip()
        trained = train_one(url, admin)
        streamer, bystander = new_user(url, admin, "streamer"), new_user(url, admin, "bystander")
        shared = env | {
            "EPOCHAL_DATABASE_URL": f"sqlite:///{state.resolve() / 'epochal.db'}",
            "EPOCHAL_BROKER_URL": f"redis+socket://{state.resolve() / 'broker.sock'}",
            "EPOCHAL_DEFAULT_QUEUE": IDLE_QUEUE,
            "EPOCHAL_QUEUES": IDLE_QUEUE,
            "EPOCHAL_MAX_STREAMS_PER_USER": str(args.streams),
        }
        apis = []
        after_url, after = start_api(ROOT, shared, "2")
        processes.append(after)
        apis.append(Api("this tree", after_url, after.pid))
        if args.before_tree:
            before_url, before = start_api(Path(args.before_tree).resolve(), shared, "2", older=True)
            processes.append(before)
            apis.append(Api("before (older tree)", before_url, before.pid))
        for api in apis:
            created = httpx.post(
                f"{api.url}/experiments",
                json={"name": "followed", "dataset": "mnist"},
                headers={"Authorization": f"Bearer {streamer}"},
            )
            created.raise_for_status()
            # The older tree once: with its streams holding the pool, each row waits out the pool's 30 s timeout.
            repeats = 2 if api.label == "this tree" else 1
            measure_streams(args, api, streamer, bystander, int(created.json()["id"]), repeats)
            measure_flood(args, api, admin, trained)
    except Exception:
        print((folder / "serve.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        stop_all([*processes, serve])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--settle-s", type=float, default=3.0, help="from sending the streams to measuring")
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--flood-clients", type=int, default=2)
    parser.add_argument("--before-tree", help="a checkout of older code, measured the same way after this tree")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="epochal-abuse-load-") as folder:
        run(args, Path(folder))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
