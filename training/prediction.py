"""A loaded network that answers one image at a time, without Keras' per-call `predict()` overhead."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.images import DecodeLimits, decode_cost, preprocess_image
from training.labels import predicted_classes
from training.spec import Activation, DatasetInfo

PROBABILITY_ACTIVATIONS = (Activation.SIGMOID, Activation.SOFTMAX)


@dataclass(frozen=True)
class Prediction:
    label: str
    class_index: int
    probabilities: dict[str, float] | None  # None for relu/linear heads, whose outputs are raw scores
    outputs: list[float]  # the network's raw output units


def interpret_outputs(outputs: np.ndarray, info: DatasetInfo, activation: Activation) -> Prediction:
    """Label, class index and per-class probabilities from one row of network outputs."""
    row = np.asarray(outputs, dtype="float64").reshape(-1)
    index = int(predicted_classes(row[np.newaxis])[0])
    probabilities: dict[str, float] | None = None
    if activation in PROBABILITY_ACTIVATIONS:
        if row.size == 1:
            # One sigmoid unit scores the positive (second) class: p(dog), and p(cat) = 1 - p(dog).
            probabilities = {info.class_names[0]: 1.0 - float(row[0]), info.class_names[1]: float(row[0])}
        else:
            probabilities = {name: float(p) for name, p in zip(info.class_names, row, strict=True)}
    return Prediction(info.class_names[index], index, probabilities, [float(v) for v in row])


class Predictor:
    """One trained network, traced once with `tf.function` for fast single-image calls."""

    def __init__(self, network: keras.Model, info: DatasetInfo, activation: Activation) -> None:
        self.info = info
        self.activation = activation
        signature = tf.TensorSpec((None, *info.input_shape), tf.float32)
        self._call = tf.function(lambda x: network(x, training=False), input_signature=[signature])

    @classmethod
    def from_file(cls, path: Path, info: DatasetInfo, activation: Activation) -> Predictor:
        """Load a checkpoint this service trained itself (never an uploaded file)."""
        return cls(keras.models.load_model(path, compile=False), info, activation)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Raw outputs for a batch of preprocessed images."""
        return np.asarray(self._call(tf.constant(batch, dtype=tf.float32)))

    def warm_up(self) -> None:
        """Trace the call once on a zero input, so the first real request does not pay for tracing."""
        self.predict_batch(np.zeros((1, *self.info.input_shape), dtype="float32"))

    def decode_cost(self, data: bytes, limits: DecodeLimits) -> int:
        """The bytes decoding one upload for this network takes, from its header; raises as `preprocess` does."""
        return decode_cost(data, limits, self.info.input_shape[:2])

    def preprocess(self, data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
        """One PNG or JPEG image as a batch of one network input; raises `InvalidImage` for anything else,
        `ImageTooLarge` past `limits`."""
        return preprocess_image(data, self.info, limits)

    def interpret(self, outputs: np.ndarray) -> list[Prediction]:
        """One prediction per row of raw outputs."""
        return [interpret_outputs(row, self.info, self.activation) for row in outputs]

    def predict_image(self, data: bytes) -> Prediction:
        """Prediction for one PNG or JPEG image; raises `InvalidImage` for anything else."""
        return self.interpret(self.predict_batch(self.preprocess(data)))[0]
