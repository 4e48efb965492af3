"""Child processes that end with the process that started them.

A supervisor killed outright (SIGKILL, the out-of-memory killer) runs no cleanup: without this, its children
would keep running as orphans, an API process holding the port so that the next start cannot bind it. On Linux
the kernel can signal a child when its parent dies (prctl PR_SET_PDEATHSIG); the child then stops as it would
on a normal stop (SIGTERM: a worker gives its job back, an API process finishes its requests). Elsewhere this
does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have the kernel send this process SIGTERM when its parent exits.

    Safe as a `subprocess.Popen(preexec_fn=...)`: it only calls prctl, loaded before the fork. With `parent_pid`,
    the parent it was started by: if that one is already gone (the process was adopted), it stops at once.
    """
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
