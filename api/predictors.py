"""A small cache of loaded networks, so a prediction does not reload the checkpoint from the database."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import HTTPException

from config import get_settings
from models import Artifact, Experiment
from training.results import CHECKPOINT_NAME
from training.spec import DATASETS

if TYPE_CHECKING:
    from training.prediction import Predictor


class CheckpointCorrupt(HTTPException):
    """The stored checkpoint does not match the sha256 recorded when it was written: it is never loaded."""

    def __init__(self, experiment_id: int) -> None:
        super().__init__(
            status_code=409,
            detail=f"checkpoint of experiment {experiment_id} failed its integrity check; retry the experiment",
        )


class PredictorCache:
    """Least-recently-used networks keyed by checkpoint sha256, so a new checkpoint is never served stale."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, experiment: Experiment, artifact: Artifact) -> Predictor:
        with self._lock:
            if artifact.sha256 in self._items:
                self._items.move_to_end(artifact.sha256)
                return self._items[artifact.sha256]
        predictor = self._load(experiment, artifact)
        with self._lock:
            self._items[artifact.sha256] = predictor
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return predictor

    @staticmethod
    def _load(experiment: Experiment, artifact: Artifact) -> Predictor:
        # Loading runs Keras' HDF5 reader on the bytes: only ever on the exact bytes the worker wrote.
        if hashlib.sha256(artifact.content).hexdigest() != artifact.sha256:
            raise CheckpointCorrupt(experiment.id)
        # Imported on first use: TensorFlow takes seconds to import, and most requests never need it.
        from training.prediction import Predictor

        with tempfile.TemporaryDirectory(prefix="epochal-predictor-") as folder:
            path = Path(folder) / CHECKPOINT_NAME
            path.write_bytes(artifact.content)
            return Predictor.from_file(path, DATASETS[experiment.dataset], experiment.head_activation)


_cache: PredictorCache | None = None


def get_predictor_cache() -> PredictorCache:
    global _cache
    if _cache is None:
        _cache = PredictorCache(get_settings().predictor_cache_size)
    return _cache
