"""A stored checkpoint (`best_model.h5` bytes) turned into files other tools load: Keras' own `.keras`, a zipped
TensorFlow SavedModel for TF Serving, and ONNX for onnxruntime.

Every export takes what the checkpoint takes: float32 raw 0..255 pixels, `[N, H, W]` for a grayscale dataset or
`[N, H, W, 3]` for RGB; the Rescaling(1/255) layer of every network the service builds goes along in the graph.
The SavedModel's `serving_default` signature and the ONNX graph name that input `images`.

The network is loaded fresh from the `.h5` bytes without compiling it, so it has no optimizer: the Keras 3.15.1
bug where an `.h5` save drops the optimizer from a live model's compile config (and a later `.keras` save of that
model reloads with the wrong one) has nothing to act on. The `.keras` file carries no compile config either.

TensorFlow is imported inside the functions: the API imports this module at start and must not pay for TensorFlow.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from training.results import CHECKPOINT_NAME

if TYPE_CHECKING:
    import keras

INPUT_NAME = "images"
# A SavedModel zip holds one TF Serving version folder: unzipped into a model's base path, it serves as version 1.
SAVEDMODEL_VERSION = "1"
# A fixed time for every member of the SavedModel zip, so the archive's bytes depend on its files alone.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ExportFormat(StrEnum):
    """The formats a checkpoint can be downloaded in."""

    H5 = "h5"  # the checkpoint itself, as the worker wrote it
    KERAS = "keras"
    SAVEDMODEL = "savedmodel"
    ONNX = "onnx"


@dataclass(frozen=True)
class ExportFile:
    """What one format's file is called and what it is."""

    name: str
    media_type: str


FILES: dict[ExportFormat, ExportFile] = {
    ExportFormat.H5: ExportFile(CHECKPOINT_NAME, "application/x-hdf5"),
    ExportFormat.KERAS: ExportFile("best_model.keras", "application/zip"),  # a .keras file is a zip archive
    ExportFormat.SAVEDMODEL: ExportFile("best_model_savedmodel.zip", "application/zip"),
    ExportFormat.ONNX: ExportFile("best_model.onnx", "application/octet-stream"),
}


@dataclass(frozen=True)
class Export:
    """One exported file: its bytes and their sha256."""

    format: ExportFormat
    name: str
    media_type: str
    content: bytes
    sha256: str


class ExportFailed(Exception):
    """The checkpoint could not be loaded or converted to the format asked for."""


def export_checkpoint(checkpoint: bytes, fmt: ExportFormat) -> Export:
    """`checkpoint` (the bytes of a `.h5` the service wrote) as a file of format `fmt`, with its sha256.

    Raises `ExportFailed` when the bytes are not a network Keras loads or the conversion fails. Blocking, and
    seconds long for ONNX: run it off any event loop.
    """
    file = FILES[fmt]
    if fmt is ExportFormat.H5:
        content = checkpoint
    else:
        with tempfile.TemporaryDirectory(prefix="epochal-export-") as folder:
            content = _convert(checkpoint, fmt, Path(folder))
    return Export(fmt, file.name, file.media_type, content, hashlib.sha256(content).hexdigest())


def _convert(checkpoint: bytes, fmt: ExportFormat, folder: Path) -> bytes:
    source = folder / CHECKPOINT_NAME
    source.write_bytes(checkpoint)
    try:
        import keras

        network = keras.models.load_model(source, compile=False)
    except Exception as exc:  # h5py and Keras raise many kinds for a file that is not a network
        raise ExportFailed(f"{CHECKPOINT_NAME} does not load as a Keras network ({type(exc).__name__}: {exc})") from exc
    writers: dict[ExportFormat, Callable[[keras.Model, Path], bytes]] = {
        ExportFormat.KERAS: _keras,
        ExportFormat.SAVEDMODEL: _savedmodel,
        ExportFormat.ONNX: _onnx,
    }
    try:
        return writers[fmt](network, folder)
    except Exception as exc:  # a converter's refusal of a layer, an op or a shape
        raise ExportFailed(f"the network could not be exported as {fmt} ({type(exc).__name__}: {exc})") from exc


def _input_signature(network: keras.Model) -> list[object]:
    import tensorflow as tf

    # Batch first, any batch size; the rest as the checkpoint's own input layer says.
    return [tf.TensorSpec((None, *network.input_shape[1:]), tf.float32, name=INPUT_NAME)]


def _keras(network: keras.Model, folder: Path) -> bytes:
    path = folder / FILES[ExportFormat.KERAS].name
    network.save(path)
    return path.read_bytes()


def _savedmodel(network: keras.Model, folder: Path) -> bytes:
    target = folder / "savedmodel"
    # Keras writes `serving_default` (and `serve`) with the forward pass in inference mode for this signature.
    network.export(str(target), format="tf_saved_model", verbose=False, input_signature=_input_signature(network))
    archive = folder / FILES[ExportFormat.SAVEDMODEL].name
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(p for p in target.rglob("*") if p.is_file()):
            member = zipfile.ZipInfo(f"{SAVEDMODEL_VERSION}/{path.relative_to(target).as_posix()}", ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            zipped.writestr(member, path.read_bytes())
    return archive.read_bytes()


def _onnx(network: keras.Model, folder: Path) -> bytes:
    path = folder / FILES[ExportFormat.ONNX].name
    # Keras' own exporter: tf2onnx on the traced forward pass, patched by Keras for NumPy 2.
    network.export(str(path), format="onnx", verbose=False, input_signature=_input_signature(network))
    return path.read_bytes()
