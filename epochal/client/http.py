"""`Client`: every route of the Epochal API as a typed method, over HTTP only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import httpx

from epochal.client.errors import (
    ApiError,
    ConnectionFailed,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    WaitTimedOut,
    error_for,
)
from epochal.client.follow import Progress, poll, stream
from epochal.client.retry import retry_delay
from epochal.client.settings import default_key, default_max_attempts, default_max_retry_wait_s, default_url
from epochal.client.sse import Event, parse
from epochal.client.types import (
    DATASET_SETTLED,
    FINISHED,
    AliasMove,
    Artifact,
    ColorMode,
    ConfusionMatrix,
    Dataset,
    DatasetDetail,
    DatasetVersion,
    EpochMetric,
    Evaluation,
    Experiment,
    ExperimentPage,
    ExportFormat,
    Fit,
    Health,
    Key,
    Me,
    Model,
    ModelDetail,
    ModelVersion,
    NetworkCheck,
    NetworkPreset,
    NewKey,
    NewUser,
    Prediction,
    Sweep,
    User,
    Visibility,
)

# An image to upload: a path, raw bytes, or (filename, bytes); the name only helps the API's error messages.
Image = str | Path | bytes | tuple[str, bytes]
SWEEP_METRICS = ("val_accuracy", "accuracy", "val_loss", "loss")
# An event stream is quiet between events but for a keep-alive every 10 s: a read waits longer than that.
STREAM_TIMEOUT = httpx.Timeout(30.0, read=60.0)
# An upload's answer comes once its last byte is stored and its version made: longer than a plain request's.
UPLOAD_TIMEOUT = httpx.Timeout(60.0, read=300.0)


def _image_part(image: Image) -> tuple[str, bytes]:
    if isinstance(image, tuple):
        return image
    if isinstance(image, bytes):
        return "image", image
    path = Path(image)
    return path.name, path.read_bytes()


# The media type a dataset upload is sent under, from its name; the API reads the format off the first bytes anyway.
ARCHIVE_TYPES = {
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
}
UPLOAD_CHUNK = 1024 * 1024
UploadProgress = Callable[[int, int], None]  # (bytes sent, bytes in all)


def archive_media_type(path: Path) -> str:
    return ARCHIVE_TYPES.get(path.suffix.lower(), "application/octet-stream")


class _FileBody:
    """A request body read from a file a chunk at a time, afresh on each iteration: a retried request (the client
    builds it again) sends the whole file again instead of an exhausted stream."""

    def __init__(self, path: Path, total: int, progress: UploadProgress | None) -> None:
        self.path, self.total, self.progress = path, total, progress

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        if self.progress is not None:
            self.progress(0, self.total)
        with self.path.open("rb") as stream:
            while chunk := stream.read(UPLOAD_CHUNK):
                sent += len(chunk)
                yield chunk
                if self.progress is not None:
                    self.progress(sent, self.total)


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class Client:
    """A client for one Epochal service.

    The key comes from `key`, else EPOCHAL_API_KEY, else `<EPOCHAL_STATE_DIR>/api-key` (`var/` by
    default); the URL from `url`, else EPOCHAL_URL, else http://127.0.0.1:8000. An error status
    raises an `ApiError` subclass carrying the status and the API's message.

    A 429, or a 503 that is safe to repeat, with Retry-After is sent again after the wait the API asked for, at
    most `max_attempts` times in all and `max_retry_wait_s` seconds of waiting in all (default: 5 and 30 s, or
    EPOCHAL_CLIENT_MAX_ATTEMPTS and EPOCHAL_CLIENT_MAX_RETRY_WAIT_S); the rule is in epochal/client/retry.py.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        max_attempts: int | None = None,
        max_retry_wait_s: float | None = None,
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.key = key or default_key()
        self.max_attempts = max(1, max_attempts if max_attempts is not None else default_max_attempts())
        self.max_retry_wait_s = max_retry_wait_s if max_retry_wait_s is not None else default_max_retry_wait_s()
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers["User-Agent"] = "epochal-client"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- the one place requests are made, so every route raises the same way ---

    def _send(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """The response to `method path`, sent again while the retry rule allows; an error status raises.

        With `stream` the body is left unread for the caller (who closes the response).
        """
        attempts, waited = 1, 0.0
        while True:
            request = self._http.build_request(method, path, **kwargs)  # afresh: an upload's body is read again
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as error:
                raise ConnectionFailed(f"cannot reach {self.url}: {error}") from error
            if not response.is_error:
                return response
            if stream:
                response.read()
                response.close()
            delay = retry_delay(method, response)
            if delay is None or attempts >= self.max_attempts or waited + delay > self.max_retry_wait_s:
                raise self._error(response, attempts, waited, retryable=delay is not None)
            time.sleep(delay)
            attempts, waited = attempts + 1, waited + delay

    def _error(self, response: httpx.Response, attempts: int, waited: float, retryable: bool) -> ApiError:
        error = error_for(response)
        error.attempts = attempts
        if isinstance(error, Unauthorized):
            # The usual cause is a key for another service, or another service on that port: say which answered.
            error.hint = (
                f"answered by {self.url}; if that is not your service, set EPOCHAL_URL or --url "
                "(python -m epochal serve prints its URL), and the key with EPOCHAL_API_KEY or --key"
            )
        elif retryable:
            asked = error.retry_after if isinstance(error, RateLimited | Unavailable) else None
            error.hint = (
                f"gave up after {attempts} attempt{'s' if attempts > 1 else ''} and {waited:g} s of waiting"
                + (f"; it asked for {asked:g} s more" if asked is not None else "")
                + f"; the client retries at most {self.max_attempts} times and {self.max_retry_wait_s:g} s in all "
                "(max_attempts, max_retry_wait_s; EPOCHAL_CLIENT_MAX_ATTEMPTS, EPOCHAL_CLIENT_MAX_RETRY_WAIT_S)"
            )
        return error

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._send(method, path, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _bytes(self, path: str) -> bytes:
        return self._request("GET", path).content

    # --- experiments ---

    def submit(self, spec: Mapping[str, Any] | None = None, **fields: Any) -> Experiment:
        """POST /experiments: `spec` and/or fields (fields win). With `repeats` > 1 the first of the runs."""
        body = {**(spec or {}), **fields}
        return cast(Experiment, self._json("POST", "/experiments", json=body))

    def experiments(
        self,
        *,
        status: str | None = None,
        dataset: str | None = None,
        optimizer: str | None = None,
        sweep_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> ExperimentPage:
        """GET /experiments: one page, newest first, filtered by any of status, dataset, optimizer, sweep."""
        params = _drop_none(
            {
                "status": status,
                "dataset": dataset,
                "optimizer": optimizer,
                "sweep_id": sweep_id,
                "limit": limit,
                "offset": offset,
            }
        )
        return cast(ExperimentPage, self._json("GET", "/experiments", params=params))

    def iter_experiments(self, *, page_size: int = 100, **filters: Any) -> Iterator[Experiment]:
        """Every experiment matching `filters`, page after page."""
        offset = 0
        while True:
            page = self.experiments(limit=page_size, offset=offset, **filters)
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def experiment(self, experiment_id: int) -> Experiment:
        return cast(Experiment, self._json("GET", f"/experiments/{experiment_id}"))

    def metrics(self, experiment_id: int) -> list[EpochMetric]:
        return cast(list[EpochMetric], self._json("GET", f"/experiments/{experiment_id}/metrics"))

    def evaluation(self, experiment_id: int) -> Evaluation:
        return cast(Evaluation, self._json("GET", f"/experiments/{experiment_id}/evaluation"))

    def confusion_matrix(self, experiment_id: int) -> ConfusionMatrix:
        return cast(ConfusionMatrix, self._json("GET", f"/experiments/{experiment_id}/confusion-matrix"))

    def artifacts(self, experiment_id: int) -> list[Artifact]:
        return cast(list[Artifact], self._json("GET", f"/experiments/{experiment_id}/artifacts"))

    def download(self, experiment_id: int, name: str = "best_model.h5") -> bytes:
        """An artifact's bytes (GET /experiments/{id}/artifacts/{name})."""
        return self._bytes(f"/experiments/{experiment_id}/artifacts/{name}")

    def download_to(self, experiment_id: int, path: str | Path, name: str = "best_model.h5") -> Path:
        """An artifact written to `path`, streamed: a large checkpoint is never held in memory whole."""
        return self._stream_to(f"/experiments/{experiment_id}/artifacts/{name}", path)

    def export_to(self, experiment_id: int, path: str | Path, format: ExportFormat) -> Path:
        """The checkpoint in `format` (h5, keras, savedmodel as a zip, onnx) written to `path`, streamed.

        The first request for a format exports it on the server (seconds, for onnx); later ones read it stored.
        """
        return self._stream_to(f"/experiments/{experiment_id}/exports/{format}", path)

    def _stream_to(self, url: str, path: str | Path) -> Path:
        target = Path(path)
        response = self._send("GET", url, stream=True)
        try:
            with target.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
        except httpx.TransportError as error:
            raise ConnectionFailed(f"cannot reach {self.url}: {error}") from error
        finally:
            response.close()
        return target

    def cancel(self, experiment_id: int) -> Experiment:
        return cast(Experiment, self._json("POST", f"/experiments/{experiment_id}/cancel"))

    def retry(self, experiment_id: int) -> Experiment:
        return cast(Experiment, self._json("POST", f"/experiments/{experiment_id}/retry"))

    def history_plot(self, experiment_id: int) -> bytes:
        """PNG: accuracy and loss per epoch."""
        return self._bytes(f"/experiments/{experiment_id}/plots/history.png")

    def confusion_matrix_plot(self, experiment_id: int) -> bytes:
        return self._bytes(f"/experiments/{experiment_id}/plots/confusion-matrix.png")

    def tensorboard(self, experiment_id: int) -> bytes:
        """A .tar.gz of TensorBoard event files: `tar -xzf` it and run `tensorboard --logdir`."""
        return self._bytes(f"/experiments/{experiment_id}/tensorboard")

    # --- predictions ---

    def predict(self, experiment_id: int, image: Image) -> Prediction:
        files = {"file": _image_part(image)}
        return cast(Prediction, self._json("POST", f"/experiments/{experiment_id}/predictions", files=files))

    def predict_best(self, dataset: str, image: Image) -> Prediction:
        """With your best succeeded experiment on `dataset`."""
        files = {"file": _image_part(image)}
        return cast(Prediction, self._json("POST", f"/datasets/{dataset}/predictions", files=files))

    def predict_batch(self, experiment_id: int, images: Sequence[Image]) -> list[Prediction]:
        """Several images in one request (at most 64), answered in order."""
        files = [("files", _image_part(image)) for image in images]
        body = self._json("POST", f"/experiments/{experiment_id}/predictions/batch", files=files)
        return cast(list[Prediction], body["predictions"])

    def predict_batch_best(self, dataset: str, images: Sequence[Image]) -> list[Prediction]:
        files = [("files", _image_part(image)) for image in images]
        body = self._json("POST", f"/datasets/{dataset}/predictions/batch", files=files)
        return cast(list[Prediction], body["predictions"])

    # --- the model registry ---

    def create_model(self, name: str, *, visibility: Visibility = "private", description: str | None = None) -> Model:
        """POST /models: a model name of your own; a public one every user can read and predict with."""
        body = _drop_none({"name": name, "visibility": visibility, "description": description})
        return cast(Model, self._json("POST", "/models", json=body))

    def models(self) -> list[Model]:
        """Your models and every public one."""
        return cast(list[Model], self._json("GET", "/models"))

    def model(self, name: str) -> ModelDetail:
        """A model with its versions, aliases and every move of them."""
        return cast(ModelDetail, self._json("GET", f"/models/{name}"))

    def delete_model(self, name: str) -> None:
        self._request("DELETE", f"/models/{name}")

    def register_version(self, name: str, experiment_id: int) -> ModelVersion:
        """The model's next version, from your succeeded experiment's checkpoint."""
        body = {"experiment_id": experiment_id}
        return cast(ModelVersion, self._json("POST", f"/models/{name}/versions", json=body))

    def model_versions(self, name: str) -> list[ModelVersion]:
        return cast(list[ModelVersion], self._json("GET", f"/models/{name}/versions"))

    def model_version(self, name: str, number: int) -> ModelVersion:
        return cast(ModelVersion, self._json("GET", f"/models/{name}/versions/{number}"))

    def model_card(self, name: str, number: int) -> dict[str, Any]:
        """The version's model card: spec, dataset, figures, input contract, training record."""
        return cast(dict[str, Any], self._json("GET", f"/models/{name}/versions/{number}/card"))

    def set_alias(self, name: str, alias: str, version: int) -> AliasMove:
        """Point `alias` (e.g. production) at `version`; the move is recorded."""
        return cast(AliasMove, self._json("PUT", f"/models/{name}/aliases/{alias}", json={"version": version}))

    def delete_alias(self, name: str, alias: str) -> AliasMove:
        return cast(AliasMove, self._json("DELETE", f"/models/{name}/aliases/{alias}"))

    def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        return cast(list[AliasMove], self._json("GET", f"/models/{name}/aliases/{alias}/history"))

    def predict_model(self, ref: str, image: Image) -> Prediction:
        """With a model: `ref` is `name` (its production alias), `name@alias` or `name:version`."""
        files = {"file": _image_part(image)}
        return cast(Prediction, self._json("POST", f"/models/{ref}/predictions", files=files))

    def predict_batch_model(self, ref: str, images: Sequence[Image]) -> list[Prediction]:
        files = [("files", _image_part(image)) for image in images]
        body = self._json("POST", f"/models/{ref}/predictions/batch", files=files)
        return cast(list[Prediction], body["predictions"])

    # --- following a job ---

    def watch(self, experiment_id: int, poll_s: float = 1.0, *, live: bool = True) -> Iterator[Progress]:
        """Progress events until the experiment ends: a first one at once, then one per change.

        From the API's event stream (status changes, epochs, steps within an epoch) when it has one and
        `live` is true; else by reading the experiment and its metrics every `poll_s` seconds.
        """
        read_experiment, read_metrics = (lambda: self.experiment(experiment_id)), (lambda: self.metrics(experiment_id))
        if live:
            self.experiment(experiment_id)  # a missing experiment is a NotFound here, not a reason to poll
            try:
                events = self.events(experiment_id)
            except NotFound:  # the experiment exists, so the route does not: a service from before events
                pass
            else:
                return stream(read_experiment, read_metrics, events, poll_s)
        return poll(read_experiment, read_metrics, poll_s)

    def wait(self, experiment_id: int, timeout: float | None = None, poll_s: float = 1.0) -> Experiment:
        """Block until the experiment ends and return its final body; `WaitTimedOut` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            experiment = self.experiment(experiment_id)
            if experiment["status"] in FINISHED:
                return experiment
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimedOut(f"experiment {experiment_id} is still {experiment['status']} after {timeout}s")
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    def wait_sweep(self, sweep_id: int, timeout: float | None = None, poll_s: float = 2.0) -> Sweep:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.sweep(sweep_id)
            if sweep["finished"]:
                return sweep
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimedOut(f"sweep {sweep_id} has not finished after {timeout}s: {sweep['status_counts']}")
            time.sleep(poll_s)

    # --- live events (Server-Sent Events) ---

    def events(self, experiment_id: int, after: str | None = None) -> Iterator[Event]:
        """GET /experiments/{id}/events from the start (or after event id `after`) until the final status.

        A dropped or closed stream is resumed after the last event seen. Connects now, so an error
        status is raised by this call, not by the first iteration.
        """
        return self._events(f"/experiments/{experiment_id}/events", after)

    def sweep_events(self, sweep_id: int, after: str | None = None) -> Iterator[Event]:
        """GET /sweeps/{id}/events: every experiment's events (each names its experiment_id) until all ended."""
        return self._events(f"/sweeps/{sweep_id}/events", after)

    def _open(self, path: str, after: str | None) -> httpx.Response:
        headers = {"Last-Event-ID": after} if after else {}
        return self._send("GET", path, stream=True, headers=headers, timeout=STREAM_TIMEOUT)

    def _events(self, path: str, after: str | None) -> Iterator[Event]:
        response = self._open(path, after)

        def relay() -> Iterator[Event]:
            nonlocal response, after
            while True:
                received = False
                try:
                    for event in parse(response.iter_lines()):
                        received = True
                        after = event.id or after
                        yield event
                        # Only the service says when it is over: a replayed terminal status can be a run
                        # before a retry. It sends `final` once the job (or every job of a sweep) has ended.
                        if event.data.get("final"):
                            return
                except httpx.TransportError as error:
                    raise ConnectionFailed(f"the event stream from {self.url} broke: {error}") from error
                finally:
                    response.close()
                # The service ends a stream after EPOCHAL_EVENTS_MAX_S; go on after the last event seen.
                if not received:
                    time.sleep(1.0)  # an empty stream closed at once: do not spin on reconnecting
                response = self._open(path, after)

        return relay()

    # --- sweeps ---

    def create_sweep(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        base: Mapping[str, Any] | None = None,
        grid: Mapping[str, Sequence[Any]] | None = None,
        repeats: int | None = None,
    ) -> Sweep:
        """POST /sweeps: a whole body as `spec`, and/or its parts (parts win)."""
        parts = _drop_none({"name": name, "base": base, "grid": grid, "repeats": repeats})
        return cast(Sweep, self._json("POST", "/sweeps", json={**(spec or {}), **parts}))

    def sweeps(self, *, limit: int = 100, offset: int = 0) -> list[Sweep]:
        return cast(list[Sweep], self._json("GET", "/sweeps", params={"limit": limit, "offset": offset}))

    def sweep(self, sweep_id: int) -> Sweep:
        return cast(Sweep, self._json("GET", f"/sweeps/{sweep_id}"))

    def sweep_plot(self, sweep_id: int, metric: str = "val_accuracy") -> bytes:
        """PNG: `metric` (one of SWEEP_METRICS) per epoch, one curve per experiment."""
        return self._bytes(f"/sweeps/{sweep_id}/plots/{metric}.png")

    def sweep_tensorboard(self, sweep_id: int) -> bytes:
        return self._bytes(f"/sweeps/{sweep_id}/tensorboard")

    # --- the rest ---

    def datasets(self) -> list[Dataset]:
        """GET /datasets: one entry per version you may use, the built-ins first."""
        return cast(list[Dataset], self._json("GET", "/datasets"))

    def dataset(self, name: str) -> DatasetDetail:
        """GET /datasets/{name}: each version, oldest first: status, classes, counts per split, shape, hash, errors."""
        return cast(DatasetDetail, self._json("GET", f"/datasets/{name}"))

    def dataset_version(self, name: str, version: int) -> DatasetVersion:
        """One version of `name` (read off GET /datasets/{name}); `NotFound` when it has no such version."""
        for found in self.dataset(name)["versions"]:
            if found["version"] == version:
                return found
        raise NotFound(404, f"dataset {name!r} has no version {version}; GET /datasets/{name} lists its versions")

    def upload_dataset(
        self,
        archive: str | Path,
        *,
        name: str,
        visibility: Visibility = "private",
        image_size: tuple[int, int] | None = None,
        fit: Fit | None = None,
        color_mode: ColorMode | None = None,
        test_fraction: float | None = None,
        seed: int | None = None,
        progress: UploadProgress | None = None,
    ) -> DatasetVersion:
        """POST /datasets: a zip or tar (.tar, .tar.gz) of class folders, or an .npz, sent as the whole body and
        streamed from disk (never held in memory whole). Answered with the new version, `processing`: follow it
        with `wait_dataset`. `progress(sent, total)` is called as the bytes go out (from 0 again on a retry)."""
        path = Path(archive)
        total = path.stat().st_size
        params = _drop_none(
            {
                "name": name,
                "visibility": visibility,
                "image_size": None if image_size is None else f"{image_size[0]}x{image_size[1]}",
                "fit": fit,
                "color_mode": color_mode,
                "test_fraction": test_fraction,
                "seed": seed,
            }
        )
        headers = {"Content-Type": archive_media_type(path), "Content-Length": str(total)}
        body = _FileBody(path, total, progress)
        answer = self._json("POST", "/datasets", params=params, content=body, headers=headers, timeout=UPLOAD_TIMEOUT)
        return cast(DatasetVersion, answer)

    def wait_dataset(
        self, name: str, version: int, timeout: float | None = None, poll_s: float = 1.0
    ) -> DatasetVersion:
        """Block until the version is no longer `processing` (ready, duplicate or failed) and return it;
        `WaitTimedOut` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.dataset_version(name, version)
            if found["status"] in DATASET_SETTLED:
                return found
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimedOut(f"dataset {name} version {version} is still {found['status']} after {timeout}s")
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    def delete_dataset_version(self, name: str, version: int) -> None:
        """DELETE /datasets/{name}/{version}, by its owner or an admin; its number is never given again."""
        self._request("DELETE", f"/datasets/{name}/{version}")

    def networks(self) -> list[NetworkPreset]:
        """GET /networks: the presets, each as a graph with its figures on each dataset."""
        return cast(list[NetworkPreset], self._json("GET", "/networks"))

    def check_network(
        self,
        network: str | Mapping[str, Any],
        *,
        dataset: str | None = None,
        input_shape: Sequence[int] | None = None,
        head: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
    ) -> NetworkCheck:
        """POST /networks/check: a graph (or a preset's name) against a dataset's input or a shape, queueing
        nothing; a network that does not fit, or is over your limits, raises `ApiError` (422) saying why."""
        body = _drop_none(
            {
                "network": network,
                "dataset": dataset,
                "input_shape": list(input_shape) if input_shape is not None else None,
                "head": head,
                "batch_size": batch_size,
            }
        )
        return cast(NetworkCheck, self._json("POST", "/networks/check", json=body))

    def health(self) -> Health:
        """GET /health (no key needed); a degraded service raises `Unavailable` naming the dependency down."""
        return cast(Health, self._json("GET", "/health"))

    def backprop_single_neuron(self, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The course's worked example (no body), or your own weights, examples and epochs; every step, float64."""
        kwargs: dict[str, Any] = {} if body is None else {"json": dict(body)}
        return cast(dict[str, Any], self._json("POST", "/backprop/single-neuron", **kwargs))

    def service_metrics(self) -> str:
        """GET /metrics: the service's Prometheus metrics, as text (admins only)."""
        return self._request("GET", "/metrics").text

    # --- users and keys ---

    def me(self) -> Me:
        """Who you are: your keys, quota overrides, and what you store against your storage quota."""
        return cast(Me, self._json("GET", "/me"))

    def users(self) -> list[User]:
        """Admin only, as every route below."""
        return cast(list[User], self._json("GET", "/users"))

    def create_user(self, name: str, *, admin: bool = False, **quotas: int | None) -> NewUser:
        """A user and their first key (in `api_key`, shown this once). Quotas: max_active_jobs, ..."""
        return cast(NewUser, self._json("POST", "/users", json={"name": name, "admin": admin, **quotas}))

    def set_quotas(self, user_id: int, **quotas: int | None) -> User:
        """Override a user's quotas; None goes back to the service's setting."""
        return cast(User, self._json("PATCH", f"/users/{user_id}", json=quotas))

    def create_key(self, user_id: int) -> NewKey:
        return cast(NewKey, self._json("POST", f"/users/{user_id}/keys"))

    def revoke_key(self, key_id: int) -> Key:
        return cast(Key, self._json("POST", f"/keys/{key_id}/revoke"))
