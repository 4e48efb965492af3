"""The shapes of what the API answers, as TypedDicts: plain dicts at run time, checked by mypy.

They list the fields a program is most likely to read; the API may send more (the reference at /docs
has them all), and those are still in the dict.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
# What a sweep's runs came to together (GET /sweeps/{id} `state`): finished is not the same as succeeded.
SweepState = Literal["running", "succeeded", "partly_succeeded", "failed", "cancelled"]
# The spec's vocabularies (tests/test_client_types.py holds them to the API's document).
DatasetName = Literal["mnist", "fashion_mnist", "cats_vs_dogs"]
NetworkName = Literal["mlp", "convnet"]
# A network graph as data (GET /networks shows the presets' graphs; POST /networks/check checks one).
NetworkGraph = dict[str, Any]
OptimizerName = Literal["sgd", "sgd_nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"]
ActivationName = Literal["sigmoid", "softmax", "relu", "linear"]
LossName = Literal["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "mse"]
ValidationName = Literal["held_out", "test"]
MonitorName = Literal["val_loss", "val_accuracy", "loss", "accuracy"]
# A learning-rate schedule as data: {"type": "constant" | "step" | "exponential" | "cosine" | "plateau", ...}; the
# API checks its fields (the reference at /docs lists each type's).
LearningRateSchedule = dict[str, Any]


class Head(TypedDict):
    units: int
    activation: ActivationName


class EarlyStopping(TypedDict, total=False):
    monitor: MonitorName
    patience: int
    min_delta: float


class ExperimentRequest(TypedDict, total=False):
    """POST /experiments: the spec (only the dataset is required), and where and how many times to run it.
    The CLI's `run` options are these fields."""

    name: str | None
    dataset: Required[str]  # a built-in's DatasetName, or an uploaded dataset's name (or name@version)
    dataset_version: int | None
    network: NetworkName | NetworkGraph | None
    optimizer: OptimizerName
    learning_rate: float | None
    head: Head | None
    loss: LossName | None
    epochs: int
    batch_size: int
    train_size: int | None
    validation: ValidationName
    validation_split: float | None
    seed: int
    mixed_precision: bool
    deterministic: bool
    jit_compile: bool | None
    early_stopping: EarlyStopping | None
    lr_schedule: LearningRateSchedule | None
    weight_decay: float | None
    clipnorm: float | None
    clipvalue: float | None
    label_smoothing: float | None
    class_weight: Literal["balanced"] | dict[str, float] | None
    queue: str | None
    repeats: int


class Summary(TypedDict):
    epochs_done: int
    best_epoch: int | None
    best_val_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None
    stopped_early_at: int | None


class Experiment(TypedDict):
    id: int
    name: str | None
    status: Status
    dataset: str  # a built-in's DatasetName, or an uploaded dataset's name
    dataset_version: int | None
    network: NetworkName | NetworkGraph
    optimizer: OptimizerName
    learning_rate: float | None
    head: Head
    loss: LossName
    epochs: int
    batch_size: int
    train_size: int | None
    validation: ValidationName
    validation_split: float | None
    selected_on: str
    seed: int
    repeat: int
    mixed_precision: bool
    deterministic: bool
    jit_compile: bool | None
    early_stopping: EarlyStopping | None
    lr_schedule: LearningRateSchedule | None
    weight_decay: float | None
    clipnorm: float | None
    clipvalue: float | None
    label_smoothing: float | None
    class_weight: Literal["balanced"] | dict[str, float] | None
    queue: str
    sweep_id: int | None
    cancel_requested: bool
    error: str | None
    warnings: list[str]
    worker: str | None
    device: str | None
    summary: Summary
    priority: int
    # While queued, in the answer for one experiment: its place in the queue and an estimate of its start.
    queue_position: NotRequired[int | None]
    estimated_start: NotRequired[str | None]
    created_at: str
    started_at: str | None
    finished_at: str | None


class ExperimentPage(TypedDict):
    items: list[Experiment]
    total: int
    limit: int
    offset: int


class EpochMetric(TypedDict):
    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    learning_rate: float | None  # the rate it trained at; null for epochs from before it was recorded
    attempt: NotRequired[int]  # the attempt that trained it (a resumed job keeps the earlier epochs)


class ConfusionMatrix(TypedDict):
    labels: list[str]
    matrix: list[list[int]]


class Evaluation(TypedDict):
    experiment_id: int
    test_loss: float | None
    test_accuracy: float | None
    confusion_matrix: ConfusionMatrix
    classification_report: dict[str, Any]


class Artifact(TypedDict):
    name: str
    media_type: str
    size: int
    url: str
    created_at: str


class Prediction(TypedDict):
    experiment_id: int
    label: str
    class_index: int
    probabilities: dict[str, float] | None
    outputs: list[float]


Visibility = Literal["private", "public"]
ExportFormat = Literal["h5", "keras", "savedmodel", "onnx"]


class Model(TypedDict):
    name: str
    description: str | None
    owner: str
    visibility: Visibility
    created_at: str
    aliases: dict[str, int]
    latest_version: int | None


class ModelVersion(TypedDict):
    model: str
    number: int
    experiment_id: int
    checkpoint_sha256: str
    created_by: int
    created_at: str
    aliases: list[str]


class AliasMove(TypedDict):
    alias: str
    from_version: int | None
    to_version: int | None
    moved_by: int
    moved_at: str


class ModelDetail(Model):
    versions: list[ModelVersion]
    history: list[AliasMove]


DatasetState = Literal["processing", "ready", "failed", "duplicate"]
# A version is settled once it is no longer processing: it never changes after that.
DATASET_SETTLED: frozenset[str] = frozenset({"ready", "failed", "duplicate"})
Fit = Literal["resize", "crop", "pad"]
ColorMode = Literal["grayscale", "rgb"]


class Dataset(TypedDict):
    name: str  # a built-in's DatasetName, or an uploaded dataset's
    version: int
    builtin: bool
    owner_id: int | None
    visibility: Visibility
    status: DatasetState
    description: str
    class_names: list[str]
    input_shape: list[int]
    default_network: NetworkName | None  # None for an upload (it cannot be trained on yet)
    test_split: str
    in_data_dir: bool
    best_experiment_id: int | None
    images: int | None  # an upload's, once prepared; None for a built-in
    content_sha256: str | None  # an upload's once prepared, a built-in's once a worker read its data


class DatasetProblem(TypedDict):
    """Why a version failed: the archive member (or array) at fault, or "(the upload)" for the whole of it."""

    entry: str
    reason: str


class DatasetVersion(TypedDict):
    """One version of a dataset (POST /datasets answers one, `processing`), with what its preparation found."""

    name: str
    version: int
    builtin: bool
    owner_id: int | None
    visibility: Visibility
    status: DatasetState
    errors: list[DatasetProblem]
    duplicate_of: int | None  # a duplicate's: the ready version whose content it is
    content_sha256: str | None
    blob_sha256: str | None
    options: dict[str, Any]  # what the upload asked for (the rest were defaults)
    class_names: list[str] | None
    counts: dict[str, dict[str, int]] | None  # split (train, test) -> class -> images
    input_shape: list[int] | None
    fit: str | None
    color_mode: str | None
    held_out: bool | None
    test_fraction: float | None
    seed: int | None
    size_bytes: int | None
    images: int | None
    upload_bytes: int | None
    source_format: str | None
    created_by: int | None
    created_at: str
    finished_at: str | None


class DatasetDetail(TypedDict):
    name: str
    builtin: bool
    owner_id: int | None
    versions: list[DatasetVersion]  # oldest first


class NetworkFigures(TypedDict):
    total_params: int
    trainable_params: int
    non_trainable_params: int
    flops_per_example: int
    activation_bytes_inference: int
    activation_bytes_training: int


class NetworkPreset(TypedDict):
    """GET /networks: a preset network, as a graph, with its figures on each dataset it can take."""

    name: NetworkName
    description: str
    default_for: list[DatasetName]
    network: NetworkGraph
    summaries: dict[str, NetworkFigures]


class NetworkLayer(TypedDict):
    """One row of a network's summary, as Keras' model.summary() prints it."""

    name: str
    type: str
    output_shape: list[int]
    params: int
    trainable_params: int
    inputs: list[str]


class NetworkLimits(TypedDict):
    """The caller's limits on a network: their overrides, else the service's settings."""

    params: int
    flops_per_example: int
    activation_bytes_training: int


class NetworkCheck(TypedDict):
    """POST /networks/check: the whole network's summary, its figures, and the limits they are held to."""

    layers: list[NetworkLayer]
    figures: NetworkFigures
    batch_size: int
    input_shape: list[int]
    network: NetworkGraph
    limits: NetworkLimits


class DependencyState(TypedDict):
    ok: bool
    detail: str


class Health(TypedDict):
    status: str
    database: DependencyState
    broker: DependencyState
    reaper: DependencyState
    dispatcher: DependencyState


class ComparisonRow(TypedDict):
    rank: int | None
    experiment_id: int
    label: str | None
    status: Status
    best_epoch: int | None
    best_val_accuracy: float | None
    final_val_accuracy: float | None
    test_accuracy: float | None
    training_seconds: float


class Sweep(TypedDict):
    id: int
    name: str | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    created_at: str
    status_counts: dict[str, int]
    finished: bool
    state: SweepState
    experiments: list[Experiment]
    comparison: list[ComparisonRow]


class Key(TypedDict):
    id: int
    user_id: int
    prefix: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewKey(Key):
    api_key: str


class User(TypedDict):
    id: int
    name: str
    admin: bool
    max_active_jobs: int | None
    max_sweep_experiments: int | None
    predictions_per_second: int | None
    max_running_jobs: int | None
    priority: int | None
    max_network_params: int | None
    max_network_flops: int | None
    max_network_activation_bytes: int | None
    max_storage_bytes: int | None
    created_at: str
    keys: list[Key]


class Storage(TypedDict):
    used_bytes: int
    quota_bytes: int


class Me(User):
    storage: Storage


class NewUser(User):
    api_key: str
