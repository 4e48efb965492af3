"""Faults between the hosts of a cluster on this machine, repeated, with the invariants checked after every round.

    sudo python bench/cluster.py                         # every fault, 5 rounds each
    sudo python bench/cluster.py --rounds 2 --faults worker-cut,slow-link

The cluster is tests/cluster.py's: a data host (PostgreSQL and Redis), an API host and two worker hosts, each a
network namespace with its own address on a bridge, no folder shared between them. Each round submits small MNIST
jobs, waits until one is mid-run, injects one fault, restores the link, waits for every job of the round to end,
then checks what bench/chaos.py checks (tests/invariants.py): nothing lost, nothing duplicated, no epoch trained
twice, nothing left running or queued.

Faults:
- worker-cut: the running job's worker host loses its link (a pulled cable) until its lease ran out and the job
  resumed on the other host; then the link comes back, and the stale attempt, reaching the database again, must
  write nothing. Recovery: from the cut to the next attempt's start.
- api-broker-cut: the API host cannot reach the broker (a route refuses its address; the database stays reachable)
  while both worker slots are busy: a submission is a 503 naming the broker and is stored failed, and the running
  jobs train on. Recovery: from the cut to the running jobs' end.
- worker-broker-cut: the running job's worker host cannot reach the broker, only the database: the job keeps its
  lease and ends; the message it could not acknowledge comes back later and is refused by the fenced claim.
- slow-link: netem on the running job's worker host (--delay-ms, --loss-percent) for the rest of the round, or, on
  a kernel without netem, a token bucket holding its link to 256 kbit/s with --delay-ms of queueing.

It needs root (network namespaces) and prints one table of every fault's rounds; exit status 1 if an invariant broke.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: tests.* live at the root

from tests.cluster import WORKERS, Cluster, missing
from tests.invariants import Target, check_job

FINISHED = {"succeeded", "failed", "cancelled"}
FAULTS = ("worker-cut", "api-broker-cut", "worker-broker-cut", "slow-link")


@dataclass
class Round:
    fault: str
    number: int
    jobs: list[int] = field(default_factory=list)
    detail: str = ""
    recovery_s: float | None = None
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    cancelled: set[int] = field(default_factory=set)  # jobs the round cancelled itself

    @property
    def broken(self) -> bool:
        return bool(self.lost or self.duplicated or self.stuck)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def body(hosts: Cluster, experiment_id: int) -> dict[str, Any]:
    found: dict[str, Any] = hosts.get(f"/experiments/{experiment_id}", timeout_s=30) or {}
    return found


def mid_run(hosts: Cluster, ids: list[int], epochs: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for experiment_id in ids:
            found = body(hosts, experiment_id)
            if found.get("status") == "running" and 1 <= found["summary"]["epochs_done"] < epochs:
                return found
        return None

    found: dict[str, Any] = hosts.wait_for("a job mid-run", check, 300)
    return found


def all_running(hosts: Cluster, ids: list[int]) -> None:
    hosts.wait_for("every job running", lambda: all(body(hosts, i).get("status") == "running" for i in ids), 300)


def ended(hosts: Cluster, ids: list[int], timeout_s: float) -> dict[int, dict[str, Any]]:
    bodies: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(bodies) < len(ids):
        for experiment_id in ids:
            if experiment_id not in bodies and (found := body(hosts, experiment_id)).get("status") in FINISHED:
                bodies[experiment_id] = found
        time.sleep(0.5)
    return bodies


def started_at(attempt: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(attempt["started_at"].replace("Z", "+00:00")).timestamp()


def worker_cut(hosts: Cluster, spec: dict[str, Any], result: Round) -> Target:
    result.jobs = [hosts.submit(spec)]
    target = mid_run(hosts, result.jobs, spec["epochs"])
    attempt = target["attempts"][-1]
    cut = hosts.host_of(attempt)
    cut_at = time.time()
    hosts.link(cut, up=False)
    try:

        def resumed() -> dict[str, Any] | None:
            later = [a for a in body(hosts, target["id"]).get("attempts", []) if a["number"] > attempt["number"]]
            return later[0] if later else None

        next_attempt = hosts.wait_for("the job resumes on the other host", resumed, 240)
        result.recovery_s = started_at(next_attempt) - cut_at
        result.detail = f"cut {cut}; attempt {next_attempt['number']} on {hosts.host_of(next_attempt)}"
    finally:
        hosts.link(cut, up=True)
    return Target(target["id"], attempt["number"], target["summary"]["epochs_done"])


def api_broker_cut(hosts: Cluster, spec: dict[str, Any], result: Round) -> Target | None:
    # Both slots busy, with jobs that outlast the cut (cancelled after it): nothing releases the next job meanwhile.
    long = [hosts.submit({**spec, "epochs": 500, "name": f"{spec['name']} long"}) for _ in WORKERS]
    result.jobs, result.cancelled = list(long), set(long)
    all_running(hosts, long)
    hosts.cut_broker("api", cut=True)
    cut_at = time.time()
    try:
        refused = hosts.http.post("/experiments", json={**spec, "name": "refused while cut"})
        if refused.status_code != 503 or "broker" not in refused.text:
            result.lost.append(f"a submission while cut off the broker answered {refused.status_code}: {refused.text}")
        else:
            result.jobs.append(int(hosts.get("/experiments?status=failed&limit=1")["items"][0]["id"]))
        done = {i: body(hosts, i)["summary"]["epochs_done"] for i in long}
        trained_on = lambda: all(body(hosts, i)["summary"]["epochs_done"] >= done[i] + 2 for i in long)  # noqa: E731
        hosts.wait_for("the running jobs train on", trained_on, 120)
        result.recovery_s = time.time() - cut_at  # how long the cut lasted: the submission, then two epochs each
        result.detail = f"submission answered {refused.status_code}; running jobs trained on while cut"
    finally:
        hosts.cut_broker("api", cut=False)
        for experiment_id in long:
            hosts.http.post(f"/experiments/{experiment_id}/cancel")
    return None


def worker_broker_cut(hosts: Cluster, spec: dict[str, Any], result: Round) -> Target:
    result.jobs = [hosts.submit(spec)]
    target = mid_run(hosts, result.jobs, spec["epochs"])
    host = hosts.host_of(target["attempts"][-1])
    hosts.cut_broker(host, cut=True)
    cut_at = time.time()
    try:
        bodies = ended(hosts, result.jobs, 300)
        result.recovery_s = time.time() - cut_at if bodies else None
        result.detail = f"{host} cut off the broker; the job ended {[b['status'] for b in bodies.values()]}"
    finally:
        hosts.cut_broker(host, cut=False)
    return Target(target["id"], len(target["attempts"]), target["summary"]["epochs_done"])


def slow_link(hosts: Cluster, spec: dict[str, Any], result: Round, delay_ms: int, loss: float) -> Target:
    result.jobs = [hosts.submit(spec)]
    target = mid_run(hosts, result.jobs, spec["epochs"])
    host = hosts.host_of(target["attempts"][-1])
    how = hosts.slow(host, delay_ms, loss)
    slowed_at = time.time()
    try:
        bodies = ended(hosts, result.jobs, 400)
        result.recovery_s = time.time() - slowed_at if bodies else None
        result.detail = f"{host} slowed ({how}) until the job ended"
    finally:
        hosts.fast(host)
    return Target(target["id"], len(target["attempts"]), target["summary"]["epochs_done"])


def run_round(hosts: Cluster, fault: str, number: int, options: argparse.Namespace) -> Round:
    spec = {
        "dataset": "mnist",
        "epochs": options.epochs,
        "train_size": options.train_size,
        "batch_size": 32,
        "name": f"{fault} {number}",
    }
    result = Round(fault, number)
    inject: dict[str, Callable[[], Target | None]] = {
        "worker-cut": lambda: worker_cut(hosts, spec, result),
        "api-broker-cut": lambda: api_broker_cut(hosts, spec, result),
        "worker-broker-cut": lambda: worker_broker_cut(hosts, spec, result),
        "slow-link": lambda: slow_link(hosts, spec, result, options.delay_ms, options.loss_percent),
    }
    target: Target | None = None
    try:
        target = inject[fault]()
    except AssertionError as exc:  # a wait that ran out: what the round waited for never happened
        result.stuck.append(str(exc).splitlines()[0])
    except RuntimeError as exc:  # a fault that could not be injected (a refused submission, a missing qdisc)
        result.detail = f"injection failed: {exc}"
    bodies = ended(hosts, result.jobs, 300)
    for experiment_id in result.jobs:
        if experiment_id not in bodies:
            result.stuck.append(f"experiment {experiment_id} still {body(hosts, experiment_id).get('status')}")
            continue
        found = bodies[experiment_id]
        if experiment_id in result.cancelled:
            if found["status"] != "cancelled":
                result.lost.append(f"experiment {experiment_id}, cancelled, ended {found['status']}")
            continue
        if fault == "api-broker-cut" and found["name"] == "refused while cut":
            if found["status"] != "failed" or "could not be queued" not in (found["error"] or ""):
                result.lost.append(f"the refused submission ended {found['status']}: {found['error']!r}")
            continue
        check_job(hosts, found, target, result)
    # Nothing of the round may be left for the next one to find (a stale attempt writing late shows up there too).
    time.sleep(options.settle_s)
    for status in ("running", "queued"):
        page = hosts.get(f"/experiments?status={status}&limit=1", timeout_s=30)
        if page and page["total"]:
            result.stuck.append(f"{page['total']} experiments left {status} after the round")
    return result


def table(results: list[Round]) -> str:
    lines = [
        "| fault | rounds | invariants kept | recovery s (median) | recovery s (max) |",
        "|---|---|---|---|---|",
    ]
    for fault in dict.fromkeys(r.fault for r in results):
        rounds = [r for r in results if r.fault == fault]
        recoveries = [r.recovery_s for r in rounds if r.recovery_s is not None]
        kept = sum(not r.broken for r in rounds)
        median = f"{statistics.median(recoveries):.1f}" if recoveries else "-"
        worst = f"{max(recoveries):.1f}" if recoveries else "-"
        lines.append(f"| {fault} | {len(rounds)} | {kept}/{len(rounds)} | {median} | {worst} |")
    return "\n".join(lines)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so that a SIGTERM, as Ctrl-C, takes the hosts down on the way out


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each fault (interleaved)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=600)
    parser.add_argument("--delay-ms", type=int, default=100)
    parser.add_argument("--loss-percent", type=float, default=2.0)
    parser.add_argument("--settle-s", type=float, default=2.0, help="pause after each round")
    parser.add_argument("--keep", action="store_true", help="keep the hosts' folders (always kept on failure)")
    options = parser.parse_args()
    faults = options.faults.split(",")
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}: use {', '.join(FAULTS)}")
    why_not = missing()
    if why_not:
        print(f"no cluster here: {why_not}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="epochal-cluster-"))
    log(f"hosts in {workdir}; faults {faults}, {options.rounds} rounds each")
    hosts = Cluster(workdir).up()
    results: list[Round] = []
    try:
        for number in range(1, options.rounds + 1):
            for fault in faults:
                result = run_round(hosts, fault, number, options)
                results.append(result)
                verdict = "BROKEN" if result.broken else "ok"
                recovery = "-" if result.recovery_s is None else f"{result.recovery_s:.1f} s"
                log(f"{fault} #{number}: {verdict}, recovery {recovery}: {result.detail}")
                for problem in (*result.lost, *result.duplicated, *result.stuck):
                    log(f"  {problem}")
    finally:
        hosts.down()
    print()
    print(table(results))
    broken = any(r.broken for r in results)
    if broken or options.keep:
        print(f"\nhosts' folders kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
