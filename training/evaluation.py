"""Test-set evaluation of a trained network: loss, accuracy, confusion matrix, classification report."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import classification_report, confusion_matrix

from training.labels import predicted_classes
from training.results import EvaluationResult, finite_or_none


def summarize_predictions(
    true: np.ndarray, predicted: np.ndarray, class_names: list[str]
) -> tuple[list[list[int]], dict[str, Any]]:
    """Confusion matrix (rows: true class, columns: predicted) and sklearn's report, keyed by class name."""
    indices = list(range(len(class_names)))
    matrix = confusion_matrix(true, predicted, labels=indices)
    report = classification_report(
        true,
        predicted,
        labels=indices,
        target_names=class_names,
        output_dict=True,
        zero_division=0,
    )
    return matrix.astype(int).tolist(), report


def evaluate_network(
    network: keras.Model,
    test: tf.data.Dataset,
    test_labels: np.ndarray,
    class_names: list[str],
) -> EvaluationResult:
    """Evaluate `network` on the batched `test` pipeline whose integer labels are `test_labels`."""
    results = network.evaluate(test, verbose=0, return_dict=True)
    outputs = network.predict(test, verbose=0)
    predicted = predicted_classes(outputs)
    matrix, report = summarize_predictions(test_labels, predicted, class_names)
    return EvaluationResult(
        test_loss=finite_or_none(results["loss"]),
        test_accuracy=finite_or_none(results["accuracy"]),
        labels=list(class_names),
        confusion_matrix=matrix,
        classification_report=report,
    )
