"""Stored files leave the service only as the exact bytes the worker wrote, checked against their recorded sha256.

One check for every path that hands stored bytes on: a download (GET /experiments/{id}/artifacts/{name}) and the
checkpoint a prediction loads (api/serving/predictors.py). Bytes changed after they were written (a damaged disk, a
hand-edited database) are refused with a 409 that names the mismatch, never served or loaded.
"""

from __future__ import annotations

import hashlib

from fastapi import HTTPException


class ArtifactCorrupt(HTTPException):
    """An artifact's stored bytes do not hash to the sha256 recorded when it was written."""

    def __init__(self, experiment_id: int, name: str, recorded: str, actual: str) -> None:
        super().__init__(
            status_code=409,
            detail=(
                f"{name} of experiment {experiment_id} failed its integrity check: its stored bytes have sha256 "
                f"{actual}, not the {recorded} recorded when it was written; retry the experiment"
            ),
        )


def verified(content: bytes, recorded_sha256: str, experiment_id: int, name: str) -> bytes:
    """`content`, if it hashes to `recorded_sha256`; else `ArtifactCorrupt`."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != recorded_sha256:
        raise ArtifactCorrupt(experiment_id, name, recorded_sha256, actual)
    return content
