"""One upload (a zip or tar of class folders, or an .npz) into a prepared dataset folder, or refused whole."""

from __future__ import annotations

from pathlib import Path

from training.uploads.archives import Format, sniff
from training.uploads.canonical import PreparedDataset
from training.uploads.caps import UploadCaps, UploadOptions
from training.uploads.folders import read_folders
from training.uploads.npz import read_npz
from training.uploads.progress import ProgressCallback


def ingest(
    source: Path,
    dest: Path,
    options: UploadOptions | None = None,
    caps: UploadCaps | None = None,
    on_progress: ProgressCallback | None = None,
) -> PreparedDataset:
    """The upload at `source` (its format from its first bytes) prepared into the new folder `dest` (see
    `training.uploads.canonical` for what it holds). `UploadRefused` names the entry at fault and leaves no `dest`.

    `on_progress(stage, done, total)`, when given, hears how far it got now and then (`training.uploads.progress`);
    it runs on this thread, so it should be quick, and what it raises stops the preparation."""
    options, caps = options or UploadOptions(), caps or UploadCaps()
    fmt = sniff(source)
    if fmt is Format.NPZ:
        return read_npz(source, dest, options, caps, on_progress)
    return read_folders(source, fmt, dest, options, caps, on_progress)
