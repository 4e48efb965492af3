"""The Python client (epochal.client) against the real service: every error class from a real response, and waiting."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from epochal.client import (
    ApiError,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Progress,
    RateLimited,
    Unauthorized,
    Unavailable,
    WaitTimedOut,
)
from epochal.client.types import FINISHED, Experiment
from epochal.commands import api_argv, with_this_python
from tests.support import ROOT, Service, free_port, running_service

pytestmark = pytest.mark.e2e

QUEUE = "e2e-client"
Trained = tuple[Experiment, list[Progress]]  # the final body from wait(), the events from watch()
TINY = {"dataset": "mnist", "optimizer": "adam", "train_size": 300, "epochs": 2, "batch_size": 64}


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("client"), QUEUE, ["worker"]) as running:
        yield running


@pytest.fixture(scope="module")
def admin(service: Service) -> Iterator[Client]:
    with Client(service.base_url, service.api_key) as client:
        yield client


def unique(name: str) -> str:
    # The embedded test database outlives a run: names made here must not collide with the last run's.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def digit_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_client_talks_http_only() -> None:
    # A program that only drives the service must not need (or load) the service's own code.
    code = (
        "import sys, epochal.client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'api', 'worker', 'models', 'training', 'config'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_401_unauthorized_carries_the_api_message(service: Service) -> None:
    with Client(service.base_url, "epk_not-a-real-key") as client, pytest.raises(Unauthorized) as caught:
        client.experiments()
    assert caught.value.status == 401
    answer = httpx.get(f"{service.base_url}/experiments", headers={"Authorization": "Bearer epk_not-a-real-key"})
    assert caught.value.message == answer.json()["detail"]


def test_403_404_409_and_422(admin: Client, service: Service) -> None:
    created = admin.create_user(unique("client-user"))
    with Client(service.base_url, created["api_key"]) as user:
        assert user.me()["name"] == created["name"]
        with pytest.raises(Forbidden) as forbidden:
            user.users()
        assert forbidden.value.status == 403

    with pytest.raises(NotFound) as missing:
        admin.experiment(987654)
    assert missing.value.status == 404 and missing.value.message

    key = admin.create_key(created["id"])
    assert admin.revoke_key(key["id"])["revoked_at"] is not None
    own = next(k for k in admin.me()["keys"] if str(admin.key).startswith(k["prefix"]))
    with pytest.raises(Conflict) as conflict:
        admin.revoke_key(own["id"])  # the key this request uses: the API refuses to lock its caller out
    assert conflict.value.status == 409 and conflict.value.message

    with pytest.raises(InvalidRequest) as invalid:
        admin.submit(TINY, epochs=0)
    assert invalid.value.status == 422
    # The readable sentence the API wrote for people, naming the field, not FastAPI's list.
    answer = httpx.post(
        f"{service.base_url}/experiments", json={**TINY, "epochs": 0}, headers={"Authorization": f"Bearer {admin.key}"}
    )
    assert invalid.value.message == answer.json()["message"]
    assert "epochs" in invalid.value.message
    assert isinstance(invalid.value.body["detail"], list)


def test_429_carries_retry_after(admin: Client, service: Service) -> None:
    created = admin.create_user(unique("client-quota"), max_sweep_experiments=1)
    with Client(service.base_url, created["api_key"]) as user, pytest.raises(RateLimited) as caught:
        user.create_sweep(base=TINY, grid={"optimizer": ["adam", "sgd"]})
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert "max_sweep_experiments" in caught.value.message
    assert user_has_no_experiments(service, created["api_key"])


def user_has_no_experiments(service: Service, key: str) -> bool:
    with Client(service.base_url, key) as user:
        return user.experiments()["total"] == 0


def test_503_from_a_service_whose_broker_is_down(service: Service, tmp_path: Path) -> None:
    # A second API process on the same database, told to use a broker nobody runs: /health answers 503.
    degraded = Service(tmp_path, QUEUE, {**service.env, "EPOCHAL_BROKER_URL": f"redis+socket://{tmp_path}/none.sock"})
    port = free_port()
    degraded._spawn("api", with_this_python(api_argv("127.0.0.1", port)))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with Client(url, service.api_key) as client:
            while True:
                try:
                    client.health()
                    pytest.fail("a service without its broker reported healthy")
                except Unavailable as error:
                    assert error.status == 503
                    assert "broker" in error.message
                    assert error.body["status"] == "degraded"
                    break
                except ApiError as error:
                    pytest.fail(f"expected 503, got {error}")
                except Exception:
                    assert time.monotonic() < deadline, degraded.logs()
                    time.sleep(0.3)
    finally:
        degraded.stop()


@pytest.fixture(scope="module")
def trained(admin: Client, service: Service) -> Trained:
    """Two tiny runs queued together: the first followed with wait(), the second with watch()."""
    first = admin.submit(TINY, name="client wait")
    second = admin.submit(TINY, name="client watch")
    with pytest.raises(WaitTimedOut):
        admin.wait(second["id"], timeout=0.2, poll_s=0.1)
    final = admin.wait(first["id"], timeout=300, poll_s=0.5)
    return final, list(admin.watch(second["id"], poll_s=0.3))


def test_wait_returns_the_final_body(admin: Client, service: Service, trained: Trained) -> None:
    final, _ = trained
    assert final["status"] == "succeeded", service.logs()
    assert final["summary"]["epochs_done"] == 2 and final["finished_at"]
    assert final == admin.experiment(final["id"])


def test_watch_yields_each_change_and_every_epoch(admin: Client, service: Service, trained: Trained) -> None:
    _, events = trained
    assert events[-1].finished and events[-1].status == "succeeded", service.logs()
    assert all(not e.finished for e in events[:-1])
    assert [m["epoch"] for e in events for m in e.new_epochs] == [1, 2]
    assert len(events[-1].epochs) == 2
    assert events[-1].experiment == admin.experiment(events[-1].experiment["id"])


def test_the_event_stream_and_polling_agree(admin: Client, trained: Trained) -> None:
    experiment_id = trained[0]["id"]
    events = list(admin.events(experiment_id))  # a finished job: replayed from its start, then closed
    assert [e.data["epoch"] for e in events if e.name == "epoch"] == [1, 2]
    assert events[-1].name == "status" and events[-1].data["status"] == "succeeded"
    assert all(e.data["experiment_id"] == experiment_id for e in events)
    resumed = list(admin.events(experiment_id, after=events[0].id))
    assert resumed == events[1:]

    polled = list(admin.watch(experiment_id, live=False))
    streamed = list(admin.watch(experiment_id))
    assert len(polled) == len(streamed) == 1  # finished: one event with every epoch
    assert polled[0].epochs == streamed[0].epochs == admin.metrics(experiment_id)


def test_every_read_of_a_succeeded_experiment(admin: Client, trained: Trained, tmp_path: Path) -> None:
    experiment_id = trained[0]["id"]
    page = admin.experiments(status="succeeded", dataset="mnist", limit=1)
    assert page["total"] >= 1 and page["items"][0]["id"] == trained[1][-1].experiment["id"]  # newest first
    assert experiment_id in {e["id"] for e in admin.iter_experiments(page_size=1, status="succeeded")}

    assert [m["epoch"] for m in admin.metrics(experiment_id)] == [1, 2]
    evaluation = admin.evaluation(experiment_id)
    assert evaluation["confusion_matrix"] == admin.confusion_matrix(experiment_id)
    names = [a["name"] for a in admin.artifacts(experiment_id)]
    assert "best_model.h5" in names
    checkpoint = admin.download(experiment_id)
    assert checkpoint.startswith(b"\x89HDF")
    assert admin.download_to(experiment_id, tmp_path / "best.h5").read_bytes() == checkpoint
    assert admin.history_plot(experiment_id).startswith(b"\x89PNG")
    assert admin.confusion_matrix_plot(experiment_id).startswith(b"\x89PNG")
    assert admin.tensorboard(experiment_id)[:2] == b"\x1f\x8b"

    image = digit_png()
    one = admin.predict(experiment_id, image)
    assert one["experiment_id"] == experiment_id and one["label"] in evaluation["confusion_matrix"]["labels"]
    assert len(admin.predict_batch(experiment_id, [image, ("two.png", image)])) == 2
    assert admin.predict_best("mnist", image)["label"]
    assert len(admin.predict_batch_best("mnist", [image, image, image])) == 3

    with pytest.raises(Conflict):
        admin.cancel(experiment_id)  # it finished: nothing to cancel
    assert any(d["name"] == "mnist" for d in admin.datasets())
    assert admin.health()["status"] == "ok"
    assert admin.backprop_single_neuron()["steps"]
    assert "# TYPE" in admin.service_metrics()


def test_a_429_is_waited_out_and_retried_within_the_clients_bounds(
    admin: Client, service: Service, trained: Trained
) -> None:
    experiment_id, image = trained[0]["id"], digit_png()
    admin_id = admin.me()["id"]
    admin.set_quotas(admin_id, predictions_per_second=1)  # tightened: a second prediction within 1 s is a 429
    try:
        with Client(service.base_url, service.api_key, max_attempts=3, max_retry_wait_s=5) as patient:
            patient.predict(experiment_id, image)
            started = time.monotonic()
            again = patient.predict(experiment_id, image)  # 429 with Retry-After: 1, waited out, then served
            assert again["experiment_id"] == experiment_id
            assert time.monotonic() - started >= 1.0, "answered without waiting: the limit was not reached"
            # A batch of 2 against a limit of 1 is refused however long the client waits: it gives up at the bound.
            with pytest.raises(RateLimited) as refused:
                patient.predict_batch(experiment_id, [image, image])
        assert refused.value.attempts == 3
        assert "gave up after 3 attempts and 2 s of waiting" in str(refused.value)
        with (
            Client(service.base_url, service.api_key, max_retry_wait_s=0.5) as impatient,
            pytest.raises(RateLimited) as hurried,
        ):
            impatient.predict(experiment_id, image)
            impatient.predict(experiment_id, image)
        assert hurried.value.attempts == 1 and "it asked for 1 s more" in str(hurried.value)
    finally:
        admin.set_quotas(admin_id, predictions_per_second=None)


def test_sweeps_and_retry(admin: Client, service: Service) -> None:
    sweep = admin.create_sweep(name="client sweep", base={**TINY, "epochs": 1}, grid={"optimizer": ["adam", "sgd"]})
    assert len(sweep["experiments"]) == 2
    assert sweep["id"] in [s["id"] for s in admin.sweeps(limit=5)]
    finished = admin.wait_sweep(sweep["id"], timeout=300, poll_s=0.5)
    assert finished["finished"] and {e["status"] for e in finished["experiments"]} <= FINISHED
    assert admin.sweep_plot(sweep["id"], "val_accuracy").startswith(b"\x89PNG")
    assert admin.sweep_tensorboard(sweep["id"])[:2] == b"\x1f\x8b"

    failing = admin.submit({"dataset": "mnist", "epochs": 1, "train_size": 1, "validation_split": 0.5})
    assert admin.wait(failing["id"], timeout=300, poll_s=0.5)["status"] == "failed"
    again = admin.retry(failing["id"])
    assert again["id"] == failing["id"] and again["status"] == "queued"
    admin.wait(failing["id"], timeout=300, poll_s=0.5)
