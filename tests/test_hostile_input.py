"""Hostile input over HTTP: oversized bodies, hostile images, corrupted checkpoints. Always a 4xx, never a 5xx.

Predictions need a trained network: a tiny one is built here and stored the way a worker stores its
checkpoint (an Artifact with its sha256, on a succeeded experiment). The in-process tests check each
answer; the one against a real uvicorn process also measures its memory while the corpus goes in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from config import get_settings
from domain.lifecycle import Status
from models import Artifact, Experiment
from models.base import utcnow
from models.db import get_sessionmaker
from tests.image_corpus import hostile_files, reference_png, valid_encodings
from tests.support import Service, send_whole_then_read, service_env
from training.results import CHECKPOINT_NAME

MiB = 2**20
H5_MEDIA_TYPE = "application/x-hdf5"
PROBABILITY_TOLERANCE = 1e-3
# The API process holds TensorFlow and one network; decoding the bomb alone would take 900 MB more.
MAX_GROWTH_BYTES = 200 * MiB


@pytest.fixture(autouse=True)
def no_prediction_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests send many images per second on purpose; the per-user rate limit is not what they test."""
    monkeypatch.setenv("EPOCHAL_PREDICTIONS_PER_SECOND", "100000")  # for the API process started below
    monkeypatch.setattr(get_settings(), "predictions_per_second", 100_000)


@pytest.fixture(scope="module")
def network_h5(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small MNIST-shaped network saved as the worker saves checkpoints; seeded, so its outputs are fixed."""
    import keras

    keras.utils.set_random_seed(7)
    network = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("network") / CHECKPOINT_NAME
    network.save(path)
    return path.read_bytes()


def succeeded_with_checkpoint(http: TestClient | httpx.Client, content: bytes, sha256: str | None = None) -> int:
    """An MNIST experiment submitted over HTTP, then finished with `content` as its checkpoint."""
    response = http.post("/experiments", json={"dataset": "mnist", "head": {"units": 10, "activation": "softmax"}})
    assert response.status_code == 202, response.text
    experiment_id = int(response.json()["id"])
    with get_sessionmaker()() as session, session.begin():
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None
        experiment.status, experiment.finished_at = Status.SUCCEEDED, utcnow()
        session.add(
            Artifact(
                experiment_id=experiment_id,
                name=CHECKPOINT_NAME,
                media_type=H5_MEDIA_TYPE,
                size=len(content),
                sha256=sha256 or hashlib.sha256(content).hexdigest(),
                content=content,
            )
        )
    return experiment_id


def predict(http: TestClient | httpx.Client, experiment_id: int, data: bytes) -> Any:
    return http.post(f"/experiments/{experiment_id}/predictions", files={"file": ("upload", data)})


def probabilities(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    return list(response.json()["probabilities"].values())


# --- in process -------------------------------------------------------------------------------------


def test_every_encoding_of_one_picture_gets_the_same_prediction(client: TestClient, network_h5: bytes) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    expected = probabilities(predict(client, experiment_id, reference_png()))
    assert max(expected) - min(expected) > 0.01, "a network that answers the same for anything proves nothing"
    for name, data in valid_encodings().items():
        got = probabilities(predict(client, experiment_id, data))
        assert got == pytest.approx(expected, abs=PROBABILITY_TOLERANCE), name


@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_hostile_images_get_a_4xx_with_a_reason(client: TestClient, network_h5: bytes, name: str) -> None:
    data, status, words = hostile_files()[name]
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    response = predict(client, experiment_id, data)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_a_json_body_over_its_cap_is_413_and_creates_nothing(client: TestClient) -> None:
    padding = " " * (MiB + 1)
    response = client.post(
        "/experiments", content=f'{{"dataset": "mnist"{padding}}}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "JSON request bodies must be at most 1 MiB; send a smaller one"}
    assert client.get("/experiments").json()["total"] == 0


def test_an_upload_over_the_body_cap_is_413_whatever_its_length_header_says(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap has to count the bytes as they come
        boundary = b"--cap\r\nContent-Disposition: form-data; name=file; filename=big.png\r\n\r\n"
        yield boundary
        for _ in range(30):
            yield b"\0" * MiB

    multipart = {"content-type": "multipart/form-data; boundary=cap"}
    streamed = client.post("/experiments/1/predictions", content=chunks(), headers=multipart)
    declared = client.post("/experiments/1/predictions", content=b"\0" * (26 * MiB), headers=multipart)
    for response in (streamed, declared):
        assert response.status_code == 413, response.text
        assert response.json() == {"detail": "request bodies must be at most 25 MiB; send a smaller one"}


def test_a_corrupted_checkpoint_is_409_and_never_loaded(client: TestClient, network_h5: bytes) -> None:
    # Stored bytes that differ from the sha256 recorded with them: one flipped byte in the weights. (A checkpoint
    # of its own: the cache holds networks by sha256, and this test's must never have been loaded.)
    written = network_h5 + b"\0" * 64
    damaged = bytearray(written)
    damaged[len(damaged) // 2] ^= 0xFF
    experiment_id = succeeded_with_checkpoint(client, bytes(damaged), sha256=hashlib.sha256(written).hexdigest())
    response = predict(client, experiment_id, reference_png())
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"{CHECKPOINT_NAME} of experiment {experiment_id} failed its integrity check: its stored bytes have sha256 "
        f"{hashlib.sha256(damaged).hexdigest()}, not the {hashlib.sha256(written).hexdigest()} recorded when it "
        "was written; retry the experiment"
    )


def test_a_download_is_checked_as_a_prediction_is(client: TestClient, network_h5: bytes) -> None:
    # A checkpoint of its own, as above: a network cached under its sha256 would be served without a read.
    written = network_h5 + b"\0" * 128
    experiment_id = succeeded_with_checkpoint(client, written)
    url = f"/experiments/{experiment_id}/artifacts/{CHECKPOINT_NAME}"
    intact = client.get(url)
    assert intact.status_code == 200 and intact.content == written
    # The stored bytes change after they were written (a damaged disk, a hand edit): one flipped byte.
    damaged = bytearray(written)
    damaged[len(damaged) // 2] ^= 0xFF
    with get_sessionmaker()() as session, session.begin():
        session.execute(update(Artifact).where(Artifact.experiment_id == experiment_id).values(content=bytes(damaged)))
    refused = client.get(url)
    assert refused.status_code == 409, refused.headers
    detail = refused.json()["detail"]
    assert f"{CHECKPOINT_NAME} of experiment {experiment_id} failed its integrity check" in detail
    assert hashlib.sha256(bytes(damaged)).hexdigest() in detail and hashlib.sha256(written).hexdigest() in detail
    # The same check as a prediction's, so both refuse with the same words.
    assert predict(client, experiment_id, reference_png()).json()["detail"] == detail


# --- a real API process: memory while the corpus goes in --------------------------------------------


class PeakMemory:
    """Samples a process's resident memory every few milliseconds in a background thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakMemory:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send_until_answered(base_url: str, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request head, then body chunks until the server answers; (the answer, body bytes sent)."""
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    assert port is not None
    sent = 0
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(head)
        for chunk in body_chunks:
            readable, _, _ = select.select([connection], [], [], 0)
            if readable:
                break  # the server answered before the body was complete
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # it answered and closed while we were still sending
            sent += len(chunk)
        # Done sending, as a client that has its answer is: the server stops waiting for the rest of the body.
        with contextlib.suppress(OSError):  # already reset by a server that closed early
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            try:
                data = connection.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
    return answer, sent


@pytest.mark.e2e
def test_a_real_api_process_answers_the_whole_corpus_in_bounded_memory(
    db: str, broker_url: str, tmp_path: Path, network_h5: bytes
) -> None:
    service = Service(tmp_path, "hostile", service_env("hostile"))
    try:
        service.start_api()
        api_pid = service.processes[0][1].pid
        with service.http(timeout=120) as http:
            experiment_id = succeeded_with_checkpoint(http, network_h5)
            expected = probabilities(predict(http, experiment_id, reference_png()))  # loads TensorFlow and the network
            baseline = psutil.Process(api_pid).memory_info().rss
            with PeakMemory(api_pid) as memory:
                for name, (data, status, words) in hostile_files().items():
                    response = predict(http, experiment_id, data)
                    assert response.status_code == status, f"{name}: {response.text}"
                    assert words in response.json()["detail"], name
                for name, data in valid_encodings().items():
                    got = probabilities(predict(http, experiment_id, data))
                    assert got == pytest.approx(expected, abs=PROBABILITY_TOLERANCE), name

                # 60 MB, declared up front and then streamed without a length: both are refused mid-body.
                path = f"/experiments/{experiment_id}/predictions"
                auth = f"Authorization: Bearer {service.api_key}\r\n"
                common = f"POST {path} HTTP/1.1\r\nHost: api\r\n{auth}Content-Type: multipart/form-data; boundary=x\r\n"
                total = 60 * MiB
                declared_head = f"{common}Content-Length: {total}\r\n\r\n".encode()
                answer, declared_sent = send_until_answered(service.base_url, declared_head, _zeros(total, MiB))
                assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
                assert declared_sent < total, "the server read the whole 60 MB before answering"
                chunked_head = f"{common}Transfer-Encoding: chunked\r\n\r\n".encode()
                answer, chunked_sent = send_until_answered(service.base_url, chunked_head, _http_chunks(total, MiB))
                assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
                assert b"at most 25 MiB" in answer
                assert chunked_sent < total, "the server read the whole 60 MB before answering"
                # A client that sends all of it before it reads gets its 413 too, not a connection reset.
                for head, chunks in ((declared_head, _zeros(total, MiB)), (chunked_head, _http_chunks(total, MiB))):
                    answer = send_whole_then_read(service.base_url, head, chunks)
                    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
                    detail = json.loads(answer.partition(b"\r\n\r\n")[2])["detail"]
                    assert detail == "request bodies must be at most 25 MiB; send a smaller one"

            assert http.get("/health").status_code == 200, "the API is still up and answering"
    finally:
        service.stop()
    growth = memory.peak - baseline
    print(
        f"\nAPI process memory: {baseline / MiB:.0f} MiB after the first prediction, peak {memory.peak / MiB:.0f} MiB "
        f"while the hostile corpus went in (+{growth / MiB:.1f} MiB); 60 MB bodies refused after "
        f"{declared_sent / MiB:.0f} MiB (Content-Length) and {chunked_sent / MiB:.0f} MiB (chunked) had been sent"
    )
    assert growth < MAX_GROWTH_BYTES, service.logs()


FILE_PART = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'


def _zeros(total: int, size: int) -> Iterator[bytes]:
    """A multipart body of `total` bytes: one file part, then zeros, in pieces of `size`."""
    yield FILE_PART
    whole, rest = divmod(total - len(FILE_PART), size)
    for _ in range(whole):
        yield b"\0" * size
    yield b"\0" * rest


def _http_chunks(total: int, size: int) -> Iterator[bytes]:
    for chunk in _zeros(total, size):
        if chunk:
            yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("path", ["/experiments", "/sweeps"])
@pytest.mark.parametrize("query", ["limit=501", "limit=0", "offset=-1", f"offset={2**63}", f"offset={10**30}"])
def test_list_pages_are_capped_with_a_422_not_a_database_error(client: TestClient, path: str, query: str) -> None:
    response = client.get(f"{path}?{query}")
    assert response.status_code == 422, response.text
    assert query.split("=")[0] in response.json()["message"]


def test_sweeps_are_listed_a_page_at_a_time(client: TestClient) -> None:
    for seed in (1, 2, 3):
        assert client.post(
            "/sweeps", json={"base": {"dataset": "mnist", "seed": seed}, "grid": {"epochs": [1]}}
        ).is_success
    newest_first = [sweep["base"]["seed"] for sweep in client.get("/sweeps", params={"limit": 2}).json()]
    assert newest_first == [3, 2]
    assert [sweep["base"]["seed"] for sweep in client.get("/sweeps", params={"offset": 2}).json()] == [1]


def test_a_body_without_a_content_type_gets_the_json_cap(client: TestClient) -> None:
    # Only uploads (multipart) need the large cap; a body that names no type is no upload.
    response = client.post("/experiments", content=b"{" + b" " * MiB + b"}", headers={"content-type": ""})
    assert response.status_code == 413
    assert "JSON request bodies must be at most 1 MiB" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"dataset": "mnist", "name": "\\ud800"}', "name"),  # no response could encode it back: was a 500
        (b'{"dataset": "mnist", "name": "a\\u0000b"}', "name"),  # PostgreSQL cannot store it: a 500 there
        (b'{"dataset": "mnist", "seed": 1, "\\udfff": 2}', "'\\udfff'"),
    ],
)
def test_json_text_that_cannot_be_stored_or_sent_back_is_a_422(client: TestClient, body: bytes, field: str) -> None:
    for path in ("/experiments", "/sweeps"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["message"].startswith(f"{field}: text may not contain NUL characters")
    assert client.get("/experiments").json()["total"] == 0


def test_surrogate_pairs_and_nesting_too_deep_for_the_parser_are_not_500s(client: TestClient) -> None:
    json_type = {"content-type": "application/json"}
    emoji = client.post("/experiments", content=b'{"dataset": "mnist", "name": "\\ud83d\\ude00"}', headers=json_type)
    assert emoji.status_code == 202
    assert emoji.json()["name"] == "\U0001f600"
    deep = client.post("/experiments", content=b"[" * 100_000 + b"]" * 100_000, headers=json_type)
    assert deep.status_code == 400


def test_a_nul_in_the_path_is_404_before_the_database_sees_it(client: TestClient) -> None:
    response = client.get("/experiments/1/artifacts/best_model.h5%00")
    assert response.status_code == 404
