"""What the dataset routes answer."""

from __future__ import annotations

from pydantic import BaseModel, Field

from training.spec import (
    Dataset,
    Network,
)


class DatasetRead(BaseModel):
    name: Dataset
    description: str
    class_names: list[str]
    input_shape: list[int]
    default_network: Network
    test_split: str
    in_data_dir: bool = Field(description="Whether the files are in the server's data folder (else downloaded).")
    best_experiment_id: int | None = Field(description="The succeeded experiment that dataset predictions use.")
