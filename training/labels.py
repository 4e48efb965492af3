"""How integer class labels become targets, and outputs become predicted classes, for a given head."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from training.spec import ExperimentSpec, Loss


class TargetEncoding(StrEnum):
    BINARY = "binary"  # one unit: 0/1 targets
    SPARSE = "sparse"  # K units with a sparse loss: integer targets
    ONE_HOT = "one_hot"  # K units otherwise


def target_encoding(spec: ExperimentSpec) -> TargetEncoding:
    """Pick the target encoding that the head and loss of `spec` need."""
    if spec.resolved_head.units == 1:
        return TargetEncoding.BINARY
    if spec.resolved_loss is Loss.SPARSE_CATEGORICAL_CROSSENTROPY:
        return TargetEncoding.SPARSE
    return TargetEncoding.ONE_HOT


def encode_labels(labels: np.ndarray, encoding: TargetEncoding, num_classes: int) -> np.ndarray:
    """Turn integer class labels into the targets the network is trained against."""
    labels = np.asarray(labels).astype("int64").reshape(-1)
    if encoding is TargetEncoding.BINARY:
        return labels.astype("float32").reshape(-1, 1)
    if encoding is TargetEncoding.SPARSE:
        return labels
    return np.eye(num_classes, dtype="float32")[labels]


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Class index per row of network outputs: threshold 0.5 for one unit, argmax for several."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        return (outputs.reshape(-1) >= 0.5).astype("int64")
    return np.argmax(outputs, axis=-1).astype("int64")
