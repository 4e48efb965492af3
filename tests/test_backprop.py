"""Backprop by hand for one sigmoid neuron: the pure trace against hand arithmetic and tf.GradientTape,
and the POST /backprop/single-neuron endpoint."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict
from typing import Any

import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from api.schemas.backprop import MAX_EPOCHS, MAX_OUTPUT_VALUES, MAX_STEPS
from training.backprop import (
    WORKED_EXAMPLE,
    Example,
    NeuronStep,
    NeuronWeights,
    SingleNeuronProblem,
    TraceDiverged,
    pre_activation,
    sigmoid,
    trace_single_neuron,
)

# Both sides compute in float64 along the same chain of operations, so they agree to a few ulps;
# 1e-12 leaves room for that and still catches any wrong factor or sign.
REL = 1e-12

THREE_EXAMPLES = SingleNeuronProblem(
    weights=NeuronWeights(w0=-0.5, w1=0.25, b=0.1),
    learning_rate=0.5,
    examples=(
        Example(x0=0.5, x1=1.5, y=1.0),
        Example(x0=-2.0, x1=0.75, y=0.0),
        Example(x0=1.25, x1=-0.5, y=1.0),
    ),
    epochs=3,
)

# Large |z| (26 on the first step): sigmoid saturates, and a target outside [0, 1] is still just a number.
SATURATED = SingleNeuronProblem(
    weights=NeuronWeights(w0=4.0, w1=-3.0, b=0.0),
    learning_rate=2.0,
    examples=(Example(x0=5.0, x1=-2.0, y=0.0), Example(x0=-3.0, x1=4.0, y=1.5), Example(x0=0.0, x1=0.0, y=1.0)),
    epochs=2,
)

PROBLEMS = pytest.mark.parametrize(
    "problem", [WORKED_EXAMPLE, THREE_EXAMPLES, SATURATED], ids=["worked_example", "three_examples", "saturated"]
)


def close(actual: float, expected: float, abs_tol: float = 0.0) -> bool:
    return math.isclose(actual, expected, rel_tol=REL, abs_tol=abs_tol)


def tape_replay(problem: SingleNeuronProblem) -> list[dict[str, Any]]:
    """SGD on the same numbers with TensorFlow's autodiff; one record per step, in the trace's field names."""
    w0, w1, b = (tf.Variable(v, dtype=tf.float64) for v in (problem.weights.w0, problem.weights.w1, problem.weights.b))
    xs0 = tf.constant([e.x0 for e in problem.examples], dtype=tf.float64)
    xs1 = tf.constant([e.x1 for e in problem.examples], dtype=tf.float64)
    lr = tf.constant(problem.learning_rate, dtype=tf.float64)
    records: list[dict[str, Any]] = []
    for _ in range(problem.epochs):
        for example in problem.examples:
            x0, x1, y = (tf.constant(v, dtype=tf.float64) for v in (example.x0, example.x1, example.y))
            before = {"w0": float(w0.numpy()), "w1": float(w1.numpy()), "b": float(b.numpy())}
            with tf.GradientTape(persistent=True) as tape:
                z = w0 * x0 + w1 * x1 + b
                tape.watch(z)
                y_hat = tf.sigmoid(z)
                tape.watch(y_hat)
                loss = tf.square(y_hat - y)
            grad_w0, grad_w1, grad_b = tape.gradient(loss, [w0, w1, b])
            grad_y_hat, grad_z = tape.gradient(loss, [y_hat, z])
            dy_hat_dz = tape.gradient(y_hat, z)
            del tape
            for variable, grad in ((w0, grad_w0), (w1, grad_w1), (b, grad_b)):
                variable.assign_sub(lr * grad)
            records.append(
                {
                    "z": float(z.numpy()),
                    "y_hat": float(y_hat.numpy()),
                    "loss": float(loss.numpy()),
                    "grad_y_hat": float(grad_y_hat.numpy()),
                    "dy_hat_dz": float(dy_hat_dz.numpy()),
                    "grad_z": float(grad_z.numpy()),
                    "grad_w0": float(grad_w0.numpy()),
                    "grad_w1": float(grad_w1.numpy()),
                    "grad_b": float(grad_b.numpy()),
                    "weights_before": before,
                    "weights_after": {"w0": float(w0.numpy()), "w1": float(w1.numpy()), "b": float(b.numpy())},
                    "outputs_after": [float(v) for v in tf.sigmoid(w0 * xs0 + w1 * xs1 + b).numpy()],
                }
            )
    return records


# --- the pure module ---------------------------------------------------------------------------------


def test_sigmoid_is_stable_and_symmetric() -> None:
    assert sigmoid(0.0) == 0.5
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(-1000.0) == 0.0  # the naive 1 / (1 + exp(1000)) raises OverflowError
    assert 0.0 < sigmoid(-700.0) < 1e-300
    for z in (-30.0, -7.0, -0.5, 0.5, 7.0, 30.0):
        assert close(sigmoid(z), 1.0 / (1.0 + math.exp(-z)))
        assert close(sigmoid(z) + sigmoid(-z), 1.0)


def test_first_step_of_the_worked_example_by_hand() -> None:
    step = WORKED_EXAMPLE.trace()[0]
    alpha, w0, w1, b = 0.001, 2.0, 1.0, 2.0
    x0, x1, y = 3.0, -1.0, 1.0

    z = 2 * 3 + 1 * (-1) + 2
    assert z == 7
    y_hat = 1.0 / (1.0 + math.exp(-z))
    loss = (y_hat - y) ** 2
    dloss_dy_hat = 2 * (y_hat - y)
    dy_hat_dz = y_hat * (1 - y_hat)
    dloss_dz = dloss_dy_hat * dy_hat_dz
    grad_w0, grad_w1, grad_b = dloss_dz * x0, dloss_dz * x1, dloss_dz
    new_w0, new_w1, new_b = w0 - alpha * grad_w0, w1 - alpha * grad_w1, b - alpha * grad_b

    assert (step.epoch, step.step, step.example_index) == (1, 1, 0)
    assert (step.x0, step.x1, step.y) == (x0, x1, y)
    assert step.z == z
    assert step.y_hat == pytest.approx(y_hat, rel=REL)
    assert step.y_hat == pytest.approx(0.9990889488055994, rel=REL)
    assert step.loss == pytest.approx(loss, rel=REL)
    assert step.grad_y_hat == pytest.approx(dloss_dy_hat, rel=REL)
    # The closed form of sigmoid'(7) = e^-7 / (1 + e^-7)^2, as a check on the y_hat (1 - y_hat) shortcut.
    assert step.dy_hat_dz == pytest.approx(dy_hat_dz, rel=REL)
    assert step.dy_hat_dz == pytest.approx(math.exp(-7) / (1 + math.exp(-7)) ** 2, rel=REL)
    assert step.grad_z == pytest.approx(dloss_dz, rel=REL)
    assert step.grad_w0 == pytest.approx(grad_w0, rel=REL)
    assert step.grad_w1 == pytest.approx(grad_w1, rel=REL)
    assert step.grad_b == pytest.approx(grad_b, rel=REL)
    assert step.grad_w0 == pytest.approx(-4.9755e-06, rel=1e-4)
    assert step.grad_w1 == pytest.approx(1.6585e-06, rel=1e-4)
    assert step.grad_b == pytest.approx(-1.6585e-06, rel=1e-4)
    assert step.weights_before == NeuronWeights(w0=2.0, w1=1.0, b=2.0)
    assert step.weights_after.w0 == pytest.approx(new_w0, rel=REL)
    assert step.weights_after.w1 == pytest.approx(new_w1, rel=REL)
    assert step.weights_after.b == pytest.approx(new_b, rel=REL)
    # After the step: the first example's output barely moved; the second is sigmoid(new_w0 - 2 new_w1 + new_b).
    assert step.outputs_after[0] == pytest.approx(1 / (1 + math.exp(-(3 * new_w0 - new_w1 + new_b))), rel=REL)
    assert step.outputs_after[1] == pytest.approx(1 / (1 + math.exp(-(new_w0 - 2 * new_w1 + new_b))), rel=REL)


def test_worked_example_runs_two_epochs_over_two_examples() -> None:
    steps = WORKED_EXAMPLE.trace()
    assert [(s.epoch, s.step, s.example_index) for s in steps] == [(1, 1, 0), (1, 2, 1), (2, 3, 0), (2, 4, 1)]
    assert [(s.x0, s.x1, s.y) for s in steps] == [(3.0, -1.0, 1.0), (1.0, -2.0, 0.0)] * 2
    # The second example is far off (y_hat ~ 0.88 for y = 0), so it gets the large gradient.
    assert steps[1].z == pytest.approx(2.0, abs=1e-7)
    assert steps[1].loss == pytest.approx(0.7758, abs=1e-4)
    assert abs(steps[1].grad_b) > 1e4 * abs(steps[0].grad_b)


@pytest.mark.parametrize(
    ("problem", "abs_tol"),
    [(WORKED_EXAMPLE, 0.0), (THREE_EXAMPLES, 0.0), (SATURATED, 1e-14)],
    ids=["worked_example", "three_examples", "saturated"],
)
def test_every_step_matches_gradient_tape(problem: SingleNeuronProblem, abs_tol: float) -> None:
    # Where sigmoid saturates, TensorFlow's y_hat (1 - y_hat) keeps few digits (1 - y_hat ~ 5e-12 at z = 26,
    # and y_hat is rounded to 1e-16), so values near zero are compared absolutely there: they differ by <5e-16.
    steps = problem.trace()
    expected = tape_replay(problem)
    assert len(steps) == len(expected) == problem.epochs * len(problem.examples)
    for step, tape in zip(steps, expected, strict=True):
        ours = asdict(step)
        for name in ("z", "y_hat", "loss", "grad_y_hat", "dy_hat_dz", "grad_z", "grad_w0", "grad_w1", "grad_b"):
            assert close(ours[name], tape[name], abs_tol), (step.step, name, ours[name], tape[name])
        for key in ("weights_before", "weights_after"):
            for name in ("w0", "w1", "b"):
                assert close(ours[key][name], tape[key][name], abs_tol), (step.step, key, name)
        for i, (mine, theirs) in enumerate(zip(step.outputs_after, tape["outputs_after"], strict=True)):
            assert close(mine, theirs, abs_tol), (step.step, "outputs_after", i)


@PROBLEMS
def test_steps_chain_and_outputs_after_are_the_next_forward_pass(problem: SingleNeuronProblem) -> None:
    steps = problem.trace()
    for step in steps:
        assert len(step.outputs_after) == len(problem.examples)
        for output, example in zip(step.outputs_after, problem.examples, strict=True):
            assert output == sigmoid(pre_activation(step.weights_after, example))
        assert step.weights_after == NeuronWeights(
            w0=step.weights_before.w0 - problem.learning_rate * step.grad_w0,
            w1=step.weights_before.w1 - problem.learning_rate * step.grad_w1,
            b=step.weights_before.b - problem.learning_rate * step.grad_b,
        )
    for previous, current in itertools.pairwise(steps):
        assert current.weights_before == previous.weights_after
        # The forward pass of a step is exactly what the previous step reported for that example.
        assert current.y_hat == previous.outputs_after[current.example_index]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"learning_rate": math.inf}, "learning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"examples": ()}, "examples"),
        ({"weights": NeuronWeights(w0=math.nan, w1=1.0, b=2.0)}, "w0"),
        ({"examples": (Example(x0=1.0, x1=math.inf, y=0.0),)}, r"examples\[0\].x1"),
    ],
)
def test_invalid_inputs_raise_value_error(change: dict[str, Any], message: str) -> None:
    problem = asdict(WORKED_EXAMPLE) | change
    weights = problem["weights"]
    if isinstance(weights, dict):
        weights = NeuronWeights(**weights)
    examples = [e if isinstance(e, Example) else Example(**e) for e in problem["examples"]]
    with pytest.raises(ValueError, match=message):
        trace_single_neuron(weights, examples, learning_rate=problem["learning_rate"], epochs=problem["epochs"])


def test_overflow_raises_trace_diverged_naming_the_step() -> None:
    # z = 0 keeps sigmoid out of saturation, so dL/dw0 = 0.25 * 1e300 and the update leaves float64.
    with pytest.raises(TraceDiverged, match=r"step 1: w0 = -inf"):
        trace_single_neuron(
            NeuronWeights(w0=0.0, w1=0.0, b=0.0), [Example(x0=1e300, x1=0.0, y=0.0)], learning_rate=1e10, epochs=1
        )
    with pytest.raises(TraceDiverged, match=r"step 1: loss = inf"):
        trace_single_neuron(NeuronWeights(0.0, 0.0, 0.0), [Example(1.0, 1.0, 1e200)], learning_rate=1.0, epochs=1)


# --- the endpoint --------------------------------------------------------------------------------------

URL = "/backprop/single-neuron"


def step_json(step: NeuronStep) -> dict[str, Any]:
    as_dict = asdict(step)
    as_dict["outputs_after"] = list(step.outputs_after)
    return as_dict


def worked_example_json() -> dict[str, Any]:
    return {
        "w0": 2.0,
        "w1": 1.0,
        "b": 2.0,
        "learning_rate": 0.001,
        "examples": [{"x0": 3.0, "x1": -1.0, "y": 1.0}, {"x0": 1.0, "x1": -2.0, "y": 0.0}],
        "epochs": 2,
    }


@pytest.mark.parametrize(
    "send",
    [
        {},
        {"content": b"", "headers": {"content-type": "application/json"}},
        {"json": {}},
        {"content": b"null", "headers": {"content-type": "application/json"}},
    ],
    ids=["no_body", "empty_body", "empty_object", "null"],
)
def test_no_body_runs_the_worked_example(client: TestClient, send: dict[str, Any]) -> None:
    response = client.post(URL, **send)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["inputs"] == worked_example_json()
    assert len(body["steps"]) == 4
    # Exact equality: the JSON carries every float64 digit (shortest round-trip repr).
    assert body["steps"] == [step_json(s) for s in WORKED_EXAMPLE.trace()]
    assert body["final_weights"] == body["steps"][-1]["weights_after"]
    assert body["steps"][0]["z"] == 7.0
    assert body["steps"][0]["y_hat"] == 1 / (1 + math.exp(-7))


def test_custom_body_matches_the_trace_and_gradient_tape(client: TestClient) -> None:
    problem = THREE_EXAMPLES
    request = {
        "w0": problem.weights.w0,
        "w1": problem.weights.w1,
        "b": problem.weights.b,
        "learning_rate": problem.learning_rate,
        "examples": [asdict(e) for e in problem.examples],
        "epochs": problem.epochs,
    }
    response = client.post(URL, json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["inputs"] == request
    assert body["steps"] == [step_json(s) for s in problem.trace()]
    assert [(s["epoch"], s["step"], s["example_index"]) for s in body["steps"]] == [
        (epoch, 3 * (epoch - 1) + i + 1, i) for epoch in (1, 2, 3) for i in range(3)
    ]
    last = tape_replay(problem)[-1]["weights_after"]
    for name in ("w0", "w1", "b"):
        assert close(body["final_weights"][name], last[name])


def test_partial_body_fills_the_rest_from_the_worked_example(client: TestClient) -> None:
    response = client.post(URL, json={"epochs": 1})
    assert response.status_code == 200, response.text
    assert response.json()["inputs"] == worked_example_json() | {"epochs": 1}
    assert len(response.json()["steps"]) == 2


@pytest.mark.parametrize(
    ("send", "field"),
    [
        ({"json": {"learning_rate": 0}}, "learning_rate"),
        ({"json": {"learning_rate": -0.01}}, "learning_rate"),
        ({"json": {"epochs": 10**9}}, "epochs"),
        ({"json": {"epochs": 0}}, "epochs"),
        ({"json": {"examples": []}}, "examples"),
        ({"json": {"examples": [{"x0": 1, "x1": 2}]}}, "examples.0.y"),
        ({"json": {"examples": [{"x0": 1, "x1": 2, "y": 0, "z": 3}]}}, "examples.0.z"),
        ({"json": {"momentum": 0.9}}, "momentum"),
        ({"json": {"w0": "not a number"}}, "w0"),
        # Python's JSON parser accepts these literals; they must still be refused as non-finite.
        ({"content": b'{"w0": NaN}', "headers": {"content-type": "application/json"}}, "w0"),
        ({"content": b'{"learning_rate": Infinity}', "headers": {"content-type": "application/json"}}, "learning_rate"),
        ({"content": b'{"b": 1e400}', "headers": {"content-type": "application/json"}}, "b"),
    ],
)
def test_invalid_body_is_422_naming_the_field(client: TestClient, send: dict[str, Any], field: str) -> None:
    response = client.post(URL, **send)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{field}: ")


def test_too_many_steps_is_422_that_says_so(client: TestClient) -> None:
    examples = MAX_STEPS // MAX_EPOCHS + 1
    request = {"examples": [{"x0": 1, "x1": 1, "y": 1}] * examples, "epochs": MAX_EPOCHS}
    response = client.post(URL, json=request)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("epochs: ")
    assert f"{MAX_EPOCHS * examples} steps" in message
    assert f"limit of {MAX_STEPS}" in message


def test_too_many_outputs_is_422_that_says_so(client: TestClient) -> None:
    request = {"examples": [{"x0": 1, "x1": 1, "y": 1}] * 1000, "epochs": 2}
    response = client.post(URL, json=request)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("epochs: ")
    assert f"limit of {MAX_OUTPUT_VALUES}" in message


def test_overflow_is_422_naming_step_and_learning_rate(client: TestClient) -> None:
    request = {"w0": 0, "w1": 0, "b": 0, "learning_rate": 1e10, "examples": [{"x0": 1e300, "x1": 0, "y": 0}]}
    response = client.post(URL, json=request)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "step 1: w0 = -inf" in message
    assert "learning_rate" in message
