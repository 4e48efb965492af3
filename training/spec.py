"""The experiment spec: the one vocabulary that the API, the database and the worker share.

Enum values are Keras identifiers where Keras has one. Validation lives here, on the spec itself,
so the API answers 422 with the reason and the worker re-validates what it reads back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from training.bounds import INT32_MAX, Between
from training.graph.check import HeadShape, NetworkSummary, summarize
from training.graph.network import NetworkGraph
from training.graph.vocabulary import LayerActivation
from training.options import ClassWeighting, CosineDecay, EarlyStopping, LearningRateSchedule

MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 8192


class Dataset(StrEnum):
    MNIST = "mnist"
    FASHION_MNIST = "fashion_mnist"
    CATS_VS_DOGS = "cats_vs_dogs"


class Network(StrEnum):
    MLP = "mlp"
    CONVNET = "convnet"


class Optimizer(StrEnum):
    SGD = "sgd"
    SGD_NESTEROV = "sgd_nesterov"
    ADAGRAD = "adagrad"
    RMSPROP = "rmsprop"
    ADADELTA = "adadelta"
    ADAM = "adam"
    ADAMW = "adamw"


# Keras' defaults, written out so that a stored experiment records the rate it really used.
DEFAULT_LEARNING_RATES: dict[Optimizer, float] = {
    Optimizer.SGD: 0.01,
    Optimizer.SGD_NESTEROV: 0.01,
    Optimizer.ADAGRAD: 0.001,
    Optimizer.RMSPROP: 0.001,
    Optimizer.ADADELTA: 0.001,
    Optimizer.ADAM: 0.001,
    Optimizer.ADAMW: 0.001,
}
# AdamW's Keras default, written out like the learning rates: the row records the decay the run applied.
ADAMW_DEFAULT_WEIGHT_DECAY = 0.004
# The losses Keras smooths labels for (sparse categorical crossentropy has no label_smoothing in Keras 3).
SMOOTHED_LOSSES = ("categorical_crossentropy", "binary_crossentropy")


class Activation(StrEnum):
    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"
    RELU = "relu"
    LINEAR = "linear"


class Loss(StrEnum):
    BINARY_CROSSENTROPY = "binary_crossentropy"
    CATEGORICAL_CROSSENTROPY = "categorical_crossentropy"
    SPARSE_CATEGORICAL_CROSSENTROPY = "sparse_categorical_crossentropy"
    MSE = "mse"


class Validation(StrEnum):
    """What validates each epoch and so selects the best one."""

    HELD_OUT = "held_out"  # a stratified fraction of the training data: the test split is touched once, at the end
    TEST = "test"  # the course's way: the best epoch is selected on the test split, so its test figure is optimistic


DEFAULT_VALIDATION_SPLIT = 0.1
MAX_REPEATS = 20
# Repeat i of a configuration trains with seed + i x this prime (mod 2^31): distinct for every i below 2^31,
# and far apart, so a grid over nearby seeds does not reuse another configuration's repeat seeds.
REPEAT_SEED_STRIDE = 1_000_003


def repeat_seed(base_seed: int, index: int) -> int:
    """The seed of repeat `index` (0-based) of a configuration whose base seed is `base_seed`; repeat 0 keeps it."""
    return (base_seed + index * REPEAT_SEED_STRIDE) % 2**31


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the service needs to know about a dataset without loading it: a built-in's (DATASETS), or
    a version of one a user uploaded (built from its row by the caller: training knows no database)."""

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]  # (height, width) for grayscale, (height, width, 3) for RGB
    default_network: Network
    test_split: str
    description: str
    train_examples: int  # in the standard training split: the most that train_size can take
    version: int = 1  # the built-ins are version 1 of their name
    # The sha256 of an uploaded version's packed arrays (training/packed.py), which the worker fetches; None for a
    # built-in, read from the data folder or downloaded.
    packed_sha256: str | None = None
    fit: str = "resize"  # how an image is fitted to input_shape (training/uploads/fitting.py), predictions too
    content_sha256: str | None = None  # of an uploaded version's canonical content (training/uploads/canonical.py)

    @property
    def builtin(self) -> bool:
        return self.name in DATASETS  # nobody may upload under a built-in's name

    @property
    def reference(self) -> str:
        """`name@version`, the way a spec names exactly this version."""
        return f"{self.name}@{self.version}"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    @property
    def is_grayscale(self) -> bool:
        return len(self.input_shape) == 2


DATASETS: dict[Dataset, DatasetInfo] = {
    Dataset.MNIST: DatasetInfo(
        Dataset.MNIST,
        tuple(str(d) for d in range(10)),
        (28, 28),
        Network.MLP,
        "test (10,000 images)",
        "Handwritten digits, 28x28 grayscale, 60,000 train + 10,000 test.",
        60_000,
    ),
    Dataset.FASHION_MNIST: DatasetInfo(
        Dataset.FASHION_MNIST,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        (28, 28),
        Network.MLP,
        "test (10,000 images)",
        "Zalando clothing images, 28x28 grayscale, 60,000 train + 10,000 test.",
        60_000,
    ),
    Dataset.CATS_VS_DOGS: DatasetInfo(
        Dataset.CATS_VS_DOGS,
        ("cat", "dog"),
        (150, 150, 3),
        Network.CONVNET,
        "validation (1,000 images)",
        "cats_and_dogs_filtered: 2,000 train + 1,000 validation JPEGs, resized to 150x150 RGB.",
        2_000,
    ),
}
# An uploaded dataset may be larger than the built-ins; train_size is bounded by its own training split.
MAX_TRAIN_SIZE = INT32_MAX
# `name` or `name@version`: a dataset name is a short slug (domain/datasets.py says which).
DATASET_NAME = r"^[a-z0-9](?:[a-z0-9_-]{0,38}[a-z0-9])?$"
DATASET_REFERENCE = DATASET_NAME.removesuffix("$") + r"(?:@[1-9][0-9]{0,8})?$"
DATASET_CONTEXT = "datasets"


def dataset_reference(value: str) -> str:
    """`value` if it can name a dataset (`name` or `name@version`); ValueError saying what can."""
    if len(value) > 50 or not re.match(DATASET_REFERENCE, value):
        builtins = ", ".join(DATASETS)
        raise ValueError(
            f"dataset {value!r:.60} names no dataset: give a built-in ({builtins}) or the name of one uploaded to "
            "POST /datasets (lowercase letters, digits, '-' and '_'), optionally as name@version"
        )
    return value


def split_reference(value: str) -> tuple[str, int | None]:
    """`name@version` as (name, version); a bare name as (name, None)."""
    name, _, version = value.partition("@")
    return name, int(version) if version else None


class DatasetLookup(Protocol):
    """Finds an uploaded dataset's version for a spec: `version` None means the latest ready one. Raises the
    caller's own errors (the API's are a 404 for a dataset the caller may not see, a 422 for one not ready), which
    pass through validation as they are. Passed to validation as `context={DATASET_CONTEXT: lookup}`."""

    def __call__(self, name: str, version: int | None) -> DatasetInfo: ...


def builtin_info(name: str) -> DatasetInfo | None:
    """The built-in dataset called `name`, if one is."""
    return DATASETS.get(name)  # type: ignore[call-overload]


def default_network_for(input_shape: tuple[int, ...]) -> Network:
    """An uploaded dataset's network when a spec names none: the convnet where its images are large enough for its
    four convolution and pooling stages (about 46x46 and up), the MLP otherwise."""
    from training.graph.presets import PRESETS  # it imports this module

    check = summarize(PRESETS[Network.CONVNET], input_shape, 1, HeadShape(2, LayerActivation("softmax")))
    return Network.MLP if isinstance(check, list) else Network.CONVNET


MAX_HEAD_UNITS = 1000


class Head(BaseModel):
    """The output layer: how many units and which activation."""

    model_config = ConfigDict(extra="forbid")

    units: Annotated[int, Between(1, MAX_HEAD_UNITS)] = Field(
        description="1 for a binary score, or one unit per class."
    )
    activation: Activation


class ExperimentSpec(BaseModel):
    """Everything needed to train and evaluate one network, and nothing else."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    name: str | None = Field(default=None, max_length=200)
    dataset: str = Field(
        json_schema_extra={"pattern": DATASET_REFERENCE, "maxLength": 50},
        description="A built-in dataset (mnist, fashion_mnist, cats_vs_dogs) or one uploaded to POST /datasets that "
        "you may use, by name (its latest ready version) or as name@version. GET /datasets lists them.",
        examples=["mnist"],
    )
    dataset_version: Annotated[int, Between(1, INT32_MAX)] | None = Field(
        default=None,
        validate_default=True,
        description="The version of the dataset (also written dataset: name@version). Default: its latest ready "
        "version, recorded here when the experiment is stored; the built-ins are version 1.",
    )
    network: Network | NetworkGraph | None = Field(
        default=None,
        description="A preset's name (GET /networks), or a network graph (the one POST /networks/check takes), "
        "checked against the dataset's input before it is queued. Default: mlp for 28x28 sets, convnet for "
        "cats_vs_dogs; for an uploaded dataset, convnet where its images are about 46x46 or larger, else mlp.",
    )
    optimizer: Optimizer = Optimizer.ADAM
    learning_rate: float | None = Field(default=None, description="Default: the Keras default of the optimizer.")
    head: Head | None = Field(default=None, description="Default: softmax over the dataset's classes.")
    loss: Loss | None = Field(
        default=None,
        description="Default: binary_crossentropy for a 1-unit head, sparse_categorical_crossentropy otherwise.",
    )
    epochs: Annotated[int, Between(1, MAX_EPOCHS)] = 5
    batch_size: Annotated[int, Between(1, MAX_BATCH_SIZE)] = 32
    train_size: Annotated[int, Between(1, MAX_TRAIN_SIZE)] | None = Field(
        default=None,
        description="Use only the first N training examples (of the shuffled training split; at most its size: "
        "60,000 for mnist and fashion_mnist, 2,000 for cats_vs_dogs, its training split for an uploaded one).",
    )
    validation: Validation = Field(
        default=Validation.HELD_OUT,
        description="held_out: a stratified, seeded fraction of the training data selects the best epoch and the "
        "test split is used once, for the final evaluation; test: select on the test split, as the course did "
        "(its test figures are then optimistic, and labelled 'selected on test').",
    )
    validation_split: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description=f"Fraction of the training data held out for validation (default {DEFAULT_VALIDATION_SPLIT} "
        "with validation held_out); not allowed with validation test.",
    )
    seed: Annotated[int, Between(0, INT32_MAX)] = 42
    mixed_precision: bool = Field(
        default=False,
        description="Train in float16 on a GPU; ignored, with a recorded warning, on a CPU.",
    )
    deterministic: bool = Field(
        default=False,
        description="Deterministic ops: the same spec gives the same history, even across a resume (slower).",
    )
    jit_compile: bool | None = Field(
        default=None,
        description="XLA-compile the training step. Default: on on a GPU, off on a CPU (there it doubles the "
        "convnet's epoch, and for the MLP its compilation, 6-10 s, outweighs what it saves in a short job: "
        "set true for long MLP jobs).",
    )

    early_stopping: EarlyStopping | None = Field(
        default=None,
        description="Stop when a figure stops improving. It decides only when to stop: the best checkpoint is "
        "still the epoch of best validation accuracy. Default: train every epoch.",
    )
    lr_schedule: LearningRateSchedule | None = Field(
        default=None,
        discriminator="type",
        description="How the learning rate changes from epoch to epoch (by type: constant, step, exponential, "
        "cosine, plateau; each may start with a linear warm-up). Default: constant.",
    )
    weight_decay: float | None = Field(
        default=None,
        description=f"Decoupled weight decay, applied by the optimizer (Keras' weight_decay). Default: none, "
        f"{ADAMW_DEFAULT_WEIGHT_DECAY} with adamw.",
    )
    clipnorm: float | None = Field(default=None, description="Clip each gradient to this norm. Default: no clipping.")
    clipvalue: float | None = Field(
        default=None, description="Clip each gradient's elements to [-clipvalue, clipvalue]. Default: no clipping."
    )
    label_smoothing: float | None = Field(
        default=None,
        description="Smooth the targets by this much (0 to 1), with loss categorical_crossentropy or "
        "binary_crossentropy. Default: none.",
    )
    class_weight: ClassWeighting | dict[str, float] | None = Field(
        default=None,
        description="Weigh each class's examples in the loss: 'balanced' (from the training split's counts: "
        'n / (classes x count)), or weights by class name or index, e.g. {"cat": 2.0}; a class left out '
        "weighs 1. Default: every example alike.",
    )

    @field_validator("learning_rate")
    @classmethod
    def _positive_finite_learning_rate(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise ValueError("learning_rate must be a finite number > 0 (e.g. 0.001), or omitted for the default")
        return value

    @field_validator("weight_decay", "clipnorm", "clipvalue")
    @classmethod
    def _positive_finite(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise ValueError(f"{info.field_name} must be a finite number > 0 (e.g. 1.0), or omitted for none")
        return value

    @field_validator("label_smoothing")
    @classmethod
    def _smoothing_fraction(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or not 0 < value < 1):
            raise ValueError("label_smoothing must be between 0 and 1, both excluded (e.g. 0.1), or omitted")
        return value

    @model_validator(mode="after")
    def _training_options(self) -> ExperimentSpec:
        if self.clipnorm is not None and self.clipvalue is not None:
            raise ValueError("clipnorm and clipvalue cannot both be set (Keras clips one way): keep one of them")
        if self.optimizer is Optimizer.ADAMW and self.weight_decay is None:
            self.weight_decay = ADAMW_DEFAULT_WEIGHT_DECAY
        schedule = self.lr_schedule
        if schedule is not None and schedule.warmup_epochs >= self.epochs:
            raise ValueError(
                f"lr_schedule.warmup_epochs ({schedule.warmup_epochs}) must be fewer than epochs ({self.epochs}): "
                "lower it, or train for more epochs"
            )
        if isinstance(schedule, CosineDecay) and schedule.decay_epochs is None:
            schedule.decay_epochs = self.epochs - schedule.warmup_epochs
        return self

    @model_validator(mode="after")
    def _deterministic_without_xla(self) -> ExperimentSpec:
        if self.deterministic and self.jit_compile:
            raise ValueError(
                "jit_compile and deterministic cannot both be true: TensorFlow runs XLA without op determinism; "
                "drop one of them"
            )
        return self

    @model_validator(mode="after")
    def _resolve_validation(self) -> ExperimentSpec:
        if self.validation is Validation.TEST and self.validation_split is not None:
            raise ValueError(
                "validation_split holds out training data, but validation 'test' validates on the test split: "
                "drop validation_split, or use validation 'held_out'"
            )
        if self.validation is Validation.HELD_OUT and self.validation_split is None:
            self.validation_split = DEFAULT_VALIDATION_SPLIT
        return self

    _info: DatasetInfo | None = PrivateAttr(default=None)

    @field_validator("dataset")
    @classmethod
    def _dataset_reference(cls, value: str) -> str:
        return dataset_reference(value)

    @field_validator("dataset_version", mode="before")
    @classmethod
    def _version_in_name(cls, value: Any, info: ValidationInfo) -> Any:
        named = info.data.get("dataset")
        if isinstance(named, str) and "@" in named:
            version = int(named.rsplit("@", 1)[1])
            if value is not None and value != version:
                raise ValueError(
                    f"dataset says version {version} and dataset_version says {value}: give the version once"
                )
            return version
        return value

    @model_validator(mode="after")
    def _resolve_defaults_and_check(self, validation: ValidationInfo) -> ExperimentSpec:
        self.dataset = self.dataset.split("@", 1)[0]
        info = self._dataset_info(validation.context)
        if info is None:
            # A dataset users upload is checked once its row is known: see `with_datasets`.
            return self
        self._info, self.dataset_version = info, info.version
        if self.network is None:
            self.network = info.default_network
        if self.network is Network.CONVNET and info.builtin and info.is_grayscale:
            raise ValueError(
                f"network 'convnet' needs 150x150 RGB images; {self.dataset} is 28x28 grayscale: use network 'mlp'"
            )
        if self.train_size is not None and self.train_size > info.train_examples:
            raise ValueError(
                f"train_size must be from 1 to {info.train_examples} for {self.dataset} (its training split has "
                f"{info.train_examples:,} examples); omit it to train on all of them"
            )
        if self.head is None:
            self.head = Head(units=info.num_classes, activation=Activation.SOFTMAX)
        allowed_units = {1, info.num_classes} if info.is_binary else {info.num_classes}
        if self.head.units not in allowed_units:
            choices = " or ".join(str(u) for u in sorted(allowed_units))
            raise ValueError(f"head.units must be {choices} for {self.dataset} (it has {info.num_classes} classes)")
        if self.loss is None:
            # Label smoothing needs one-hot targets, so it picks the categorical loss that takes them.
            smoothed = self.label_smoothing is not None
            several = Loss.CATEGORICAL_CROSSENTROPY if smoothed else Loss.SPARSE_CATEGORICAL_CROSSENTROPY
            self.loss = Loss.BINARY_CROSSENTROPY if self.head.units == 1 else several
        if self.label_smoothing is not None and self.loss not in SMOOTHED_LOSSES:
            raise ValueError(
                f"label_smoothing needs loss categorical_crossentropy or binary_crossentropy, not {self.loss}: "
                + (
                    "use categorical_crossentropy (the same loss on one-hot targets), or drop label_smoothing"
                    if self.loss is Loss.SPARSE_CATEGORICAL_CROSSENTROPY
                    else "change the loss, or drop label_smoothing"
                )
            )
        if isinstance(self.class_weight, dict):
            self.class_weight = self._class_weights_by_name(self.class_weight, info)
        if self.loss is Loss.SPARSE_CATEGORICAL_CROSSENTROPY and self.head.units == 1:
            raise ValueError(
                "loss 'sparse_categorical_crossentropy' needs one unit per class; with head.units 1 "
                "use 'binary_crossentropy' or 'mse'"
            )
        if isinstance(self.network, NetworkGraph) and isinstance(errors := self.network_summary(), list):
            raise ValueError("; ".join(f"network: {e}" for e in errors))
        return self

    def _dataset_info(self, context: Any) -> DatasetInfo | None:
        """The dataset this spec names: a built-in, or what the validation context's lookup finds (None without
        one: the spec cannot be checked against an uploaded dataset yet)."""
        builtin = builtin_info(self.dataset)
        if builtin is not None:
            if self.dataset_version not in (None, builtin.version):
                raise ValueError(
                    f"{self.dataset} is a built-in dataset: it has version {builtin.version} only; drop the version"
                )
            return builtin
        lookup = context.get(DATASET_CONTEXT) if isinstance(context, dict) else None
        return None if lookup is None else lookup(self.dataset, self.dataset_version)

    @classmethod
    def with_datasets(cls, spec: dict[str, Any] | BaseModel, lookup: DatasetLookup) -> Any:
        """`spec` (a body, or a spec validated without a lookup) validated against the dataset it names, found by
        `lookup`; returns an instance of `cls`."""
        if isinstance(spec, ExperimentSpec):
            # What the caller set, with the version the first validation read off `dataset` (name@version).
            data = {**spec.model_dump(exclude_unset=True), "dataset": spec.dataset}
            data["dataset_version"] = spec.dataset_version
        else:
            data = spec.model_dump(exclude_unset=True) if isinstance(spec, BaseModel) else spec
        return cls.model_validate(data, context={DATASET_CONTEXT: lookup})

    @property
    def resolved(self) -> bool:
        """Whether the spec was checked against its dataset (always, for a built-in)."""
        return self._info is not None

    @staticmethod
    def _class_weights_by_name(weights: dict[str, float], info: DatasetInfo) -> dict[str, float]:
        """`weights` keyed by class name (a key may be the name or the index), in the classes' order."""
        names = list(info.class_names)
        by_name: dict[str, float] = {}
        for key, weight in weights.items():
            name = key if key in names else names[int(key)] if key.isdigit() and int(key) < len(names) else None
            if name is None:
                raise ValueError(
                    f"class_weight: {key!r} is no class of {info.name}; its classes are "
                    f"{', '.join(names)} (or their indices 0 to {len(names) - 1})"
                )
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"class_weight: the weight of {name!r} must be a finite number >= 0 (e.g. 2.0)")
            if name in by_name:
                raise ValueError(f"class_weight names {name!r} twice (by name and by index): keep one")
            by_name[name] = weight
        if by_name and not any(by_name.values()) and len(by_name) == len(names):
            raise ValueError("class_weight gives every class the weight 0: nothing would be learnt")
        return {name: by_name[name] for name in names if name in by_name}

    def network_summary(self) -> NetworkSummary | list[Any]:
        """The graph network's summary on this spec's dataset, head and batch size, or what is wrong with it, per
        layer (a preset's figures are GET /networks')."""
        assert isinstance(self.network, NetworkGraph) and self.head is not None
        head = HeadShape(self.head.units, LayerActivation(self.head.activation))
        return summarize(self.network, self.info.input_shape, self.batch_size, head)

    @property
    def info(self) -> DatasetInfo:
        if self._info is None:
            raise LookupError(
                f"the spec naming dataset {self.dataset!r} was not checked against it: validate it with_datasets"
            )
        return self._info

    @property
    def resolved_head(self) -> Head:
        """The head after defaults were applied (never None once validated)."""
        assert self.head is not None
        return self.head

    @property
    def resolved_loss(self) -> Loss:
        assert self.loss is not None
        return self.loss

    @property
    def resolved_learning_rate(self) -> float:
        """The learning rate asked for, or the optimizer's Keras default."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.optimizer]

    @property
    def resolved_network(self) -> Network | NetworkGraph:
        assert self.network is not None
        return self.network
