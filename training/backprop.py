"""Backpropagation by hand for one sigmoid neuron, trained by plain SGD one example at a time.

The model is z = w0*x0 + w1*x1 + b, y_hat = sigmoid(z), loss L = (y_hat - y)^2. Each step records the
forward values, the chain rule factor by factor, the gradients and the weights before and after the
update, so a hand calculation can be checked line by line. Pure Python floats (IEEE float64); no
TensorFlow, so the API can import it cheaply and the tests can hold it against TensorFlow's autodiff.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


class TraceDiverged(ValueError):
    """A value left float64's finite range; the message names the step and the value."""


@dataclass(frozen=True)
class NeuronWeights:
    """The neuron's parameters."""

    w0: float
    w1: float
    b: float


@dataclass(frozen=True)
class Example:
    """One training example: two inputs and the target."""

    x0: float
    x1: float
    y: float


@dataclass(frozen=True)
class NeuronStep:
    """One SGD step on one example: forward pass, chain rule, gradients and the update."""

    epoch: int  # 1-based
    step: int  # 1-based, counted over all epochs
    example_index: int  # 0-based position in the examples list
    x0: float
    x1: float
    y: float
    z: float
    y_hat: float
    loss: float
    grad_y_hat: float  # dL/dy_hat = 2 (y_hat - y)
    dy_hat_dz: float  # sigmoid'(z) = y_hat (1 - y_hat)
    grad_z: float  # dL/dz = dL/dy_hat * dy_hat/dz
    grad_w0: float
    grad_w1: float
    grad_b: float
    weights_before: NeuronWeights
    weights_after: NeuronWeights
    outputs_after: tuple[float, ...]  # y_hat on every example, with weights_after


@dataclass(frozen=True)
class SingleNeuronProblem:
    """Everything one trace needs: initial weights, learning rate, examples and epochs."""

    weights: NeuronWeights
    learning_rate: float
    examples: tuple[Example, ...]
    epochs: int

    def trace(self) -> list[NeuronStep]:
        """Run trace_single_neuron on this problem."""
        return trace_single_neuron(self.weights, self.examples, learning_rate=self.learning_rate, epochs=self.epochs)


WORKED_EXAMPLE = SingleNeuronProblem(
    weights=NeuronWeights(w0=2.0, w1=1.0, b=2.0),
    learning_rate=0.001,
    examples=(Example(x0=3.0, x1=-1.0, y=1.0), Example(x0=1.0, x1=-2.0, y=0.0)),
    epochs=2,
)


def sigmoid(z: float) -> float:
    """The logistic function 1 / (1 + e^-z), computed without overflow for any finite z."""
    # exp only ever sees a non-positive argument, so it cannot overflow; for z < 0 the naive form
    # would compute exp(-z) = inf for z below about -709.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def pre_activation(weights: NeuronWeights, example: Example) -> float:
    """z = w0*x0 + w1*x1 + b."""
    return weights.w0 * example.x0 + weights.w1 * example.x1 + weights.b


def _diverged(step: int, name: str, value: float) -> TraceDiverged:
    return TraceDiverged(
        f"step {step}: {name} = {value} is outside float64's finite range; "
        "use a smaller learning_rate, smaller weights or smaller example values"
    )


def _check_finite(step: int, values: dict[str, float], zs_after: Sequence[float]) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise _diverged(step, name, value)
    for i, z in enumerate(zs_after):
        if not math.isfinite(z):
            raise _diverged(step, f"z on examples[{i}] after the update", z)


def _check_inputs(weights: NeuronWeights, examples: Sequence[Example], learning_rate: float, epochs: int) -> None:
    if not math.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a finite number > 0, not {learning_rate}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}")
    if not examples:
        raise ValueError("examples must hold at least one example")
    for name in ("w0", "w1", "b"):
        if not math.isfinite(getattr(weights, name)):
            raise ValueError(f"{name} must be finite, not {getattr(weights, name)}")
    for i, example in enumerate(examples):
        for name in ("x0", "x1", "y"):
            if not math.isfinite(getattr(example, name)):
                raise ValueError(f"examples[{i}].{name} must be finite, not {getattr(example, name)}")


def trace_single_neuron(
    weights: NeuronWeights, examples: Sequence[Example], *, learning_rate: float, epochs: int
) -> list[NeuronStep]:
    """Train by SGD, one example per step in list order each epoch, and record every step."""
    _check_inputs(weights, examples, learning_rate, epochs)
    steps: list[NeuronStep] = []
    for epoch in range(1, epochs + 1):
        for index, example in enumerate(examples):
            number = len(steps) + 1
            z = pre_activation(weights, example)
            y_hat = sigmoid(z)
            error = y_hat - example.y
            # error * error rather than error ** 2: float ** raises OverflowError, and overflow is
            # reported below as TraceDiverged for every value alike.
            loss = error * error
            grad_y_hat = 2.0 * error
            # sigmoid'(z) is y_hat (1 - y_hat), but 1 - y_hat keeps few of its digits once y_hat rounds near 1
            # (about 5 at z = 26, none past z = 37); sigmoid(-z) is that factor to full precision.
            dy_hat_dz = y_hat * sigmoid(-z)
            grad_z = grad_y_hat * dy_hat_dz
            grad_w0, grad_w1, grad_b = grad_z * example.x0, grad_z * example.x1, grad_z
            # Every gradient uses the weights from before this step: the update is simultaneous.
            after = NeuronWeights(
                w0=weights.w0 - learning_rate * grad_w0,
                w1=weights.w1 - learning_rate * grad_w1,
                b=weights.b - learning_rate * grad_b,
            )
            zs_after = [pre_activation(after, e) for e in examples]
            _check_finite(
                number,
                {
                    "z": z,
                    "loss": loss,
                    "grad_y_hat": grad_y_hat,
                    "grad_z": grad_z,
                    "grad_w0": grad_w0,
                    "grad_w1": grad_w1,
                    "grad_b": grad_b,
                    "w0": after.w0,
                    "w1": after.w1,
                    "b": after.b,
                },
                zs_after,
            )
            steps.append(
                NeuronStep(
                    epoch=epoch,
                    step=number,
                    example_index=index,
                    x0=example.x0,
                    x1=example.x1,
                    y=example.y,
                    z=z,
                    y_hat=y_hat,
                    loss=loss,
                    grad_y_hat=grad_y_hat,
                    dy_hat_dz=dy_hat_dz,
                    grad_z=grad_z,
                    grad_w0=grad_w0,
                    grad_w1=grad_w1,
                    grad_b=grad_b,
                    weights_before=weights,
                    weights_after=after,
                    outputs_after=tuple(sigmoid(z_i) for z_i in zs_after),
                )
            )
            weights = after
    return steps
