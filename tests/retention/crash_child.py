"""Child process for the crash test: one retention pass that SIGKILLs itself part-way.

Usage: python -m tests.retention.crash_child ROOT NOW_US KILL_AFTER_UNLINKS
KILL_AFTER_UNLINKS = 0 kills right after mark_deleting (and the audit append).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from nvr.policy.audit import AuditLog
from nvr.retention.executor import RetentionExecutor
from nvr.retention.holds import Holds
from nvr.storage.db import connect
from nvr.storage.index import Index
from tests.retention.env import Clock, camera_map


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(root: Path, now: int, kill_after: int) -> None:
    db = await connect(root / "index.db")
    unlinked = 0

    def after_unlink(path: str) -> None:
        nonlocal unlinked
        unlinked += 1
        if unlinked == kill_after:
            _die()

    ex = RetentionExecutor(
        db, Index(db), Holds(db), AuditLog(db), camera_map(root, ("front", "lobby")),
        clock=Clock(now), _after_mark=_die if kill_after == 0 else None,
        _after_unlink=after_unlink,
    )
    await ex.run_once()
    await db.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
