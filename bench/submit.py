"""Submission throughput: POST /experiments with N closed-loop clients, throughput and latency percentiles.

    python bench/submit.py --url http://127.0.0.1:8000 --key ADMIN_KEY [--broker-url redis://...]
    python bench/submit.py --database-url postgresql+psycopg://postgres@127.0.0.1/epochal_bench \\
                           --broker-url redis://127.0.0.1:6379/9 [--before-tree DIR]

The jobs go to a queue no worker serves (--queue, default `epochal-bench-submit`; the service's
EPOCHAL_QUEUES must list it, or every POST is a 422) and belong to a user made for the run, named
`bench-submit-<time>`, whose active-jobs quota is lifted. Afterwards every job of that user is
cancelled over the API and, with --broker-url, the queue's messages and the jobs' event streams are
deleted from Redis: nothing is left to train or to republish.

With --database-url the script starts its own APIs on that database (migrated first) and broker: one of one
process, and one of --processes processes (EPOCHAL_API_WORKERS); with --before-tree another API runs older
code on the same database. Rows alternate between them so that all see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.load import Result, api_cpu_seconds, closed_loop, http_request
from epochal.commands import api_argv, with_this_python
from tests.processes import wait_healthy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUEUE = "epochal-bench-submit"


def bench_user(url: str, admin_key: str) -> tuple[str, str]:
    """(name, key) of a new user for this run, with the active-jobs quota lifted; made with the admin key."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    name = f"bench-submit-{time.time_ns()}"
    created = httpx.post(f"{url}/users", json={"name": name}, headers=admin, timeout=30)
    created.raise_for_status()
    body = created.json()
    patched = httpx.patch(f"{url}/users/{body['id']}", json={"max_active_jobs": 1_000_000}, headers=admin, timeout=30)
    patched.raise_for_status()
    return name, str(body["api_key"])


def submit_requests(url: str, key: str, queue: str, name: str) -> list[bytes]:
    spec = {"name": f"{name} (benchmark job, never trained)", "dataset": "mnist", "epochs": 1, "queue": queue}
    body = json.dumps(spec).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return [http_request(url, "POST", "/experiments", headers, body)]


def clean_up(url: str, key: str, queue: str, broker_url: str | None) -> int:
    """Cancel every queued job of the bench user; with the broker URL, delete the queue's messages and the jobs'
    event streams from Redis (they would expire in a day). How many jobs were cancelled."""
    headers = {"Authorization": f"Bearer {key}"}
    cancelled: list[int] = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http, ThreadPoolExecutor(4) as pool:
        while True:
            page = http.get("/experiments", params={"status": "queued", "limit": 500}).json()["items"]
            if not page:
                break
            answers = pool.map(lambda e: (e["id"], http.post(f"/experiments/{e['id']}/cancel").status_code), page)
            cancelled += [experiment_id for experiment_id, status in answers if status == 200]
    if broker_url:
        import redis

        from infra.events import experiment_stream, redis_url

        broker = redis.Redis.from_url(redis_url(broker_url))
        broker.delete(queue)
        for start in range(0, len(cancelled), 500):
            broker.delete(*(experiment_stream(i) for i in cancelled[start : start + 500]))
    return len(cancelled)


def start_api(cwd: Path, env: dict[str, str], port: int, processes: int = 1) -> subprocess.Popen[bytes]:
    # This tree's command (epochal/commands.py); an older tree without the launcher starts uvicorn as it did.
    argv = with_this_python(api_argv("127.0.0.1", port))
    if not (cwd / "epochal" / "api_server.py").exists():
        argv = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--no-access-log"]  # as a production API behind a proxy that logs: a log line per request is CPU
    env = {**env, "EPOCHAL_API_WORKERS": str(processes)}
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    wait_healthy(f"http://127.0.0.1:{port}", process)
    return process


def admin_key_for(database_url: str) -> str:
    from sqlalchemy.orm import Session

    from models.accounts import key_for
    from models.db import make_engine

    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            return key_for(session, "bench-submit-admin", admin=True).token
    finally:
        engine.dispose()


def row(clients: int, label: str, result: Result, cpu_ms: float) -> str:
    failed = sum(result.failures.values())
    note = f"  FAILED {result.failures} {result.failure_sample!r}" if failed else ""
    return (
        f"{clients:3d} clients  {label:20s} {result.per_second():7.0f} submissions/s  "
        f"p50 {result.percentile(50):7.2f} ms  p99 {result.percentile(99):7.2f} ms  API CPU {cpu_ms:5.2f} ms/req{note}"
    )


def measure(args: argparse.Namespace, servers: list[tuple[str, str, int | None]], admin_key: str) -> None:
    # One user's submissions are counted against their quota one at a time (a row lock): with --users 1 every
    # client queues behind that lock; with as many users as clients, it is many people submitting at once.
    users = [bench_user(servers[0][1], admin_key) for _ in range(args.users)]
    name, key = users[0]
    print(f"jobs go to queue {args.queue!r}, owned by {args.users} bench user(s), the first {name!r}")
    results: dict[tuple[int, str], list[Result]] = {}
    cpu: dict[tuple[int, str], list[float]] = {}
    try:
        for _label, url, _pid in servers:
            closed_loop(url, submit_requests(url, key, args.queue, name), 1, 0.5, ok=202)  # connections, caches
        for repeat in range(args.repeats):
            for clients in [int(c) for c in args.clients.split(",")]:
                for label, url, pid in servers if repeat % 2 == 0 else list(reversed(servers)):
                    built = [submit_requests(url, user_key, args.queue, user) for user, user_key in users]
                    cpu_before = api_cpu_seconds(pid)
                    result = closed_loop(url, [], clients, args.seconds, ok=202, per_client=built)
                    cpu_ms = (api_cpu_seconds(pid) - cpu_before) * 1000 / max(1, result.requests)
                    cpu.setdefault((clients, label), []).append(cpu_ms)
                    results.setdefault((clients, label), []).append(result)
                    print(row(clients, label, result, cpu_ms), flush=True)
    finally:
        cancelled = sum(clean_up(servers[0][1], user_key, args.queue, args.broker_url) for _, user_key in users)
        print(f"cleaned up: {cancelled} benchmark jobs cancelled" + (", queue emptied" if args.broker_url else ""))
    print(f"\nmedian over {args.repeats} repeats of {args.seconds:g} s:")
    for (clients, label), runs in results.items():
        rate = statistics.median(r.per_second() for r in runs)
        p50 = statistics.median(r.percentile(50) for r in runs)
        p99 = statistics.median(r.percentile(99) for r in runs)
        cpu_ms = statistics.median(cpu[(clients, label)])
        figures = f"{rate:7.0f} submissions/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  API CPU {cpu_ms:5.2f} ms/req"
        print(f"{clients:3d} clients  {label:20s} {figures}")


def own_api(args: argparse.Namespace) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    env |= {
        "EPOCHAL_DATABASE_URL": args.database_url,
        "EPOCHAL_BROKER_URL": args.broker_url,
        "EPOCHAL_QUEUES": args.queue,
    }
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True)
    admin_key = admin_key_for(args.database_url)
    processes = []
    try:
        from bench.predict_load import free_port

        port = free_port()
        processes.append(start_api(ROOT, env, port))
        servers: list[tuple[str, str, int | None]] = [("this tree", f"http://127.0.0.1:{port}", processes[-1].pid)]
        if args.processes > 1:
            many_port = free_port()
            processes.append(start_api(ROOT, env, many_port, processes=args.processes))
            servers.append((f"{args.processes} processes", f"http://127.0.0.1:{many_port}", processes[-1].pid))
        if args.before_tree:
            before_port = free_port()
            processes.append(start_api(Path(args.before_tree).resolve(), env, before_port))
            servers.append(("before (older tree)", f"http://127.0.0.1:{before_port}", processes[-1].pid))
        measure(args, servers, admin_key)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service (its EPOCHAL_QUEUES must list --queue)")
    parser.add_argument("--key", default=os.environ.get("EPOCHAL_API_KEY"), help="an admin's key, with --url")
    parser.add_argument("--database-url", help="start an API on this database (migrated first)")
    parser.add_argument("--broker-url", help="the broker: where the API publishes, and whose queue is emptied after")
    parser.add_argument("--before-tree", help="with --database-url: older code, run as a second API for comparison")
    parser.add_argument("--processes", type=int, default=2, help="also an API of this many processes (1: none)")
    parser.add_argument("--queue", default=DEFAULT_QUEUE)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--users", type=int, default=1, help="bench users to submit as: client i is user i mod N")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start")
    if args.url:
        if not args.key:
            parser.error("--url needs an admin's --key (or EPOCHAL_API_KEY)")
        measure(args, [("as configured", args.url, None)], args.key)
    elif args.database_url and args.broker_url:
        own_api(args)
    else:
        parser.error("give --url and --key, or --database-url and --broker-url")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
