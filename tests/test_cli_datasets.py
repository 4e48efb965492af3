"""`epochal datasets push | ls | show | rm`, run as a person runs them, against the real API and a real worker that
prepares each upload."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from epochal.cli.packing import dataset_files
from epochal.client import Client
from tests.support import ROOT, Service, running_service
from tests.test_cli import EPOCHAL, epochal, parsed
from tests.upload_archives import class_files

QUEUE = "e2e-cli-datasets"
CLASSES = {"cat": 3, "dog": 4, "fox": 5}
# Left out by the packer: the API would skip the first two itself, and refuse the last three (not images).
JUNK = ("cat/._000.png", ".DS_Store", "dog/Thumbs.db", ".git/config", "fox/.ipynb_checkpoints/notes.txt")


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("cli-datasets"), QUEUE, ["prep"]) as running:
        yield running


def unique(name: str) -> str:
    # The test database outlives a run: a name made here must be new, or its uploads would be later versions.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def class_folder(root: Path, classes: dict[str, int] = CLASSES, seed: int = 0, junk: bool = True) -> Path:
    """Real PNGs in one folder per class, with the junk file managers and tools leave next to them."""
    for name, data in class_files(classes, size=(12, 16), channels=3, seed=seed).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name in JUNK if junk else ():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not an image")
    return root


def version_of(service: Service, name: str, version: int) -> dict[str, Any]:
    with Client(service.base_url, service.api_key) as client:
        return dict(client.dataset_version(name, version))


@pytest.fixture(scope="module")
def pushed(service: Service, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Any]:
    """A folder of three classes pushed with --wait: its name, the folder, and the finished command."""
    name = unique("flowers")
    folder = class_folder(tmp_path_factory.mktemp("flowers"))
    result = epochal(service, "datasets", "push", str(folder), "--name", name, "--wait", "--seed", "7", "--poll", "0.3")
    return name, folder, result


def test_packing_a_folder_leaves_the_junk_out(tmp_path: Path) -> None:
    folder = class_folder(tmp_path)
    names = [name for _, name in dataset_files(folder)]
    assert names == sorted(f"{c}/{i:03d}.png" for c, n in CLASSES.items() for i in range(n))


def test_push_a_folder_with_wait_prints_it_ready_with_its_counts(
    pushed: tuple[str, Path, Any], service: Service
) -> None:
    name, _, result = pushed
    assert result.returncode == 0, result.stdout + result.stderr + service.logs()
    ready = version_of(service, name, 1)
    assert ready["status"] == "ready" and ready["class_names"] == ["cat", "dog", "fox"]
    assert {c: ready["counts"]["train"][c] + ready["counts"]["test"][c] for c in CLASSES} == CLASSES
    assert ready["seed"] == 7 and ready["options"] == {"seed": 7} and ready["visibility"] == "private"
    # What it printed is what the API has: the status, each class's counts per split, the shape, the whole hash.
    out = result.stdout
    assert "ready" in out and "12x16x3" in out and ready["content_sha256"] in out
    for cls in CLASSES:
        train, test = ready["counts"]["train"][cls], ready["counts"]["test"][cls]
        row = [cls, str(train), str(test), str(train + test)]
        assert row in [[cell.strip() for cell in line.split("│")[1:5]] for line in out.splitlines()], out
    # No terminal: no progress bar, only what was done.
    assert "uploading" not in result.stderr and f"uploaded {name}@1" in result.stderr


def test_pushing_the_same_again_is_a_duplicate_of_the_first(pushed: tuple[str, Path, Any], service: Service) -> None:
    name, folder, first = pushed
    assert first.returncode == 0, first.stderr
    again = parsed(epochal(service, "datasets", "push", str(folder), "--name", name, "--wait", "--seed", "7", "--json"))
    assert (again["version"], again["status"], again["duplicate_of"]) == (2, "duplicate", 1)
    assert again["content_sha256"] == version_of(service, name, 1)["content_sha256"]
    shown = epochal(service, "datasets", "show", name)
    assert shown.returncode == 0, shown.stderr
    assert "duplicate of 1" in shown.stdout and "the same content: nothing new stored" in shown.stdout


def test_a_hostile_archive_prints_the_entry_and_exits_1(service: Service, tmp_path: Path) -> None:
    archive = tmp_path / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for entry, data in class_files({"cat": 2, "dog": 2}).items():
            z.writestr(entry, data)
        z.writestr("../evil.png", class_files({"x": 1})["x/000.png"])
    name = unique("hostile")
    result = epochal(service, "datasets", "push", str(archive), "--name", name, "--wait", "--poll", "0.3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "../evil.png" in result.stdout and "'..'" in result.stdout
    assert f"{name}@1: failed" in result.stderr
    failed = version_of(service, name, 1)
    assert failed["status"] == "failed" and failed["errors"][0]["entry"] == "../evil.png"
    as_json = epochal(service, "datasets", "push", str(archive), "--name", name, "--wait", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["errors"] == failed["errors"]


def test_a_tar_gz_is_sent_as_it_is_with_the_options(service: Service, tmp_path: Path) -> None:
    folder = class_folder(tmp_path / "pets", seed=3, junk=False)
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path, entry in dataset_files(folder):
            tar.add(path, entry)
    name = unique("pets")
    options = ["--public", "--image-size", "8", "--fit", "crop", "--color-mode", "grayscale", "--test-fraction", "0.4"]
    result = parsed(epochal(service, "datasets", "push", str(archive), "--name", name, *options, "--wait", "--json"))
    assert result["status"] == "ready" and result["source_format"] == "tar.gz", result
    assert (result["visibility"], result["input_shape"], result["fit"], result["color_mode"]) == (
        "public",
        [8, 8, 1],
        "crop",
        "grayscale",
    )
    assert result["test_fraction"] == 0.4 and result["upload_bytes"] == archive.stat().st_size


def test_ls_and_show_print_what_the_api_has(pushed: tuple[str, Path, Any], service: Service) -> None:
    name, _, first = pushed
    assert first.returncode == 0, first.stderr
    with Client(service.base_url, service.api_key) as client:
        listed, detail = client.datasets(), client.dataset(name)
    assert parsed(epochal(service, "datasets", "ls", "--json")) == listed
    table = epochal(service, "datasets", "ls")
    assert table.returncode == 0, table.stderr
    assert next(d for d in listed if d["name"] == name)["images"] == sum(CLASSES.values())
    rows = {tuple(cell.strip() for cell in line.split("│")[1:8]) for line in table.stdout.splitlines()}
    assert ("mnist", "1", "ready", "built-in, public", "10: 0, 1, 2, 3, 4, 5, …", "-", "28x28") in rows, table.stdout
    assert (name, "1", "ready", "you, private", "3: cat, dog, fox", "12", "12x16x3") in rows, table.stdout

    assert parsed(epochal(service, "datasets", "show", name, "--json")) == detail
    assert parsed(epochal(service, "datasets", "show", f"{name}@1", "--json")) == detail["versions"][0]
    one = epochal(service, "datasets", "show", f"{name}@1")
    assert one.returncode == 0 and str(detail["versions"][0]["content_sha256"]) in one.stdout, one.stderr
    assert "images per class" in one.stdout and "seed 7" in one.stdout
    missing = epochal(service, "datasets", "show", f"{name}@9")
    assert missing.returncode == 1 and "error 404" in missing.stderr and "no version 9" in missing.stderr
    nothing = epochal(service, "datasets", "show", "nothing-here")
    assert nothing.returncode == 1 and "error 404" in nothing.stderr


def test_rm_deletes_a_version(service: Service, tmp_path: Path) -> None:
    name = unique("gone")
    uploaded = parsed(
        epochal(service, "datasets", "push", str(class_folder(tmp_path, seed=5)), "--name", name, "--json")
    )
    assert uploaded["status"] == "processing" and uploaded["version"] == 1
    assert epochal(service, "datasets", "rm", name).returncode == 2  # which version must be said
    removed = epochal(service, "datasets", "rm", f"{name}@1")
    assert removed.returncode == 0 and f"{name}@1: deleted" in removed.stdout, removed.stderr
    assert epochal(service, "datasets", "show", name).returncode == 1


def test_bad_input_is_refused_before_or_by_the_api(service: Service, tmp_path: Path) -> None:
    folder = class_folder(tmp_path / "some")
    bad_size = epochal(service, "datasets", "push", str(folder), "--name", "x", "--image-size", "12by16")
    assert bad_size.returncode == 2 and "HEIGHTxWIDTH" in bad_size.stderr
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    empty = epochal(service, "datasets", "push", str(tmp_path / "empty"), "--name", "x")
    assert empty.returncode == 2 and "holds no files to upload" in empty.stderr
    (tmp_path / "notes.txt").write_text("hello")
    not_archive = epochal(service, "datasets", "push", str(tmp_path / "notes.txt"), "--name", "x")
    assert not_archive.returncode == 2 and "give a folder, or a .zip" in not_archive.stderr
    builtin = epochal(service, "datasets", "push", str(folder), "--name", "mnist")
    assert builtin.returncode == 1 and "error 409" in builtin.stderr and "built-in" in builtin.stderr
    too_big = epochal(service, "datasets", "push", str(folder), "--name", "x", "--image-size", "99999")
    assert too_big.returncode == 1 and "error 422" in too_big.stderr and "image_size" in too_big.stderr


def test_the_client_reports_upload_progress_up_to_the_whole_file(service: Service, tmp_path: Path) -> None:
    archive = tmp_path / "three.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for entry, data in class_files(CLASSES, seed=11).items():
            z.writestr(entry, data)
    seen: list[tuple[int, int]] = []
    name = unique("progress")
    with Client(service.base_url, service.api_key) as client:
        created = client.upload_dataset(archive, name=name, progress=lambda sent, total: seen.append((sent, total)))
        assert created["status"] == "processing" and created["upload_bytes"] == archive.stat().st_size
        done = client.wait_dataset(name, created["version"], timeout=120, poll_s=0.3)
    size = archive.stat().st_size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert [sent for sent, _ in seen] == sorted(sent for sent, _ in seen)
    assert done["status"] == "ready" and done["images"] == sum(CLASSES.values())


def test_a_terminal_gets_the_progress_bar(service: Service, tmp_path: Path) -> None:
    folder = class_folder(tmp_path, seed=9)
    primary, secondary = pty.openpty()
    env = {**os.environ, "EPOCHAL_URL": service.base_url, "EPOCHAL_API_KEY": service.api_key, "TERM": "xterm"}
    process = subprocess.Popen(
        [str(EPOCHAL), "datasets", "push", str(folder), "--name", unique("bar")],
        cwd=ROOT,
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
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
    assert "packing" in screen and "uploading" in screen and "12/12" in screen, screen


@pytest.fixture(scope="module")
def capped(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An API whose upload cap is 256 KiB (no worker: nothing it takes gets that far)."""
    cap = {"EPOCHAL_MAX_UPLOAD_BYTES": str(256 * 1024)}
    with running_service(tmp_path_factory.mktemp("cli-datasets-capped"), QUEUE, [], env=cap) as running:
        yield running


def test_an_upload_over_the_cap_prints_the_413_while_it_streams(capped: Service, tmp_path: Path) -> None:
    # Megabytes past the cap: the API answers while the body is still going out, and that answer is what is shown.
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a/0.png", os.urandom(3 * 2**20))
    result = epochal(capped, "datasets", "push", str(archive), "--name", unique("big"), "--wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error 413" in result.stderr and "EPOCHAL_MAX_UPLOAD_BYTES" in result.stderr, result.stderr
