"""An archive of class folders read into the canonical arrays, in two streaming passes over its entries: the first
checks every entry and reads each image's header (size, colour) to settle the layout, the defaults and the counts;
the second decodes one image at a time into its preallocated slot. Memory holds one image, never the archive."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from training.errors import ImageTooLarge, InvalidImage
from training.image_decode import ACCEPTED_MESSAGE, decode_normalized, open_header
from training.uploads.archives import ARCHIVE_SUFFIXES, Format, archive_kind, entries
from training.uploads.canonical import CanonicalArrays, PreparedDataset, staging, write_manifest
from training.uploads.caps import UploadCaps, UploadOptions
from training.uploads.errors import UploadRefused
from training.uploads.fitting import default_size, fit_image, is_grey, upright_size
from training.uploads.layout import Layout, arrange
from training.uploads.names import is_junk
from training.uploads.plan import check_image_size, check_size, plan
from training.uploads.progress import CHECKING, ProgressCallback, StageProgress

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Survey:
    """What the first pass learnt: each image's upright (height, width) and whether it is grey, the folder entries,
    and the junk that was skipped."""

    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    grey: dict[str, bool] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _refused_image(entry: str, exc: Exception) -> UploadRefused:
    reason = str(exc).replace(f"; {ACCEPTED_MESSAGE}", "")
    return UploadRefused(entry, f"{reason}; replace or remove this file")


def _image_bytes(name: str, path: str, data: bytes) -> bytes:
    kind = archive_kind(data[:512])
    if kind is not None:
        raise UploadRefused(name, f"this is a {kind} archive inside the archive; unpack it into the class folders")
    return data


def _is_image_entry(name: str, path: str) -> bool:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in ARCHIVE_SUFFIXES:
        raise UploadRefused(name, "archives inside the archive are refused; unpack it into the class folders")
    raise UploadRefused(name, "this is not a PNG or JPEG image; class folders hold images only: remove it")


def survey(source: Path, fmt: Format, caps: UploadCaps, on_progress: ProgressCallback | None = None) -> Survey:
    """The first pass: every entry checked, each image's header read (nothing decoded)."""
    found = Survey()
    checked = StageProgress(on_progress, CHECKING, None)
    for entry in entries(source, fmt, caps):
        checked.step(entry.entries)
        if is_junk(entry.path):
            if not entry.is_folder:
                found.skipped.append(entry.name)
            continue
        if entry.is_folder:
            found.folders.append(entry.path)
            continue
        _is_image_entry(entry.name, entry.path)
        data = _image_bytes(entry.name, entry.path, entry.read())
        try:
            header = open_header(data, caps.decode)
        except (InvalidImage, ImageTooLarge) as exc:
            raise _refused_image(entry.name, exc) from exc
        found.sizes[entry.path] = upright_size(header)
        found.grey[entry.path] = is_grey(header)
    checked.end()
    return found


def _decoded(name: str, data: bytes, caps: UploadCaps, size: tuple[int, int]) -> Image.Image:
    try:
        return decode_normalized(data, caps.decode, size)
    except (InvalidImage, ImageTooLarge) as exc:
        raise _refused_image(name, exc) from exc


def read_folders(
    source: Path,
    fmt: Format,
    dest: Path,
    options: UploadOptions,
    caps: UploadCaps,
    on_progress: ProgressCallback | None = None,
) -> PreparedDataset:
    """The archive at `source` (of format `fmt`) prepared into `dest`."""
    found = survey(source, fmt, caps, on_progress)
    layout: Layout = arrange(list(found.sizes), found.folders, caps)
    held_out = not layout.has_test_split
    chosen, defaults = options.resolve(
        all_grey=all(found.grey.values()),
        common_size=lambda: default_size(Counter(found.sizes.values())),
        held_out=held_out,
    )
    size = chosen.image_size
    check_image_size(size, caps)
    shape = (size[0], size[1], chosen.channels)
    label = {name: index for index, name in enumerate(layout.classes)}
    labels = np.array([label[image.class_name] for image in layout.images], dtype=np.int64)
    splits = [image.split for image in layout.images]
    where = plan(splits, labels, chosen.test_fraction or 0.0, chosen.seed, layout.classes)
    check_size(where.counts, shape, caps)
    slot = {image.path: (where.split[i], where.position[i], int(labels[i])) for i, image in enumerate(layout.images)}
    with staging(dest) as folder:
        arrays = CanonicalArrays(folder, where.counts, shape)
        fitted = {split: StageProgress(on_progress, split, count) for split, count in where.counts.items()}
        written = 0
        for entry in entries(source, fmt, caps):
            if entry.path not in slot or entry.is_folder:
                continue
            split, position, index = slot[entry.path]
            image = _decoded(entry.name, entry.read(), caps, size)
            arrays.put(split, position, fit_image(image, size, chosen.fit, chosen.color_mode), index)
            fitted[split].step()
            written += 1
        if written != len(slot):
            raise UploadRefused(str(source.name), "the archive changed while it was read; upload it again")
        for progress in fitted.values():
            progress.end()
        sha256, size_bytes = arrays.finish(layout.classes)
        prepared = PreparedDataset(
            path=dest,
            source_format=str(fmt),
            layout="train/test folders" if layout.has_test_split else "class folders",
            class_names=layout.classes,
            counts=where.per_class(layout.classes),
            input_shape=shape,
            image_size=size,
            fit=chosen.fit,
            color_mode=chosen.color_mode,
            held_out=where.held_out,
            test_fraction=chosen.test_fraction,
            seed=chosen.seed,
            defaults=defaults,
            images=len(slot),
            size_bytes=size_bytes,
            sha256=sha256,
            skipped=tuple(found.skipped),
        )
        write_manifest(folder, prepared)
    return prepared
