"""Which class and split each image of an archive belongs to, from its folders: `<class>/<image>`, or
`train/<class>/<image>` and `test/<class>/<image>` (`validation/` or `val/` also name the test split, as in
cats vs dogs), below any number of folders that hold everything (zipping a folder adds one)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from training.uploads.caps import UploadCaps
from training.uploads.errors import WHOLE_UPLOAD, UploadRefused

TRAIN, TEST = "train", "test"
SPLIT_FOLDERS = {"train": TRAIN, "test": TEST, "validation": TEST, "val": TEST}
LAYOUTS = "images go in <class>/ folders, or in train/<class>/ and test/<class>/ folders"


@dataclass(frozen=True)
class Placed:
    """Where one image goes: its split, its class, and its name below the class folder (which orders it)."""

    path: str
    split: str
    class_name: str
    name: str


@dataclass(frozen=True)
class Layout:
    classes: tuple[str, ...]  # sorted, as Keras' image_dataset_from_directory sorts them: the label is the index
    images: tuple[Placed, ...]
    has_test_split: bool
    root: str  # the folders above the classes (or splits) that held everything, "" when none


def _root(paths: Sequence[str]) -> list[str]:
    """The folders every image sits below that are neither a class nor a split."""
    parts = [path.split("/") for path in paths]
    root: list[str] = []
    while (
        parts
        and all(len(p) > len(root) + 2 for p in parts)
        and len({p[len(root)] for p in parts}) == 1
        and parts[0][len(root)].lower() not in SPLIT_FOLDERS
    ):
        root.append(parts[0][len(root)])
    return root


def arrange(images: Sequence[str], folders: Iterable[str], caps: UploadCaps) -> Layout:
    """The layout of an archive whose image files are at `images` and whose folder entries are `folders`."""
    if not images:
        raise UploadRefused(WHOLE_UPLOAD, f"the archive holds no PNG or JPEG images; {LAYOUTS}")
    root = _root(images)
    depth = len(root)
    split_layout = any(len(p.split("/")) == depth + 3 for p in images)
    placed: list[Placed] = []
    for path in images:
        parts = path.split("/")[depth:]
        if split_layout and len(parts) == 3 and parts[0].lower() in SPLIT_FOLDERS:
            placed.append(Placed(path, SPLIT_FOLDERS[parts[0].lower()], parts[1], parts[2]))
        elif not split_layout and len(parts) == 2:
            placed.append(Placed(path, TRAIN, parts[0], parts[1]))
        else:
            where = "outside any class folder" if len(parts) == 1 else "at an unexpected depth"
            raise UploadRefused(path, f"this image is {where}; {LAYOUTS}")
    splits = {image.split for image in placed}
    if split_layout and TRAIN not in splits:
        raise UploadRefused(WHOLE_UPLOAD, f"there is a test split and no train/ folder; {LAYOUTS}")
    if len({p.path.split("/")[depth] for p in placed if split_layout and p.split == TEST}) > 1:
        raise UploadRefused(WHOLE_UPLOAD, "test/, validation/ and val/ each name the test split; keep one of them")
    classes = tuple(sorted({image.class_name for image in placed if image.split == TRAIN}))
    prefix = "/".join(root)
    _check_folders(folders, placed, prefix, split_layout)
    if split_layout:
        for split in (TRAIN, TEST):
            found = {image.class_name for image in placed if image.split == split}
            for missing in sorted(set(classes) - found if split == TEST and TEST in splits else set()):
                raise UploadRefused(f"{split}/{missing}", f"class '{missing}' is in train/ and not in {split}/; add it")
            for extra in sorted(found - set(classes)):
                raise UploadRefused(f"{split}/{extra}", f"class '{extra}' is in {split}/ and not in train/; add it")
    if len(classes) < 2:
        raise UploadRefused(
            f"{classes[0]}/", "this is the only class; a classifier needs at least two class folders of images"
        )
    if len(classes) > caps.max_classes:
        raise UploadRefused(WHOLE_UPLOAD, f"{len(classes):,} classes; at most {caps.max_classes:,} are accepted")
    order = sorted(placed, key=lambda p: (p.split, classes.index(p.class_name), p.name))
    return Layout(classes, tuple(order), TEST in splits, prefix)


def _check_folders(folders: Iterable[str], placed: Sequence[Placed], prefix: str, split_layout: bool) -> None:
    """Refuse a class folder (or split folder) that the archive holds with no image in it: an empty class."""
    used = {"/".join(p.path.split("/")[:-1]) for p in placed}
    used |= {"/".join(p.path.split("/")[:-2]) for p in placed}
    start = f"{prefix}/" if prefix else ""
    for folder in sorted(folders):
        if not folder.startswith(start) or folder in used:
            continue
        parts = folder[len(start) :].split("/")
        is_split = split_layout and len(parts) == 1 and parts[0].lower() in SPLIT_FOLDERS
        is_class = len(parts) == (2 if split_layout else 1) and (not split_layout or parts[0].lower() in SPLIT_FOLDERS)
        if is_split:
            raise UploadRefused(f"{folder}/", "this split folder holds no images; fill it or remove it")
        if is_class:
            raise UploadRefused(
                f"{folder}/", "this class folder holds no images (an empty class); fill it or remove it"
            )
