"""A checkpoint's ONNX export run by onnxruntime, and the check that it answers as the Keras network it came from.

onnxruntime answers the small networks in a fraction of TensorFlow's per-call time (docs/results/performance.md,
"Which runtime to serve with"), but an export is a conversion, and a converter can get an op subtly wrong: an export
serves only once its outputs on a fixed probe batch equal the Keras network's to `TOLERANCE`.

Nothing here imports TensorFlow; onnxruntime itself is imported when a session is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnxruntime

# What the exports are held to (tests/test_exports.py): the largest absolute difference of any output unit.
TOLERANCE = 1e-5
PROBE_SEED = 20240601
PROBE_RANDOM_IMAGES = 6

ModelCall = Callable[[np.ndarray], np.ndarray]


class OnnxPredictor:
    """One ONNX graph in an onnxruntime session, called like `training.prediction.Predictor.predict_batch`."""

    def __init__(self, content: bytes) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # Threads that spin between calls take CPU from the event loop and the other API processes on the same cores;
        # a prediction call is short and rare enough that waking the pool costs less.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session: onnxruntime.InferenceSession = onnxruntime.InferenceSession(
            content, options, providers=["CPUExecutionProvider"]
        )
        (graph_input,) = self.session.get_inputs()
        self.input_name: str = graph_input.name
        self.input_type: str = graph_input.type
        # The batch dimension is a name (or None) where it is dynamic, the others are numbers.
        self.input_shape: list[int | str | None] = list(graph_input.shape)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Raw outputs for a batch of preprocessed images (float32, as the Keras network gives them)."""
        outputs = self.session.run(None, {self.input_name: np.asarray(batch, dtype="float32")})
        return np.asarray(outputs[0])


def probe_batch(input_shape: Sequence[int]) -> np.ndarray:
    """The inputs every export is checked on: all black, all white and a few random images, raw 0..255 pixels."""
    rng = np.random.default_rng(PROBE_SEED)
    random = rng.integers(0, 256, (PROBE_RANDOM_IMAGES, *input_shape)).astype("float32")
    edges = np.stack([np.zeros(input_shape, dtype="float32"), np.full(input_shape, 255.0, dtype="float32")])
    return np.concatenate([edges, random])


def shape_mismatch(onnx: OnnxPredictor, contract_shape: Sequence[int | None]) -> str | None:
    """Why the graph's input is not the one the contract says (`[None, *input_shape]`), or None when it is."""
    got = onnx.input_shape
    batch_is_free = len(got) > 0 and not isinstance(got[0], int)
    if onnx.input_type != "tensor(float)" or not batch_is_free or got[1:] != list(contract_shape[1:]):
        return f"the ONNX graph takes {onnx.input_type} {got}, not float32 {list(contract_shape)}"
    return None


def disagreement(keras_call: ModelCall, onnx_call: ModelCall, input_shape: Sequence[int]) -> str | None:
    """Why `onnx_call` does not answer as `keras_call` on the probe batch (whole and one image alone), or None."""
    probe = probe_batch(input_shape)
    for inputs in (probe, probe[:1]):
        expected, got = keras_call(inputs), onnx_call(inputs)
        if got.shape != expected.shape:
            shapes = f"{list(got.shape)}, Keras {list(expected.shape)}"
            return f"onnxruntime answered shape {shapes} for a batch of {len(inputs)}"
        difference = float(np.max(np.abs(got.astype("float64") - expected.astype("float64"))))
        if not difference <= TOLERANCE:  # also a NaN
            return (
                f"onnxruntime's outputs differ from Keras' by up to {difference:.2e} on the probe batch of "
                f"{len(inputs)} (at most {TOLERANCE:g} is served)"
            )
    return None
