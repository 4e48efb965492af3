"""The `epochal` console script, run as a person runs it, against the real service."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from epochal.client import DEFAULT_URL
from tests.support import ROOT, Service, running_service, wait_until_finished

pytestmark = pytest.mark.e2e

QUEUE = "e2e-cli"
IDLE_QUEUE = "e2e-cli-idle"  # accepted, but no worker serves it: a job there stays queued
ONE_SLOT = "e2e-cli-one-slot"  # served by no worker either, with one slot: a second job there waits its turn
EPOCHAL = Path(sys.executable).parent / "epochal"  # installed into the venv by scripts/bootstrap
TINY = ["--dataset", "mnist", "--train-size", "300", "--epochs", "2", "--batch-size", "64"]


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    assert EPOCHAL.is_file(), f"{EPOCHAL} is missing: run scripts/bootstrap dev"
    queues, slots = [IDLE_QUEUE, ONE_SLOT], {"EPOCHAL_QUEUE_SLOTS": f"{ONE_SLOT}=1"}
    with running_service(tmp_path_factory.mktemp("cli"), QUEUE, ["worker"], queues=queues, env=slots) as running:
        yield running


def bare(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the console script with exactly `env`."""
    return subprocess.run([str(EPOCHAL), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def epochal(service: Service, *args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the console script with the service's URL and key in the environment, as a shell would."""
    env = {
        **os.environ,
        "EPOCHAL_URL": service.base_url,
        "EPOCHAL_API_KEY": service.api_key,
        "COLUMNS": "200",  # wide enough that no table cell is cut
    }
    return subprocess.run([str(EPOCHAL), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def parsed(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def watched(service: Service) -> subprocess.CompletedProcess[str]:
    """`epochal run ... --watch --json` to the end: the final body on stdout, progress on stderr."""
    return epochal(service, "run", *TINY, "--name", "cli run", "--watch", "--json", "--poll", "0.3")


def test_run_watch_follows_to_success_and_exits_0(watched: subprocess.CompletedProcess[str], service: Service) -> None:
    assert watched.returncode == 0, watched.stdout + watched.stderr + service.logs()
    final = json.loads(watched.stdout)
    assert final["status"] == "succeeded" and final["summary"]["epochs_done"] == 2
    # Without a terminal the live view writes one line per change instead of redrawing.
    assert f"submitted experiment {final['id']}" in watched.stderr
    assert "epoch 2/2" in watched.stderr and f"experiment {final['id']}: succeeded" in watched.stderr


def test_run_watch_without_json_shows_the_progress_and_summary(service: Service) -> None:
    result = epochal(service, "run", *TINY, "--optimizer", "sgd", "--watch", "--poll", "0.3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch 1/2" in result.stdout and "succeeded" in result.stdout
    assert "best val accuracy" in result.stdout
    # At the end, every epoch in one table, before the summary.
    table = result.stdout[result.stdout.index("metrics per epoch") :]
    rows = [line.split("│")[1].strip() for line in table.splitlines() if line.count("│") >= 6]
    assert rows[-2:] == ["1", "2"], table
    assert table.index("metrics per epoch") < table.index("best val accuracy")


def test_a_terminal_gets_the_live_view(watched: subprocess.CompletedProcess[str], service: Service) -> None:
    experiment_id = json.loads(watched.stdout)["id"]
    primary, secondary = pty.openpty()
    env = {**os.environ, "EPOCHAL_URL": service.base_url, "EPOCHAL_API_KEY": service.api_key, "TERM": "xterm"}
    process = subprocess.Popen(
        [str(EPOCHAL), "watch", str(experiment_id)], env=env, stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the command exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert process.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in screen  # drawn for a terminal, in colour
    assert "val accuracy" in screen and "succeeded" in screen and "2/2" in screen
    # Each epoch stays on the screen as a line of its own, not only the latest one in the redrawn view.
    assert f"experiment {experiment_id}: succeeded, epoch 1/2: loss" in screen, screen
    assert f"experiment {experiment_id}: succeeded, epoch 2/2: loss" in screen, screen


def test_ls_show_and_download(watched: subprocess.CompletedProcess[str], service: Service, tmp_path: Path) -> None:
    experiment_id = json.loads(watched.stdout)["id"]
    page = parsed(epochal(service, "ls", "--status", "succeeded", "--limit", "100", "--json"))
    assert experiment_id in [e["id"] for e in page["items"]]
    assert {e["status"] for e in page["items"]} == {"succeeded"}

    shown = parsed(epochal(service, "show", str(experiment_id), "--json"))
    assert shown["experiment"]["id"] == experiment_id
    assert [m["epoch"] for m in shown["metrics"]] == [1, 2]
    assert shown["evaluation"]["confusion_matrix"]["labels"] == [str(d) for d in range(10)]

    table = epochal(service, "show", str(experiment_id))
    assert table.returncode == 0, table.stderr
    for heading in ("metrics per epoch", "confusion matrix", "classification report", "macro avg", "cli run"):
        assert heading in table.stdout

    listing = epochal(service, "ls")
    assert listing.returncode == 0 and "cli run" in listing.stdout

    target = tmp_path / "model.h5"
    downloaded = epochal(service, "download", str(experiment_id), "-o", str(target))
    assert downloaded.returncode == 0, downloaded.stderr
    assert target.read_bytes().startswith(b"\x89HDF")


def test_predict_one_and_several_images(
    watched: subprocess.CompletedProcess[str], service: Service, tmp_path: Path
) -> None:
    experiment_id = json.loads(watched.stdout)["id"]
    images = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.new("L", (28, 28), 40 * i).save(path)
        images.append(str(path))
    one = parsed(epochal(service, "predict", str(experiment_id), images[0], "--json"))
    assert one[0]["image"] == images[0] and one[0]["experiment_id"] == experiment_id
    several = parsed(epochal(service, "predict", "--dataset", "mnist", *images, "--json"))
    assert [p["image"] for p in several] == images
    text = epochal(service, "predict", str(experiment_id), *images)
    assert text.returncode == 0 and text.stdout.count(f"experiment {experiment_id}") == 3


def test_samples_writes_images_from_the_data_folder(data_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    env = {**os.environ, "EPOCHAL_DATA_DIR": str(data_dir), "KERAS_HOME": str(tmp_path / "no-keras-downloads")}
    written = bare(["samples", str(tmp_path / "samples")], env, tmp_path)
    assert written.returncode == 0, written.stderr
    with np.load(data_dir / "mnist.npz") as arrays:
        images, labels = arrays["x_test"], arrays["y_test"]
    for digit in range(10):  # the first test image of each digit, pixel for pixel
        sample = np.asarray(Image.open(tmp_path / "samples" / f"{digit}.png"))
        assert np.array_equal(sample, images[int(np.flatnonzero(labels == digit)[0])]), digit
    for name, class_dir in (("cat.jpg", "cats"), ("dog.jpg", "dogs")):
        first = min((data_dir / "cats_vs_dogs" / "validation" / class_dir).iterdir())
        assert (tmp_path / "samples" / name).read_bytes() == first.read_bytes()

    nothing = bare(["samples", str(tmp_path / "none"), "--data-dir", str(tmp_path / "empty")], env, tmp_path)
    assert nothing.returncode == 1 and not list((tmp_path / "none").iterdir())
    assert "mnist.npz" in nothing.stderr and "cats_vs_dogs" in nothing.stderr and "EPOCHAL_DATA_DIR" in nothing.stderr


def test_the_readmes_keras_snippet_runs_offline_on_the_data_folder(data_dir: Path, tmp_path: Path) -> None:
    # As a reader runs it: in a folder holding best_model.h5 and the data folder, with no network to download from.
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    snippet = next(block for block in blocks if 'load_model("best_model.h5")' in block)
    (tmp_path / "data").symlink_to(data_dir)
    prelude = (
        "from pathlib import Path\n"
        "import keras\n"
        "from tests.seed import small_network_h5\n"
        "small_network_h5(Path('.'))\n"
        "def offline(*args, **kwargs):\n"
        "    raise OSError('no network here')\n"
        "keras.datasets.mnist.load_data = offline\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", prelude + snippet + "\nprint(float(accuracy))\n"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0.0 <= float(result.stdout.split()[-1]) <= 1.0


def test_a_bad_spec_prints_the_api_message_and_fails(service: Service) -> None:
    result = epochal(service, "run", "--dataset", "mnist", "--epochs", "0")
    assert result.returncode == 1
    with service.http() as http:
        message = http.post("/experiments", json={"dataset": "mnist", "epochs": 0}).json()["message"]
    assert "epochs" in message
    assert f"error 422: {message}" in " ".join(result.stderr.split())  # as the API wrote it
    assert "Traceback" not in result.stderr


def test_a_spec_file_with_options_over_it(service: Service, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("dataset: mnist\noptimizer: rmsprop\nepochs: 7\nhead: {units: 10, activation: softmax}\n")
    created = parsed(epochal(service, "run", "--spec", str(spec), "--epochs", "1", "--train-size", "100", "--json"))
    assert (created["optimizer"], created["epochs"]) == ("rmsprop", 1)
    assert created["head"] == {"units": 10, "activation": "softmax"}
    with service.http() as http:
        wait_until_finished(http, [created["id"]], 300, service)


def test_404_and_409_exit_non_zero_with_the_message(
    watched: subprocess.CompletedProcess[str], service: Service
) -> None:
    missing = epochal(service, "show", "987654")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error 404: ")
    with service.http() as http:
        assert http.get("/experiments/987654").json()["detail"] in " ".join(missing.stderr.split())

    finished = json.loads(watched.stdout)["id"]
    conflict = epochal(service, "cancel", str(finished))
    assert conflict.returncode == 1 and conflict.stderr.startswith("error 409: ")


def test_a_failed_job_exits_non_zero_and_retry_queues_it_again(service: Service) -> None:
    # Half of one example leaves nothing to train on: a failure the spec check cannot see.
    failing = ["--dataset", "mnist", "--epochs", "1", "--train-size", "1", "--validation-split", "0.5"]
    result = epochal(service, "run", *failing, "--watch", "--json", "--poll", "0.3")
    assert result.returncode == 1, result.stdout + result.stderr
    final = json.loads(result.stdout)
    assert final["status"] == "failed" and final["error"]
    assert "failed" in result.stderr

    again = parsed(epochal(service, "retry", str(final["id"]), "--json"))
    assert again["id"] == final["id"] and again["status"] == "queued"
    rewatched = epochal(service, "watch", str(final["id"]), "--poll", "0.3")
    assert rewatched.returncode == 1 and "failed" in rewatched.stdout


def test_cancel_a_queued_job(service: Service) -> None:
    # A queue no worker serves: the job stays queued, so cancelling it is certain to find it there.
    created = parsed(epochal(service, "run", *TINY, "--queue", IDLE_QUEUE, "--json"))
    cancelled = epochal(service, "cancel", str(created["id"]))
    assert cancelled.returncode == 0, cancelled.stderr
    assert parsed(epochal(service, "show", str(created["id"]), "--json"))["experiment"]["status"] == "cancelled"


def _near(shown: str, estimate: str) -> bool:
    """Whether `shown` (HH:MM) is the local clock time of `estimate`, give or take the minute it may have turned."""
    local = datetime.fromisoformat(estimate).astimezone()
    return shown in {(local + timedelta(minutes=m)).strftime("%H:%M") for m in (-1, 0, 1)}


def test_a_queued_job_shows_its_position_and_estimated_start(service: Service, tmp_path: Path) -> None:
    from training.results import EpochResult
    from worker import jobs

    spec = ["--dataset", "mnist", "--train-size", "300", "--batch-size", "64", "--queue", ONE_SLOT]
    ahead = parsed(epochal(service, "run", *spec, "--epochs", "3", "--json"))["id"]
    submitted = epochal(service, "run", *spec, "--epochs", "2")
    # Nothing has trained on this queue yet: a position, but nothing to estimate a start by.
    found = re.match(r"experiment (\d+): queued, position 2 · no start estimate yet", submitted.stdout)
    assert found, submitted.stdout + submitted.stderr
    waiting = int(found[1])
    shown = epochal(service, "show", str(waiting))
    assert shown.returncode == 0, shown.stderr
    assert f"{ONE_SLOT}: position 2 · no start estimate yet" in shown.stdout, shown.stdout

    # The job ahead starts (claimed here, as a worker would) and finishes an epoch of 30 s: two are left.
    job = jobs.claim(ahead, "cli-test@host")
    assert job is not None
    jobs.record_epoch(job, EpochResult(1, 0.5, 0.8, 0.5, 0.8, 30.0))
    try:
        read = parsed(epochal(service, "show", str(waiting), "--json"))["experiment"]
        assert read["queue_position"] == 1 and read["estimated_start"] is not None
        shown = epochal(service, "show", str(waiting))
        found = re.search(rf"{ONE_SLOT}: position 1 · starts ~(\d\d:\d\d) \(estimate\)", shown.stdout)
        assert found and _near(found[1], read["estimated_start"]), shown.stdout
        assert "queue" not in epochal(service, "show", str(ahead)).stdout.split("spec")[0]  # running: no standing

        # The list reads each queued job of the page on its own for it: the newest queued job is this one.
        listed = epochal(service, "ls", "--status", "queued", "--limit", "1")
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if f"│ {waiting} " in line or f"{waiting} │" in line)
        found = re.search(r"queued position 1 · starts ~(\d\d:\d\d)", row)
        assert found and _near(found[1], read["estimated_start"]), listed.stdout

        # A sweep's runs behind it on the queue: `sweep show` reads each queued run for its place.
        sweep_file = tmp_path / "behind.json"
        base = {"dataset": "mnist", "train_size": 300, "epochs": 1, "queue": ONE_SLOT}
        sweep_file.write_text(json.dumps({"base": base, "grid": {"optimizer": ["sgd", "adam"]}}))
        sweep = parsed(epochal(service, "sweep", "run", str(sweep_file), "--json"))
        rows = epochal(service, "sweep", "show", str(sweep["id"]))
        assert rows.returncode == 0, rows.stderr
        for place in (2, 3):
            found = re.search(rf"queued position {place} · starts ~(\d\d:\d\d) \(estimate\)", rows.stdout)
            assert found, rows.stdout
        for run in sweep["experiments"]:
            assert epochal(service, "cancel", str(run["id"])).returncode == 0

        # Watching says where it stands before it starts, then follows it (here: to its cancel).
        env = {**os.environ, "EPOCHAL_URL": service.base_url, "EPOCHAL_API_KEY": service.api_key}
        watching = subprocess.Popen(
            [str(EPOCHAL), "watch", str(waiting), "--poll", "0.3"], env=env, stdout=subprocess.PIPE, text=True
        )
        assert watching.stdout is not None
        first = watching.stdout.readline()
        found = re.search(rf"experiment {waiting}: queued, position 1 · starts ~(\d\d:\d\d) \(estimate\)", first)
        assert found and _near(found[1], read["estimated_start"]), first
        assert epochal(service, "cancel", str(waiting)).returncode == 0
        assert watching.wait(timeout=60) == 1
        assert f"experiment {waiting}: cancelled" in watching.stdout.read()
    finally:
        jobs.finish_cancelled(job, None, None)


def test_ctrl_c_while_watching_asks_and_cancels(service: Service) -> None:
    env = {**os.environ, "EPOCHAL_URL": service.base_url, "EPOCHAL_API_KEY": service.api_key}
    argv = [str(EPOCHAL), "run", *TINY, "--queue", IDLE_QUEUE, "--watch", "--poll", "0.2"]
    # As a person's foreground command gets Ctrl-C: a command started in the background by a non-interactive shell
    # (a CI script's `... &`) inherits SIGINT ignored, and so would the CLI, which would then watch on forever.
    process = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None and process.stdin is not None
    first = process.stdout.readline()  # printed once the job is queued: the watch loop is running
    experiment_id = int(first.split()[1].rstrip(":"))
    process.send_signal(signal.SIGINT)
    process.stdin.write("y\n")
    process.stdin.flush()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"Cancel experiment {experiment_id} too?" in stderr
    shown = parsed(epochal(service, "show", str(experiment_id), "--json"))
    assert shown["experiment"]["status"] == "cancelled"


def test_sweep_run_watch_then_show(service: Service, tmp_path: Path) -> None:
    body = {
        "name": "cli sweep",
        "base": {"dataset": "mnist", "train_size": 300, "epochs": 1, "batch_size": 64},
        "grid": {"optimizer": ["adam", "rmsprop"]},
    }
    file = tmp_path / "sweep.yaml"
    file.write_text(
        "name: cli sweep\n"
        "base: {dataset: mnist, train_size: 300, epochs: 1, batch_size: 64}\n"
        "grid:\n  optimizer: [adam, rmsprop]\n"
    )
    result = epochal(service, "sweep", "run", str(file), "--watch", "--poll", "0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ranked by best validation accuracy" in result.stdout
    assert "optimizer=adam" in result.stdout and "optimizer=rmsprop" in result.stdout

    sweeps = parsed(epochal(service, "sweep", "ls", "--json"))
    sweep = next(s for s in sweeps if s["name"] == body["name"])
    assert sweep["base"]["train_size"] == 300 and sweep["finished"]
    shown = parsed(epochal(service, "sweep", "show", str(sweep["id"]), "--json"))
    assert [row["rank"] for row in shown["comparison"]] == [1, 2]
    table = epochal(service, "sweep", "show", str(sweep["id"]))
    assert table.returncode == 0 and "cli sweep" in table.stdout


def test_url_and_key_flags_win_over_the_environment(service: Service, tmp_path: Path) -> None:
    env = {**os.environ, "EPOCHAL_URL": "http://127.0.0.1:9", "EPOCHAL_API_KEY": "epk_wrong", "COLUMNS": "200"}
    assert "items" in parsed(bare(["--url", service.base_url, "--key", service.api_key, "ls", "--json"], env, tmp_path))

    wrong = bare(["--url", service.base_url, "ls"], env, tmp_path)
    assert wrong.returncode == 1 and wrong.stderr.startswith("error 401: ")
    # Which service said no, and how to point at another: a wrong port answers 401 too when something listens there.
    assert f"answered by {service.base_url}" in wrong.stderr
    assert "EPOCHAL_URL" in wrong.stderr and "--url" in wrong.stderr and "--key" in wrong.stderr

    # After the command too (of a group's command too), as people type them; given there, they win over those before.
    after = [
        "--url",
        "http://127.0.0.1:9",
        "sweep",
        "ls",
        "--json",
        "--url",
        service.base_url,
        "--key",
        service.api_key,
    ]
    assert isinstance(parsed(bare(after, env, tmp_path)), list)


def test_the_key_file_of_the_state_folder_is_the_last_resort(service: Service, tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "api-key").write_text(service.api_key + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("EPOCHAL_API_KEY", "EPOCHAL_STATE_DIR")}
    env["EPOCHAL_URL"] = service.base_url
    assert parsed(bare(["ls", "--json"], env, tmp_path))["total"] >= 1  # a 401 without the file's key
    moved = bare(["ls"], {**env, "EPOCHAL_STATE_DIR": str(tmp_path / "elsewhere")}, tmp_path)
    assert moved.returncode == 1 and moved.stderr.startswith("error 401: ")


def test_the_server_commands_are_there_too(service: Service) -> None:
    result = epochal(service, "users", "list")
    assert result.returncode == 0, result.stderr
    assert "admin" in result.stdout
    helped = epochal(service, "serve", "--help")
    assert helped.returncode == 0 and "--port" in helped.stdout
    # The port it serves on unless told is the one the client and the CLI call unless told.
    port = httpx.URL(DEFAULT_URL).port
    assert re.search(rf"--port PORT\s+port the API listens on \(default: {port}\)", helped.stdout), helped.stdout


def test_help_shows_every_option_whole_at_80_columns(service: Service) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run([str(EPOCHAL), "run", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    for option in ("--head-activation", "--validation-split", "--mixed-precision / --no-mixed-precision", "--url"):
        assert option in result.stdout, result.stdout
    assert "…" not in result.stdout, result.stdout


def test_models_register_promote_ls_show_and_predict(
    watched: subprocess.CompletedProcess[str], service: Service, tmp_path: Path
) -> None:
    experiment_id = json.loads(watched.stdout)["id"]
    registered = parsed(
        epochal(service, "models", "register", "cli-digits", str(experiment_id), "--alias", "staging", "--json")
    )
    assert (registered["number"], registered["experiment_id"], registered["aliases"]) == (1, experiment_id, ["staging"])
    again = epochal(service, "models", "register", "cli-digits", str(experiment_id))
    assert again.returncode == 0 and "cli-digits: version 2 from experiment" in again.stdout, again.stderr
    moved = epochal(service, "models", "promote", "cli-digits", "2")
    assert moved.returncode == 0 and "cli-digits@production: nothing -> version 2" in moved.stdout, moved.stderr
    assert parsed(epochal(service, "models", "promote", "cli-digits", "1", "--json"))["from_version"] == 2

    listed = {m["name"]: m for m in parsed(epochal(service, "models", "ls", "--json"))}
    assert listed["cli-digits"]["aliases"] == {"production": 1, "staging": 1}
    assert listed["cli-digits"]["latest_version"] == 2
    shown = epochal(service, "models", "show", "cli-digits")
    assert shown.returncode == 0, shown.stderr
    for heading in ("versions", "alias moves", "production", "staging"):
        assert heading in shown.stdout
    card = parsed(epochal(service, "models", "show", "cli-digits", "--card", "1"))
    assert card["experiment_id"] == experiment_id and card["training"]["tensorflow"]

    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 90).save(image)
    [prediction] = parsed(epochal(service, "models", "predict", "cli-digits", str(image), "--json"))
    assert prediction["image"] == str(image) and prediction["experiment_id"] == experiment_id
    text = epochal(service, "models", "predict", "cli-digits@staging", str(image))
    assert text.returncode == 0 and "cli-digits@staging (experiment" in text.stdout, text.stderr
    missing = epochal(service, "models", "predict", "cli-digits:9", str(image))
    assert missing.returncode == 1 and "error 404" in missing.stderr and "no version 9" in missing.stderr


def test_download_in_every_export_format(
    watched: subprocess.CompletedProcess[str], service: Service, tmp_path: Path
) -> None:
    experiment_id = json.loads(watched.stdout)["id"]
    for fmt, name in [
        ("h5", "best_model.h5"),
        ("keras", "best_model.keras"),
        ("savedmodel", "best_model_savedmodel.zip"),
        ("onnx", "best_model.onnx"),
    ]:
        result = epochal(service, "download", str(experiment_id), "--format", fmt, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        written = tmp_path / f"experiment-{experiment_id}-{name}"
        with service.http() as http:
            etag = http.get(f"/experiments/{experiment_id}/exports/{fmt}").headers["ETag"].strip('"')
        assert hashlib.sha256(written.read_bytes()).hexdigest() == etag, fmt
    assert (tmp_path / f"experiment-{experiment_id}-best_model.keras").read_bytes().startswith(b"PK")
    target = tmp_path / "model.onnx"
    assert epochal(service, "download", str(experiment_id), "--format", "onnx", "-o", str(target)).returncode == 0
    assert target.stat().st_size > 1000
    unknown = epochal(service, "download", str(experiment_id), "--format", "pickle")
    assert unknown.returncode == 2 and "pickle" in unknown.stderr


# --- networks ----------------------------------------------------------------------------------------------

SMALL_NET = {
    "layers": [
        {"type": "Flatten"},
        {"type": "Dense", "units": 24, "activation": "relu", "name": "hidden"},
        {"type": "Dropout", "rate": 0.2},
    ]
}
SMALL_NET_YAML = (
    "layers:\n"
    "  - type: Flatten\n"
    "  - {type: Dense, units: 24, activation: relu, name: hidden}\n"
    "  - {type: Dropout, rate: 0.2}\n"
)
SMALL_NET_PARAMS = (784 * 24 + 24) + (24 * 10 + 10)  # and the mnist head's


def test_networks_ls_lists_the_presets_with_their_parameters(service: Service) -> None:
    with service.http() as http:
        presets = http.get("/networks").json()
    assert parsed(epochal(service, "networks", "ls", "--json")) == presets
    table = epochal(service, "networks", "ls")
    assert table.returncode == 0, table.stderr
    for preset in presets:
        assert preset["name"] in table.stdout
        for figures in preset["summaries"].values():
            assert f"{figures['total_params']:,}" in table.stdout


def test_networks_check_prints_the_summary_and_figures_of_a_yaml_or_json_file(service: Service, tmp_path: Path) -> None:
    (tmp_path / "net.yaml").write_text(SMALL_NET_YAML)
    (tmp_path / "net.json").write_text(json.dumps(SMALL_NET))
    with service.http() as http:
        expected = http.post("/networks/check", json={"network": SMALL_NET, "dataset": "mnist", "batch_size": 8}).json()
    assert expected["figures"]["total_params"] == SMALL_NET_PARAMS
    for name in ("net.yaml", "net.json"):
        args = ("networks", "check", str(tmp_path / name), "--dataset", "mnist", "--batch-size", "8")
        assert parsed(epochal(service, *args, "--json")) == expected
        result = epochal(service, *args)
        assert result.returncode == 0, result.stderr
        text = result.stdout
        assert "Layer (type)" in text and "hidden (Dense)" in text and "(None, 24)" in text and "18,840" in text
        figures = expected["figures"]
        for figure in (figures["total_params"], figures["flops_per_example"], figures["activation_bytes_training"]):
            assert f"{figure:,}" in text, (figure, text)
        assert "batch of 8" in text and f"limit {expected['limits']['params']:,}" in text
    # A head of one's own: one sigmoid unit instead of the dataset's ten.
    sigmoid = parsed(
        epochal(
            service,
            "networks",
            "check",
            str(tmp_path / "net.yaml"),
            "--dataset",
            "mnist",
            "--head",
            "1:sigmoid",
            "--json",
        )
    )
    assert sigmoid["figures"]["total_params"] == SMALL_NET_PARAMS - 9 * 25
    assert sigmoid["layers"][-1]["output_shape"] == [1]


def test_networks_check_of_a_bad_graph_exits_1_with_the_apis_message(service: Service, tmp_path: Path) -> None:
    bad = {"layers": [{"type": "MaxPooling2D", "pool_size": 64}, {"type": "Flatten"}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with service.http() as http:
        message = http.post("/networks/check", json={"network": bad, "input_shape": [28, 28, 1]}).json()["message"]
    result = epochal(service, "networks", "check", str(tmp_path / "bad.json"), "--input-shape", "28,28,1")
    assert result.returncode == 1
    assert f"error 422: {message}" in " ".join(result.stderr.split()) and "layers[0] MaxPooling2D" in message
    assert "Traceback" not in result.stderr
    missing_input = epochal(service, "networks", "check", str(tmp_path / "bad.json"))
    assert missing_input.returncode == 1 and "either dataset" in missing_input.stderr
    head = epochal(service, "networks", "check", "mlp", "--dataset", "mnist", "--head", "ten")
    assert head.returncode == 2 and "UNITS:ACTIVATION" in head.stderr


def test_run_takes_a_network_file_or_a_preset_and_from_clones_with_overrides(service: Service, tmp_path: Path) -> None:
    (tmp_path / "net.yaml").write_text(SMALL_NET_YAML)
    queued = ["--queue", IDLE_QUEUE, "--json"]  # served by no worker: they stay as submitted
    from_file = parsed(
        epochal(service, "run", *TINY, "--network", str(tmp_path / "net.yaml"), "--optimizer", "sgd", *queued)
    )
    assert from_file["network"]["layers"][1]["units"] == 24 and from_file["optimizer"] == "sgd"
    preset = parsed(epochal(service, "run", *TINY, "--network", "mlp", *queued))
    assert preset["network"] == "mlp"
    unknown = epochal(service, "run", *TINY, "--network", str(tmp_path / "no-such.yaml"), *queued)
    assert unknown.returncode == 1 and "error 422" in unknown.stderr  # not a file: a preset name, which it is not

    clone = parsed(
        epochal(
            service, "run", "--from", str(from_file["id"]), "--epochs", "3", "--head-activation", "softmax", *queued
        )
    )
    assert clone["id"] != from_file["id"] and clone["epochs"] == 3
    same = ("dataset", "network", "optimizer", "batch_size", "train_size", "seed", "head", "queue", "loss")
    assert {field: clone[field] for field in same} == {field: from_file[field] for field in same}
    renetworked = parsed(epochal(service, "run", "--from", str(from_file["id"]), "--network", "mlp", *queued))
    assert renetworked["network"] == "mlp" and renetworked["optimizer"] == "sgd"
    missing = epochal(service, "run", "--from", "987654")
    assert missing.returncode == 1 and missing.stderr.startswith("error 404: ")
    both = epochal(service, "run", "--from", str(from_file["id"]), "--spec", str(tmp_path / "net.yaml"))
    assert both.returncode == 2 and "not both" in both.stderr
    for experiment in (from_file, preset, clone, renetworked):
        assert epochal(service, "cancel", str(experiment["id"])).returncode == 0
