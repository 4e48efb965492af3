"""Backpropagation by hand: every SGD step of one sigmoid neuron, with its gradients, in float64."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError

from api.http.errors import responses
from api.schemas.backprop import NeuronStepRead, NeuronWeightsRead, SingleNeuronRead, SingleNeuronRequest
from training.backprop import Example, NeuronWeights, TraceDiverged, trace_single_neuron

router = APIRouter(prefix="/backprop", tags=["backprop"])


@router.post("/single-neuron", response_model=SingleNeuronRead, responses=responses(400, 413, 422))
def trace_single_neuron_sgd(body: Annotated[SingleNeuronRequest | None, Body()] = None) -> SingleNeuronRead:
    """Train z = w0*x0 + w1*x1 + b, y_hat = sigmoid(z), L = (y_hat - y)^2 by SGD and return every step.

    No body, or `{}`, runs the worked example: w0=2, w1=1, b=2, learning_rate=0.001,
    examples (3, -1, 1) then (1, -2, 0), two epochs.
    """
    inputs = body if body is not None else SingleNeuronRequest()
    try:
        steps = trace_single_neuron(
            NeuronWeights(w0=inputs.w0, w1=inputs.w1, b=inputs.b),
            [Example(x0=e.x0, x1=e.x1, y=e.y) for e in inputs.examples],
            learning_rate=inputs.learning_rate,
            epochs=inputs.epochs,
        )
    except TraceDiverged as exc:
        # Overflow comes from the numbers sent, so it is the request that is unprocessable: answer 422
        # through the app's validation handler, in the same shape as every other invalid body.
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body",), "msg": str(exc), "input": None}]
        ) from exc
    return SingleNeuronRead(
        inputs=inputs,
        steps=[NeuronStepRead.of(s) for s in steps],
        final_weights=NeuronWeightsRead.of(steps[-1].weights_after),
    )
