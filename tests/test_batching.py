"""Micro-batched predictions: the same answers as one image at a time, gathered when requests overlap,
one load however many first requests arrive together, and the batch routes.

Nothing here is timed: where requests must overlap, the model call is held until they have queued.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from api.http.callers import caller_cache
from api.http.rate_limits import SharedMovingWindow
from api.serving import predictors
from api.serving.batcher import MicroBatcher
from api.serving.decode_budget import DECODING
from api.serving.pipeline import MAX_IMAGE_BYTES, served_refs
from api.serving.predictors import PredictorCache, ServedModel
from config import get_settings
from infra.invalidation import listener
from tests.image_corpus import deep_png
from tests.seed import finish, noise_digits
from tests.support import bearer, counted_work
from training.results import CHECKPOINT_NAME

TOLERANCE = 1e-5
IMAGES = 12


# --- the batcher alone ------------------------------------------------------------------------------


class HeldCall:
    """A fake network (outputs = 2 x inputs) whose first call waits until the test lets it go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[int] = []

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if not self.calls:
            self.release.wait(timeout=30)
        self.calls.append(len(inputs))
        return inputs * 2


async def _queued(batcher: MicroBatcher, images: int) -> None:
    while batcher._queued_images() < images:
        await asyncio.sleep(0.001)


def test_a_lone_request_runs_at_once_in_a_call_of_its_own() -> None:
    call = HeldCall()
    call.release.set()
    batcher = MicroBatcher(call, window_s=10.0, max_batch=64)  # a wait of 10 s would show as a hung test
    out = asyncio.run(batcher.predict(np.ones((1, 3), dtype="float32")))
    assert out.tolist() == [[2.0, 2.0, 2.0]]
    assert batcher.batch_sizes == {1: 1}


def test_requests_that_arrive_during_a_call_share_the_next_one_and_get_their_own_rows() -> None:
    call = HeldCall()
    batcher = MicroBatcher(call, window_s=10.0, max_batch=IMAGES - 1)

    async def scenario() -> list[np.ndarray]:
        first = asyncio.ensure_future(batcher.predict(np.full((1, 2), 0.0, dtype="float32")))
        await asyncio.sleep(0)  # the first request starts its call, which is held
        rest = [asyncio.ensure_future(batcher.predict(np.full((1, 2), i, dtype="float32"))) for i in range(1, IMAGES)]
        await _queued(batcher, IMAGES - 1)
        call.release.set()
        return list(await asyncio.gather(first, *rest))

    outputs = asyncio.run(scenario())
    assert [o.tolist() for o in outputs] == [[[2.0 * i, 2.0 * i]] for i in range(IMAGES)]
    # Full batch: the gathered call went without waiting out its 10 s window.
    assert call.calls == [1, IMAGES - 1]
    assert batcher.batch_sizes == {1: 1, IMAGES - 1: 1}


def test_a_gathered_call_never_exceeds_max_batch() -> None:
    call = HeldCall()
    batcher = MicroBatcher(call, window_s=10.0, max_batch=4)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.predict(np.zeros((1, 1), dtype="float32")))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batcher.predict(np.zeros((3, 1), dtype="float32"))) for _ in range(3)]
        await _queued(batcher, 9)
        call.release.set()
        await asyncio.gather(first, *rest)

    asyncio.run(scenario())
    assert call.calls == [1, 3, 3, 3]  # whole requests only: 3 + 3 would be over 4


def test_window_zero_turns_gathering_off() -> None:
    call = HeldCall()
    call.release.set()
    batcher = MicroBatcher(call, window_s=0.0, max_batch=64)

    async def scenario() -> None:
        await asyncio.gather(*(batcher.predict(np.zeros((1, 1), dtype="float32")) for _ in range(8)))

    asyncio.run(scenario())
    assert batcher.batch_sizes == {1: 8}


def test_a_failing_call_fails_every_request_in_it() -> None:
    def broken(_inputs: np.ndarray) -> np.ndarray:
        raise RuntimeError("the network broke")

    batcher = MicroBatcher(broken, window_s=0.01, max_batch=64)

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            *(batcher.predict(np.zeros((1, 1), dtype="float32")) for _ in range(5)), return_exceptions=True
        )

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(scenario()))


# --- through the API --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def network_h5(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small MNIST-shaped network saved as the worker saves checkpoints; seeded, so its outputs are fixed."""
    import keras

    keras.utils.set_random_seed(11)
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


@pytest.fixture(autouse=True)
def no_prediction_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many images per second on purpose; the rate limit has a test of its own below."""
    monkeypatch.setattr(get_settings(), "predictions_per_second", 100_000)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[PredictorCache]:
    """A fresh network cache for one test, gathering with a long window (tests hold calls, never time them)."""
    fresh = PredictorCache(capacity=4, window_s=10.0, max_batch=IMAGES - 1)
    monkeypatch.setattr(predictors, "_cache", fresh)
    yield fresh


def succeeded_with_checkpoint(client: TestClient, content: bytes) -> int:
    response = client.post("/experiments", json={"dataset": "mnist", "head": {"units": 10, "activation": "softmax"}})
    assert response.status_code == 202, response.text
    experiment_id = int(response.json()["id"])
    finish(experiment_id, epochs=1, val_accuracy=0.5, checkpoint=content)
    return experiment_id


def single(client: TestClient, path: str, image: bytes) -> dict[str, Any]:
    response = client.post(path, files={"file": ("digit.png", image, "image/png")})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def batch(client: TestClient, path: str, images: list[bytes]) -> Any:
    return client.post(path, files=[("files", (f"d{i}.png", image, "image/png")) for i, image in enumerate(images)])


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["label"] == expected["label"] and got["class_index"] == expected["class_index"]
    assert list(got["probabilities"]) == list(expected["probabilities"])
    np.testing.assert_allclose(
        list(got["probabilities"].values()), list(expected["probabilities"].values()), atol=TOLERANCE
    )


def served(cache: PredictorCache) -> ServedModel:
    (model,) = cache._items.values()
    return model


def hold_first_call(model: ServedModel) -> threading.Event:
    """Make the network's next call wait for the returned event, so requests pile up behind it."""
    release = threading.Event()
    original: Callable[[np.ndarray], np.ndarray] = model.batcher.call
    held = [False]

    def call(inputs: np.ndarray) -> np.ndarray:
        if not held[0]:
            held[0] = True
            release.wait(timeout=30)
        return original(inputs)

    model.batcher.call = call
    return release


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the requests never queued"
        time.sleep(0.005)


def test_the_batch_route_answers_in_order_as_the_single_route_does(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    images = noise_digits(IMAGES)
    for base in (f"/experiments/{experiment_id}/predictions", "/datasets/mnist/predictions"):
        expected = [single(client, base, image) for image in images]
        assert len({e["label"] for e in expected}) > 1, "a network that answers the same for anything proves nothing"
        response = batch(client, f"{base}/batch", images)
        assert response.status_code == 200, response.text
        got = response.json()["predictions"]
        assert len(got) == IMAGES
        for one, reference in zip(got, expected, strict=True):
            assert one["experiment_id"] == experiment_id
            assert_same(one, reference)
    assert cache.loads == 1


def test_concurrent_requests_are_gathered_into_one_call_with_the_same_answers(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions"
    images = noise_digits(IMAGES)
    expected = [single(client, path, image) for image in images]  # one call each: nothing overlaps
    model = served(cache)
    model.batcher.batch_sizes.clear()
    release = hold_first_call(model)
    with ThreadPoolExecutor(IMAGES) as pool:
        first = pool.submit(single, client, path, images[0])
        wait_for(lambda: sum(model.batcher.batch_sizes.values()) == 1)  # the first call started, and is held
        rest = [pool.submit(single, client, path, image) for image in images[1:]]
        wait_for(lambda: model.batcher._queued_images() == IMAGES - 1)
        release.set()
        got = [first.result(), *(future.result() for future in rest)]
    for one, reference in zip(got, expected, strict=True):
        assert_same(one, reference)
    # One call for the first request, one for all the others that queued behind it.
    assert model.batcher.batch_sizes == {1: 1, IMAGES - 1: 1}


def test_many_first_requests_load_the_network_once(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions"
    image = noise_digits(1)[0]
    entered = threading.Semaphore(0)
    release = threading.Event()
    load = PredictorCache._load

    def slow_load(self: PredictorCache, *args: Any) -> ServedModel:
        entered.release()
        release.wait(timeout=30)  # the other requests arrive while this load is in progress
        return load(self, *args)

    callers = threading.Semaphore(0)
    get = PredictorCache.get

    def counting_get(self: PredictorCache, *args: Any) -> ServedModel:
        callers.release()
        return get(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PredictorCache, "_load", slow_load)
        patch.setattr(PredictorCache, "get", counting_get)
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(single, client, path, image) for _ in range(8)]
            assert entered.acquire(timeout=30)
            for _ in range(8):
                assert callers.acquire(timeout=30), "not every request reached the cache"
            release.set()
            answers = [future.result() for future in futures]
    assert cache.loads == 1
    for answer in answers:  # gathered or not, the same answer (a batched matmul may differ in the last bits)
        assert_same(answer, answers[0])


def test_a_batch_with_one_bad_image_fails_naming_that_part(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    images = noise_digits(3)
    files = [
        ("files", ("a.png", images[0], "image/png")),
        ("files", ("b.png", images[1], "image/png")),
        ("files", ("c.gif", b"GIF89a not really", "image/gif")),
    ]
    response = client.post(f"/experiments/{experiment_id}/predictions/batch", files=files)
    assert response.status_code == 415, response.text
    assert response.json()["detail"].startswith("files[2] ('c.gif'): images must be PNG or JPEG; this file is GIF")


def test_an_image_sent_as_the_whole_body_gets_the_multipart_answer(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    image = noise_digits(1)[0]
    for path in (f"/experiments/{experiment_id}/predictions", "/datasets/mnist/predictions"):
        as_part = single(client, path, image)
        as_body = client.post(path, content=image, headers={"Content-Type": "image/png"})
        assert as_body.status_code == 200, as_body.text
        assert as_body.json() == as_part  # one network, one decoder: the same numbers exactly


def test_a_raw_body_that_is_no_image_or_too_big_is_refused_saying_why(client: TestClient, network_h5: bytes) -> None:
    path = f"/experiments/{succeeded_with_checkpoint(client, network_h5)}/predictions"
    not_an_image = client.post(path, content=b"GIF89a not a png", headers={"Content-Type": "image/png"})
    assert not_an_image.status_code == 415, not_an_image.text
    too_big = client.post(path, content=b"\0" * (MAX_IMAGE_BYTES + 1), headers={"Content-Type": "image/png"})
    assert too_big.status_code == 413, too_big.text
    assert "images must be at most 20 MiB" in too_big.json()["detail"]
    # Neither an image body nor a form: the 422 says both ways to send one.
    as_text = client.post(path, content=b"a digit", headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 422, as_text.text
    assert "multipart/form-data part named 'file', or the image as the whole body" in as_text.json()["message"]
    # Who asks is answered first, as on every route: an unknown key is a 401 whatever the body.
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "image/png"}):
        unknown = client.post(path, content=b"x", headers={**headers, "Authorization": "Bearer epk_unknown"})
        assert unknown.status_code == 401, unknown.text


def test_a_batch_over_the_cap_is_413_and_one_without_files_422(client: TestClient, network_h5: bytes) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions/batch"
    response = batch(client, path, noise_digits(1) * 65)
    assert response.status_code == 413, response.text
    assert "at most 64 images; this one has 65" in response.json()["detail"]
    response = client.post(path, data={"other": "x"}, files={"file": ("a.png", b"x", "image/png")})
    assert response.status_code == 422
    assert "files" in response.json()["message"]


def test_a_batch_counts_each_image_against_the_rate_limit(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "predictions_per_second", 4)
    monkeypatch.setattr(SharedMovingWindow, "PREFIX", f"epochal:test-rate:{uuid.uuid4().hex}:")  # no earlier hits
    images = noise_digits(3)
    # Nothing trained: 404, but counted, like the single route.
    assert batch(client, "/datasets/mnist/predictions/batch", images).status_code == 404
    limited = batch(client, "/datasets/mnist/predictions/batch", images)
    assert limited.status_code == 429
    assert "a batch of n images counts as n" in limited.json()["detail"]
    too_big = batch(client, "/datasets/fashion_mnist/predictions/batch", images * 2)
    assert too_big.status_code == 429
    assert "this batch has 6 images and the limit is 4" in too_big.json()["detail"]


def test_the_network_is_traced_once_for_every_batch_size(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    for count in (1, 3, 7):
        assert batch(client, f"/experiments/{experiment_id}/predictions/batch", noise_digits(count)).status_code == 200
    # Warmed up at load on a zero input, and never traced again: the input signature has no batch size.
    assert served(cache).predictor._call.experimental_get_tracing_count() == 1


def test_an_upload_at_the_network_size_gets_the_pixels_the_resize_would_give() -> None:
    import tensorflow as tf

    from training.images import _grayscale_digit

    pixels = np.random.default_rng(5).integers(0, 256, (28, 28), dtype="uint8")
    pixels[[0, -1], :] = pixels[:, [0, -1]] = 0  # a dark border, as MNIST digits have: not inverted
    resized = tf.image.resize(pixels[..., np.newaxis].astype("float32"), (28, 28), antialias=True)
    expected = np.clip(resized.numpy()[..., 0], 0, 255)
    np.testing.assert_array_equal(_grayscale_digit(Image.fromarray(pixels, mode="L"), (28, 28)), expected)


def forget_callers_and_experiments() -> None:
    caller_cache().clear()
    served_refs().clear()


@contextmanager
def redis_commands() -> Iterator[list[str]]:
    """The Redis commands this process sends inside the block (rate limits, events, anything)."""
    sent: list[str] = []
    original = redis.Redis.execute_command

    def recording(self: redis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return original(self, *args, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.Redis, "execute_command", recording)
        yield sent


def test_a_prediction_the_process_knows_nothing_of_is_two_queries_and_two_hops_to_a_thread(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions"
    single(client, path, noise_digits(1)[0])  # loads the network, and records the key's first use
    forget_callers_and_experiments()  # as in a process that has not seen this key and this experiment yet
    with counted_work() as work:
        single(client, path, noise_digits(1)[0])
    statements, hops = work.statements, work.hops
    # The key with its user, then the experiment with its checkpoint's sha256 (no attempts, no evaluation).
    assert len(statements) == 2, "\n".join(s[:90] for s in statements)
    assert "FROM api_key" in statements[0] and "JOIN artifact" in statements[1]
    assert "FROM attempt" not in statements[1] and "FROM epoch_metric" not in statements[1]
    # One hop for the key, the lookup and the decoding, one for the model call.
    assert len(hops) == 2, hops


def test_a_warm_prediction_reads_no_database_no_redis_and_hops_once_for_its_model_call(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    assert listener().wait_live(10), "the API's invalidation listener never subscribed"
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions"
    expected = [single(client, path, image) for image in noise_digits(3)]  # the first fills the caches
    with counted_work() as work, redis_commands() as commands:
        answers = [single(client, path, image) for image in noise_digits(3)]
    for got, want in zip(answers, expected, strict=True):
        assert_same(got, want)
    assert work.statements == []
    assert commands == []  # the rate limit counted from this process's allowance
    assert work.hops == ["predict_batch"] * 3
    # The same requests while the process cannot hear of changes: every one reads the database again.
    forget_callers_and_experiments()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(listener(), "live", lambda: False)
        with counted_work() as deaf:
            for image in noise_digits(2):
                single(client, path, image)
    assert len([s for s in deaf.statements if "FROM api_key" in s]) == 2, deaf.statements


def test_a_revoked_key_is_refused_on_its_next_prediction(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    assert listener().wait_live(10), "the API's invalidation listener never subscribed"
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions"
    me = client.get("/me").json()
    second = client.post(f"/users/{me['id']}/keys")
    assert second.status_code == 201, second.text
    token, key_id = second.json()["api_key"], second.json()["id"]
    image = {"file": ("digit.png", noise_digits(1)[0], "image/png")}
    for _ in range(2):  # the second from memory
        assert client.post(path, files=image, headers=bearer(token)).status_code == 200
    with counted_work() as work:
        assert client.post(path, files=image, headers=bearer(token)).status_code == 200
    assert work.statements == [], "the key was not served from memory: this test would prove nothing"
    assert client.post(f"/keys/{key_id}/revoke").status_code == 200
    refused = client.post(path, files=image, headers=bearer(token))
    assert refused.status_code == 401, refused.text
    assert "not valid" in refused.json()["detail"]


def test_what_a_batch_takes_decoded_is_bounded_before_anything_is_decoded(
    client: TestClient, network_h5: bytes, cache: PredictorCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions/batch"
    # One image over its own cap: named, with the size it would fit at.
    response = batch(client, path, [*noise_digits(1), deep_png()])
    assert response.status_code == 413, response.text
    assert response.json()["detail"].startswith("files[1] ('d1.png'): this image is 6000 x 6600 pixels of 16-bit grey")
    assert "resize it to at most" in response.json()["detail"]
    # Each image within its cap, all of them together over the request's.
    monkeypatch.setattr(get_settings(), "max_batch_decoded_bytes", 2 * 2**20)
    page = io.BytesIO()
    Image.new("L", (1000, 1000), 255).save(page, format="PNG")  # 0.95 MiB decoded, a few KB sent
    response = batch(client, path, [page.getvalue()] * 3)
    assert response.status_code == 413, response.text
    assert response.json()["detail"].startswith("the 3 images of this request take 2.9 MiB decoded together")
    assert "EPOCHAL_MAX_BATCH_DECODED_BYTES" in response.json()["detail"]
    assert batch(client, path, [page.getvalue()] * 2).status_code == 200


def test_a_process_decoding_its_most_at_once_answers_503_with_retry_after(
    client: TestClient, network_h5: bytes, cache: PredictorCache
) -> None:
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions"
    capacity = get_settings().max_decoding_bytes
    with DECODING.reserve(capacity, capacity):  # what other requests' images hold while they decode
        response = client.post(path, files={"file": ("digit.png", noise_digits(1)[0], "image/png")})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert "EPOCHAL_MAX_DECODING_BYTES" in response.json()["detail"]
    assert DECODING.in_use == 0
    single(client, path, noise_digits(1)[0])  # given back: served again


def test_a_lowered_prediction_rate_applies_from_the_next_prediction(
    client: TestClient, network_h5: bytes, cache: PredictorCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert listener().wait_live(10), "the API's invalidation listener never subscribed"
    monkeypatch.setattr(get_settings(), "predictions_per_second", 1000)
    experiment_id = succeeded_with_checkpoint(client, network_h5)
    path = f"/experiments/{experiment_id}/predictions"
    # An empty window first: the test before took a twentieth of 100 000 from the shared window for a user of the
    # same id (the tables were emptied, the ids start again), more than 1000 within the last second.
    time.sleep(1.1)
    for image in noise_digits(3):  # the last two from memory, the rate counted from this process's allowance
        single(client, path, image)
    me = client.get("/me").json()
    assert client.patch(f"/users/{me['id']}", json={"predictions_per_second": 1}).status_code == 200
    try:
        time.sleep(1.1)  # an empty window: the first prediction under the new limit passes, the second does not
        single(client, path, noise_digits(1)[0])
        refused = client.post(path, files={"file": ("digit.png", noise_digits(1)[0], "image/png")})
        assert refused.status_code == 429, refused.text
        assert "at most 1 predictions per second" in refused.json()["detail"]
    finally:
        client.patch(f"/users/{me['id']}", json={"predictions_per_second": None})
