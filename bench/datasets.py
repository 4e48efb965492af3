"""What a large dataset upload costs the API process's memory, and how fast preparing it is against a plain loop.

    python bench/datasets.py [--mib 256] [--side 64] [--repeats 2]

Makes `--mib` MiB of images (PNGs and JPEGs half and half, three sizes, ten class folders) in a temporary folder and
zips it with the CLI's own packer (epochal/cli/packing.py, what `epochal datasets push DIR` sends). Then:

(a) Upload. Starts the service (`python -m epochal serve` in a temporary state folder: SQLite, the embedded broker)
    and an API process of its own on the same database and broker whose default queue no worker serves, so nothing
    prepares the uploads meanwhile. After a small warm-up upload, it reads that process's idle RSS, then sends the
    archive twice, as the whole body (what the CLI and the client send) and as a multipart `file` part (curl -F),
    sampling the process's RSS every few milliseconds (and its VmHWM, reset before each upload). Prints idle, peak
    and the difference (target: within 100 MB), with the upload's MB/s.
(b) Prepare. `training.uploads.ingest` over the archive (two streaming passes, every check, the canonical arrays and
    their hash) against the floor: a plain loop that reads each entry with zipfile, decodes it with Pillow (at a
    reduced scale where JPEG allows it, as ingest does) and resizes it to `--side` into a preallocated array. Each
    in a fresh process, alternating, `--repeats` times; the best of each, and ingest's share of the floor's
    images/s (goal: at least 80%).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np
from PIL import Image

from epochal.cli.packing import dataset_files, pack
from epochal.client import Client
from epochal.commands import api_argv, with_this_python
from tests.processes import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
CLASSES = 10
SIZES = ((240, 320), (320, 240), (300, 300))  # (height, width)
IDLE_QUEUE = "bench-idle"  # accepted by the bench's API, served by no worker: the uploads stay unprepared
MB = 1e6
LABELS = {"floor": "floor: zipfile + Pillow decode + resize", "ingest": "training.uploads.ingest"}


# --- the images ---


def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour fields with grain: closer to a photo than noise (which no codec compresses), cheap to make."""
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def build_folder(folder: Path, mib: float) -> tuple[int, int]:
    """Images into `folder`/class<k>/ until they come to `mib` MiB; (images, bytes)."""
    rng = np.random.default_rng(0)
    count, total = 0, 0
    while total < mib * 2**20:
        height, width = SIZES[count % len(SIZES)]
        image = Image.fromarray(photo_like(rng, height, width))
        buffer = io.BytesIO()
        if count % 2:
            image.save(buffer, "JPEG", quality=92)
            suffix = "jpg"
        else:
            image.save(buffer, "PNG", compress_level=1)
            suffix = "png"
        path = folder / f"class{count % CLASSES}" / f"{count:06d}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        count, total = count + 1, total + buffer.tell()
    return count, total


# --- (a) the upload ---


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux: clear_refs 5); False where that is not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """The RSS of process `pid`, read every `interval_s` on a thread until stopped; the largest seen."""

    def __init__(self, pid: int, interval_s: float = 0.005) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))


def idle_kib(pid: int, seconds: float = 1.0) -> int:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(status_kib(pid, "VmRSS"))
        time.sleep(0.02)
    return int(statistics.median(samples))


def send_raw(client: Client, archive: Path, name: str) -> int:
    return client.upload_dataset(archive, name=name)["upload_bytes"] or 0


def send_multipart(client: Client, archive: Path, name: str) -> int:
    # httpx reads a file part in pieces as it sends: the client side holds no more of it than the raw body does.
    with archive.open("rb") as stream:
        response = httpx.post(
            f"{client.url}/datasets",
            params={"name": name},
            files={"file": (archive.name, stream, "application/zip")},
            headers={"Authorization": f"Bearer {client.key}"},
            timeout=httpx.Timeout(60.0, read=300.0),
        )
    response.raise_for_status()
    return int(response.json()["upload_bytes"])


@dataclass(frozen=True)
class UploadRow:
    way: str
    idle_mb: float
    peak_mb: float
    seconds: float
    mb_per_s: float
    exact_peak: bool  # VmHWM could be reset before it: the peak is the kernel's, not only the samples'


def measure_upload(archive: Path, workdir: Path) -> list[UploadRow]:
    state = workdir / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    env |= {"EPOCHAL_STATE_DIR": str(state), "EPOCHAL_DATA_DIR": str(workdir / "data"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = (workdir / "serve.log").open("wb")
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "epochal", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    api: subprocess.Popen[bytes] | None = None
    try:
        wait_healthy(f"http://127.0.0.1:{port}", serve)
        key = (state / "api-key").read_text().strip()
        api_port = free_port()
        api_env = env | {
            "EPOCHAL_DATABASE_URL": f"sqlite:///{state.resolve() / 'epochal.db'}",
            "EPOCHAL_BROKER_URL": f"redis+socket://{state.resolve() / 'broker.sock'}",
            "EPOCHAL_DEFAULT_QUEUE": IDLE_QUEUE,
            "EPOCHAL_QUEUES": IDLE_QUEUE,
            "EPOCHAL_API_WORKERS": "1",  # the API in this very process: its RSS is the one read
            "EPOCHAL_TAKE_ROLES": "0",
        }
        api = subprocess.Popen(
            with_this_python(api_argv("127.0.0.1", api_port)), cwd=ROOT, env=api_env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{api_port}"
        wait_healthy(url, api)
        rows = []
        with Client(url, key) as client:
            warm = workdir / "warm.zip"
            with zipfile.ZipFile(warm, "w") as z:
                for i in range(3):
                    buffer = io.BytesIO()
                    Image.new("RGB", (8, 8), (i, i, i)).save(buffer, "PNG")
                    z.writestr(f"c{i}/0.png", buffer.getvalue())
            for way, send in (("raw body", send_raw), ("multipart", send_multipart)):
                send(client, warm, f"warm-{way.split()[0]}")  # the code paths of this way loaded before the idle read
                time.sleep(0.5)
                idle = idle_kib(api.pid)
                exact = reset_peak(api.pid)
                started = time.perf_counter()
                with RssSampler(api.pid) as sampler:
                    stored = send(client, archive, f"big-{way.split()[0]}")
                seconds = time.perf_counter() - started
                assert stored == archive.stat().st_size, (stored, archive.stat().st_size)
                peak = max(sampler.peak_kib, status_kib(api.pid, "VmHWM") if exact else 0)
                rows.append(UploadRow(way, idle * 1024 / MB, peak * 1024 / MB, seconds, stored / MB / seconds, exact))
        return rows
    except Exception:
        print((workdir / "serve.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        for process in (api, serve):
            if process is not None:
                process.terminate()
        for process in (api, serve):
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


# --- (b) preparing ---


def floor(archive: Path, side: int) -> int:
    """The least any reader of the archive pays: read, decode, make RGB, resize, store; no checks, no hash."""
    with zipfile.ZipFile(archive) as z:
        infos = [info for info in z.infolist() if not info.is_dir()]
        out = np.empty((len(infos), side, side, 3), dtype=np.uint8)
        for i, info in enumerate(infos):
            image = Image.open(io.BytesIO(z.read(info)))
            image.draft("RGB", (side, side))  # JPEG: decoded at a reduced scale when that is still large enough
            out[i] = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR))
    return len(infos)


def ingested(archive: Path, side: int) -> int:
    from training.uploads import ColorMode, UploadOptions, ingest

    with tempfile.TemporaryDirectory() as out:
        options = UploadOptions(image_size=(side, side), color_mode=ColorMode.RGB)
        return ingest(archive, Path(out) / "prepared", options).images


def child(kind: str, archive: Path, side: int) -> None:
    import training.uploads  # noqa: F401  (its import is not part of the figure)

    start = time.perf_counter()
    images = floor(archive, side) if kind == "floor" else ingested(archive, side)
    seconds = time.perf_counter() - start
    print(json.dumps({"kind": kind, "images": images, "seconds": seconds}))


def measure_prepare(archive: Path, side: int, repeats: int) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"floor": [], "ingest": []}
    for _ in range(repeats):
        for kind in ("floor", "ingest"):  # alternating: both see the same load on a shared machine
            command = [sys.executable, __file__, "--child", kind, "--path", str(archive), "--side", str(side)]
            done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=256, help="size of the images made, in MiB (default 256)")
    parser.add_argument("--side", type=int, default=64, help="the side images are prepared to (default 64)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side of (b) (default 2)")
    parser.add_argument("--child", choices=("floor", "ingest"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.side)
        return 0
    with tempfile.TemporaryDirectory(prefix="epochal-bench-datasets-") as scratch:
        workdir = Path(scratch)
        started = time.perf_counter()
        images, size = build_folder(workdir / "images", args.mib)
        print(f"made {images} images ({size / MB:.0f} MB, PNG and JPEG) in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        archive = pack(dataset_files(workdir / "images"), workdir / "images.zip")
        packed_mb, seconds = archive.stat().st_size / MB, time.perf_counter() - started
        print(f"packed as {archive.name} by the CLI's packer: {packed_mb:.0f} MB in {seconds:.1f} s")

        print("\n(a) upload through the API process (RSS: resident memory of that process)")
        uploads = measure_upload(archive, workdir)
        for row in uploads:
            grew = row.peak_mb - row.idle_mb
            verdict = "within" if grew <= 100 else "OVER"
            print(
                f"  {row.way:10s} idle {row.idle_mb:6.0f} MB  peak {row.peak_mb:6.0f} MB  "
                f"+{grew:4.0f} MB ({verdict} the 100 MB target)  {row.seconds:5.1f} s  {row.mb_per_s:5.0f} MB/s"
                + ("" if row.exact_peak else "  (peak sampled every 5 ms: VmHWM could not be reset)")
            )

        print(f"\n(b) preparing {images} images to {args.side}x{args.side} RGB ({args.repeats} runs each, best shown)")
        runs = measure_prepare(archive, args.side, args.repeats)
        best = {kind: max(r["images"] / r["seconds"] for r in rows) for kind, rows in runs.items()}
        for kind, label in LABELS.items():
            each = ", ".join(f"{r['seconds']:.1f}" for r in runs[kind])
            print(f"  {label:40s} {best[kind]:6.0f} images/s  (runs: {each} s)")
        ratio = best["ingest"] / best["floor"]
        print(f"  ingest / floor: {ratio:.0%} (goal: at least 80%: {'met' if ratio >= 0.8 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
