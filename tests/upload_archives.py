"""Archives made in code for the upload tests: images encoded with Pillow, packed as a zip or a tar with every
kind of member a hostile archive can hold (links, devices, odd names)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(rng: np.random.Generator, height: int, width: int, channels: int = 1) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def class_files(
    classes: Mapping[str, int], size: tuple[int, int] = (12, 16), channels: int = 1, seed: int = 0, prefix: str = ""
) -> dict[str, bytes]:
    """PNGs of noise, `classes[name]` of each class, at `prefix<class>/<i>.png`."""
    rng = np.random.default_rng(seed)
    return {
        f"{prefix}{name}/{i:03d}.png": encode(noise(rng, *size, channels))
        for name, count in classes.items()
        for i in range(count)
    }


def write_zip(path: Path, files: Mapping[str, bytes], folders: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for folder in folders:
            z.writestr(folder.rstrip("/") + "/", b"")
        for name, data in files.items():
            z.writestr(name, data)
    return path


def tar_member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    return info, data


def write_tar(
    path: Path,
    files: Mapping[str, bytes],
    compression: str = "",
    extra: Sequence[tuple[tarfile.TarInfo, bytes]] = (),
) -> Path:
    with tarfile.open(path, f"w:{compression}", format=tarfile.PAX_FORMAT) as t:  # type: ignore[call-overload]
        for name, data in files.items():
            info, _ = tar_member(name, data)
            t.addfile(info, io.BytesIO(data))
        for info, data in extra:
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path
