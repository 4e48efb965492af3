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
    loss: str | Any,
    accuracy: keras.metrics.Metric,
) -> EvaluationResult:
    """Evaluate `network` on the batched `test` pipeline whose integer labels are `test_labels`.

    One pass over the test set gives the outputs, the loss, the accuracy, the confusion matrix and the
    report (Keras' evaluate() followed by predict() would read and run it twice). The loss is the
    per-example mean, as Keras' evaluate() reports it; `loss` is its Keras name or a callable giving one value per
    example (a label-smoothed loss, unreduced); `accuracy` is the metric training reported.
    """
    per_example_loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    call = tf.function(lambda x: network(x, training=False))
    outputs, total_loss, count = [], 0.0, 0
    for x, y in test:
        batch = call(x)
        accuracy.update_state(y, batch)
        total_loss += float(tf.reduce_sum(per_example_loss(y, batch)))
        count += int(tf.shape(batch)[0])
        outputs.append(batch.numpy())
    predicted = predicted_classes(np.concatenate(outputs))
    matrix, report = summarize_predictions(test_labels, predicted, class_names)
    return EvaluationResult(
        test_loss=finite_or_none(total_loss / max(count, 1)),
        test_accuracy=finite_or_none(accuracy.result()),
        labels=list(class_names),
        confusion_matrix=matrix,
        classification_report=report,
    )
