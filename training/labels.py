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


def class_weights(spec: ExperimentSpec, train_labels: np.ndarray) -> dict[int, float] | None:
    """Keras' class_weight for `spec` (class index -> weight), or None when the spec weighs every example alike.

    'balanced' is n / (classes x count of the class) over the training split's labels, counting the classes
    present (scikit-learn's rule); a class absent from the split has no examples to weigh and is left out.
    Weights given by name are put by index, and a class they leave out weighs 1 (Keras' own default).
    """
    if spec.class_weight is None:
        return None
    names = list(spec.info.class_names)
    if isinstance(spec.class_weight, dict):
        return {names.index(name): float(weight) for name, weight in spec.class_weight.items()}
    counts = np.bincount(np.asarray(train_labels).astype("int64").reshape(-1), minlength=len(names))
    total, classes = int(counts.sum()), int((counts > 0).sum())
    return {index: total / (classes * int(count)) for index, count in enumerate(counts) if count > 0}
