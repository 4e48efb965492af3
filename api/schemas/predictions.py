"""What a prediction answers, for one image and for a batch."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PredictionRead(BaseModel):
    experiment_id: int
    label: str
    class_index: int
    probabilities: dict[str, float] | None = Field(
        description="Per-class probabilities; null for relu/linear heads, whose outputs are raw scores."
    )
    outputs: list[float] = Field(
        description="The network's raw output units, as its Keras checkpoint computes them (to 1e-5 where the "
        "API serves it through onnxruntime on its ONNX export, which it does only after checking that agreement)."
    )


class PredictionBatchRead(BaseModel):
    predictions: list[PredictionRead] = Field(description="One prediction per uploaded image, in upload order.")
