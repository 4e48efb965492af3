"""A small cache of loaded networks, so a prediction does not reload the checkpoint from the database.

Each cached network comes with its micro-batcher (api/serving/batcher.py). A network is loaded once however
many requests miss the cache together (single flight per checkpoint), warmed up before it is served,
and only from bytes whose sha256 matches the one recorded when the worker wrote them (api/serving/integrity.py).
Its calls go through onnxruntime on its checked ONNX export, or through Keras (api/serving/runtimes.py): decided
once per checkpoint, at load, so a checkpoint is exported at most once however many first requests wait for it.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from api.serving.batcher import MicroBatcher
from api.serving.integrity import verified
from api.serving.runtimes import KERAS, choose_runtime
from config import get_settings
from models import Experiment
from models.specs import dataset_info_of
from training.results import CHECKPOINT_NAME

if TYPE_CHECKING:
    from training.prediction import Predictor


@dataclass(frozen=True)
class ServedModel:
    """A loaded network and the batcher its calls go through, in `runtime` (onnx or keras)."""

    predictor: Predictor  # decodes the uploads and reads the outputs whatever the runtime; the Keras network
    batcher: MicroBatcher
    runtime: str = KERAS


class PredictorCache:
    """Least-recently-used networks keyed by checkpoint sha256, so a new checkpoint is never served stale."""

    def __init__(self, capacity: int, window_s: float = 0.0, max_batch: int = 1) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self.max_batch = max_batch
        self.loads = 0  # checkpoints loaded so far: single flight means one per checkpoint while it stays cached
        self._items: OrderedDict[str, ServedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def _cached(self, sha256: str) -> ServedModel | None:
        served = self._items.get(sha256)
        if served is not None:
            self._items.move_to_end(sha256)
        return served

    def peek(self, sha256: str) -> ServedModel | None:
        """The network of checkpoint `sha256` if it is loaded; never loads (safe on the event loop)."""
        with self._lock:
            return self._cached(sha256)

    def get(self, experiment: Experiment, sha256: str, content: Callable[[], bytes]) -> ServedModel:
        """The network of `experiment`'s checkpoint `sha256`; `content` reads its bytes, called on a miss only.

        Blocking (it may load a network for seconds): call it from a worker thread, not the event loop.
        """
        with self._lock:
            served = self._cached(sha256)
            if served is not None:
                return served
            gate = self._loading.setdefault(sha256, threading.Lock())
        # Requests that miss together queue on one gate: the first loads, the others then find it cached.
        with gate:
            with self._lock:
                served = self._cached(sha256)
                if served is not None:
                    return served
            try:
                served = self._load(experiment, sha256, content())
            finally:
                with self._lock:
                    self._loading.pop(sha256, None)
            with self._lock:
                self.loads += 1
                self._items[sha256] = served
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
            return served

    def _load(self, experiment: Experiment, sha256: str, content: bytes) -> ServedModel:
        # Loading runs Keras' HDF5 reader on the bytes: only ever on the exact bytes the worker wrote.
        verified(content, sha256, experiment.id, CHECKPOINT_NAME)  # a 409 naming the mismatch, never loaded
        # Imported on first use: TensorFlow takes seconds to import, and most requests never need it.
        from training.prediction import Predictor

        with tempfile.TemporaryDirectory(prefix="epochal-predictor-") as folder:
            path = Path(folder) / CHECKPOINT_NAME
            path.write_bytes(content)
            predictor = Predictor.from_file(path, dataset_info_of(experiment), experiment.head_activation)
        predictor.warm_up()
        setting = get_settings().serving_runtime
        runtime = choose_runtime(setting, experiment.id, predictor.info, sha256, content, predictor)
        batcher = MicroBatcher(runtime.call, self.window_s, self.max_batch)
        return ServedModel(predictor, batcher, runtime.name)


_cache: PredictorCache | None = None


def get_predictor_cache() -> PredictorCache:
    global _cache
    if _cache is None:
        settings = get_settings()
        _cache = PredictorCache(
            settings.predictor_cache_size, settings.predict_batch_window_ms / 1000, settings.predict_max_batch
        )
    return _cache
