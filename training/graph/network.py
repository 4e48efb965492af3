"""A network as data: a list of layers, each taking the one before it or the named layers in its `inputs`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from training.graph.layers import Layer, LayerBase

MAX_LAYERS = 256  # ResNet-50 written out is about 180
INPUT = "input"  # what `inputs` calls the network's input: the image, rescaled from 0..255 to 0..1
# The layers every network has around its own: the image, its rescaling and the head (the spec's output layer).
IMAGE, RESCALING, HEAD = "image", "rescaling", "head"
RESERVED = frozenset({INPUT, IMAGE, RESCALING, HEAD})

EXAMPLE: dict[str, Any] = {
    "layers": [
        {"type": "Reshape", "target_shape": [28, 28, 1]},
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu", "name": "stem"},
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "Add", "inputs": ["stem", "conv2d_2"]},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 32, "activation": "relu"},
    ]
}


class NetworkGraph(BaseModel):
    """The layers between the rescaled image and the head, in order.

    A layer takes the output of the layer before it unless it lists `inputs` by name, which is how a graph
    branches and joins (Add, Concatenate). The last layer is the network's output, fed to the head; it must be a
    vector (end with Flatten or a global pooling). A layer without a name is called `<type in snake case>_<index>`
    (`conv2d_2`, `max_pooling2d_4`).
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [cast(JsonDict, EXAMPLE)]})

    layers: list[Layer] = Field(min_length=1, max_length=MAX_LAYERS)


def snake(type_name: str) -> str:
    """Keras' own snake case of a class name: MaxPooling2D -> max_pooling2d."""
    intermediate = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", type_name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", intermediate).lower()


def layer_type(layer: LayerBase) -> str:
    """The layer's `type`, which is its Keras class's name."""
    return str(getattr(layer, "type", type(layer).__name__))


def layer_name(layer: LayerBase, index: int) -> str:
    """The name a layer goes by: its own, or one made from its type and position."""
    return layer.name or f"{snake(layer_type(layer))}_{index}"


@dataclass(frozen=True)
class GraphError:
    """What is wrong with one layer of a network (index None: with the network as a whole)."""

    index: int | None
    layer: str | None
    name: str | None
    message: str

    def __str__(self) -> str:
        if self.index is None:
            return f"network: {self.message}"
        named = f" '{self.name}'" if self.name else ""
        return f"layers[{self.index}] {self.layer}{named}: {self.message}"


def error(graph: NetworkGraph, index: int, message: str) -> GraphError:
    layer = graph.layers[index]
    return GraphError(index, layer_type(layer), layer.name, message)


@dataclass(frozen=True)
class Wiring:
    """Each layer's name and the names it takes, and an order in which every layer comes after its inputs."""

    names: tuple[str, ...]
    sources: tuple[tuple[str, ...], ...]
    order: tuple[int, ...]


def wire(graph: NetworkGraph) -> Wiring | list[GraphError]:
    """Resolve names and inputs: duplicates, dangling inputs, wrong input counts, cycles and unused outputs."""
    names = [layer_name(layer, i) for i, layer in enumerate(graph.layers)]
    errors: list[GraphError] = []
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in RESERVED:
            errors.append(error(graph, i, f"the name '{name}' is reserved ({', '.join(sorted(RESERVED))}); rename it"))
        elif name in first:
            errors.append(error(graph, i, f"the name '{name}' is already layers[{first[name]}]'s; names are unique"))
        else:
            first[name] = i
    if errors:
        return errors
    sources = [
        tuple(layer.inputs) if layer.inputs is not None else ((names[i - 1],) if i else (INPUT,))
        for i, layer in enumerate(graph.layers)
    ]
    for i, (layer, taken) in enumerate(zip(graph.layers, sources, strict=True)):
        for source in taken:
            if source != INPUT and source not in first:
                errors.append(error(graph, i, f"its input '{source}' is not the name of any layer (nor '{INPUT}')"))
        if layer.many_inputs and len(taken) < 2:
            errors.append(error(graph, i, f"{layer_type(layer)} joins 2 or more layers: name them in its inputs"))
        elif not layer.many_inputs and len(taken) != 1:
            errors.append(error(graph, i, f"{layer_type(layer)} takes one input; it is given {len(taken)}"))
    if errors:
        return errors
    order = _order(graph, names, sources, errors)
    if errors:
        return errors
    used = {source for taken in sources for source in taken}
    for i, name in enumerate(names[:-1]):
        if name not in used:
            errors.append(
                error(
                    graph,
                    i,
                    "its output goes nowhere (only the last layer is the network's output): name it "
                    "in a later layer's inputs, or remove it",
                )
            )
    return errors or Wiring(tuple(names), tuple(sources), tuple(order))


def _order(
    graph: NetworkGraph, names: list[str], sources: list[tuple[str, ...]], errors: list[GraphError]
) -> list[int]:
    """A topological order (depth first, so a list without `inputs` keeps its order); cycles go to `errors`."""
    index = {name: i for i, name in enumerate(names)}
    state: dict[int, str] = {}  # "visiting" or "done"
    order: list[int] = []
    for start in range(len(names)):
        if start in state:
            continue
        # An explicit stack: a chain of 256 layers is too deep for recursion to be comfortable.
        stack: list[tuple[int, int]] = [(start, 0)]
        path = [start]
        state[start] = "visiting"
        while stack:
            node, next_source = stack[-1]
            taken = [index[s] for s in sources[node] if s in index]
            if next_source < len(taken):
                stack[-1] = (node, next_source + 1)
                child = taken[next_source]
                if state.get(child) == "visiting":
                    loop = [names[n] for n in path[path.index(child) :]] + [names[child]]
                    errors.append(error(graph, child, f"its inputs form a cycle: {' <- '.join(loop)}"))
                    continue
                if child not in state:
                    state[child] = "visiting"
                    stack.append((child, 0))
                    path.append(child)
                continue
            state[node] = "done"
            order.append(node)
            stack.pop()
            path.pop()
    return order
