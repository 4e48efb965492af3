"""Which runtime a loaded network's predictions go through: onnxruntime on its ONNX export, or Keras.

With EPOCHAL_SERVING_RUNTIME=auto (the default) a network is served through onnxruntime when all of this holds,
and by Keras otherwise, with the reason logged:

- onnxruntime imports;
- the checkpoint has an ONNX export: the stored one (a download's, or an earlier load's, of the same checkpoint
  bytes), else one made now through the export cache (api/serving/export_cache.py), which stores it, so a checkpoint
  is exported once for every process and restart;
- the graph takes the input the experiment's contract says (api/serving/model_contract.py): float32, any batch size,
  the dataset's image shape;
- on a fixed probe batch, its outputs equal the Keras network's to 1e-5 (training/onnx_runtime.py).

The answer does not depend on the runtime: the same decoding before the call and the same interpretation after it
(training.prediction.Predictor), on outputs within 1e-5 of each other. The Keras network stays loaded beside the
session: it is what was checked against, and it is served instead whenever the session cannot be.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.http.metrics import NETWORK_LOADS
from api.serving.export_cache import get_export_cache
from api.serving.integrity import ArtifactCorrupt
from api.serving.model_contract import model_input
from training.exports import ExportFailed, ExportFormat
from training.onnx_runtime import ModelCall, OnnxPredictor, disagreement, shape_mismatch
from training.spec import DatasetInfo

if TYPE_CHECKING:
    from training.prediction import Predictor

logger = logging.getLogger(__name__)

ONNX, KERAS = "onnx", "keras"


@dataclass(frozen=True)
class Runtime:
    """What a network's model calls go through: `name` (onnx or keras), `call`, and why Keras when it is Keras."""

    name: str
    call: ModelCall
    reason: str | None = None


def choose_runtime(
    setting: str, experiment_id: int, dataset: DatasetInfo, sha256: str, checkpoint: bytes, predictor: Predictor
) -> Runtime:
    """The runtime to serve `predictor`'s network with, the checkpoint's bytes (`checkpoint`, checked against `sha256`)
    exported to ONNX if it has no export yet. Blocking (an export takes a fraction of a second to seconds)."""
    if setting == KERAS:
        runtime = Runtime(KERAS, predictor.predict_batch, "EPOCHAL_SERVING_RUNTIME is keras")
    else:
        runtime = _onnx_or_keras(experiment_id, dataset, sha256, checkpoint, predictor)
    NETWORK_LOADS.labels(runtime.name).inc()
    if runtime.name == ONNX:
        logger.info("serving checkpoint %s of experiment %d through onnxruntime", sha256[:12], experiment_id)
    else:
        logger.warning(
            "serving checkpoint %s of experiment %d with Keras: %s", sha256[:12], experiment_id, runtime.reason
        )
    return runtime


def _onnx_or_keras(
    experiment_id: int, dataset: DatasetInfo, sha256: str, checkpoint: bytes, predictor: Predictor
) -> Runtime:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return Runtime(KERAS, predictor.predict_batch, f"onnxruntime is not installed ({exc})")
    try:
        export = get_export_cache().for_checkpoint(experiment_id, checkpoint, sha256, ExportFormat.ONNX)
    except ExportFailed as exc:
        return Runtime(KERAS, predictor.predict_batch, f"no ONNX export: {exc}")
    except ArtifactCorrupt as exc:  # a stored export whose bytes changed: the checkpoint itself is still served
        return Runtime(KERAS, predictor.predict_batch, f"the stored ONNX export is refused: {exc.detail}")
    try:
        onnx = OnnxPredictor(export.content)
    except Exception as exc:  # onnxruntime raises its own kinds for a graph it cannot run
        unloadable = f"onnxruntime cannot load the export ({type(exc).__name__}: {exc})"
        return Runtime(KERAS, predictor.predict_batch, unloadable)
    reason = shape_mismatch(onnx, model_input(dataset).input_shape)
    if reason is None:
        try:
            reason = disagreement(predictor.predict_batch, onnx.predict_batch, predictor.info.input_shape)
        except Exception as exc:  # a graph that loads but fails on a real input
            reason = f"onnxruntime failed on the probe batch ({type(exc).__name__}: {exc})"
    if reason is not None:
        return Runtime(KERAS, predictor.predict_batch, reason)
    return Runtime(ONNX, onnx.predict_batch)
