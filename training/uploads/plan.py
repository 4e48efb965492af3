"""Where each image of an upload goes in the canonical arrays: its split and its position, with the test split
held out (stratified, seeded) when the upload has none, and the checks that need the whole count first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.holdout import held_out_positions
from training.uploads.caps import GiB, UploadCaps
from training.uploads.errors import WHOLE_UPLOAD, UploadRefused
from training.uploads.layout import TEST, TRAIN

SPLITS = (TRAIN, TEST)


def has_test(splits: Sequence[str]) -> bool:
    return TEST in splits


@dataclass(frozen=True)
class Plan:
    """Item i (in canonical order) goes to `split[i]` at `position[i]`; `labels[split]` are that split's labels."""

    split: tuple[str, ...]
    position: tuple[int, ...]
    labels: dict[str, np.ndarray]
    held_out: bool

    @property
    def counts(self) -> dict[str, int]:
        return {split: len(self.labels[split]) for split in SPLITS}

    def per_class(self, class_names: Sequence[str]) -> dict[str, dict[str, int]]:
        """Images of each class in each split."""
        return {
            split: {
                name: int(n)
                for name, n in zip(
                    class_names, np.bincount(self.labels[split], minlength=len(class_names)), strict=True
                )
            }
            for split in SPLITS
        }


def plan(splits: Sequence[str], labels: np.ndarray, fraction: float, seed: int, class_names: Sequence[str]) -> Plan:
    """The plan for items with these source `splits` and `labels` (canonical order). Without any test item, a
    stratified `fraction` is held out: the first of each class in a permutation seeded by `seed` (the rule of
    `training.holdout`), so the same upload and seed always hold out the same images."""
    labels = np.asarray(labels, dtype=np.int64)
    source = np.asarray(splits)
    held_out = not has_test(splits)
    if held_out:
        order = np.random.default_rng(seed).permutation(len(labels))
        test_items = order[held_out_positions(labels[order], fraction)]
        source = np.full(len(labels), TRAIN, dtype=object)
        source[test_items] = TEST
    split = tuple(str(s) for s in source)
    position = [0] * len(split)
    taken = dict.fromkeys(SPLITS, 0)
    for index, name in enumerate(split):
        position[index] = taken[name]
        taken[name] += 1
    result = Plan(split, tuple(position), {s: labels[np.asarray(split) == s] for s in SPLITS}, held_out)
    trained = np.bincount(result.labels[TRAIN], minlength=len(class_names))
    for name, count in zip(class_names, trained, strict=True):
        if count == 0:
            why = "too few images to hold some out for testing; add images, or a test/ split" if held_out else "none"
            raise UploadRefused(f"{name}/", f"this class has no training images ({why})")
    return result


def check_size(counts: dict[str, int], shape: tuple[int, int, int], caps: UploadCaps) -> None:
    """Refuse canonical arrays larger than the cap, before any is allocated."""
    total = sum(counts.values()) * shape[0] * shape[1] * shape[2]
    if total > caps.max_canonical_bytes:
        raise UploadRefused(
            WHOLE_UPLOAD,
            f"{sum(counts.values()):,} images at {shape[0]} x {shape[1]} x {shape[2]} take {total / GiB:.1f} GiB, more "
            f"than the {caps.max_canonical_bytes / GiB:g} GiB a dataset may; ask for a smaller image_size",
        )


def check_image_size(size: tuple[int, int], caps: UploadCaps) -> None:
    if max(size) > caps.max_image_side:
        raise UploadRefused(
            WHOLE_UPLOAD, f"image_size {size[0]} x {size[1]} is over {caps.max_image_side} pixels a side; ask for less"
        )
