"""The network routes: the presets, and the check's summary, figures, limits and 422s, through the real app."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.main import app
from config import Settings, get_settings
from tests.support import ADMIN, ROOT, bearer, new_key
from training.graph.network import EXAMPLE, MAX_LAYERS
from training.graph.vocabulary import MAX_UNITS

CHECK = "/networks/check"
MLP_ON_MNIST = (784 * 512 + 512) + (512 * 128 + 128) + (128 * 10 + 10)


@pytest.fixture
def api(db: str, broker_url: str) -> Iterator[TestClient]:
    """The app with an admin's key, answering a server error as a 500 rather than raising it."""
    with TestClient(app, headers=bearer(new_key(ADMIN, admin=True)), raise_server_exceptions=False) as client:
        yield client


def check(api: TestClient, network: Any, **fields: Any) -> Any:
    return api.post(CHECK, json={"network": network, **({"dataset": "mnist"} | fields)})


def refusal(response: Any) -> str:
    assert response.status_code == 422, response.text
    message: str = response.json()["message"]
    return message


def test_the_presets_are_listed_with_their_graphs_and_figures(api: TestClient) -> None:
    response = api.get("/networks")
    assert response.status_code == 200, response.text
    presets = {preset["name"]: preset for preset in response.json()}
    assert sorted(presets) == ["convnet", "mlp"]
    mlp = presets["mlp"]
    assert [layer["type"] for layer in mlp["network"]["layers"]] == ["Flatten", "Dense", "Dense"]
    assert mlp["summaries"]["mnist"]["total_params"] == MLP_ON_MNIST
    assert sorted(mlp["default_for"]) == ["fashion_mnist", "mnist"]
    # The convnet needs an image: it has figures on cats_vs_dogs only.
    assert sorted(presets["convnet"]["summaries"]) == ["cats_vs_dogs"]
    # A listed graph is a valid network to check.
    again = check(api, mlp["network"])
    assert again.status_code == 200 and again.json()["figures"] == mlp["summaries"]["mnist"]


def test_a_preset_checked_by_name_has_the_summary_keras_gives(api: TestClient) -> None:
    import keras

    from training.networks import build_network
    from training.spec import ExperimentSpec

    response = check(api, "convnet", dataset="cats_vs_dogs", batch_size=16)
    assert response.status_code == 200, response.text
    answer = response.json()
    model = build_network(ExperimentSpec.model_validate({"dataset": "cats_vs_dogs"}))
    assert [(row["name"], tuple(row["output_shape"]), row["params"]) for row in answer["layers"]] == [
        (layer.name, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers
    ]
    assert answer["figures"]["total_params"] == model.count_params()
    values = sum(int(keras.ops.prod(layer.output.shape[1:])) for layer in model.layers)
    assert answer["figures"]["activation_bytes_inference"] == values * 16 * 4
    assert answer["input_shape"] == [150, 150, 3] and answer["batch_size"] == 16
    assert answer["limits"]["params"] == get_settings().max_network_params


def test_the_documented_example_checks(api: TestClient) -> None:
    response = check(api, EXAMPLE)
    assert response.status_code == 200, response.text
    names = [row["name"] for row in response.json()["layers"]]
    assert names[:3] == ["image", "rescaling", "reshape_0"] and names[-1] == "head"


def test_an_input_shape_instead_of_a_dataset_and_no_head(api: TestClient) -> None:
    response = api.post(CHECK, json={"network": {"layers": [{"type": "Flatten"}]}, "input_shape": [3, 5]})
    assert response.status_code == 200, response.text
    assert response.json()["layers"][-1] == {
        "name": "flatten_0",
        "type": "Flatten",
        "output_shape": [15],
        "params": 0,
        "trainable_params": 0,
        "inputs": ["rescaling"],
    }
    both = {"network": "mlp", "input_shape": [3, 5], "dataset": "mnist"}
    assert "either dataset" in refusal(api.post(CHECK, json=both))
    assert "either dataset" in refusal(api.post(CHECK, json={"network": "mlp"}))


def test_a_bad_layer_is_a_422_naming_it(api: TestClient) -> None:
    layers = [
        {"type": "Conv2D", "filters": 64, "kernel_size": 3},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Dropout", "rate": 0.1},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
    ]
    message = refusal(api.post(CHECK, json={"network": {"layers": layers}, "input_shape": [4, 4, 3]}))
    assert message.startswith("network.layers.3: layers[3] MaxPooling2D: its input is 1x1x64, smaller than pool_size 2")
    unknown = refusal(check(api, {"layers": [{"type": "Lambda", "function": "print"}]}))
    assert "network" in unknown and "Lambda" in unknown
    argument = refusal(check(api, {"layers": [{"type": "Flatten", "data_format": "channels_first"}]}))
    assert "network.NetworkGraph.layers.0.Flatten.data_format: unknown field" in argument
    cycle = refusal(
        check(
            api,
            {
                "layers": [
                    {"type": "Flatten", "name": "a", "inputs": ["b"]},
                    {"type": "Flatten", "name": "b", "inputs": ["a"]},
                ]
            },
        )
    )
    assert "its inputs form a cycle" in cycle


def test_absurd_sizes_are_refused_by_bounds_and_limits(api: TestClient) -> None:
    huge_units = refusal(check(api, {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10**9}]}))
    assert "units" in huge_units and str(MAX_UNITS) in huge_units
    # 67,500 x 2^20 weights (and a head of 2 units on them): refused from the arithmetic, nothing allocated.
    over = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": MAX_UNITS}]}
    message = refusal(check(api, over, dataset="cats_vs_dogs"))
    assert (
        "EPOCHAL_MAX_NETWORK_PARAMS" in message
        and f"{67500 * MAX_UNITS + MAX_UNITS + (MAX_UNITS * 2 + 2):,} parameters" in message
    )
    wide = {
        "layers": [
            {"type": "Resizing", "height": 4096, "width": 4096},
            {"type": "Conv2D", "filters": 512, "kernel_size": 3},
            {"type": "GlobalMaxPooling2D"},
        ]
    }
    message = refusal(check(api, wide, dataset="cats_vs_dogs", batch_size=8192))
    assert "EPOCHAL_MAX_NETWORK_FLOPS" in message and "EPOCHAL_MAX_NETWORK_ACTIVATION_BYTES" in message


def test_the_limits_are_the_settings(api: TestClient) -> None:
    app.dependency_overrides[get_settings] = lambda: Settings(max_network_params=MLP_ON_MNIST - 1)
    try:
        message = refusal(check(api, "mlp"))
    finally:
        app.dependency_overrides.clear()
    assert f"the network has {MLP_ON_MNIST:,} parameters, over the limit of {MLP_ON_MNIST - 1:,}" in message


IMAGENET: dict[str, list[dict[str, Any]]] = {
    "layers": [
        {"type": "Backbone", "architecture": "MobileNetV2", "weights": "imagenet", "trainable": False, "name": "bb"},
        {"type": "GlobalAveragePooling2D"},
    ]
}


def test_imagenet_weights_are_refused_while_workers_are_offline_and_checked_when_not(api: TestClient) -> None:
    assert get_settings().workers_offline  # the default, and this environment's: its workers cannot download
    response = check(api, IMAGENET, dataset="cats_vs_dogs")
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("network.layers.0: layers[0] Backbone 'bb': weights 'imagenet' are downloaded")
    assert "EPOCHAL_WORKERS_OFFLINE" in message and "use weights null" in message
    app.dependency_overrides[get_settings] = lambda: Settings(workers_offline=False)
    try:
        online = check(api, IMAGENET, dataset="cats_vs_dogs")
    finally:
        app.dependency_overrides.clear()
    assert online.status_code == 200, online.text
    [row] = [row for row in online.json()["layers"] if row["name"] == "bb"]
    # MobileNetV2 on 150x150x3: a 5x5 feature map of 1280 channels, every weight frozen.
    assert row["output_shape"] == [5, 5, 1280] and row["trainable_params"] == 0 and row["params"] == 2_257_984
    # Random weights need no download: checked while the workers are offline.
    random = {"layers": [{**IMAGENET["layers"][0], "weights": None}, IMAGENET["layers"][1]]}
    assert check(api, random, dataset="cats_vs_dogs").status_code == 200


def test_imagenet_weights_are_refused_by_post_experiments_while_workers_are_offline(api: TestClient) -> None:
    body = {"dataset": "cats_vs_dogs", "network": IMAGENET, "epochs": 1}
    response = api.post("/experiments", json=body)
    assert response.status_code == 422, response.text
    assert "layers[0] Backbone 'bb'" in response.text and "EPOCHAL_WORKERS_OFFLINE" in response.text
    # A grayscale dataset is told how to make 3 channels, and a small image how to grow.
    reshape: dict[str, Any] = {"type": "Reshape", "target_shape": [28, 28, 1]}
    resizing: dict[str, Any] = {"type": "Resizing", "height": 32, "width": 32}
    grey = {**body, "dataset": "mnist", "network": {"layers": [reshape, resizing, *IMAGENET["layers"]]}}
    message = refusal(api.post("/experiments", json=grey))
    assert "layers[2] Backbone 'bb': its input has 1 channel, and imagenet weights take 3" in message
    random = {**IMAGENET["layers"][0], "weights": None}
    too_small = {**grey, "network": {"layers": [reshape, random, IMAGENET["layers"][1]]}}
    message = refusal(api.post("/experiments", json=too_small))
    assert "layers[1] Backbone 'bb': its input is 28x28x1, smaller than MobileNetV2's minimum of 32x32" in message


def test_a_long_graph_is_checked_quickly_and_a_longer_one_refused(api: TestClient) -> None:
    block = [{"type": "Dense", "units": 64, "activation": "relu"}, {"type": "Dropout", "rate": 0.1}]
    layers = [{"type": "Flatten"}] + block * 99 + [{"type": "LayerNormalization"}]  # 200 layers
    started = time.perf_counter()
    response = check(api, {"layers": layers})
    assert response.status_code == 200, response.text
    assert time.perf_counter() - started < 2
    assert len(response.json()["layers"]) == 200 + 3
    longer = refusal(check(api, {"layers": [{"type": "Flatten"}] * (MAX_LAYERS + 1)}))
    assert f"at most {MAX_LAYERS}" in longer


def test_a_body_over_the_json_cap_is_413(api: TestClient) -> None:
    body = json.dumps({"network": "mlp", "dataset": "mnist", "padding": "x" * (get_settings().max_json_bytes + 1)})
    response = api.post(CHECK, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_without_a_key_both_routes_are_401(anonymous_client: TestClient) -> None:
    assert anonymous_client.get("/networks").status_code == 401
    assert anonymous_client.post(CHECK, json={"network": "mlp", "dataset": "mnist"}).status_code == 401


def test_the_check_imports_no_tensorflow() -> None:
    code = (
        "import sys\n"
        "from api.routers.networks import check_network\n"
        "from api.schemas.networks import NetworkCheck\n"
        "from config import get_settings\n"
        "from models.users import User\n"
        "answer = check_network(NetworkCheck.model_validate({'network': 'convnet', 'dataset': 'cats_vs_dogs'}), "
        "None, get_settings(), User())\n"  # no session: a built-in's check reads no dataset row
        "print(answer.figures.total_params > 0, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False"]


LAYER_TYPES = [
    "Dense",
    "Conv2D",
    "SeparableConv2D",
    "DepthwiseConv2D",
    "Conv2DTranspose",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Flatten",
    "Reshape",
    "Dropout",
    "SpatialDropout2D",
    "BatchNormalization",
    "LayerNormalization",
    "Activation",
    "Rescaling",
    "Resizing",
    "Add",
    "Concatenate",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "Backbone",
]
ARGUMENTS = [
    "architecture",
    "weights",
    "trainable",
    "pooling",
    "units",
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "pool_size",
    "rate",
    "target_shape",
    "axis",
    "height",
    "width",
    "factor",
    "height_factor",
    "width_factor",
    "depth_multiplier",
    "dilation_rate",
    "activation",
    "scale",
    "keepdims",
    "value_range",
    "inputs",
    "name",
]
BACKBONE_VALUES = ("MobileNetV2", "ResNet50", "EfficientNetB0", "imagenet", "avg", "max")
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(
        [
            0,
            1,
            2,
            3,
            -1,
            4096,
            2**31,
            0.5,
            -0.5,
            1e308,
            "same",
            "valid",
            "relu",
            "input",
            "a",
            "b",
            None,
            True,
            *BACKBONE_VALUES,
        ]
    ),
    st.lists(st.sampled_from([1, 2, 3, -1, 0, 28, 10**12, "a", "input"]), max_size=4),
    st.text(max_size=8),
)
LAYER = st.fixed_dictionaries(
    {"type": st.sampled_from(LAYER_TYPES)}, optional={"name": st.sampled_from(["a", "b", "c"])}
).flatmap(
    lambda base: st.dictionaries(st.sampled_from(ARGUMENTS), VALUES, max_size=4).map(lambda args: {**args, **base})
)
BODY = st.fixed_dictionaries(
    {"network": st.fixed_dictionaries({"layers": st.lists(LAYER, min_size=0, max_size=8)})},
    optional={
        "dataset": st.sampled_from(["mnist", "cats_vs_dogs", "nope"]),
        "input_shape": st.lists(st.integers(min_value=-1, max_value=5000), max_size=4),
        "batch_size": st.integers(min_value=-1, max_value=10**6),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODY)
@example(body={"network": {"layers": [{"type": "MaxPooling2D"}]}, "dataset": "nope"})  # a sound network, no dataset
def test_fuzzed_networks_are_answered_200_404_or_422_never_500(api: TestClient, body: dict[str, Any]) -> None:
    response = api.post(CHECK, json=body)
    assert response.status_code in (200, 404, 422), (body, response.status_code, response.text[:500])
    if response.status_code == 404:  # only a dataset nobody has, as for a submission naming it
        assert body.get("dataset") == "nope" and "'nope' does not exist" in response.json()["detail"], response.text
    if response.status_code == 422:
        assert response.json()["message"]
