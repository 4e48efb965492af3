"""Bodies of the network routes: a network to check against an input, and what the check answers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from training.bounds import Between
from training.graph.check import NetworkFigures, NetworkLimits, NetworkSummary
from training.graph.network import EXAMPLE, NetworkGraph
from training.graph.vocabulary import MAX_IMAGE_SIDE
from training.spec import DATASET_REFERENCE, MAX_BATCH_SIZE, Dataset, Head, Network, dataset_reference

CHECK_EXAMPLE: dict[str, Any] = {"network": EXAMPLE, "dataset": "mnist", "batch_size": 32}


class NetworkCheck(BaseModel):
    """A network, and the input it is checked against: a dataset's, or a shape."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CHECK_EXAMPLE]})

    network: NetworkGraph | Network = Field(description="A network graph, or the name of a preset (GET /networks).")
    dataset: str | None = Field(
        default=None,
        description="Check against this dataset's input shape and classes: a built-in, or one uploaded that you may "
        "use, as name or name@version (default its latest ready version).",
        json_schema_extra={"pattern": DATASET_REFERENCE, "maxLength": 50},
    )
    input_shape: (
        Annotated[list[Annotated[int, Between(1, MAX_IMAGE_SIDE)]], Field(min_length=1, max_length=3)] | None
    ) = Field(default=None, description="One example's shape (e.g. [150, 150, 3]), instead of a dataset.")
    head: Head | None = Field(
        default=None,
        description="The output layer that follows the network. Default: softmax over the dataset's classes; "
        "none with an input_shape.",
    )
    batch_size: Annotated[int, Between(1, MAX_BATCH_SIZE)] = Field(
        default=32, description="For the activation memory of a batch."
    )

    @field_validator("dataset")
    @classmethod
    def _dataset_reference(cls, value: str | None) -> str | None:
        return None if value is None else dataset_reference(value)

    @model_validator(mode="after")
    def _one_input(self) -> NetworkCheck:
        if (self.dataset is None) == (self.input_shape is None):
            raise ValueError("give either dataset (its input shape) or input_shape, not both and not neither")
        return self


class NetworkLimitsRead(BaseModel):
    """The caller's limits: their overrides (max_network_params and friends), else the settings."""

    params: int = Field(description="EPOCHAL_MAX_NETWORK_PARAMS, or the user's max_network_params.")
    flops_per_example: int = Field(description="EPOCHAL_MAX_NETWORK_FLOPS, or the user's max_network_flops.")
    activation_bytes_training: int = Field(
        description="EPOCHAL_MAX_NETWORK_ACTIVATION_BYTES, or the user's max_network_activation_bytes; per training "
        "batch."
    )

    @classmethod
    def of(cls, limits: NetworkLimits) -> NetworkLimitsRead:
        # Effective limits always have all three (domain/submission.py: network_limits).
        assert limits.params and limits.flops_per_example and limits.activation_bytes
        return cls(
            params=limits.params,
            flops_per_example=limits.flops_per_example,
            activation_bytes_training=limits.activation_bytes,
        )


class NetworkCheckRead(NetworkSummary):
    """Keras' summary of the whole network (image, rescaling, the graph, the head), its costs, and the limits."""

    input_shape: list[int]
    network: NetworkGraph = Field(description="The graph checked (a preset's, when a preset was named).")
    limits: NetworkLimitsRead


class NetworkPresetRead(BaseModel):
    name: Network
    description: str
    default_for: list[Dataset] = Field(description="Datasets whose experiments train it when they name no network.")
    network: NetworkGraph
    summaries: dict[str, NetworkFigures] = Field(
        description="Its figures on each dataset it can take (batch size 32, the default head)."
    )
