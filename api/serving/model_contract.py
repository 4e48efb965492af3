"""What a downloaded checkpoint expects as input, said next to it, so nobody has to guess the scaling.

The networks rescale inside themselves (a Rescaling(1/255) layer right after the input), so a
checkpoint wants raw 0..255 pixels. Feeding it x / 255, as most Keras tutorials do, scales twice: every
input is nearly black and accuracy falls toward chance (a small MNIST MLP: 93% -> 26%), with no error anywhere.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from training.spec import DatasetInfo

INPUT_DTYPE = "float32"
INPUT_RANGE = (0.0, 255.0)


class ModelInput(BaseModel):
    """The input contract of a trained network, derived from its experiment's dataset."""

    input_shape: list[int | None] = Field(description="Keras input shape, batch first (null: any batch size).")
    input_dtype: str = Field(description="The dtype the network's input layer takes (uint8 pixels cast to it).")
    input_range: list[float] = Field(description="Raw pixel values: [0, 255]. Do NOT divide by 255 first.")
    preprocessing: str = Field(description="How to turn an image into the network's input.")


def model_input(info: DatasetInfo) -> ModelInput:
    height, width = info.input_shape[:2]
    if not info.builtin:
        channels = "grayscale" if info.is_grayscale else "RGB"
        shape = f"(n, {height}, {width})" if info.is_grayscale else f"(n, {height}, {width}, 3)"
        picture = (
            f"{channels} {height}x{width} ({info.fit} to fit, as {info.reference} was prepared), array shape {shape}"
        )
    elif info.is_grayscale:
        picture = (
            f"grayscale {height}x{width}, white strokes on a black background as in {info.name} "
            f"(invert a dark-on-light image), array shape (n, {height}, {width})"
        )
    else:
        picture = f"RGB resized to {height}x{width}, array shape (n, {height}, {width}, 3)"
    return ModelInput(
        input_shape=[None, *info.input_shape],
        input_dtype=INPUT_DTYPE,
        input_range=list(INPUT_RANGE),
        preprocessing=(
            f"{picture}, values 0..255 as {INPUT_DTYPE}; the network rescales by 1/255 itself, so do not divide "
            "by 255 (that scales twice and gives near-chance predictions). Outputs follow the experiment's head: "
            f"one unit per class in the order of its labels ({', '.join(info.class_names)})"
            + (", or one sigmoid unit for the second class." if info.is_binary else ".")
        ),
    )
