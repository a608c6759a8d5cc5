"""Crash safety: a retention pass killed with SIGKILL between its steps, then a restart.

Invariants after finish_pending(): no index row without its file, no file without its row,
held footage untouched, and the audit log names every deletion that was decided.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.retention.env import DAY, T0, Clock, open_env, sha256

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kill_after_unlinks", [0, 2])
async def test_killed_pass_is_finished_at_restart(tmp_path: Path, kill_after_unlinks: int) -> None:
    root = tmp_path / "nvr"
    env = await open_env(root, root / "index.db", ("front", "lobby"), Clock(T0))
    paths = [await env.add_segment(cam, T0 + i * 60_000_000, bytes([i]) * 1000)
             for i, cam in enumerate(["front", "lobby"] * 4)]
    await env.holds.create(["lobby"], T0, T0 + 60_000_000 * 4, "theft", None, None, "director",
                           T0)
    held = {p: sha256(p) for p in (paths[1], paths[3])}  # lobby, T0+1 min and T0+3 min
    await env.db.close()

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.retention.crash_child", str(root), str(T0 + 31 * DAY),
        str(kill_after_unlinks), cwd=REPO,
    )
    assert await proc.wait() == -signal.SIGKILL

    env = await open_env(root, root / "index.db", ("front", "lobby"), Clock(T0 + 31 * DAY))
    try:
        pending = await env.index.deleting()
        assert len(pending) == 6  # all unheld rows were marked before the kill
        assert len(env.files_on_disk()) == 8 - kill_after_unlinks
        rows = [r for r in await env.audit.rows() if r.action == "retention_delete"]
        assert sum(r.detail["segments"] for r in rows) == 6 and (await env.audit.verify()).ok

        assert await env.executor().finish_pending() == 6
        assert env.files_on_disk() == await env.paths_in_index() == set(held)
        assert await env.index.deleting() == []
        assert all(sha256(p) == h for p, h in held.items())
        assert (await env.executor().run_once()).deleted == 0
    finally:
        await env.db.close()
