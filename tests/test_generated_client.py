"""A client generated from the served /openapi.json by openapi-python-client works against the API.

What a generator makes of the document is what its users get: the events call decoded its text/event-stream as
one JSON object and crashed, binary answers without `format: binary` came back as nothing, and every call was
named like `create_experiment_experiments_post`. The API runs in-process under uvicorn on a free port (one thread,
the test database and broker); generating takes about two seconds.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.main import app
from tests.seed import finish
from tests.support import ADMIN, ROOT, free_port, new_key

PACKAGE = "epochal_generated_client"
# openapi-python-client decodes the answers of the media types it knows (JSON, text/*, octet-stream): these map the
# service's file types onto bytes, the way its documentation says to.
GENERATOR_CONFIG = f"""\
package_name_override: {PACKAGE}
project_name_override: epochal-generated-client
post_hooks: []
content_type_overrides:
  image/png: application/octet-stream
  image/jpeg: application/octet-stream
  application/x-hdf5: application/octet-stream
  application/gzip: application/octet-stream
"""
CHECKPOINT = b"\x89HDF\r\n\x1a\n stands in for a checkpoint: only its bytes are compared"


def generator() -> str | None:
    """The generator in the virtualenv scripts/bootstrap makes for it (requirements/codegen.txt), or on PATH."""
    local = ROOT / ".venv" / "codegen" / "bin" / "openapi-python-client"
    return str(local) if local.exists() else shutil.which("openapi-python-client")


GENERATOR = generator()
pytestmark = pytest.mark.skipif(
    GENERATOR is None, reason="openapi-python-client is not installed (scripts/bootstrap dev installs it)"
)


@pytest.fixture
def base_url(db: str, broker_url: str) -> Iterator[str]:
    """The app served by uvicorn in a thread of this process, on the test database and broker."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def generated(base_url: str, tmp_path: Path) -> Iterator[Any]:
    """The client package generated from the running API's /openapi.json, imported."""
    assert GENERATOR is not None
    config = tmp_path / "config.yaml"
    config.write_text(GENERATOR_CONFIG)
    command = [GENERATOR, "generate", "--url", f"{base_url}/openapi.json", "--config", str(config), "--meta", "none"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every operation made it into the client: a warning means the generator skipped or degraded part of one.
    assert "Warning" not in result.stdout, result.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def call(generated: Any, operation: str) -> Any:
    """The module of one operation, found by its operation id alone (the generator files it under its tag)."""
    matches = list(Path(generated.__file__).parent.glob(f"api/*/{operation}.py"))
    assert len(matches) == 1, f"{operation}: {matches}"
    return importlib.import_module(f"{PACKAGE}.api.{matches[0].parent.name}.{operation}")


def test_a_generated_client_submits_reads_follows_and_downloads(generated: Any, base_url: str) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    client = generated.AuthenticatedClient(base_url=base_url, token=new_key(ADMIN, admin=True), timeout=30)

    created = call(generated, "create_experiment").sync(
        client=client, body=models.ExperimentCreate(dataset=models.Dataset.MNIST, epochs=2)
    )
    assert isinstance(created, models.ExperimentRead), created
    finish(created.id, checkpoint=CHECKPOINT)  # epochs, an evaluation and a checkpoint, as a finished run leaves them

    read = call(generated, "read_experiment").sync(experiment_id=created.id, client=client)
    assert isinstance(read, models.ExperimentRead) and read.status == models.Status.SUCCEEDED, read
    page = call(generated, "list_experiments").sync(client=client, dataset=models.Dataset.MNIST)
    assert isinstance(page, models.ExperimentPage) and [e.id for e in page.items] == [created.id], page

    # The stream of a finished experiment replays its events and ends with the final status: text, not JSON.
    events = call(generated, "experiment_events").sync_detailed(experiment_id=created.id, client=client)
    assert events.status_code == 200, events.content
    assert events.headers["content-type"].startswith("text/event-stream")
    assert isinstance(events.parsed, str) and "event: status" in events.parsed, events.parsed
    assert '"final": true' in events.parsed, events.parsed

    download = call(generated, "download_artifact")
    checkpoint = download.sync(experiment_id=created.id, name="best_model.h5", client=client)
    assert isinstance(checkpoint, types.File), checkpoint
    assert checkpoint.payload.read() == CHECKPOINT
    plot = call(generated, "plot_history").sync(experiment_id=created.id, client=client)
    assert isinstance(plot, types.File) and plot.payload.read().startswith(b"\x89PNG"), plot

    missing = call(generated, "read_experiment").sync(experiment_id=created.id + 1, client=client)
    assert isinstance(missing, models.ErrorRead) and "does not exist" in str(missing.detail), missing


def test_a_generated_client_builds_a_backbone_layer_and_checks_it(generated: Any, base_url: str) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    client = generated.AuthenticatedClient(base_url=base_url, token=new_key(ADMIN, admin=True), timeout=30)
    backbone = models.Backbone(
        type_="Backbone",
        architecture=models.BackboneArchitecture.MOBILENETV2,
        weights=None,
        trainable=False,
        pooling=models.BackbonePooling.AVG,
        name="bb",
    )
    body = models.NetworkCheck(network=models.NetworkGraph(layers=[backbone]), dataset=models.Dataset.CATS_VS_DOGS)
    answer = call(generated, "check_network").sync(client=client, body=body)
    assert isinstance(answer, models.NetworkCheckRead), answer
    [row] = [row for row in answer.layers if row.name == "bb"]
    assert (row.type_, row.output_shape, row.trainable_params) == ("Backbone", [1280], 0), row
    # The refusal of imagenet weights (this deployment's workers are offline) reaches it as a 422.
    backbone.weights = models.BackboneWeights.IMAGENET
    refused = call(generated, "check_network").sync_detailed(client=client, body=body)
    assert refused.status_code == 422 and b"EPOCHAL_WORKERS_OFFLINE" in refused.content, refused.content
