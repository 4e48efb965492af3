"""Stratified hold-outs, shared by the validation split of training and the test split of an uploaded dataset
that has none. NumPy alone: no TensorFlow here."""

from __future__ import annotations

import numpy as np


def held_out_positions(labels: np.ndarray, fraction: float) -> np.ndarray:
    """Positions (sorted) of a stratified `fraction` of `labels`: the first of each class in the given order.

    The total is round(n x fraction), at least 1; it is shared out between the classes in proportion
    to their counts, the remainders going to the largest fractional parts (ties: the lower class), so
    every class keeps its share of the validation data whatever the order.
    """
    classes, counts = np.unique(labels, return_counts=True)
    total = max(1, round(len(labels) * fraction))
    exact = counts * total / len(labels)
    quota = np.floor(exact).astype(int)
    # Largest remainders first; a stable sort keeps the lower class first among equal remainders.
    for index in np.argsort(-(exact - quota), kind="stable")[: total - int(quota.sum())]:
        quota[index] += 1
    positions = [np.flatnonzero(labels == label)[:share] for label, share in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(positions))
