"""The homework's networks, written in the network language: what `"network": "mlp"` and `"convnet"` train."""

from __future__ import annotations

from typing import Any

from training.graph.network import NetworkGraph
from training.spec import Network

PRESET_LAYERS: dict[Network, list[dict[str, Any]]] = {
    # Flatten(28x28) -> Dense(512, relu) -> Dense(128, relu): the optimizer homework's network.
    Network.MLP: [
        {"type": "Flatten"},
        {"type": "Dense", "units": 512, "activation": "relu"},
        {"type": "Dense", "units": 128, "activation": "relu"},
    ],
    # Four 3x3 convolutions of 32, 64, 128, 128 filters, each followed by 2x2 max pooling, then Dense(512, relu).
    Network.CONVNET: [
        layer
        for filters in (32, 64, 128, 128)
        for layer in (
            {"type": "Conv2D", "filters": filters, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
        )
    ]
    + [{"type": "Flatten"}, {"type": "Dense", "units": 512, "activation": "relu"}],
}

PRESETS: dict[Network, NetworkGraph] = {
    network: NetworkGraph.model_validate({"layers": layers}) for network, layers in PRESET_LAYERS.items()
}

DESCRIPTIONS: dict[Network, str] = {
    Network.MLP: "The optimizer homework's MLP: Flatten, Dense(512, relu), Dense(128, relu).",
    Network.CONVNET: "The cats-vs-dogs homework's convnet: 4 x (Conv2D 3x3, MaxPooling2D 2) of 32, 64, 128, 128 "
    "filters, Flatten, Dense(512, relu).",
}
