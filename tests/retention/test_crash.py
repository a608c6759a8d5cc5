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

from nvr.policy.audit import AuditRow
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


def _audited(rows: list[AuditRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        if r.action == "retention_delete":
            out[r.detail["camera"]] = out.get(r.detail["camera"], 0) + r.detail["segments"]
    return out


@pytest.mark.parametrize("step", ["planned", "marked", "audited", "committed", "1", "removed"])
async def test_crash_at_every_step_keeps_deletions_and_audit_rows_one_to_one(
    tmp_path: Path, step: str
) -> None:
    """Issue 9: SIGKILL at each step of a pass (including between the marks and the audit rows,
    which now commit as one unit), then a restart and a full pass: every deleted segment has
    exactly one audit row counting it, and no audit row counts a segment still kept."""
    root = tmp_path / "nvr"
    env = await open_env(root, root / "index.db", ("front", "lobby"), Clock(T0))
    paths = [await env.add_segment(cam, T0 + i * 60_000_000, bytes([i]) * 1000)
             for i, cam in enumerate(["front", "lobby"] * 4)]
    await env.holds.create(["lobby"], T0, T0 + 60_000_000 * 4, "theft", None, None, "director",
                           T0)
    held = {paths[1], paths[3]}
    await env.db.close()

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.retention.crash_child", str(root), str(T0 + 31 * DAY),
        step, cwd=REPO,
    )
    assert await proc.wait() == -signal.SIGKILL, f"the pass never reached step {step!r}"

    env = await open_env(root, root / "index.db", ("front", "lobby"), Clock(T0 + 31 * DAY))
    try:
        # Right after the crash: what is audited is exactly what is decided (marked or gone).
        decided = {p for p in paths
                   if p not in {s.path for s in await env.index.all_segments()}}
        by_cam = _audited(await env.audit.rows())
        assert sum(by_cam.values()) == len(decided), (step, by_cam, len(decided))
        assert step not in ("planned", "marked", "audited") or not decided  # rolled back whole

        await env.executor().finish_pending()  # what start-up does
        await env.executor().run_once()  # and the next pass
        gone = set(paths) - env.files_on_disk()
        assert env.files_on_disk() == await env.paths_in_index() == held
        by_cam = _audited(await env.audit.rows())
        for cam in ("front", "lobby"):
            want = sum(1 for p in gone if f"/{cam}/" in p)
            assert by_cam.get(cam, 0) == want, (step, cam, by_cam)
        assert (await env.audit.verify()).ok
    finally:
        await env.db.close()
