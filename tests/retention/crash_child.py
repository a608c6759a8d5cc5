"""Child process for the crash test: one retention pass that SIGKILLs itself part-way.

Usage: python -m tests.retention.crash_child ROOT NOW_US KILL
KILL = N (an integer): after N unlinks; 0 kills right after the mark-and-audit unit commits.
KILL = a step name (planned, marked, audited, committed, removed): at that step of the pass
(RetentionExecutor._step); "marked" is inside the unit, between the marks and the audit rows.
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


async def main(root: Path, now: int, kill: str) -> None:
    kill_after = int(kill) if kill.isdigit() else -1
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
        _step=lambda step: _die() if step == kill else None,
    )
    await ex.run_once()
    await db.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
