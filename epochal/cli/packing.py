"""A dataset folder packed into a zip for upload: its class folders as they are, file-manager and editor junk left
out, written to a file a file at a time (a folder of gigabytes never sits in memory)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

# What `epochal datasets push` sends as it is; a folder is zipped first.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".npz")
# Written by Finder, Explorer and macOS' zip, or by editors and tools, never data: the API would skip the first
# kind anyway, and the rest (.git/, .ipynb_checkpoints/) would be refused as files that are no images.
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx", "__pycache__"})
# Formats that are compressed already: stored as they are, since deflating them again costs time and saves nothing.
COMPRESSED = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".npz"})

PackProgress = Callable[[int, int], None]  # (files packed, files in all)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def is_junk(name: str) -> bool:
    """A file or folder name never packed: hidden ones (.DS_Store, ._* AppleDouble, .git) and JUNK_NAMES."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def dataset_files(folder: Path) -> list[tuple[Path, str]]:
    """Every file under `folder` to pack, with its name in the archive (relative, '/'-separated), sorted; junk left
    out. Links to files are read through; links to folders are not followed (one could loop)."""
    found: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_junk(d))
        for name in sorted(files):
            path = Path(root, name)
            if not is_junk(name) and path.is_file():
                found.append((path, path.relative_to(folder).as_posix()))
    return found


def pack(files: Sequence[tuple[Path, str]], target: Path, progress: PackProgress | None = None) -> Path:
    """`files` (from `dataset_files`) as the zip `target`, each file copied from disk in pieces."""
    with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
        for done, (path, name) in enumerate(files, start=1):
            kind = zipfile.ZIP_STORED if path.suffix.lower() in COMPRESSED else zipfile.ZIP_DEFLATED
            archive.write(path, name, compress_type=kind)
            if progress is not None:
                progress(done, len(files))
    return target
