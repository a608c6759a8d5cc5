"""Free space on the filesystem that holds storage.root, as retention sees it."""

from __future__ import annotations

import os
from pathlib import Path

from nvr.retention.planner import DiskState


def disk_state(path: Path) -> DiskState:
    """f_bavail, not f_bfree: blocks reserved for root are no use to the recorder's account.

    Blocking (a statvfs on a slow disk can stall): call it from a thread.
    """
    st = os.statvfs(path)
    return DiskState(total_bytes=st.f_blocks * st.f_frsize, free_bytes=st.f_bavail * st.f_frsize)
