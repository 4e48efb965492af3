"""The allowed layers: each one's arguments (typed, bounded) and its arithmetic (output shape, parameters, work).

A layer's arithmetic reproduces what Keras computes for it (the tests hold each against Keras' own layer), so a
network is checked and costed in plain Python, without building anything in TensorFlow.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.bounds import Between
from training.graph.backbones import BACKBONES, MEASURED_AREA, feature_side
from training.graph.vocabulary import (
    MAX_DIMENSION,
    BackboneArchitecture,
    BackbonePooling,
    BackboneWeights,
    BoundedFloat,
    DepthMultiplier,
    Epsilon,
    FillMode,
    Filters,
    FlipMode,
    Fraction,
    ImageSide,
    Initializer,
    Interpolation,
    KernelSize,
    LayerActivation,
    Momentum,
    Padding,
    PoolSize,
    Rate,
    Regularizer,
    ResizeInterpolation,
    Strides,
    SymmetricFactor,
    Units,
    pair,
)

Shape = tuple[int, ...]  # one example's shape, without the batch dimension
MAX_INPUTS = 16
LAYER_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
LayerName = Annotated[str, Field(pattern=LAYER_NAME_PATTERN, description="Letters, digits and _, from a letter.")]


class ShapeError(ValueError):
    """A layer cannot take the input it is given; the message says why, without naming the layer."""


def dims(shape: Shape) -> str:
    """A shape as people write it: 28x28x1."""
    return "x".join(str(d) for d in shape)


def size(shape: Shape) -> int:
    return math.prod(shape)


def image(shape: Shape) -> tuple[int, int, int]:
    """(height, width, channels) of an image input; ShapeError for any other."""
    if len(shape) != 3:
        hint = (
            f": add a Reshape with target_shape [{dims(shape).replace('x', ', ')}, 1] first" if len(shape) == 2 else ""
        )
        raise ShapeError(f"its input is {dims(shape)}, not an image (height x width x channels){hint}")
    return shape[0], shape[1], shape[2]


def conv_length(length: int, kernel: int, stride: int, padding: Padding, dilation: int = 1) -> int:
    """Keras' output length of a convolution or pooling along one axis."""
    if padding is Padding.SAME:
        return (length - 1) // stride + 1
    return (length - dilation * (kernel - 1) - 1) // stride + 1


class LayerBase(BaseModel):
    """What every layer has: an optional name, and the layers it takes its input from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    many_inputs: ClassVar[bool] = False

    name: LayerName | None = Field(
        default=None, description="Needed only to be named in another layer's inputs; unique in the network."
    )
    inputs: list[LayerName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INPUTS,
        description='Names of the layers this one takes ("input" is the network\'s input). Default: the layer '
        "before it in the list (the input, for the first).",
    )

    def output_shape(self, shapes: list[Shape]) -> Shape:
        """This layer's output shape for the given input shapes; ShapeError when Keras would refuse them."""
        return shapes[0]

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts."""
        return 0, 0

    def multiply_adds(self, shapes: list[Shape], output: Shape) -> int | None:
        """Multiply-adds per example for Dense and convolutions; None for layers costed at their output size."""
        return None

    def flops(self, shapes: list[Shape], output: Shape) -> int:
        """FLOPs per example: 2 x its multiply-adds, or its output size for a layer without them."""
        multiply_adds = self.multiply_adds(shapes, output)
        return size(output) if multiply_adds is None else 2 * multiply_adds

    def inner_values(self, shapes: list[Shape], output: Shape) -> int:
        """Values per example a layer holds inside it besides its output (a backbone's own layers' outputs)."""
        return 0


class Dense(LayerBase):
    """A fully connected layer on the last axis of its input."""

    type: Literal["Dense"]
    units: Units
    activation: LayerActivation = LayerActivation.LINEAR
    use_bias: bool = True
    kernel_initializer: Initializer = Initializer.GLOROT_UNIFORM
    bias_initializer: Initializer = Initializer.ZEROS
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None

    def output_shape(self, shapes: list[Shape]) -> Shape:
        return (*shapes[0][:-1], self.units)

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        return shapes[0][-1] * self.units + (self.units if self.use_bias else 0), 0

    def multiply_adds(self, shapes: list[Shape], output: Shape) -> int | None:
        return size(output) * shapes[0][-1]


class _Convolution(LayerBase):
    kernel_size: KernelSize
    strides: Strides = 1
    padding: Padding = Padding.VALID
    activation: LayerActivation = LayerActivation.LINEAR
    use_bias: bool = True
    bias_initializer: Initializer = Initializer.ZEROS
    bias_regularizer: Regularizer | None = None

    def _spatial(self, shape: Shape, dilation: int | list[int] = 1) -> tuple[int, int, int]:
        height, width, channels = image(shape)
        (kh, kw), (sh, sw), (dh, dw) = pair(self.kernel_size), pair(self.strides), pair(dilation)
        out_h = conv_length(height, kh, sh, self.padding, dh)
        out_w = conv_length(width, kw, sw, self.padding, dw)
        if out_h <= 0 or out_w <= 0:
            reach = f"kernel_size {dims((kh, kw))}" + (
                f" at dilation_rate {dims((dh, dw))}" if (dh, dw) != (1, 1) else ""
            )
            raise ShapeError(
                f"its input is {dims(shape)}, smaller than {reach}; use padding 'same' or a smaller kernel"
            )
        return out_h, out_w, channels

    @model_validator(mode="after")
    def _not_strided_and_dilated(self) -> _Convolution:
        dilation = getattr(self, "dilation_rate", 1)
        if max(pair(self.strides)) > 1 and max(pair(dilation)) > 1:
            raise ValueError("strides > 1 cannot be combined with dilation_rate > 1 (Keras refuses it); pick one")
        return self


class Conv2D(_Convolution):
    """A 2-D convolution over an image."""

    type: Literal["Conv2D"]
    filters: Filters
    dilation_rate: Strides = 1
    kernel_initializer: Initializer = Initializer.GLOROT_UNIFORM
    kernel_regularizer: Regularizer | None = None

    def output_shape(self, shapes: list[Shape]) -> Shape:
        out_h, out_w, _ = self._spatial(shapes[0], self.dilation_rate)
        return out_h, out_w, self.filters

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        kh, kw = pair(self.kernel_size)
        return kh * kw * shapes[0][-1] * self.filters + (self.filters if self.use_bias else 0), 0

    def multiply_adds(self, shapes: list[Shape], output: Shape) -> int | None:
        kh, kw = pair(self.kernel_size)
        return size(output) * kh * kw * shapes[0][-1]


class SeparableConv2D(_Convolution):
    """A depthwise convolution per channel, then a 1x1 convolution across channels."""

    type: Literal["SeparableConv2D"]
    filters: Filters
    dilation_rate: Strides = 1
    depth_multiplier: DepthMultiplier = 1
    depthwise_initializer: Initializer = Initializer.GLOROT_UNIFORM
    pointwise_initializer: Initializer = Initializer.GLOROT_UNIFORM
    depthwise_regularizer: Regularizer | None = None
    pointwise_regularizer: Regularizer | None = None

    def output_shape(self, shapes: list[Shape]) -> Shape:
        out_h, out_w, _ = self._spatial(shapes[0], self.dilation_rate)
        return out_h, out_w, self.filters

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        kh, kw = pair(self.kernel_size)
        depth = shapes[0][-1] * self.depth_multiplier
        return kh * kw * depth + depth * self.filters + (self.filters if self.use_bias else 0), 0

    def multiply_adds(self, shapes: list[Shape], output: Shape) -> int | None:
        kh, kw = pair(self.kernel_size)
        depth = shapes[0][-1] * self.depth_multiplier
        return output[0] * output[1] * (kh * kw * depth + depth * self.filters)


class DepthwiseConv2D(_Convolution):
    """One convolution per input channel (depth_multiplier of them)."""

    type: Literal["DepthwiseConv2D"]
    dilation_rate: Strides = 1
    depth_multiplier: DepthMultiplier = 1
    depthwise_initializer: Initializer = Initializer.GLOROT_UNIFORM
    depthwise_regularizer: Regularizer | None = None

    def output_shape(self, shapes: list[Shape]) -> Shape:
        out_h, out_w, channels = self._spatial(shapes[0], self.dilation_rate)
        return out_h, out_w, channels * self.depth_multiplier

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        kh, kw = pair(self.kernel_size)
        depth = shapes[0][-1] * self.depth_multiplier
        return kh * kw * depth + (depth if self.use_bias else 0), 0

    def multiply_adds(self, shapes: list[Shape], output: Shape) -> int | None:
        kh, kw = pair(self.kernel_size)
        return size(output) * kh * kw


class Conv2DTranspose(_Convolution):
    """A transposed convolution: it upsamples by its strides."""

    type: Literal["Conv2DTranspose"]
    filters: Filters
    kernel_initializer: Initializer = Initializer.GLOROT_UNIFORM
    kernel_regularizer: Regularizer | None = None

    def output_shape(self, shapes: list[Shape]) -> Shape:
        height, width, _ = image(shapes[0])
        (kh, kw), (sh, sw) = pair(self.kernel_size), pair(self.strides)
        if self.padding is Padding.SAME:
            return height * sh, width * sw, self.filters
        return height * sh + max(kh - sh, 0), width * sw + max(kw - sw, 0), self.filters

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        kh, kw = pair(self.kernel_size)
        return kh * kw * shapes[0][-1] * self.filters + (self.filters if self.use_bias else 0), 0

    def multiply_adds(self, shapes: list[Shape], output: Shape) -> int | None:
        kh, kw = pair(self.kernel_size)
        return size(shapes[0]) * kh * kw * self.filters  # every input value meets the whole kernel


class _Pooling(LayerBase):
    pool_size: PoolSize = 2
    strides: Strides | None = Field(default=None, description="Default: pool_size.")
    padding: Padding = Padding.VALID

    def output_shape(self, shapes: list[Shape]) -> Shape:
        height, width, channels = image(shapes[0])
        (ph, pw) = pair(self.pool_size)
        (sh, sw) = pair(self.strides) if self.strides is not None else (ph, pw)
        out_h, out_w = conv_length(height, ph, sh, self.padding), conv_length(width, pw, sw, self.padding)
        if out_h <= 0 or out_w <= 0:
            pool = str(ph) if ph == pw else dims((ph, pw))
            raise ShapeError(f"its input is {dims(shapes[0])}, smaller than pool_size {pool}; use padding 'same'")
        return out_h, out_w, channels


class MaxPooling2D(_Pooling):
    type: Literal["MaxPooling2D"]


class AveragePooling2D(_Pooling):
    type: Literal["AveragePooling2D"]


class _GlobalPooling(LayerBase):
    keepdims: bool = False

    def output_shape(self, shapes: list[Shape]) -> Shape:
        _, _, channels = image(shapes[0])
        return (1, 1, channels) if self.keepdims else (channels,)


class GlobalAveragePooling2D(_GlobalPooling):
    type: Literal["GlobalAveragePooling2D"]


class GlobalMaxPooling2D(_GlobalPooling):
    type: Literal["GlobalMaxPooling2D"]


class Flatten(LayerBase):
    type: Literal["Flatten"]

    def output_shape(self, shapes: list[Shape]) -> Shape:
        return (size(shapes[0]),)


class Reshape(LayerBase):
    """A new shape for the same values; one dimension may be -1 (whatever is left)."""

    type: Literal["Reshape"]
    target_shape: list[Annotated[int, Between(-1, MAX_DIMENSION)]] = Field(min_length=1, max_length=4)

    @model_validator(mode="after")
    def _one_unknown_and_no_zero(self) -> Reshape:
        if 0 in self.target_shape or self.target_shape.count(-1) > 1:
            raise ValueError("target_shape takes dimensions >= 1, and at most one -1 (for what is left)")
        return self

    def output_shape(self, shapes: list[Shape]) -> Shape:
        total, known = size(shapes[0]), math.prod(d for d in self.target_shape if d != -1)
        target = list(self.target_shape)
        if -1 in target:
            if total % known:
                raise ShapeError(f"its input is {dims(shapes[0])} ({total} values), not a multiple of {known}")
            target[target.index(-1)] = total // known
        elif known != total:
            raise ShapeError(
                f"its input is {dims(shapes[0])} ({total} values) and target_shape {dims(tuple(target))} holds {known}"
            )
        return tuple(target)


class Dropout(LayerBase):
    type: Literal["Dropout"]
    rate: Rate


class SpatialDropout2D(LayerBase):
    """Drops whole channels of an image."""

    type: Literal["SpatialDropout2D"]
    rate: Rate

    def output_shape(self, shapes: list[Shape]) -> Shape:
        image(shapes[0])
        return shapes[0]


class BatchNormalization(LayerBase):
    """Normalises each channel (the last axis) by the batch's statistics, and by moving averages at inference."""

    type: Literal["BatchNormalization"]
    momentum: Momentum = 0.99
    epsilon: Epsilon = 0.001
    center: bool = True
    scale: bool = True

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        channels = shapes[0][-1]
        return channels * (int(self.center) + int(self.scale)), 2 * channels  # the moving mean and variance


class LayerNormalization(LayerBase):
    """Normalises each example over its last axis."""

    type: Literal["LayerNormalization"]
    epsilon: Epsilon = 0.001
    center: bool = True
    scale: bool = True

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        return shapes[0][-1] * (int(self.center) + int(self.scale)), 0


class ActivationLayer(LayerBase):
    """An activation on its own (the class is named apart from the spec's Activation enum in the API document)."""

    type: Literal["Activation"]
    activation: LayerActivation


class Rescaling(LayerBase):
    """x * scale + offset (the network's input is already rescaled from 0..255 to 0..1)."""

    type: Literal["Rescaling"]
    scale: BoundedFloat
    offset: BoundedFloat = 0.0


class Resizing(LayerBase):
    type: Literal["Resizing"]
    height: ImageSide
    width: ImageSide
    interpolation: ResizeInterpolation = ResizeInterpolation.BILINEAR
    crop_to_aspect_ratio: bool = False

    def output_shape(self, shapes: list[Shape]) -> Shape:
        _, _, channels = image(shapes[0])
        return self.height, self.width, channels


class Add(LayerBase):
    """The sum of its inputs, which all have one shape."""

    many_inputs: ClassVar[bool] = True
    type: Literal["Add"]

    def output_shape(self, shapes: list[Shape]) -> Shape:
        if len(set(shapes)) > 1:
            raise ShapeError(f"its inputs must have one shape; they are {', '.join(dims(s) for s in shapes)}")
        return shapes[0]


class Concatenate(LayerBase):
    """Its inputs joined along one axis; they agree on every other."""

    many_inputs: ClassVar[bool] = True
    type: Literal["Concatenate"]
    axis: Annotated[int, Between(-4, 4)] = Field(default=-1, description="As in Keras: 0 is the batch axis.")

    def output_shape(self, shapes: list[Shape]) -> Shape:
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise ShapeError(f"its inputs must have one rank; they are {', '.join(dims(s) for s in shapes)}")
        at = self.axis - 1 if self.axis > 0 else rank + self.axis
        if self.axis == 0 or not 0 <= at < rank:
            raise ShapeError(f"axis {self.axis} is not an axis of its {rank}-D inputs (0 is the batch; use 1..{rank})")
        others = {s[:at] + s[at + 1 :] for s in shapes}
        if len(others) > 1:
            raise ShapeError(
                f"its inputs must agree on every axis but {self.axis}; they are {', '.join(dims(s) for s in shapes)}"
            )
        return (*shapes[0][:at], sum(s[at] for s in shapes), *shapes[0][at + 1 :])


class _Augmentation(LayerBase):
    """Random changes to training images; at inference these layers pass their input through."""

    @model_validator(mode="after")
    def _ordered_factors(self) -> _Augmentation:
        for field in ("factor", "height_factor", "width_factor"):
            value = getattr(self, field, None)
            if isinstance(value, list) and value[0] > value[1]:
                raise ValueError(f"{field} is [low, high] with low <= high")
        return self

    def output_shape(self, shapes: list[Shape]) -> Shape:
        image(shapes[0])
        return shapes[0]


class _Geometric(_Augmentation):
    fill_mode: FillMode = FillMode.REFLECT
    interpolation: Interpolation = Interpolation.BILINEAR
    fill_value: BoundedFloat = 0.0


class RandomFlip(_Augmentation):
    type: Literal["RandomFlip"]
    mode: FlipMode = FlipMode.HORIZONTAL_AND_VERTICAL


class RandomRotation(_Geometric):
    type: Literal["RandomRotation"]
    factor: SymmetricFactor = Field(description="A fraction of a full turn: f for [-f, f], or [low, high].")


class RandomZoom(_Geometric):
    type: Literal["RandomZoom"]
    height_factor: SymmetricFactor = Field(description="f for [-f, f], or [low, high]; positive zooms out.")
    width_factor: SymmetricFactor | None = Field(default=None, description="Default: keep the aspect ratio.")


class RandomTranslation(_Geometric):
    type: Literal["RandomTranslation"]
    height_factor: SymmetricFactor = Field(description="A fraction of the height: f for [-f, f], or [low, high].")
    width_factor: SymmetricFactor = Field(description="A fraction of the width: f for [-f, f], or [low, high].")


class RandomContrast(_Augmentation):
    type: Literal["RandomContrast"]
    factor: Fraction | Annotated[list[Fraction], Field(min_length=2, max_length=2)] = Field(
        description="f for contrast factors in [1 - f, 1 + f], or [lower, upper] fractions."
    )
    value_range: Annotated[list[BoundedFloat], Field(min_length=2, max_length=2)] = Field(
        default=[0.0, 1.0], description="The range of its input's values (the network's input is 0..1)."
    )

    @model_validator(mode="after")
    def _ordered_range(self) -> RandomContrast:
        if self.value_range[0] >= self.value_range[1]:
            raise ValueError("value_range is [low, high] with low < high")
        return self


class Backbone(LayerBase):
    """A keras.applications network without its top (include_top False), as one layer: its last feature map, or
    that pooled to a vector. It takes the network's 0..1 images as they are; ImageNet weights were trained on each
    architecture's own preprocessing, which a Rescaling before it can approximate (the README says how)."""

    type: Literal["Backbone"]
    architecture: BackboneArchitecture
    weights: BackboneWeights | None = Field(
        default=None,
        description="null: random initialisation (seeded); imagenet: downloaded by the worker through Keras' cache, "
        "refused where the deployment's workers are offline (EPOCHAL_WORKERS_OFFLINE).",
    )
    trainable: bool = Field(default=True, description="false: its weights are frozen (all non-trainable).")
    pooling: BackbonePooling | None = Field(
        default=None, description="avg or max: the feature map pooled to a vector; null: the feature map itself."
    )

    def output_shape(self, shapes: list[Shape]) -> Shape:
        height, width, channels = image(shapes[0])
        figures = BACKBONES[self.architecture]
        side = figures.min_side
        if height < side or width < side:
            raise ShapeError(
                f"its input is {dims(shapes[0])}, smaller than {self.architecture}'s minimum of {side}x{side} "
                f"(Keras' own): add a Resizing to at least {side}x{side} before it"
            )
        if self.weights is BackboneWeights.IMAGENET and channels != 3:
            raise ShapeError(
                f"its input has {channels} channel{'s' if channels > 1 else ''}, and imagenet weights take 3 (RGB): "
                'make 3 first (a grayscale layer "x" three times: a Concatenate with inputs ["x", "x", "x"]), or '
                "use weights null"
            )
        if self.pooling is not None:
            return (figures.channels,)
        return feature_side(height), feature_side(width), figures.channels

    def keras_counts(self, channels: int) -> tuple[int, int]:
        """(trainable, non-trainable) of Keras' application with everything trainable."""
        figures = BACKBONES[self.architecture]
        return (
            figures.trainable + figures.trainable_per_channel * channels,
            figures.non_trainable + figures.non_trainable_per_channel * channels,
        )

    def param_counts(self, shapes: list[Shape], output: Shape) -> tuple[int, int]:
        trainable, frozen = self.keras_counts(shapes[0][-1])
        return (trainable, frozen) if self.trainable else (0, trainable + frozen)

    def _scaled(self, shapes: list[Shape], measured: int) -> int:
        return measured * shapes[0][0] * shapes[0][1] // MEASURED_AREA

    def flops(self, shapes: list[Shape], output: Shape) -> int:
        # Approximate: measured at 224x224 and scaled by area (training/graph/backbones.py); a pooling adds its size.
        pooled = size(output) if self.pooling is not None else 0
        return self._scaled(shapes, BACKBONES[self.architecture].flops_at_224) + pooled

    def inner_values(self, shapes: list[Shape], output: Shape) -> int:
        inner = self._scaled(shapes, BACKBONES[self.architecture].inner_values_at_224)
        if self.pooling is not None:  # the unpooled feature map is then an inner layer's output
            inner += feature_side(shapes[0][0]) * feature_side(shapes[0][1]) * size(output)
        return inner


Layer = Annotated[
    Dense
    | Conv2D
    | SeparableConv2D
    | DepthwiseConv2D
    | Conv2DTranspose
    | MaxPooling2D
    | AveragePooling2D
    | GlobalAveragePooling2D
    | GlobalMaxPooling2D
    | Flatten
    | Reshape
    | Dropout
    | SpatialDropout2D
    | BatchNormalization
    | LayerNormalization
    | ActivationLayer
    | Rescaling
    | Resizing
    | Add
    | Concatenate
    | RandomFlip
    | RandomRotation
    | RandomZoom
    | RandomTranslation
    | RandomContrast
    | Backbone,
    Field(discriminator="type"),
]
