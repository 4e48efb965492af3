"""Bytes counted as they are decompressed, against the caps: an archive's headers say what its entries will
decompress to, and a bomb's headers lie, so nothing here believes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Protocol

from training.uploads.caps import GiB, MiB, UploadCaps
from training.uploads.errors import UploadRefused

CHUNK = 256 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _amount(count: float) -> str:
    return f"{count / GiB:.1f} GiB" if count >= GiB else f"{count / MiB:.1f} MiB"


class Budget:
    """The bytes the whole upload has decompressed to so far, against the total cap and the total ratio; the
    compressed side is what was really read of the upload so far (`compressed()`), not what any header says."""

    def __init__(self, caps: UploadCaps, compressed: Callable[[], int]) -> None:
        self.caps = caps
        self.compressed = compressed
        self.out = 0

    def take(self, entry: str, count: int) -> None:
        self.out += count
        caps = self.caps
        if self.out > caps.max_total_bytes:
            raise UploadRefused(
                entry,
                f"the upload decompresses to more than {_amount(caps.max_total_bytes)}, the cap; "
                "split it into smaller datasets or shrink its images",
            )
        check_ratio(entry, self.out, self.compressed(), caps, "the upload as a whole")


def check_ratio(entry: str, out: int, compressed: int, caps: UploadCaps, what: str) -> None:
    """Refuse when `out` decompressed bytes came from `compressed` bytes at more than the cap's ratio."""
    if out > caps.ratio_floor_bytes and out > caps.max_ratio * max(compressed, 1):
        raise UploadRefused(
            entry,
            f"{what} decompresses {out / max(compressed, 1):,.0f} times its compressed size (at most "
            f"{caps.max_ratio:g} is accepted): a zip bomb, or data that is not images; remove it",
        )


class CountingFile:
    """A file read through, counting the bytes that came out of it."""

    def __init__(self, raw: BinaryIO | Readable) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


class BudgetedStream:
    """A decompressed stream (a tar inside gzip) whose every byte counts against `budget`, charged to the entry
    being read at the time (`current`); tarfile reads its headers and skipped members through it too."""

    def __init__(self, raw: Readable, budget: Budget) -> None:
        self.raw = raw
        self.budget = budget
        self.current = "(the archive's headers)"

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        self.budget.take(self.current, len(data))
        return data


def read_entry(
    stream: Readable,
    entry: str,
    caps: UploadCaps,
    *,
    budget: Budget | None,
    compressed: int | None = None,
    compressed_so_far: CountingFile | None = None,
) -> bytes:
    """All of one entry, at most `caps.max_entry_bytes` of it, in chunks counted as they come. Its ratio is
    against `compressed` (the entry's compressed bytes), or what `compressed_so_far` read during it."""
    start = compressed_so_far.count if compressed_so_far is not None else 0
    chunks: list[bytes] = []
    out = 0
    while chunk := stream.read(CHUNK):
        out += len(chunk)
        if budget is not None:
            budget.take(entry, len(chunk))
        if out > caps.max_entry_bytes:
            raise UploadRefused(
                entry,
                f"the file is larger than {_amount(caps.max_entry_bytes)} (the cap for one file); shrink or remove it",
            )
        spent = compressed if compressed_so_far is None else compressed_so_far.count - start
        if spent is not None:
            check_ratio(entry, out, spent, caps, "this file")
        chunks.append(chunk)
    return b"".join(chunks)


class MeasuredReader:
    """One entry's decompressed stream, read as numpy reads an array, counted against `budget` and against the
    ratio to the entry's `compressed` size; `read_exact` refuses a stream that ends early."""

    def __init__(self, raw: Readable, entry: str, caps: UploadCaps, budget: Budget, compressed: int) -> None:
        self.raw, self.entry, self.caps, self.budget, self.compressed = raw, entry, caps, budget, compressed
        self.out = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        self.out += len(data)
        self.budget.take(self.entry, len(data))
        check_ratio(self.entry, self.out, self.compressed, self.caps, "this array")
        return data

    def read_exact(self, size: int) -> bytes:
        parts: list[bytes] = []
        left = size
        while left > 0 and (data := self.read(min(left, CHUNK) if size > CHUNK else left)):
            parts.append(data)
            left -= len(data)
        if left:
            raise UploadRefused(self.entry, "the array's data ends before its header says it does; save it again")
        return b"".join(parts)
