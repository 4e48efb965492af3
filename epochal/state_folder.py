"""The state folder (EPOCHAL_STATE_DIR) holds every user's work: it and all in it are for its owner alone.

The embedded database (experiments, checkpoints, key hashes), its -wal and -shm files, the broker's log and
append-only files, the API key and the reaper's schedule all live there. Files are created with the owner-only
umask, so whatever `serve` and its children (SQLite, redis-server, Celery beat) create is 0600 or 0700, and a
folder left by an older version, or made by hand with the usual 0755, is tightened when the service starts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_ONLY_UMASK = 0o077  # no read, write or search bit for the group or others on anything created
OTHERS_BITS = 0o077


def make_private(folder: Path) -> list[Path]:
    """Create `folder` (0700), or take every group and other bit off it and everything in it.

    Returns the paths that had such bits (empty when it was already private). Symbolic links are left alone: a
    link's own mode means nothing on Linux, and what it points at may be shared on purpose.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    loosened = []
    for path in [folder, *folder.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not mode & OTHERS_BITS:
            continue
        os.chmod(path, stat.S_IMODE(mode) & ~OTHERS_BITS)
        loosened.append(path)
    return loosened
