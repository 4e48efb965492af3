"""Bodies of the backpropagation route: one neuron's SGD run, and every step of it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from training.backprop import WORKED_EXAMPLE, NeuronStep, NeuronWeights
from training.bounds import Between

MAX_EXAMPLES = 1000
MAX_EPOCHS = 1000
# Together these keep the largest answer near 25 MB and a second of work: each step carries y_hat on
# every example, so the response grows with steps x examples, not only with steps.
MAX_STEPS = 20_000
MAX_OUTPUT_VALUES = 1_000_000


class NeuronExampleRequest(BaseModel):
    """One training example (x0, x1) -> y."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    x0: float
    x1: float
    y: float = Field(description="The target; the loss is (y_hat - y)^2.")


def _worked_examples() -> list[NeuronExampleRequest]:
    return [NeuronExampleRequest(x0=e.x0, x1=e.x1, y=e.y) for e in WORKED_EXAMPLE.examples]


class SingleNeuronRequest(BaseModel):
    """A single-neuron SGD run; every field defaults to the homework's worked example."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    w0: float = Field(default=WORKED_EXAMPLE.weights.w0, description="Initial weight on x0.")
    w1: float = Field(default=WORKED_EXAMPLE.weights.w1, description="Initial weight on x1.")
    b: float = Field(default=WORKED_EXAMPLE.weights.b, description="Initial bias.")
    learning_rate: float = Field(default=WORKED_EXAMPLE.learning_rate, gt=0, description="The SGD step size alpha.")
    examples: list[NeuronExampleRequest] = Field(
        default_factory=_worked_examples,
        min_length=1,
        max_length=MAX_EXAMPLES,
        description="Visited in this order every epoch, one SGD step per example.",
    )
    epochs: Annotated[int, Between(1, MAX_EPOCHS)] = WORKED_EXAMPLE.epochs

    @field_validator("epochs")
    @classmethod
    def _bounded_work(cls, epochs: int, info: ValidationInfo) -> int:
        # Absent from info.data when examples itself failed validation; that error is reported already.
        examples = info.data.get("examples")
        if examples is None:
            return epochs
        steps = epochs * len(examples)
        if steps > MAX_STEPS:
            raise ValueError(
                f"epochs x len(examples) = {epochs} x {len(examples)} = {steps} steps, over the limit of "
                f"{MAX_STEPS}; use fewer epochs or fewer examples"
            )
        if steps * len(examples) > MAX_OUTPUT_VALUES:
            raise ValueError(
                f"epochs x len(examples)^2 = {steps * len(examples)} outputs_after values, over the limit of "
                f"{MAX_OUTPUT_VALUES} (each step reports y_hat on every example); use fewer epochs or fewer examples"
            )
        return epochs


class NeuronWeightsRead(BaseModel):
    w0: float
    w1: float
    b: float

    @classmethod
    def of(cls, weights: NeuronWeights) -> NeuronWeightsRead:
        return cls(w0=weights.w0, w1=weights.w1, b=weights.b)


class NeuronStepRead(BaseModel):
    epoch: int = Field(description="1-based.")
    step: int = Field(description="1-based, counted over all epochs.")
    example_index: int = Field(description="0-based position of this step's example in `examples`.")
    x0: float
    x1: float
    y: float
    z: float = Field(description="w0*x0 + w1*x1 + b, with the weights before the step.")
    y_hat: float = Field(description="sigmoid(z).")
    loss: float = Field(description="(y_hat - y)^2.")
    grad_y_hat: float = Field(description="dL/dy_hat = 2 (y_hat - y).")
    dy_hat_dz: float = Field(
        description="dy_hat/dz = y_hat (1 - y_hat), computed as y_hat * sigmoid(-z) to keep every digit when y_hat ~ 1."
    )
    grad_z: float = Field(description="dL/dz = dL/dy_hat * dy_hat/dz.")
    grad_w0: float = Field(description="dL/dw0 = dL/dz * x0.")
    grad_w1: float = Field(description="dL/dw1 = dL/dz * x1.")
    grad_b: float = Field(description="dL/db = dL/dz.")
    weights_before: NeuronWeightsRead
    weights_after: NeuronWeightsRead = Field(description="weights_before - learning_rate * gradient.")
    outputs_after: list[float] = Field(description="y_hat on every example, in order, with weights_after.")

    @classmethod
    def of(cls, step: NeuronStep) -> NeuronStepRead:
        return cls(
            epoch=step.epoch,
            step=step.step,
            example_index=step.example_index,
            x0=step.x0,
            x1=step.x1,
            y=step.y,
            z=step.z,
            y_hat=step.y_hat,
            loss=step.loss,
            grad_y_hat=step.grad_y_hat,
            dy_hat_dz=step.dy_hat_dz,
            grad_z=step.grad_z,
            grad_w0=step.grad_w0,
            grad_w1=step.grad_w1,
            grad_b=step.grad_b,
            weights_before=NeuronWeightsRead.of(step.weights_before),
            weights_after=NeuronWeightsRead.of(step.weights_after),
            outputs_after=list(step.outputs_after),
        )


class SingleNeuronRead(BaseModel):
    inputs: SingleNeuronRequest = Field(description="The request, with defaults filled in.")
    steps: list[NeuronStepRead]
    final_weights: NeuronWeightsRead
