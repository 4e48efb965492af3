"""`epochal samples DIR`: images to try predictions with, taken from the datasets the service trains on.

The README's examples predict `7.png`, `2.png`, `cat.jpg`: this writes them (and the other digits) from the data
folder, so they are what the networks were trained to read, not whatever a person finds. It reads files only, on
the machine that holds the data folder; nothing goes through the API.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from epochal.cli.context import err, out

CAT_AND_DOG = (("cats", "cat"), ("dogs", "dog"))  # the class folders of cats_vs_dogs, and the file each sample gets


def _default_data_dir() -> Path:
    # The service's own default (EPOCHAL_DATA_DIR, else data/ where it is started: the repository root for serve).
    return Path(os.environ.get("EPOCHAL_DATA_DIR") or "data")


def _mnist_file(data_dir: Path) -> Path | None:
    """The data folder's mnist.npz, else the copy a Keras download left (what the service trains on then)."""
    keras_cache = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets" / "mnist.npz"
    return next((path for path in (data_dir / "mnist.npz", keras_cache) if path.is_file()), None)


def write_digits(npz: Path, folder: Path) -> list[Path]:
    """The first test image of each digit, as `<digit>.png` (28x28 grayscale, white on black, as trained)."""
    import numpy as np
    from PIL import Image

    written = []
    with np.load(npz) as arrays:
        images, labels = arrays["x_test"], arrays["y_test"]
        for digit in sorted({int(label) for label in labels}):
            first = int(np.flatnonzero(labels == digit)[0])
            path = folder / f"{digit}.png"
            Image.fromarray(images[first].astype("uint8"), mode="L").save(path)
            written.append(path)
    return written


def write_cat_and_dog(root: Path, folder: Path) -> list[Path]:
    """The first validation image of each class, copied as it is, as `cat.jpg` and `dog.jpg`."""
    written = []
    for class_dir, name in CAT_AND_DOG:
        first = min((p for p in (root / "validation" / class_dir).iterdir() if p.is_file()), default=None)
        if first is not None:
            path = folder / f"{name}{first.suffix.lower()}"
            shutil.copyfile(first, path)
            written.append(path)
    return written


def samples(
    folder: Annotated[Path, typer.Argument(help="Where to write them (made if missing).")],
    data_dir: Annotated[
        Path | None, typer.Option(help="The data folder; default: EPOCHAL_DATA_DIR, else ./data.", show_default=False)
    ] = None,
) -> None:
    """Write sample images from the datasets: MNIST digits as 0.png..9.png, and cat.jpg and dog.jpg."""
    data_dir = data_dir or _default_data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    missing: list[str] = []
    npz = _mnist_file(data_dir)
    if npz is None:
        missing.append(f"mnist.npz (not in {data_dir}, nor downloaded by Keras)")
    else:
        written += write_digits(npz, folder)
    cats_vs_dogs = data_dir / "cats_vs_dogs"
    cat_and_dog = write_cat_and_dog(cats_vs_dogs, folder) if (cats_vs_dogs / "validation").is_dir() else []
    if not cat_and_dog:
        missing.append(f"cats_vs_dogs/validation/{{cats,dogs}}/ (not in {data_dir})")
    written += cat_and_dog
    for path in written:
        out.print(str(path), markup=False)
    if missing:
        err.print(
            "no samples from " + "; ".join(missing) + ". Point --data-dir or EPOCHAL_DATA_DIR at the data folder "
            "that holds them (see Data in the README)",
            markup=False,
            soft_wrap=True,
        )
    if not written:
        raise typer.Exit(1)
