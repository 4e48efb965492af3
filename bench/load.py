"""Closed-loop HTTP load for the benchmarks: N clients, each sending its next request as soon as the last is answered.

The client is a few lines of asyncio over keep-alive HTTP/1.1 connections, with every request built
once up front: on a small machine the load generator shares the CPU with the service, and a
general-purpose HTTP client would spend more of it per request than the service does.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psutil


@dataclass
class Result:
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[int, int] = field(default_factory=dict)  # status -> count
    failure_sample: bytes = b""

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def per_second(self, items_per_request: int = 1) -> float:
        return self.requests * items_per_request / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


def http_request(url: str, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 keep-alive request as bytes."""
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def multipart(parts: Sequence[tuple[str, str, bytes]], boundary: str = "epochalbenchboundary") -> tuple[str, bytes]:
    """(content type, body) of a multipart/form-data body of (field, filename, bytes) file parts."""
    chunks = []
    for name, filename, data in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        chunks.append(head.encode() + b"Content-Type: image/png\r\n\r\n" + data + b"\r\n")
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks) + f"--{boundary}--\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _client(url: str, requests: Sequence[bytes], offset: int, until: float, result: Result, ok: int) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        i = offset
        while time.monotonic() < until:
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            status, body = await _read_response(reader)
            elapsed = (time.perf_counter() - started) * 1000
            i += 1
            if status == ok:
                result.latencies_ms.append(elapsed)
            else:
                result.failures[status] = result.failures.get(status, 0) + 1
                result.failure_sample = body[:300]
    finally:
        writer.close()


async def _run(url: str, requests: Sequence[Sequence[bytes]], clients: int, seconds: float, ok: int) -> Result:
    result = Result(seconds)
    until = time.monotonic() + seconds
    started = time.monotonic()
    runs = (_client(url, requests[c % len(requests)], c * 7, until, result, ok) for c in range(clients))
    await asyncio.gather(*runs)
    result.seconds = time.monotonic() - started  # includes the answers still in flight at the deadline
    return result


def closed_loop(
    url: str,
    requests: Sequence[bytes],
    clients: int,
    seconds: float,
    ok: int = 200,
    per_client: Sequence[Sequence[bytes]] = (),
) -> Result:
    """Run `clients` closed-loop clients for `seconds`, cycling through `requests`; latencies of `ok` answers.

    With `per_client`, client c cycles through `per_client[c % len(per_client)]` instead (e.g. one user each).
    """
    return asyncio.run(_run(url, per_client or [requests], clients, seconds, ok))


def api_cpu_seconds(pid: int | None) -> float:
    """CPU time of an API this script started (NaN otherwise), its launcher's children included: with several
    API processes (EPOCHAL_API_WORKERS) they are what serves."""
    if pid is None:
        return float("nan")
    process = psutil.Process(pid)
    return sum(float(t.user + t.system) for t in (p.cpu_times() for p in [process, *process.children(True)]))
