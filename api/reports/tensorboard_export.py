"""TensorBoard event files written from the stored history, without TensorFlow.

The layout is the one Keras' TensorBoard callback writes: `<logdir>/<run>/train` and
`<logdir>/<run>/validation`, tags `epoch_loss` and `epoch_accuracy`, step = epoch. Each value is a
rank-0 float32 tensor with the scalars plugin's metadata, as `tf.summary.scalar` writes it.

Only the `tensorboard` package's protos and record writer are used: its `EventFileWriter` goes
through `tensorboard.compat.tf`, which imports TensorFlow whenever it is installed, and the API
process must not pay for that (seconds, and hundreds of megabytes).
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter

TRAIN, VALIDATION = "train", "validation"
# Split -> (TensorBoard tag, EpochScalars field): the names Keras' callback uses, so logs mix with real ones.
TAGS: dict[str, tuple[tuple[str, str], ...]] = {
    TRAIN: (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy")),
    VALIDATION: (("epoch_loss", "val_loss"), ("epoch_accuracy", "val_accuracy")),
}
MAX_LABEL_LENGTH = 80


@dataclass(frozen=True)
class EpochScalars:
    """One finished epoch's metrics; None where training diverged."""

    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    wall_time: float  # seconds since 1970 (UTC) when the epoch was recorded


@dataclass(frozen=True)
class Run:
    """One experiment's history under one run name."""

    name: str
    epochs: Sequence[EpochScalars]


def run_name(experiment_id: int, label: str | None = None, id_width: int = 0) -> str:
    """A folder name such as `exp-12_optimizer=adam,learning_rate=0.01`, safe on every file system."""
    name = f"exp-{experiment_id:0{id_width}d}"
    if label:
        # Sweep labels join axes with "; " (and variants with ", "): one comma reads as well and needs no quoting.
        text = unicodedata.normalize("NFKD", label.strip()).encode("ascii", "ignore").decode("ascii")
        text = re.sub(r"\s*[;,]\s*", ",", text)
        text = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text).strip("_.,")[:MAX_LABEL_LENGTH].rstrip("_.,")
        if text:
            name = f"{name}_{text}"
    return name


def _scalar_value(tag: str, value: float) -> summary_pb2.Summary.Value:
    summary_metadata = scalar_metadata.create_summary_metadata(display_name="", description="")
    # An explicit data class is authoritative for TensorBoard's Rust data server; no inference needed.
    summary_metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    # float32 on purpose: TensorBoard's data server reads rank-0 DT_FLOAT tensors and drops DT_DOUBLE ones.
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(), float_val=[value]
    )
    return summary_pb2.Summary.Value(tag=tag, metadata=summary_metadata, tensor=tensor)


def _split_events(epochs: Sequence[EpochScalars], split: str) -> list[event_pb2.Event]:
    start = min((e.wall_time for e in epochs), default=0.0)
    events = [event_pb2.Event(wall_time=start, file_version="brain.Event:2")]
    for epoch in sorted(epochs, key=lambda e: e.epoch):
        # A diverged value is left out (a gap), as the API reports it as null rather than as a number.
        values = [
            _scalar_value(tag, value) for tag, field in TAGS[split] if (value := getattr(epoch, field)) is not None
        ]
        if values:
            events.append(
                event_pb2.Event(wall_time=epoch.wall_time, step=epoch.epoch, summary=summary_pb2.Summary(value=values))
            )
    return events


def write_run(run: Run, logdir: Path) -> list[Path]:
    """Write one run's train and validation event files under `logdir/<run.name>/`; return their paths."""
    paths = []
    for split in (TRAIN, VALIDATION):
        events = _split_events(run.epochs, split)
        directory = logdir / run.name / split
        directory.mkdir(parents=True, exist_ok=True)
        # "tfevents" in the name is what TensorBoard looks for; no host name or pid, unlike TensorFlow's own.
        path = directory / f"events.out.tfevents.{int(events[0].wall_time):010d}.epochal"
        with path.open("wb") as file:
            writer = RecordWriter(file)
            for event in events:
                writer.write(event.SerializeToString())
        paths.append(path)
    return paths


def write_logdir(runs: Iterable[Run], logdir: Path) -> list[Path]:
    """Write every run into `logdir` (created if missing); return the event files written."""
    logdir.mkdir(parents=True, exist_ok=True)
    return [path for run in runs for path in write_run(run, logdir)]


def _anonymous(member: tarfile.TarInfo) -> tarfile.TarInfo:
    # The server's user and umask are nobody's business, and extracted files should be plainly readable.
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    member.mode = 0o755 if member.isdir() else 0o644
    return member


def logdir_tarball(runs: Iterable[Run]) -> bytes:
    """A .tar.gz of a logdir holding `runs`, its run folders at the top; built in a temporary folder, then removed."""
    with tempfile.TemporaryDirectory(prefix="epochal-tensorboard-") as tmp:
        root = Path(tmp)
        write_logdir(runs, root)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(root.rglob("*")):
                tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=_anonymous)
        return buffer.getvalue()
