"""Fair share under load: one user's backlog, then many users submitting a sweep each at once.

    python bench/fair_load.py [--users 30] [--heavy-jobs 100] [--sweep-size 3] [--slots 2]
                              [--epochs 1] [--train-size 300] [--batch-size 64] [--warm-up 1] [--data-dir DIR]
                              [--keep-state]

It starts its own service (`python -m epochal serve` in a temporary state folder, SQLite and the embedded broker)
with --slots slots on its queue and as many training processes (serve's worker, and one more worker of
--slots - 1 processes on the same database and broker). The jobs are tiny MNIST runs (generated digits unless
--data-dir has mnist.npz): a few seconds each, most of it the training process starting TensorFlow.

1. One user ("heavy") submits --heavy-jobs jobs. Once the first --warm-up of them have finished (1 by default: the
   queue has an epoch time to estimate by; with more than --slots, it has also seen a freed slot handed to a waiting
   job, the handover the estimate counts per turn), the script prints how long a job takes.
2. --users users each submit a sweep of --sweep-size jobs, all at the same moment (a barrier); right after its
   submission each reads its first job (GET /experiments/{id}): its position and estimated start.
3. It waits until every user's first job has started, then until those have finished, cancels everything left and
   stops the service.

Printed per user: the first job's position at submission, the estimated start and the real one (seconds after
its submission), the wait in job lengths, and the fair bound: with p-1 jobs ahead of it and s slots, each slot frees
at least once per job length, so the job should start within ceil(p / s) job lengths (the "one job length after a
free slot" of every slot-turn ahead of it); the estimate's error (real start minus estimate); and the slot lag, the
first job's start less the latest end of any job before it (how long a freed slot stayed empty). Then the order in
which jobs started after the sweeps came in, and what first come, first served would have made the first newcomer
wait (the heavy user's backlog at that moment / slots). --keep-state keeps the service's folder and logs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.predict_load import stop_all
from epochal.commands import with_this_python, worker_argv
from tests.datagen import write_mnist
from tests.processes import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "training"  # serve's default queue
FINISHED = {"succeeded", "failed", "cancelled"}


def when(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


@dataclass
class Account:
    name: str
    key: str
    http: httpx.Client


@dataclass
class FirstJob:
    """A user's first job of their sweep, as read right after the submission and as it turned out."""

    user: str
    sweep_id: int
    experiment_id: int
    submitted: float  # the API's created_at
    position: int | None
    estimated_start: float | None
    started: float | None = None
    finished: float | None = None


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def make_user(admin: httpx.Client, url: str, name: str, quota: int) -> Account:
    """A new user (not an admin) with room for `quota` jobs queued or running."""
    created = admin.post("/users", json={"name": name})
    created.raise_for_status()
    body = created.json()
    admin.patch(f"/users/{body['id']}", json={"max_active_jobs": quota}).raise_for_status()
    key = str(body["api_key"])
    return Account(name, key, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60))


def spec(args: argparse.Namespace, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": "mnist",
        "epochs": args.epochs,
        "train_size": args.train_size,
        "batch_size": args.batch_size,
    }


def wait_for(check: Any, timeout_s: float, interval_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval_s)
    return None


def submit_sweep(account: Account, args: argparse.Namespace, barrier: threading.Barrier) -> FirstJob:
    rates = [round(0.001 * (i + 1), 6) for i in range(args.sweep_size)]
    body = {
        "name": f"{account.name} sweep",
        "base": spec(args, f"{account.name} sweep"),
        "grid": {"learning_rate": rates},
    }
    barrier.wait()
    created = account.http.post("/sweeps", json=body)
    if created.status_code != 202:
        raise RuntimeError(f"{account.name}: sweep refused: {created.status_code} {created.text}")
    sweep = created.json()
    first = min(sweep["experiments"], key=lambda e: e["id"])
    read = account.http.get(f"/experiments/{first['id']}").json()  # where it stands, read at submission
    return FirstJob(
        account.name,
        sweep["id"],
        first["id"],
        when(first["created_at"]) or time.time(),
        read.get("queue_position"),
        when(read.get("estimated_start")),
        when(read.get("started_at")),
    )


def refresh(accounts: dict[str, Account], firsts: list[FirstJob]) -> None:
    """Read each first job's start and end from its sweep's list (cheap: a list works out no positions)."""

    def one(first: FirstJob) -> None:
        page = accounts[first.user].http.get("/experiments", params={"sweep_id": first.sweep_id, "limit": 500})
        for item in page.json()["items"]:
            if item["id"] == first.experiment_id:
                first.started = when(item["started_at"])
                first.finished = when(item["finished_at"]) if item["status"] in FINISHED else None

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, firsts))


@dataclass(frozen=True)
class Run:
    user: str
    experiment_id: int
    status: str
    started: float
    finished: float | None


def runs(accounts: list[Account]) -> list[Run]:
    """Every job of these users that started, in order of start."""
    found: list[Run] = []
    for account in accounts:
        offset = 0
        while True:
            page = account.http.get("/experiments", params={"limit": 500, "offset": offset}).json()
            for item in page["items"]:
                if (started := when(item["started_at"])) is not None:
                    name = account.name.rsplit("-", 1)[0]
                    found.append(Run(name, item["id"], item["status"], started, when(item["finished_at"])))
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
    return sorted(found, key=lambda r: r.started)


def slot_lag(start: float, everything: list[Run]) -> float | None:
    """Seconds from the last end of a job before `start` (the slot this one took, freed) to `start`."""
    ends = [r.finished for r in everything if r.finished is not None and r.finished <= start]
    return start - max(ends) if ends else None


def cancel_everything(accounts: list[Account]) -> int:
    cancelled = 0
    for account in accounts:
        for status in ("queued", "running"):
            items = account.http.get("/experiments", params={"status": status, "limit": 500}).json()["items"]
            for item in items:
                with contextlib.suppress(httpx.HTTPError):
                    cancelled += account.http.post(f"/experiments/{item['id']}/cancel").status_code == 200
    return cancelled


def report(firsts: list[FirstJob], everything: list[Run], args: argparse.Namespace, backlog: int) -> None:
    lengths = [r.finished - r.started for r in everything if r.status == "succeeded" and r.finished is not None]
    length = statistics.median(lengths)
    print(f"\njob length (median start to end of {len(lengths)} succeeded jobs): {length:.1f} s; {args.slots} slots")
    submitted = min(f.submitted for f in firsts)
    order = [f"{r.user}@{r.started - submitted:.0f}s" for r in everything if r.started >= submitted]
    print(f"starts after the sweeps came in (user@seconds): {' '.join(order[: 3 * len(firsts)])}")
    head = (
        f"{'user':10s} {'job':>5s} {'pos':>4s} {'est (s)':>8s} {'start (s)':>9s} {'wait/L':>7s} "
        f"{'bound (s)':>9s} {'within':>6s} {'est err (s)':>11s} {'slot lag (s)':>12s}"
    )
    print(head)
    print("-" * len(head))
    waits: list[float] = []
    errors: list[float] = []
    lags: list[float] = []
    over = 0
    for first in sorted(firsts, key=lambda f: f.started or math.inf):
        wait = None if first.started is None else first.started - first.submitted
        bound = None if first.position is None else math.ceil(first.position / args.slots) * length
        estimate = None if first.estimated_start is None else first.estimated_start - first.submitted
        error = (
            None if first.started is None or first.estimated_start is None else first.started - first.estimated_start
        )
        within = "-" if wait is None or bound is None else ("yes" if wait <= bound else "NO")
        over += within == "NO"
        if wait is not None:
            waits.append(wait)
        if error is not None:
            errors.append(error)
        lag = None if first.started is None else slot_lag(first.started, everything)
        if lag is not None:
            lags.append(lag)

        def cell(value: float | None, width: int, digits: int = 1) -> str:
            return f"{'-':>{width}s}" if value is None else f"{value:{width}.{digits}f}"

        print(
            f"{first.user:10s} {first.experiment_id:5d} {first.position or 0:4d} {cell(estimate, 8)} {cell(wait, 9)} "
            f"{cell(None if wait is None else wait / length, 7, 2)} {cell(bound, 9)} {within:>6s} {cell(error, 11)} "
            f"{cell(lag, 12)}"
        )
    if waits:
        print(
            f"\nfirst-job wait: median {statistics.median(waits):.1f} s ({statistics.median(waits) / length:.2f} job "
            f"lengths), worst {max(waits):.1f} s ({max(waits) / length:.2f} job lengths); "
            f"{over} of {len(firsts)} users past their bound of ceil(position / slots) job lengths"
        )
    if errors:
        absolute = [abs(e) for e in errors]
        print(
            "estimate error (real start - estimated start, read at submission): "
            f"median {statistics.median(errors):+.1f} s,"
            f" median |error| {statistics.median(absolute):.1f} s, worst |error| {max(absolute):.1f} s "
            f"over {len(errors)} users (positive: started later than estimated)"
        )
    if lags:
        print(
            f"slot lag (a first job's start after the latest end before it): median {statistics.median(lags):.1f} s, "
            f"worst {max(lags):.1f} s"
        )
    print(
        f"first come, first served instead: {backlog} of the heavy user's jobs were waiting when the others "
        f"submitted; the first newcomer would have waited about {backlog / args.slots * length:.0f} s "
        f"({backlog / args.slots:.1f} job lengths)"
    )


def run(args: argparse.Namespace, folder: Path) -> None:
    state = folder / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    env |= {
        "EPOCHAL_STATE_DIR": str(state),
        "EPOCHAL_SLOTS_PER_QUEUE": str(args.slots),
        "EPOCHAL_DISPATCH_INTERVAL_S": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if args.data_dir:
        env["EPOCHAL_DATA_DIR"] = str(Path(args.data_dir).resolve())
    else:
        write_mnist(folder / "data" / "mnist.npz", train=max(2000, args.train_size), test=200)
        env["EPOCHAL_DATA_DIR"] = str(folder / "data")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_log = (folder / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "epochal", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=serve_log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    accounts: list[Account] = []
    try:
        wait_healthy(url, serve, timeout_s=180)
        if args.slots > 1:  # serve's worker trains one job at a time: the other slots get a worker of their own
            shared = env | {
                "EPOCHAL_DATABASE_URL": f"sqlite:///{state.resolve() / 'epochal.db'}",
                "EPOCHAL_BROKER_URL": f"redis+socket://{state.resolve() / 'broker.sock'}",
            }
            argv = with_this_python(worker_argv(QUEUE, concurrency=args.slots - 1, hostname="bench-extra@%h"))
            extra_log = (folder / "extra-worker.log").open("wb")
            processes.append(subprocess.Popen(argv, cwd=ROOT, env=shared, stdout=extra_log, stderr=subprocess.STDOUT))
        admin_key = (state / "api-key").read_text().strip()
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=60)
        stamp = time.strftime("%H%M%S")
        heavy = make_user(admin, url, f"heavy-{stamp}", args.heavy_jobs + 10)
        users = [make_user(admin, url, f"u{i + 1:02d}-{stamp}", args.sweep_size + 10) for i in range(args.users)]
        accounts = [heavy, *users]
        log(
            f"{args.slots} slots; heavy submits {args.heavy_jobs} jobs of {args.epochs} epoch(s) "
            f"on {args.train_size} images"
        )
        heavy_ids = []
        for index in range(args.heavy_jobs):
            answer = heavy.http.post("/experiments", json=spec(args, f"heavy {index}"))
            answer.raise_for_status()
            heavy_ids.append(answer.json()["id"])

        def first_heavy_done() -> dict[str, Any] | None:
            bodies = [heavy.http.get(f"/experiments/{each}").json() for each in heavy_ids[: args.warm_up]]
            return bodies[0] if all(body["status"] in FINISHED for body in bodies) else None

        done = wait_for(first_heavy_done, args.timeout)
        if done is None or done["status"] != "succeeded":
            raise RuntimeError(f"the heavy user's first job did not succeed: {done}")
        length = (when(done["finished_at"]) or 0) - (when(done["started_at"]) or 0)
        epoch_s = heavy.http.get(f"/experiments/{heavy_ids[0]}/metrics").json()[0]["seconds"]
        log(f"a job takes {length:.1f} s from its start to its end (its epoch {epoch_s:.2f} s of that)")
        backlog = len(heavy.http.get("/experiments", params={"status": "queued", "limit": 500}).json()["items"])

        barrier = threading.Barrier(len(users))
        with ThreadPoolExecutor(len(users)) as pool:
            firsts = list(pool.map(lambda account: submit_sweep(account, args, barrier), users))
        log(f"{len(users)} users submitted a sweep of {args.sweep_size} each, at once")
        by_name = {account.name: account for account in accounts}

        def all_started() -> bool:
            refresh(by_name, firsts)
            return all(first.started is not None for first in firsts)

        if not wait_for(all_started, args.timeout, 2.0):
            log(f"not every first job started within {args.timeout:g} s")
        log("every user's first job has started; waiting for them to end")

        def all_ended() -> bool:
            refresh(by_name, firsts)
            return all(first.finished is not None for first in firsts)

        wait_for(all_ended, args.timeout, 2.0)
        report(firsts, runs(accounts), args, backlog)
    except Exception:
        print((folder / "serve.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(Exception):
            log(f"cancelled {cancel_everything(accounts)} jobs left; stopping the service")
        stop_all([*processes, serve])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=30, help="users submitting a sweep each at once")
    parser.add_argument("--heavy-jobs", type=int, default=100, help="jobs the heavy user submits first")
    parser.add_argument("--sweep-size", type=int, default=3, help="jobs in each user's sweep")
    parser.add_argument("--slots", type=int, default=2, help="the queue's slots, and training processes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--warm-up", type=int, default=1, help="heavy jobs that finish before the sweeps come in (at most --heavy-jobs)"
    )
    parser.add_argument("--data-dir", help="a folder with mnist.npz (default: generated digits)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each stage")
    parser.add_argument("--keep-state", action="store_true", help="keep the state folder and the service's logs")
    args = parser.parse_args()
    if not 1 <= args.warm_up <= args.heavy_jobs:
        parser.error("--warm-up must be between 1 and --heavy-jobs")
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    folder = Path(tempfile.mkdtemp(prefix="epochal-fair-load-"))
    try:
        run(args, folder)
    finally:
        if args.keep_state:
            print(f"state and logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
