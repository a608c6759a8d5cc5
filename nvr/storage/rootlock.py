"""One process owns a storage root: an exclusive flock on storage.root/nvr.lock.

`nvr run` and `nvr fsck --repair` take it before they touch anything in the root (tmp cleanup,
start-up recovery, the index). A second instance would otherwise wipe tmp/ under a running
recorder and "recover" the segments it is still writing. The kernel drops an flock when the
holder's last descriptor closes, so any exit releases it, SIGKILL included: there is no stale
lock to clean up, and the PID written in the file is only there to name the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from nvr.errors import RootBusy

LOCK_NAME = "nvr.lock"


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"PID {text}"
    return "a process that has not written its PID yet"


def acquire(root: Path) -> int:
    """Lock `root` for this process; returns the descriptor to keep open while we own it.

    Raises RootBusy (exit 75) naming the holder's PID when another process owns the root.
    Creates `root` (0700) if it does not exist yet; changes nothing in it when refused.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RootBusy(
            f"storage root {root} is in use by another nvr ({holder}, lock {path}); "
            "stop it first, or point storage.root elsewhere"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing drops the flock; the file stays (removing it would race)
