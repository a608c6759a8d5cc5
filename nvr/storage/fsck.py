"""`nvr fsck --config FILE [--repair]`: compare the index with the files on disk, offline.

Without --repair it only reports (exit 0 when index and disk agree, 65 when they do not). With
--repair it does what start-up recovery does: index orphan segments (cut back to their last
complete fragment), drop rows whose file is gone (recording a gap), finish interrupted
deletions. It refuses to repair while a daemon answers on the control socket, since the daemon
owns the index then.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

from nvr.config.loader import ConfigError, load_camera_map
from nvr.errors import EX_DATAERR, EX_OK, EX_UNAVAILABLE, RootBusy
from nvr.storage import db as dbmod
from nvr.storage import rootlock
from nvr.storage.index import Index
from nvr.storage.recovery import reconcile


def daemon_answers(path: Path) -> bool:
    """Whether a daemon accepts connections on this control socket (then it owns the root)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


async def _fsck(config_path: Path, repair: bool) -> int:
    config = load_camera_map(config_path)
    if repair and daemon_answers(config.control.socket):
        sys.stderr.write(f"nvr: the daemon is running (it answers on {config.control.socket}); "
                         "stop it before `nvr fsck --repair`\n")
        return EX_UNAVAILABLE
    db_path = config.storage.root / "index.db"
    if not db_path.exists():
        sys.stderr.write(f"nvr: no index at {db_path}; nothing recorded yet\n")
        return EX_DATAERR
    # --repair writes to the root: own it first, or refuse (exit 75) naming who does.
    lock = rootlock.acquire(config.storage.root) if repair else None
    db = await dbmod.connect(db_path)
    try:
        report = await reconcile(Index(db), config.storage.root,
                                 [c.id for c in config.cameras], repair=repair)
    finally:
        await db.close()
        if lock is not None:
            rootlock.release(lock)
    found = report.to_dict()
    sys.stdout.write(json.dumps(found, indent=2, sort_keys=True) + "\n")
    if report.clean or repair:
        return EX_OK
    sys.stderr.write("nvr: index and disk disagree; run `nvr fsck --config FILE --repair` "
                     "with the daemon stopped\n")
    return EX_DATAERR


def main(config_path: str, repair: bool) -> int:
    try:
        return asyncio.run(_fsck(Path(config_path), repair))
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EX_DATAERR
    except RootBusy as exc:
        sys.stderr.write(f"nvr: {exc}\n")
        return exc.exit_code
