"""The words a network graph may use: activations, initializers, regularizers, paddings, bounded numbers.

Every value a layer takes is one of these: an enum member, a bounded number or a flag. None of them can name a
Python object, so a network sent by a user is data, never code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from training.bounds import Between

MAX_UNITS = 2**20  # per Dense layer; the parameter limit bounds what many of them cost together
MAX_FILTERS = 2**16
MAX_KERNEL = 64
MAX_STRIDE = 64
MAX_POOL = 256
MAX_DEPTH_MULTIPLIER = 64
MAX_IMAGE_SIDE = 4096  # Resizing's height and width, and each dimension of an input shape
MAX_DIMENSION = 2**24  # one dimension of a Reshape target
MAX_ABS_FLOAT = 1e6  # Rescaling's scale and offset, fill values


class LayerActivation(StrEnum):
    """Activations by their Keras names."""

    LINEAR = "linear"
    RELU = "relu"
    RELU6 = "relu6"
    LEAKY_RELU = "leaky_relu"
    ELU = "elu"
    SELU = "selu"
    GELU = "gelu"
    SILU = "silu"
    SWISH = "swish"
    MISH = "mish"
    SIGMOID = "sigmoid"
    HARD_SIGMOID = "hard_sigmoid"
    TANH = "tanh"
    SOFTPLUS = "softplus"
    SOFTSIGN = "softsign"
    SOFTMAX = "softmax"
    LOG_SOFTMAX = "log_softmax"
    EXPONENTIAL = "exponential"


class Initializer(StrEnum):
    """Weight initializers by their Keras names; seeded from the experiment's seed."""

    GLOROT_UNIFORM = "glorot_uniform"
    GLOROT_NORMAL = "glorot_normal"
    HE_UNIFORM = "he_uniform"
    HE_NORMAL = "he_normal"
    LECUN_UNIFORM = "lecun_uniform"
    LECUN_NORMAL = "lecun_normal"
    ORTHOGONAL = "orthogonal"
    RANDOM_NORMAL = "random_normal"
    RANDOM_UNIFORM = "random_uniform"
    TRUNCATED_NORMAL = "truncated_normal"
    ZEROS = "zeros"
    ONES = "ones"


class Padding(StrEnum):
    VALID = "valid"
    SAME = "same"


class Interpolation(StrEnum):
    BILINEAR = "bilinear"
    NEAREST = "nearest"


class ResizeInterpolation(StrEnum):
    BILINEAR = "bilinear"
    NEAREST = "nearest"
    BICUBIC = "bicubic"
    AREA = "area"


class FillMode(StrEnum):
    REFLECT = "reflect"
    WRAP = "wrap"
    CONSTANT = "constant"
    NEAREST = "nearest"


class FlipMode(StrEnum):
    HORIZONTAL = "horizontal"
    VERTICAL = "vertical"
    HORIZONTAL_AND_VERTICAL = "horizontal_and_vertical"


class BackboneArchitecture(StrEnum):
    """The keras.applications networks a Backbone may be, by their Keras names."""

    MOBILENET_V2 = "MobileNetV2"
    RESNET50 = "ResNet50"
    EFFICIENTNET_B0 = "EfficientNetB0"


class BackboneWeights(StrEnum):
    """Pretrained weights a Backbone may start from (null: Keras' random initialisation, seeded)."""

    IMAGENET = "imagenet"


class BackbonePooling(StrEnum):
    """Keras' `pooling` of an application without its top: the last feature map averaged or maxed to a vector."""

    AVG = "avg"
    MAX = "max"


Units = Annotated[int, Between(1, MAX_UNITS)]
Filters = Annotated[int, Between(1, MAX_FILTERS)]
KernelSide = Annotated[int, Between(1, MAX_KERNEL)]
StrideSide = Annotated[int, Between(1, MAX_STRIDE)]
PoolSide = Annotated[int, Between(1, MAX_POOL)]
DepthMultiplier = Annotated[int, Between(1, MAX_DEPTH_MULTIPLIER)]
ImageSide = Annotated[int, Between(1, MAX_IMAGE_SIDE)]
# One side for both, or [height, width]: Keras' own two spellings.
KernelSize = KernelSide | Annotated[list[KernelSide], Field(min_length=2, max_length=2)]
Strides = StrideSide | Annotated[list[StrideSide], Field(min_length=2, max_length=2)]
PoolSize = PoolSide | Annotated[list[PoolSide], Field(min_length=2, max_length=2)]
Rate = Annotated[float, Field(ge=0, lt=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
SignedFraction = Annotated[float, Field(ge=-1, le=1)]
# One fraction f for the range [-f, f], or [low, high].
SymmetricFactor = Fraction | Annotated[list[SignedFraction], Field(min_length=2, max_length=2)]
BoundedFloat = Annotated[float, Field(ge=-MAX_ABS_FLOAT, le=MAX_ABS_FLOAT)]
Epsilon = Annotated[float, Field(gt=0, le=1)]
Momentum = Annotated[float, Field(ge=0, lt=1)]


def pair(value: int | list[int]) -> tuple[int, int]:
    """(height, width) from one side or a [height, width] pair."""
    if isinstance(value, int):
        return value, value
    return value[0], value[1]


class Regularizer(BaseModel):
    """An L1/L2 penalty on a layer's weights: l1 x sum(|w|) + l2 x sum(w^2) added to the loss."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    l1: Annotated[float, Field(ge=0, le=1)] = 0.0
    l2: Annotated[float, Field(ge=0, le=1)] = 0.0
