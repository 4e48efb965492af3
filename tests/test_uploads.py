"""Uploads read into canonical datasets: the pixels as fitted by hand, the hash of the content alone, the hold-out,
the defaults, the .npz layout, and a subset of the real cats-vs-dogs folders."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.upload_archives import class_files, encode, noise, write_tar, write_zip
from training.uploads import ColorMode, Fit, UploadOptions, ingest

CLASSES = {"cat": 4, "dog noir": 5, "élan": 3}  # a space and a non-ASCII letter in class names


def arrays(folder: Path) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy") for name in ("x_train", "y_train", "x_test", "y_test")}


def by_hand(data: bytes, size: tuple[int, int], fit: Fit, mode: str) -> np.ndarray:
    """What fitting should give, written out without the package's helpers."""
    image = Image.open(io.BytesIO(data)).convert(mode)
    height, width = size
    if fit is Fit.CROP:  # centre crop to the target's aspect (in fractional pixels), then resize
        aspect = width / height
        crop_w, crop_h = min(image.width, image.height * aspect), min(image.height, image.width / aspect)
        left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
        box = (left, top, left + crop_w, top + crop_h)
        image = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
    elif fit is Fit.PAD:  # fit inside, centred on black bars
        scale = min(width / image.width, height / image.height)
        inner = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        canvas = Image.new(mode, (width, height), 0 if mode == "L" else (0, 0, 0))
        canvas.paste(inner, (round((width - inner.width) / 2), round((height - inner.height) / 2)))
        image = canvas
    else:
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image)


@pytest.mark.parametrize("fit", list(Fit))
@pytest.mark.parametrize("color", list(ColorMode))
def test_class_folders_become_the_images_fitted_by_hand(tmp_path: Path, fit: Fit, color: ColorMode) -> None:
    train = class_files(CLASSES, size=(20, 40), channels=3, prefix="train/")
    test = class_files(CLASSES, size=(20, 40), channels=3, seed=1, prefix="test/")
    source = write_zip(tmp_path / "up.zip", {**train, **test})
    options = UploadOptions(image_size=(11, 10), fit=fit, color_mode=color)
    prepared = ingest(source, tmp_path / "ds", options)
    assert prepared.class_names == ("cat", "dog noir", "élan")
    assert prepared.layout == "train/test folders" and not prepared.held_out and prepared.test_fraction is None
    assert prepared.input_shape == (11, 10, 1 if color is ColorMode.GRAYSCALE else 3)
    got = arrays(tmp_path / "ds")
    mode = "L" if color is ColorMode.GRAYSCALE else "RGB"
    for split, files in (("train", train), ("test", test)):
        # Canonical order: by class, then by file name.
        names = sorted(files, key=lambda n: (prepared.class_names.index(n.split("/")[1]), n.split("/")[2]))
        expected = np.stack([by_hand(files[n], (11, 10), fit, mode) for n in names])
        np.testing.assert_array_equal(got[f"x_{split}"], expected)
        labels = [prepared.class_names.index(n.split("/")[1]) for n in names]
        np.testing.assert_array_equal(got[f"y_{split}"], labels)
        assert prepared.counts[split] == {"cat": 4, "dog noir": 5, "élan": 3}
    assert prepared.images == 24
    assert prepared.size_bytes == sum(a.nbytes for a in got.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "up.zip"]  # no temporary folder left


def test_the_same_content_as_zip_or_tar_has_the_same_hash_and_other_content_another(tmp_path: Path) -> None:
    files = class_files(CLASSES)
    shuffled = dict(reversed(list(files.items())))
    as_zip = ingest(write_zip(tmp_path / "a.zip", {f"photos/{k}": v for k, v in files.items()}), tmp_path / "a")
    as_tar = ingest(write_tar(tmp_path / "b.tar.gz", shuffled, "gz"), tmp_path / "b")
    assert (as_zip.source_format, as_tar.source_format) == ("zip", "tar.gz")
    assert as_zip.sha256 == as_tar.sha256
    changed = dict(files)
    changed["cat/000.png"] = encode(noise(np.random.default_rng(9), 12, 16))
    other = ingest(write_tar(tmp_path / "c.tar", changed), tmp_path / "c")
    assert other.sha256 != as_zip.sha256
    renamed = ingest(
        write_zip(tmp_path / "d.zip", {k.replace("cat/", "kitten/"): v for k, v in files.items()}), tmp_path / "d"
    )
    assert renamed.sha256 != as_zip.sha256  # class names are content


def test_the_hold_out_is_stratified_and_a_function_of_the_seed(tmp_path: Path) -> None:
    files = class_files({"a": 10, "b": 20, "c": 30})
    source = write_zip(tmp_path / "up.zip", files)
    first = ingest(source, tmp_path / "one")
    again = ingest(source, tmp_path / "two")
    other = ingest(source, tmp_path / "three", UploadOptions(seed=7))
    assert first.held_out and first.test_fraction == 0.2 and first.seed == 42
    assert first.counts["test"] == {"a": 2, "b": 4, "c": 6}
    assert first.counts["train"] == {"a": 8, "b": 16, "c": 24}
    assert first.sha256 == again.sha256
    np.testing.assert_array_equal(arrays(tmp_path / "one")["x_test"], arrays(tmp_path / "two")["x_test"])
    assert other.counts == first.counts and other.sha256 != first.sha256
    # Every image is in exactly one split.
    one = arrays(tmp_path / "one")
    everything = np.concatenate([one["x_train"], one["x_test"]]).reshape(60, -1)
    assert len({row.tobytes() for row in everything}) == 60
    quarter = ingest(source, tmp_path / "four", UploadOptions(test_fraction=0.5))
    assert quarter.counts["test"] == {"a": 5, "b": 10, "c": 15}


def test_defaults_are_the_most_common_size_capped_and_grey_when_every_image_is(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    files = {f"a/{i}.png": encode(noise(rng, 300, 600)) for i in range(3)}
    files |= {f"b/{i}.png": encode(noise(rng, 300, 600)) for i in range(2)}
    files["b/odd.png"] = encode(noise(rng, 50, 50))
    grey = ingest(
        write_zip(tmp_path / "g.zip", {**files, ".DS_Store": b"x", "__MACOSX/a/._0.png": b"x"}), tmp_path / "g"
    )
    assert grey.image_size == (128, 256)  # 300 x 600 is the most common; 256 on the longer side, aspect kept
    assert grey.color_mode is ColorMode.GRAYSCALE and grey.input_shape == (128, 256, 1)
    assert grey.fit is Fit.RESIZE
    assert set(grey.defaults) == {"image_size", "fit", "color_mode", "test_fraction", "seed"}
    assert set(grey.skipped) == {".DS_Store", "__MACOSX/a/._0.png"}
    files["b/colour.png"] = encode(noise(rng, 50, 50, 3))
    colour = ingest(write_zip(tmp_path / "c.zip", files), tmp_path / "c", UploadOptions(fit=Fit.PAD))
    assert colour.color_mode is ColorMode.RGB and colour.input_shape == (128, 256, 3)
    assert "fit" not in colour.defaults


def test_mixed_modes_and_formats_are_accepted(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    grey16 = Image.fromarray(noise(rng, 12, 16).astype(np.uint16) * 257)
    transparent = Image.new("RGBA", (16, 12), (0, 0, 0, 0))
    files = {
        "a/grey.png": encode(noise(rng, 12, 16)),
        "a/sixteen.png": encode(grey16),
        "a/clear.png": encode(transparent),
        "b/palette.png": encode(Image.fromarray(noise(rng, 12, 16, 3)).convert("P")),
        "b/photo.jpg": encode(noise(rng, 12, 16, 3), "JPEG"),
        "b/photo2.JPEG": encode(noise(rng, 12, 16, 3), "JPEG"),
    }
    prepared = ingest(write_tar(tmp_path / "up.tar", files), tmp_path / "ds", UploadOptions(color_mode=ColorMode.RGB))
    assert prepared.input_shape == (12, 16, 3) and prepared.images == 6
    got = arrays(tmp_path / "ds")
    x = np.concatenate([got["x_train"], got["x_test"]])
    assert (x == 255).all(axis=(1, 2, 3)).sum() == 1  # transparency becomes white paper


def test_an_npz_in_keras_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    x_train, x_test = noise(rng, 30, 8, 8)[..., None].reshape(30, 8, 8, 1), noise(rng, 9, 8, 8).reshape(9, 8, 8)
    x_test = x_test[..., None]
    y_train, y_test = np.arange(30) % 3, (np.arange(9) % 3)[:, None]
    path = tmp_path / "up.npz"
    np.savez_compressed(
        path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=np.array(["a", "b", "c"])
    )
    prepared = ingest(path, tmp_path / "ds")
    assert (prepared.source_format, prepared.layout, prepared.input_shape) == ("npz", "npz", (8, 8, 1))
    assert prepared.class_names == ("a", "b", "c") and not prepared.held_out
    got = arrays(tmp_path / "ds")
    np.testing.assert_array_equal(got["x_train"], x_train[..., 0])
    np.testing.assert_array_equal(got["y_test"], y_test[:, 0])
    # The prepared arrays uploaded again as an .npz are the same content: the same hash.
    again = tmp_path / "again.npz"
    names = np.array(prepared.class_names)
    np.savez(
        again,
        x_train=got["x_train"],
        y_train=got["y_train"],
        x_test=got["x_test"],
        y_test=got["y_test"],
        class_names=names,
    )
    assert ingest(again, tmp_path / "again").sha256 == prepared.sha256
    bigger = ingest(path, tmp_path / "rgb", UploadOptions(image_size=(16, 16), color_mode=ColorMode.RGB))
    assert np.load(tmp_path / "rgb" / "x_train.npy").shape == (30, 16, 16, 3)
    assert bigger.sha256 != prepared.sha256
    held = tmp_path / "held.npz"
    np.savez(held, x_train=x_train, y_train=y_train)
    assert ingest(held, tmp_path / "held").counts["test"] == {"0": 2, "1": 2, "2": 2}


def test_a_subset_of_the_real_cats_vs_dogs_folders(tmp_path: Path, data_dir: Path) -> None:
    root = data_dir / "cats_vs_dogs"
    if not (root / "train").is_dir():
        pytest.skip("no cats_vs_dogs folder in the data folder")
    source = tmp_path / "cats.zip"
    with zipfile.ZipFile(source, "w") as z:
        for split in ("train", "validation"):
            for cls in ("cats", "dogs"):
                for path in sorted((root / split / cls).iterdir())[:6]:
                    z.write(path, f"cats_and_dogs_filtered/{split}/{cls}/{path.name}")
    prepared = ingest(source, tmp_path / "ds", UploadOptions(image_size=(64, 64), fit=Fit.CROP))
    assert prepared.class_names == ("cats", "dogs")
    assert prepared.counts == {"train": {"cats": 6, "dogs": 6}, "test": {"cats": 6, "dogs": 6}}
    assert prepared.input_shape[:2] == (64, 64)
    assert np.load(tmp_path / "ds" / "x_train.npy").std() > 10  # real photographs, not blank


Call = tuple[str, int, int | None]


def checked_calls(calls: list[Call]) -> dict[str, list[Call]]:
    """The calls by stage, each stage's `done` checked to only grow and to end at its total."""
    stages: dict[str, list[Call]] = {}
    for call in calls:
        stages.setdefault(call[0], []).append(call)
    for stage, seen in stages.items():
        done = [d for _s, d, _t in seen]
        assert done == sorted(done) and done[0] == 0, (stage, done)
        assert seen[-1][1] == seen[-1][2], f"{stage} does not end at its total: {seen[-1]}"
        assert all(t is None or t == seen[-1][2] for _s, _d, t in seen), f"{stage}'s total changed: {seen}"
    return stages


@pytest.mark.parametrize("kind", ["zip", "tar", "npz"])
def test_progress_is_told_per_stage_growing_to_its_total_and_changes_nothing(tmp_path: Path, kind: str) -> None:
    classes = {"cat": 30, "dog": 25, "fox": 35}
    files = class_files(classes, size=(10, 12))
    if kind == "zip":
        source = write_zip(tmp_path / "up.zip", files, folders=("cat/", "dog/", "fox/"))
    elif kind == "tar":
        source = write_tar(tmp_path / "up.tar.gz", files, compression="gz")
    else:
        rng = np.random.default_rng(3)
        source = tmp_path / "up.npz"
        np.savez(source, x_train=noise(rng, 90, 10, 12).reshape(90, 10, 12), y_train=np.arange(90) % 3)
    calls: list[Call] = []
    told = ingest(source, tmp_path / "told", on_progress=lambda *call: calls.append(call))
    stages = checked_calls(calls)
    assert list(stages) == ["checking", "train", "test"]
    last_check = max(i for i, call in enumerate(calls) if call[0] == "checking")
    assert last_check < min(i for i, call in enumerate(calls) if call[0] != "checking"), "checking ends first"
    entries = {"zip": 93, "tar": 90, "npz": 2}[kind]  # a zip's folder entries are entries too; an .npz has arrays
    assert stages["checking"][-1] == ("checking", entries, entries)
    if kind == "zip":  # its central directory gives the count from the first entry on
        assert all(total == entries for _s, done, total in stages["checking"] if done)
    if kind == "tar":  # a stream: the count is known at its end only
        assert all(total is None for _s, _d, total in stages["checking"][:-1])
    for split in ("train", "test"):
        assert stages[split][-1][1] == sum(told.counts[split].values())
        assert len(stages[split]) > 5, "a stage of 90 images is told more than its start and its end"
    # Told or not, the content is the same.
    assert ingest(source, tmp_path / "untold").sha256 == told.sha256


def test_stage_progress_reports_every_share_or_half_second_and_its_end() -> None:
    from training.uploads.progress import REPORT_EVERY_S, StageProgress

    now = [100.0]
    calls: list[Call] = []
    still = StageProgress(lambda *call: calls.append(call), "train", 1000, clock=lambda: now[0])
    for _ in range(1000):
        still.step()
    still.end()
    # The clock stands still: the start, then one call per twentieth, the last of which is the end.
    assert calls[0] == ("train", 0, 1000) and calls[-1] == ("train", 1000, 1000)
    assert [d for _s, d, _t in calls[1:]] == list(range(50, 1001, 50))
    calls.clear()
    slow = StageProgress(lambda *call: calls.append(call), "checking", None, clock=lambda: now[0])
    for _ in range(3):
        now[0] += REPORT_EVERY_S
        slow.step()
    slow.end()
    slow.end()
    assert calls == [
        ("checking", 0, None),
        ("checking", 1, None),
        ("checking", 2, None),
        ("checking", 3, None),
        ("checking", 3, 3),
    ]
    silent = StageProgress(None, "train", 10)
    silent.step()
    assert silent.done == 0  # without a callback nothing is counted
