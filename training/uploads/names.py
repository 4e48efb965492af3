"""Entry names of an archive: which are refused (they could write outside the dataset, or mean two things), which
are the usual junk of file managers (skipped and listed), and the clean relative path of the rest."""

from __future__ import annotations

import posixpath
import re
import unicodedata

from training.uploads.errors import UploadRefused

# Written by Finder, Explorer and macOS' zip: never data, so skipped (and listed in the result) rather than refused.
JUNK_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
JUNK_FOLDERS = frozenset({"__macosx"})
_DRIVE = re.compile(r"^[A-Za-z]:")


def clean_path(name: str) -> str:
    """`name` as a relative POSIX path in Unicode NFC (macOS writes names decomposed), without a leading "./" or a
    trailing "/"; refused when it could reach outside the archive or means different things on different systems."""
    if "\x00" in name:
        raise UploadRefused(name.replace("\x00", "\\0"), "the name holds a NUL byte; rename the file")
    if "\\" in name:
        raise UploadRefused(name, "the name holds a backslash (a Windows path?); archive with '/' separators")
    if name.startswith("/"):
        raise UploadRefused(name, "absolute paths are refused; archive the folder with relative paths")
    if _DRIVE.match(name):
        raise UploadRefused(name, "a drive letter makes this an absolute Windows path; archive with relative paths")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UploadRefused(name, "'..' in a path could write outside the dataset; archive without '..'")
    if not parts:
        raise UploadRefused(name, "the entry has no name")
    return unicodedata.normalize("NFC", posixpath.join(*parts))


def is_junk(path: str) -> bool:
    """Whether `path` (cleaned) is file-manager junk: .DS_Store, Thumbs.db, desktop.ini, AppleDouble `._*`, or
    anything under __MACOSX/."""
    parts = path.split("/")
    base = parts[-1]
    return base.lower() in JUNK_FILES or base.startswith("._") or any(p.lower() in JUNK_FOLDERS for p in parts)


class NameRegister:
    """The cleaned paths seen so far, refusing one seen before in any letter case: `Cat/1.png` and `cat/1.png` are
    one file on macOS and Windows, and which would win is up to the file system."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def add(self, path: str, *, folder: bool = False) -> None:
        """Record `path` (a file, or a folder when `folder`) and the folders above it."""
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            original = "/".join(parts[:depth])
            is_file = depth == len(parts) and not folder
            earlier = self._seen.get(original.casefold())
            if earlier is None:
                self._seen[original.casefold()] = original
            elif earlier != original:
                raise UploadRefused(
                    path,
                    f"'{original}' differs only in letter case from '{earlier}' earlier in the archive; rename one",
                )
            elif is_file:
                raise UploadRefused(path, "the archive holds this name twice; keep one of them")
