"""What a service under faults promises of every job it accepted, checked from the outside over HTTP.

Shared by the fault benches (bench/chaos.py, bench/cluster.py) and the cluster test: a job accepted ends
(succeeded, or failed after the attempt cap), a succeeded one has epochs exactly 1..N and a checkpoint matching
its listed sha256 (else *lost*), and no epoch is trained twice: each attempt's first epoch is its resumed epoch + 1,
epoch rows' attempts never go down, and a resume starts after every epoch finished before the fault (else
*duplicated*).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Protocol


class Reader(Protocol):
    """The service as these checks read it: JSON bodies and downloads, None while it does not answer."""

    def get(self, path: str, timeout_s: float = 60) -> Any: ...

    def download(self, path: str) -> bytes | None: ...


class Findings(Protocol):
    """Where broken invariants are written down."""

    lost: list[str]
    duplicated: list[str]


@dataclass
class Target:
    """The running job the fault aims at, as seen just before the fault."""

    experiment_id: int
    attempt: int
    epochs_done: int


def find_target(service: Reader, ids: list[int], epochs: int, timeout_s: float) -> Target | None:
    def check() -> Target | None:
        for experiment_id in ids:
            body = service.get(f"/experiments/{experiment_id}", timeout_s=10)
            # Mid-run: at least one epoch finished (so a resume has something to keep), at least one to go.
            if body and body["status"] == "running" and 1 <= body["summary"]["epochs_done"] < epochs:
                return Target(experiment_id, len(body["attempts"]), body["summary"]["epochs_done"])
        return None

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.1)
    return None


def check_job(service: Reader, body: dict[str, Any], target: Target | None, result: Findings) -> None:
    """Add every broken invariant of one finished job to `result`."""
    experiment_id = body["id"]
    name = f"experiment {experiment_id}"
    attempts = body["attempts"]
    status = body["status"]
    if status == "failed":
        lost_attempts = sum(a["outcome"] == "lost" for a in attempts)
        if not body["error"] or not body["error"].startswith("AttemptsExhausted"):
            result.lost.append(f"{name} failed, not after the attempt cap ({lost_attempts} lost): {body['error']!r}")
    elif status != "succeeded":
        result.lost.append(f"{name} ended {status}, but nobody cancelled it")
    rows = service.get(f"/experiments/{experiment_id}/metrics") or []
    epochs = [row["epoch"] for row in rows]
    if len(epochs) != len(set(epochs)):
        result.duplicated.append(f"{name}: epoch rows {epochs}")
    if status == "succeeded" and epochs != list(range(1, body["epochs"] + 1)):
        result.lost.append(f"{name} succeeded with epochs {epochs}, not 1..{body['epochs']}")
    numbers = [row["attempt"] for row in rows]
    if numbers != sorted(numbers):
        result.duplicated.append(f"{name}: epoch rows' attempts go down: {numbers}")
    by_number = {a["number"]: a for a in attempts}
    for number in dict.fromkeys(numbers):
        first = next(row["epoch"] for row in rows if row["attempt"] == number)
        attempt = by_number.get(number)
        if attempt is None or first != attempt["resumed_from_epoch"] + 1:
            resumed = None if attempt is None else attempt["resumed_from_epoch"]
            result.duplicated.append(f"{name}: attempt {number} resumed after {resumed} but first wrote epoch {first}")
    if target is not None and target.experiment_id == experiment_id:
        # Epochs finished before the fault are in the database: the next attempt must not train them again.
        later = [a for a in attempts if a["number"] > target.attempt]
        if later and later[0]["resumed_from_epoch"] < target.epochs_done:
            result.duplicated.append(
                f"{name}: {target.epochs_done} epochs were done before the fault, "
                f"attempt {later[0]['number']} resumed after {later[0]['resumed_from_epoch']}"
            )
    if status == "succeeded":
        listed = service.get(f"/experiments/{experiment_id}/artifacts") or []
        checkpoint = next((a for a in listed if a["name"] == "best_model.h5"), None)
        content = service.download(f"/experiments/{experiment_id}/artifacts/best_model.h5")
        if checkpoint is None or content is None or hashlib.sha256(content).hexdigest() != checkpoint["sha256"]:
            result.lost.append(f"{name}: checkpoint missing or its sha256 differs from the listed one")
