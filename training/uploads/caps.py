"""What an upload may cost (the caps, from the service's settings) and what the uploader asked for (the options).

Both are frozen dataclasses passed in by the caller: this package reads no settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from training.image_limits import DecodeLimits, MiB

GiB = 1024 * MiB


class Fit(StrEnum):
    """How an image meets the input shape: stretched to it, centre-cropped to its aspect first, or letterboxed."""

    RESIZE = "resize"
    CROP = "crop"
    PAD = "pad"


class ColorMode(StrEnum):
    GRAYSCALE = "grayscale"
    RGB = "rgb"


@dataclass(frozen=True)
class UploadCaps:
    """What reading one upload may cost. Every byte count is measured while reading, never taken from a header."""

    # Entries of the archive of every kind (directories and skipped junk included): a million empty files is a bomb.
    max_entries: int = 100_000
    # Bytes all entries decompress to, together, and one entry alone (an image file, or an array of an .npz).
    max_total_bytes: int = 4 * GiB
    max_entry_bytes: int = 64 * MiB
    # Decompressed bytes per compressed byte, for one entry and for the whole upload. PNG and JPEG hardly compress
    # (a ratio near 1); only once this many bytes are out, so that a tiny well-compressing file is not a bomb.
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 * MiB
    # Each image's decoding (pixels and decoded bytes), as for predictions.
    decode: DecodeLimits = field(default_factory=DecodeLimits)
    max_classes: int = 1_000
    # The input shape asked for, and the canonical arrays it gives (images x height x width x channels bytes).
    max_image_side: int = 1_024
    max_canonical_bytes: int = 8 * GiB


# The default input size: the most common size in the upload, shrunk to this on its longer side (aspect kept).
DEFAULT_MAX_SIDE = 256
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SEED = 42


@dataclass(frozen=True)
class UploadOptions:
    """What the uploader asked for; None means "the default", which `resolve` chooses and the result reports."""

    image_size: tuple[int, int] | None = None  # (height, width); default: the most common size, capped
    fit: Fit | None = None  # default: resize
    color_mode: ColorMode | None = None  # default: grayscale when every image is, otherwise rgb
    test_fraction: float | None = None  # default 0.2; used only when the upload has no test split
    seed: int | None = None  # default 42: the hold-out's permutation

    def __post_init__(self) -> None:
        if self.image_size is not None:
            if len(self.image_size) != 2 or min(self.image_size) < 1:
                raise ValueError(f"image_size is (height, width), both at least 1; got {self.image_size}")
            object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))
        if self.test_fraction is not None and not 0.0 < self.test_fraction < 1.0:
            raise ValueError(
                f"test_fraction is the share of images held out for testing, in (0, 1): {self.test_fraction}"
            )
        if self.fit is not None:
            object.__setattr__(self, "fit", Fit(self.fit))
        if self.color_mode is not None:
            object.__setattr__(self, "color_mode", ColorMode(self.color_mode))

    def resolve(
        self, *, all_grey: bool, common_size: Callable[[], tuple[int, int]], held_out: bool
    ) -> tuple[Chosen, tuple[str, ...]]:
        """Every option as used, and the names of those left to their defaults. `common_size` is only called when
        no image_size was asked for; the test fraction and seed only matter (and are reported) for a hold-out."""
        defaults = [
            name
            for name, value in (("image_size", self.image_size), ("fit", self.fit), ("color_mode", self.color_mode))
            if value is None
        ]
        if held_out:
            defaults += [
                name for name, value in (("test_fraction", self.test_fraction), ("seed", self.seed)) if value is None
            ]
        grey_default = ColorMode.GRAYSCALE if all_grey else ColorMode.RGB
        chosen = Chosen(
            image_size=self.image_size or common_size(),
            fit=self.fit or Fit.RESIZE,
            color_mode=self.color_mode or grey_default,
            test_fraction=(DEFAULT_TEST_FRACTION if self.test_fraction is None else self.test_fraction)
            if held_out
            else None,
            seed=DEFAULT_SEED if self.seed is None else self.seed,
        )
        return chosen, tuple(defaults)


@dataclass(frozen=True)
class Chosen:
    """The options as used for one upload, defaults filled in."""

    image_size: tuple[int, int]
    fit: Fit
    color_mode: ColorMode
    test_fraction: float | None  # None when the upload had its own test split
    seed: int

    @property
    def channels(self) -> int:
        return 1 if self.color_mode is ColorMode.GRAYSCALE else 3
