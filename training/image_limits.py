"""What decoding one upload may cost. No TensorFlow here: the API builds these from its settings at import time."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one upload may cost, checked from its header: its pixels, and the bytes they take decoded."""

    max_pixels: int = 40_000_000
    max_bytes: int = 64 * MiB
