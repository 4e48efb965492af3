"""A network checked against an input shape before anything is built: its summary and three costs, or errors.

The costs, per the service's conventions: parameters (Keras' count, moving statistics included), FLOPs per example
(2 x the multiply-adds of Dense and convolution layers, every other layer counted as its output size), and
activation memory per batch (the sum of every layer's output, the input included, x batch size x 4 bytes; x2 when
training, for the gradients). A Backbone's FLOPs and the outputs of its own layers come from a table measured
from Keras and scaled by the input's area, so they are approximate (training/graph/backbones.py); its parameters
and output shape are exact. All of it is integer arithmetic in Python: a network of 10^12 parameters is refused
by its figures without allocating any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from training.graph.layers import Backbone, Dense, LayerBase, Shape, ShapeError, dims, size
from training.graph.network import HEAD, IMAGE, INPUT, RESCALING, GraphError, NetworkGraph, error, layer_type, wire
from training.graph.vocabulary import BackboneWeights, LayerActivation

BYTES_PER_VALUE = 4  # float32


class LayerSummary(BaseModel):
    """One row of the summary, as Keras' model.summary() prints it."""

    name: str
    type: str
    output_shape: list[int] = Field(description="One example's output, without the batch dimension.")
    params: int
    trainable_params: int
    inputs: list[str] = Field(description="The layers it takes; empty for the image.")


class NetworkFigures(BaseModel):
    total_params: int
    trainable_params: int
    non_trainable_params: int
    flops_per_example: int = Field(
        description="2 x multiply-adds of Dense and convolutions; others: output size; a Backbone: from a table, "
        "scaled by the input's area (approximate)."
    )
    activation_bytes_inference: int = Field(
        description="Every layer's output (a Backbone's inner layers too) x batch_size x 4 bytes."
    )
    activation_bytes_training: int = Field(description="Twice the inference figure (the gradients).")


class NetworkSummary(BaseModel):
    layers: list[LayerSummary]
    figures: NetworkFigures
    batch_size: int


@dataclass(frozen=True)
class NetworkLimits:
    """The most a network may cost; None: no limit."""

    params: int | None = None
    flops_per_example: int | None = None
    activation_bytes: int | None = None  # when training, per batch


@dataclass(frozen=True)
class HeadShape:
    """The spec's output layer, which follows the network: a Dense of `units`."""

    units: int
    activation: LayerActivation = LayerActivation.SOFTMAX


def summarize(
    graph: NetworkGraph, input_shape: Shape, batch_size: int, head: HeadShape | None = None
) -> NetworkSummary | list[GraphError]:
    """The summary of image -> rescaling -> `graph` -> head, or what is wrong with the graph, per layer."""
    wiring = wire(graph)
    if isinstance(wiring, list):
        return wiring
    shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
    rows: dict[int, LayerSummary] = {}
    flops = size(input_shape)  # the rescaling's output
    inner = 0  # values held inside layers (a backbone's own), which no row of the summary shows
    errors: list[GraphError] = []
    for i in wiring.order:
        layer, taken = graph.layers[i], wiring.sources[i]
        if any(source not in shapes for source in taken):
            continue  # an input failed: its error is reported, and this layer's shape is unknown
        given = [shapes[source] for source in taken]
        try:
            output = layer.output_shape(given)
        except ShapeError as exc:
            errors.append(error(graph, i, str(exc)))
            continue
        shapes[wiring.names[i]] = output
        trainable, frozen = layer.param_counts(given, output)
        rows[i] = _row(wiring.names[i], layer, output, trainable, frozen, [_shown(s) for s in taken])
        flops += layer.flops(given, output)
        inner += layer.inner_values(given, output)
    if errors:
        return errors
    last = len(graph.layers) - 1
    output = shapes[wiring.names[last]]
    if len(output) != 1:
        return [
            error(
                graph,
                last,
                f"the network's output is {dims(output)}, and the head needs a vector: end with Flatten or "
                "GlobalAveragePooling2D",
            )
        ]
    layers = [
        LayerSummary(
            name=IMAGE, type="InputLayer", output_shape=list(input_shape), params=0, trainable_params=0, inputs=[]
        ),
        LayerSummary(
            name=RESCALING,
            type="Rescaling",
            output_shape=list(input_shape),
            params=0,
            trainable_params=0,
            inputs=[IMAGE],
        ),
    ]
    layers += [rows[i] for i in range(len(graph.layers))]
    if head is not None:
        dense = Dense(type="Dense", units=head.units, activation=head.activation)
        head_shape = dense.output_shape([output])
        trainable, _ = dense.param_counts([output], head_shape)
        layers.append(_row(HEAD, dense, head_shape, trainable, 0, [wiring.names[last]]))
        flops += dense.flops([output], head_shape)
    return NetworkSummary(layers=layers, figures=_figures(layers, flops, inner, batch_size), batch_size=batch_size)


def _shown(source: str) -> str:
    return RESCALING if source == INPUT else source


def _row(name: str, layer: LayerBase, output: Shape, trainable: int, frozen: int, inputs: list[str]) -> LayerSummary:
    return LayerSummary(
        name=name,
        type=layer_type(layer),
        output_shape=list(output),
        params=trainable + frozen,
        trainable_params=trainable,
        inputs=inputs,
    )


def _figures(layers: list[LayerSummary], flops: int, inner: int, batch_size: int) -> NetworkFigures:
    total = sum(row.params for row in layers)
    trainable = sum(row.trainable_params for row in layers)
    values = sum(size(tuple(row.output_shape)) for row in layers) + inner
    inference = values * batch_size * BYTES_PER_VALUE
    return NetworkFigures(
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        flops_per_example=flops,
        activation_bytes_inference=inference,
        activation_bytes_training=2 * inference,
    )


def over_limits(figures: NetworkFigures, limits: NetworkLimits) -> list[str]:
    """Which of the figures exceed their limits, each saying by how much and which setting or override sets it."""
    found = []
    checks = (
        ("parameters", figures.total_params, limits.params, "EPOCHAL_MAX_NETWORK_PARAMS", "max_network_params"),
        (
            "FLOPs per example",
            figures.flops_per_example,
            limits.flops_per_example,
            "EPOCHAL_MAX_NETWORK_FLOPS",
            "max_network_flops",
        ),
        (
            "bytes of activations per training batch",
            figures.activation_bytes_training,
            limits.activation_bytes,
            "EPOCHAL_MAX_NETWORK_ACTIVATION_BYTES",
            "max_network_activation_bytes",
        ),
    )
    for what, value, limit, setting, override in checks:
        if limit is not None and value > limit:
            found.append(
                f"the network has {value:,} {what}, over the limit of {limit:,} ({setting}, or the user's {override}, "
                "which an admin may raise per user)"
            )
    return found


def downloaded_weights(graph: NetworkGraph) -> list[GraphError]:
    """The layers whose weights the worker downloads when it builds them (a Backbone's imagenet weights), each
    said as the refusal for a deployment whose workers cannot download."""
    return [
        error(
            graph,
            i,
            "weights 'imagenet' are downloaded by the worker, and this deployment's workers are offline "
            "(EPOCHAL_WORKERS_OFFLINE): use weights null, or ask the operator to let workers download",
        )
        for i, layer in enumerate(graph.layers)
        if isinstance(layer, Backbone) and layer.weights is BackboneWeights.IMAGENET
    ]
