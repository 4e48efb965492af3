"""An .npz in Keras' layout (`x_train`, `y_train`, optionally `x_test` and `y_test`, optionally `class_names`)
read into the canonical arrays. Arrays are never unpickled (object arrays are refused from their header), their
headers are checked before any data is read, and the images are read one at a time from the zip stream, so memory
holds one image and the labels, never the pixel arrays."""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.uploads.archives import Format, entries
from training.uploads.canonical import CanonicalArrays, PreparedDataset, staging, write_manifest
from training.uploads.caps import ColorMode, UploadCaps, UploadOptions
from training.uploads.errors import WHOLE_UPLOAD, UploadRefused
from training.uploads.fitting import default_size, fit_image
from training.uploads.measure import Budget, MeasuredReader
from training.uploads.plan import SPLITS, check_image_size, check_size, plan
from training.uploads.progress import CHECKING, ProgressCallback, StageProgress

KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")
LAYOUT = "an .npz holds x_train and y_train (and x_test with y_test, and class_names), as keras.datasets loads them"


@dataclass(frozen=True)
class Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool


class _Npz:
    """The members of the .npz, opened through the caps (each byte counted, each ratio checked)."""

    def __init__(self, z: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], caps: UploadCaps, size: int) -> None:
        self.z, self.infos, self.caps = z, infos, caps
        self.budget = Budget(caps, lambda: size)

    def open(self, key: str) -> MeasuredReader:
        info = self.infos[key]
        return MeasuredReader(self.z.open(info), f"{key}.npy", self.caps, self.budget, max(info.compress_size, 1))

    def header(self, key: str) -> tuple[Header, MeasuredReader]:
        """The array's header, and its stream positioned at its data."""
        stream = self.open(key)
        try:
            version = np.lib.format.read_magic(stream)  # type: ignore[no-untyped-call]
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(stream)  # type: ignore[operator]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise UploadRefused(
                f"{key}.npy", f"this is not a readable .npy array ({exc}); save it with numpy.savez"
            ) from exc
        if dtype.hasobject:
            raise UploadRefused(f"{key}.npy", "object arrays are refused (loading them runs pickle); save plain arrays")
        return Header(tuple(int(n) for n in shape), dtype, bool(fortran)), stream

    def small(self, key: str, header: Header, stream: MeasuredReader) -> np.ndarray:
        """A small array (labels, class names) read whole; its size is bounded by its checked header."""
        count = int(np.prod(header.shape, dtype=np.int64))
        data = stream.read_exact(count * header.dtype.itemsize)
        array = np.frombuffer(data, dtype=header.dtype, count=count)
        return array.reshape(header.shape, order="F" if header.fortran else "C")


def _labels(npz: _Npz, key: str, images: int) -> np.ndarray:
    header, stream = npz.header(key)
    if header.dtype.kind not in "iu":
        raise UploadRefused(f"{key}.npy", f"labels are {header.dtype}; save them as integers (class indices)")
    if header.shape not in ((images,), (images, 1)):
        raise UploadRefused(
            f"{key}.npy",
            f"{header.shape[0] if header.shape else 0:,} labels for {images:,} images ({header.shape}); one each",
        )
    return npz.small(key, header, stream).reshape(-1).astype(np.int64)


def _class_names(npz: _Npz) -> tuple[str, ...] | None:
    if "class_names" not in npz.infos:
        return None
    header, stream = npz.header("class_names")
    if header.dtype.kind != "U" or len(header.shape) != 1 or header.shape[0] * header.dtype.itemsize > 2**20:
        raise UploadRefused("class_names.npy", "class_names is a 1-D array of strings (numpy.array(['cat', 'dog']))")
    names = tuple(str(name) for name in npz.small("class_names", header, stream))
    if len(set(names)) != len(names) or not all(names):
        raise UploadRefused("class_names.npy", "class names must be distinct and not empty")
    return names


def _image_header(npz: _Npz, key: str, caps: UploadCaps) -> Header:
    header, _ = npz.header(key)
    if header.dtype != np.uint8:
        raise UploadRefused(f"{key}.npy", f"pixels are {header.dtype}; save them as uint8 0..255 (x.astype('uint8'))")
    if header.fortran:
        raise UploadRefused(f"{key}.npy", "the array is in Fortran order; save numpy.ascontiguousarray(x)")
    shape = header.shape
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3))):
        raise UploadRefused(f"{key}.npy", f"images are [N, H, W] (grey) or [N, H, W, 3] (RGB); this is {list(shape)}")
    if shape[1] * shape[2] > caps.decode.max_pixels:
        raise UploadRefused(f"{key}.npy", f"images of {shape[1]} x {shape[2]} are over the pixel cap; shrink them")
    return header


def _to_pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels)  # uint8 [H, W] is "L", [H, W, 3] is "RGB"


def read_npz(
    source: Path, dest: Path, options: UploadOptions, caps: UploadCaps, on_progress: ProgressCallback | None = None
) -> PreparedDataset:
    """The .npz at `source` prepared into `dest`."""
    infos: dict[str, zipfile.ZipInfo] = {}
    checked = StageProgress(on_progress, CHECKING, None)
    for entry in entries(source, Format.NPZ, caps):  # names, kinds and count checked as for any zip
        checked.step(entry.entries)
        key = entry.path.removesuffix(".npy")
        if key not in KEYS:
            raise UploadRefused(entry.name, f"unknown array '{key}'; {LAYOUT}")
    checked.end()
    with zipfile.ZipFile(source) as z:
        for info in z.infolist():
            infos[info.filename.removeprefix("./").removesuffix(".npy")] = info
        for key in ("x_train", "y_train"):
            if key not in infos:
                raise UploadRefused(WHOLE_UPLOAD, f"there is no {key}; {LAYOUT}")
        if ("x_test" in infos) != ("y_test" in infos):
            raise UploadRefused(WHOLE_UPLOAD, f"x_test and y_test come together; {LAYOUT}")
        npz = _Npz(z, infos, caps, source.stat().st_size)
        present = [s for s in SPLITS if f"x_{s}" in infos]
        headers = {s: _image_header(npz, f"x_{s}", caps) for s in present}
        train = headers["train"]
        for s in present:
            if headers[s].shape[1:] != train.shape[1:]:
                raise UploadRefused(
                    f"x_{s}.npy", f"images are {list(headers[s].shape[1:])}, x_train's {list(train.shape[1:])}"
                )
        labels = {s: _labels(npz, f"y_{s}", headers[s].shape[0]) for s in present}
        names = _class_names(npz)
        top = max(int(y.max(initial=-1)) for y in labels.values())
        if names is None:
            names = tuple(str(i) for i in range(top + 1))
        for s in present:
            y = labels[s]
            if y.size and (y.min() < 0 or y.max() >= len(names)):
                bad = int(y[(y < 0) | (y >= len(names))][0])
                raise UploadRefused(f"y_{s}.npy", f"label {bad} is not a class (0..{len(names) - 1}); fix the labels")
        present_classes = np.bincount(labels["train"], minlength=len(names))
        if len(names) < 2 or int((present_classes > 0).sum()) < 2:
            raise UploadRefused("y_train.npy", "there is only one class; a classifier needs at least two")
        if len(names) > caps.max_classes:
            raise UploadRefused("class_names.npy", f"{len(names):,} classes; at most {caps.max_classes:,} are accepted")
        for name, count in zip(names, present_classes, strict=True):
            if count == 0:
                raise UploadRefused(
                    "y_train.npy", f"class '{name}' has no images (an empty class); drop it or add some"
                )
        in_h, in_w = train.shape[1], train.shape[2]
        grey = len(train.shape) == 3 or train.shape[3] == 1
        held_out = "x_test" not in infos
        chosen, defaults = options.resolve(
            all_grey=grey, common_size=lambda: default_size(Counter({(in_h, in_w): 1})), held_out=held_out
        )
        size = chosen.image_size
        check_image_size(size, caps)
        shape = (size[0], size[1], chosen.channels)
        sources = [s for s in present for _ in range(headers[s].shape[0])]
        all_labels = np.concatenate([labels[s] for s in present])
        where = plan(sources, all_labels, chosen.test_fraction or 0.0, chosen.seed, names)
        check_size(where.counts, shape, caps)
        as_is = size == (in_h, in_w) and grey == (chosen.color_mode is ColorMode.GRAYSCALE)
        with staging(dest) as folder:
            arrays = CanonicalArrays(folder, where.counts, shape)
            fitted = {split: StageProgress(on_progress, split, count) for split, count in where.counts.items()}
            item = 0
            for s in present:
                header, stream = npz.header(f"x_{s}")
                image_shape = header.shape[1:3] if grey else header.shape[1:]
                one = int(np.prod(header.shape[1:]))
                for _ in range(header.shape[0]):
                    pixels = np.frombuffer(stream.read_exact(one), dtype=np.uint8).reshape(image_shape)
                    if not as_is:
                        pixels = fit_image(_to_pil(pixels), size, chosen.fit, chosen.color_mode)
                    arrays.put(where.split[item], where.position[item], pixels, int(all_labels[item]))
                    fitted[where.split[item]].step()
                    item += 1
            for progress in fitted.values():
                progress.end()
            sha256, size_bytes = arrays.finish(names)
            prepared = PreparedDataset(
                path=dest,
                source_format=str(Format.NPZ),
                layout="npz",
                class_names=names,
                counts=where.per_class(names),
                input_shape=shape,
                image_size=size,
                fit=chosen.fit,
                color_mode=chosen.color_mode,
                held_out=where.held_out,
                test_fraction=chosen.test_fraction,
                seed=chosen.seed,
                defaults=defaults,
                images=item,
                size_bytes=size_bytes,
                sha256=sha256,
                skipped=(),
            )
            write_manifest(folder, prepared)
    return prepared
