"""A dataset's images as PNGs: a grid of a few per class, one row per class with its name beside it, and one image.

Pixels are put down as they are stored, never scaled or blended, so a cell of the grid is the stored image exactly
(tests read it back). The layout is a pure function of the image size and the counts (`GridLayout`), bounded in
pixels (`MAX_GRID_PIXELS`): past it, fewer images per row and fewer rows are shown, never smaller ones.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_PER_CLASS = 8
LABEL_WIDTH = 160  # the column the class names are written in, left of each row
PAD = 2  # between cells, and around the grid
FONT_SIZE = 12
MIN_ROW_HEIGHT = FONT_SIZE + 4  # a row of tiny images still has room for its name
MAX_GRID_PIXELS = 2**23  # about 8 million pixels: 24 MiB of RGB while it is drawn
BACKGROUND = 255
INK = 0
# Part of the grid's ETag: a change to how it is drawn must change the tag of every grid already cached.
STYLE = "g1"


@dataclass(frozen=True)
class GridLayout:
    """Where each cell of a sample grid lies: `rows` classes, `columns` images each, `image_height` x `image_width`."""

    image_height: int
    image_width: int
    rows: int
    columns: int

    @property
    def row_height(self) -> int:
        return max(self.image_height, MIN_ROW_HEIGHT)

    @property
    def width(self) -> int:
        return LABEL_WIDTH + PAD + self.columns * (self.image_width + PAD)

    @property
    def height(self) -> int:
        return PAD + self.rows * (self.row_height + PAD)

    def cell(self, row: int, column: int) -> tuple[int, int]:
        """The (left, top) pixel of the image in `row` (a class) and `column`."""
        return LABEL_WIDTH + PAD + column * (self.image_width + PAD), PAD + row * (self.row_height + PAD)


def grid_layout(image_height: int, image_width: int, classes: int, per_class: int) -> GridLayout:
    """The layout of `classes` rows of `per_class` images, cut down to fit `MAX_GRID_PIXELS` (one image at least)."""
    row_height = max(image_height, MIN_ROW_HEIGHT)
    fits_across = (MAX_GRID_PIXELS // (row_height + PAD) - LABEL_WIDTH - PAD) // (image_width + PAD)
    columns = max(1, min(per_class, fits_across))
    width = LABEL_WIDTH + PAD + columns * (image_width + PAD)
    rows = max(1, min(classes, (MAX_GRID_PIXELS // width - PAD) // (row_height + PAD)))
    return GridLayout(image_height, image_width, rows, columns)


def sample_grid_png(layout: GridLayout, names: Sequence[str], samples: Sequence[Sequence[np.ndarray]]) -> bytes:
    """The grid as PNG: row i is `names[i]` and its `samples[i]` (at most `layout.columns` shown; fewer leave the
    rest of the row blank). Grayscale images ([H, W]) make a grayscale PNG, RGB ones ([H, W, 3]) an RGB one."""
    rgb = any(image.ndim == 3 for row in samples for image in row)
    shape = (layout.height, layout.width, 3) if rgb else (layout.height, layout.width)
    canvas = np.full(shape, BACKGROUND, dtype=np.uint8)
    for row, images in enumerate(samples[: layout.rows]):
        for column, image in enumerate(images[: layout.columns]):
            left, top = layout.cell(row, column)
            canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=FONT_SIZE)
    for row, name in enumerate(names[: layout.rows]):
        _, top = layout.cell(row, 0)
        label = _fitted(draw, font, name, LABEL_WIDTH - 2 * PAD)
        draw.text((PAD, top + PAD), label, fill=(INK,) * 3 if rgb else INK, font=font)
    return _png(picture)


def _fitted(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, room: int) -> str:
    """`text`, cut with an ellipsis where it would run past `room` pixels into the first image."""
    if draw.textlength(text, font=font) <= room:
        return text
    while text and draw.textlength(text + "…", font=font) > room:
        text = text[:-1]
    return text + "…"


def image_png(image: np.ndarray) -> bytes:
    """One stored image ([H, W] grayscale or [H, W, 3] RGB uint8) as PNG, its pixels unchanged."""
    return _png(Image.fromarray(np.ascontiguousarray(image)))


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
