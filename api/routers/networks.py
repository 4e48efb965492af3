"""Networks: the presets, and checking a network against an input before anything is queued.

The check is shape arithmetic in plain Python (training/graph/check.py): no TensorFlow in the API process, and a
network over the limits is refused from its figures without allocating anything.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError

from api.http.auth import CurrentUser
from api.http.deps import SessionDep, SettingsDep
from api.http.errors import responses
from api.schemas.networks import NetworkCheck, NetworkCheckRead, NetworkLimitsRead, NetworkPresetRead
from domain.datasets import usable_info
from domain.errors import Invalid
from domain.submission import network_limits, unreachable_weights
from training.graph.check import HeadShape, NetworkSummary, over_limits, summarize
from training.graph.network import GraphError, NetworkGraph
from training.graph.presets import DESCRIPTIONS, PRESETS
from training.graph.vocabulary import LayerActivation
from training.spec import DATASETS, Activation, Dataset, Head, builtin_info, split_reference

router = APIRouter(prefix="/networks", tags=["networks"])
PRESET_BATCH_SIZE = 32


def _head(head: Head | None) -> HeadShape | None:
    return None if head is None else HeadShape(head.units, LayerActivation(head.activation))


def _refused(errors: list[tuple[tuple[Any, ...], str]]) -> RequestValidationError:
    # The app's one 422 shape: `loc` points into the body (network.layers.3), `message` joins them for people.
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *loc), "msg": message, "input": None} for loc, message in errors]
    )


def _located(error: GraphError) -> tuple[tuple[Any, ...], str]:
    return ("network", "layers", error.index) if error.index is not None else ("network",), str(error)


@router.get("", response_model=list[NetworkPresetRead])
def list_networks() -> list[NetworkPresetRead]:
    """The preset networks (what `"network": "mlp"` trains), each as a graph, with its figures on each dataset."""
    presets = []
    for name, graph in PRESETS.items():
        summaries = {}
        for info in DATASETS.values():
            summary = summarize(graph, info.input_shape, PRESET_BATCH_SIZE, HeadShape(info.num_classes))
            if isinstance(summary, NetworkSummary):
                summaries[str(info.name)] = summary.figures
        presets.append(
            NetworkPresetRead(
                name=name,
                description=DESCRIPTIONS[name],
                default_for=[Dataset(info.name) for info in DATASETS.values() if info.default_network is name],
                network=graph,
                summaries=summaries,
            )
        )
    return presets


@router.post("/check", response_model=NetworkCheckRead, responses=responses(400, 404, 413, 422))
def check_network(
    body: NetworkCheck, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> NetworkCheckRead:
    """Check a network against a dataset's input (or a shape) without queueing anything.

    200: Keras' summary of the whole network (image, rescaling to 0..1, your layers, the head), its parameters,
    FLOPs per example and activation memory per batch, and the limits they are held to: the caller's (their
    overrides, else the settings), which their submissions are held to. 422: what is wrong, per layer
    (`network.layers.3: layers[3] MaxPooling2D: its input is 1x1x64, smaller than pool_size 2`), which figure is
    over which limit (and that an admin may raise it per user), or a Backbone's imagenet weights where the workers
    are offline (EPOCHAL_WORKERS_OFFLINE).
    """
    graph = PRESETS[body.network] if not isinstance(body.network, NetworkGraph) else body.network
    if body.dataset is not None:
        name, version = split_reference(body.dataset)
        info = builtin_info(name) or usable_info(session, user, name, version)
        if info.builtin and version not in (None, info.version):
            raise Invalid(f"{name} is a built-in dataset: it has version {info.version} only; drop the version")
        input_shape = info.input_shape
        head = _head(body.head or Head(units=info.num_classes, activation=Activation.SOFTMAX))
    else:
        assert body.input_shape is not None  # the model's validator says one of the two is given
        input_shape, head = tuple(body.input_shape), _head(body.head)
    summary = summarize(graph, input_shape, body.batch_size, head)
    if isinstance(summary, list):
        raise _refused([_located(e) for e in summary])
    offline = unreachable_weights(graph, settings)
    if offline:
        raise _refused([_located(e) for e in offline])
    limits = network_limits(settings, user)
    refusals = over_limits(summary.figures, limits)
    if refusals:
        raise _refused([(("network",), f"{refusal}: make it smaller") for refusal in refusals])
    return NetworkCheckRead(
        layers=summary.layers,
        figures=summary.figures,
        batch_size=summary.batch_size,
        input_shape=list(input_shape),
        network=graph,
        limits=NetworkLimitsRead.of(limits),
    )
