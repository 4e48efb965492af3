"""What reading a large upload costs: peak memory and images per second, against a plain Pillow loop.

    python bench/upload_ingest.py [--images 20000] [--side 32] [--format zip|tar.gz]

Builds an archive of `--images` small noise PNGs in 10 class folders (in a temporary folder), then, each in a fresh
process so that peak RSS is its own: a plain loop that opens each entry with zipfile/tarfile, decodes it with Pillow
and resizes it (the floor any reader pays), and `training.uploads.ingest` on the same archive (two streaming
passes, every check, the canonical arrays and their hash). Prints peak RSS (ru_maxrss) and images/s for each.
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(path: Path, images: int, side: int, fmt: str) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    # One of the two, closed below (ruff's SIM115 cannot see a conditional pair of context managers).
    zipped = zipfile.ZipFile(path, "w") if fmt == "zip" else None
    tarred = tarfile.open(path, "w:gz") if fmt == "tar.gz" else None  # noqa: SIM115
    for i in range(images):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(buffer, "PNG")
        name = f"class{i % 10}/{i:06d}.png"
        if zipped is not None:
            zipped.writestr(name, buffer.getvalue())
        elif tarred is not None:
            info = tarfile.TarInfo(name)
            info.size = buffer.tell()
            buffer.seek(0)
            tarred.addfile(info, buffer)
    for archive in (zipped, tarred):
        if archive is not None:
            archive.close()


def plain(path: Path, side: int) -> int:
    from PIL import Image

    count = 0
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                Image.open(io.BytesIO(z.read(info))).convert("L").resize((side, side), Image.Resampling.BILINEAR)
                count += 1
    else:
        with tarfile.open(path, "r|gz") as t:
            for member in t:
                data = t.extractfile(member)
                if data is not None:
                    Image.open(io.BytesIO(data.read())).convert("L").resize((side, side), Image.Resampling.BILINEAR)
                    count += 1
    return count


def ingested(path: Path, side: int) -> int:
    from training.uploads import UploadOptions, ingest

    with tempfile.TemporaryDirectory() as out:
        return ingest(path, Path(out) / "ds", UploadOptions(image_size=(side, side))).images


def child(kind: str, path: Path, side: int) -> None:
    start = time.perf_counter()
    count = plain(path, side) if kind == "plain" else ingested(path, side)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{kind:8s} {count:7d} images  {seconds:6.1f} s  {count / seconds:8.0f} images/s  peak RSS {peak_mib:6.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--format", choices=("zip", "tar.gz"), default="zip")
    parser.add_argument("--child", choices=("plain", "ingest"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.side)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload.{args.format}"
        build(path, args.images, args.side, args.format)
        print(f"{args.images} PNGs of {args.side}x{args.side} as {args.format}: {path.stat().st_size / 2**20:.1f} MiB")
        for kind in ("plain", "ingest"):
            command = [sys.executable, __file__, "--child", kind, "--path", str(path), "--side", str(args.side)]
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
