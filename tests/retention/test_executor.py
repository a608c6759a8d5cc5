"""The retention executor on real files, a real index and the real audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nvr.storage.index import NewSegment
from nvr.timeutil import US
from tests.retention.env import (
    DAY,
    T0,
    Clock,
    Env,
    decoded_frames,
    open_env,
    sha256,
    tiny_fmp4,
)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = await open_env(tmp_path / "nvr", tmp_path / "nvr" / "index.db", ("front", "lobby"),
                       Clock(T0))
    yield e
    await e.db.close()


async def test_31_days_later_unheld_footage_goes_and_held_stays(env: Env) -> None:
    paths = {}
    for i, cam in enumerate(["front", "front", "front", "lobby", "lobby"]):
        paths[i] = await env.add_segment(cam, T0 + i * 60 * US, tiny_fmp4(i))
    env.clock.advance(1 / 24)
    hold = await env.holds.create(["front"], T0 + 60 * US, T0 + 119 * US, "fight in lobby",
                                  "INC-9", None, "director", env.clock())
    held_sha = sha256(paths[1])
    ex = env.executor()

    first = await ex.run_once()
    assert first.deleted == 0 and env.files_on_disk() == set(paths.values())

    env.clock.advance(31)
    plan = await ex.plan_dict()
    assert {d["path"] for d in plan["delete"]} == set(paths.values()) - {paths[1]}
    assert plan["keep"] == [{"camera": "front", "path": paths[1],
                             "why": f"held by {hold.id} (fight in lobby; incident INC-9)"}]
    report = await ex.run_once()
    assert report.deleted == 4 and report.kept == 1 and report.paused_cameras == frozenset()
    assert env.files_on_disk() == {paths[1]} and await env.paths_in_index() == {paths[1]}
    assert sha256(paths[1]) == held_sha and decoded_frames(paths[1]) == 8

    rows = [r for r in await env.audit.rows() if r.action == "retention_delete"]
    assert [(r.detail["camera"], r.detail["segments"], r.detail["why"]) for r in rows] == [
        ("front", 2, "age"), ("lobby", 2, "age")]
    assert all(r.actor == "nvr" and r.role == "system" and r.allowed for r in rows)
    assert rows[0].detail["from"] == "2026-03-01T09:00:00.000000Z"
    assert rows[0].detail["to"] == "2026-03-01T09:03:00.000000Z"

    await env.holds.release(hold.id, "director", "case closed", env.clock())
    await ex.run_once()
    assert env.files_on_disk() == set() and await env.paths_in_index() == set()
    rows = [r for r in await env.audit.rows() if r.action == "retention_delete"]
    assert len(rows) == 3 and rows[-1].detail["segments"] == 1
    assert (await env.audit.verify()).ok


async def test_refuses_paths_outside_the_segments_folder(env: Env, tmp_path: Path) -> None:
    outside = tmp_path / "precious.mp4"
    outside.write_bytes(b"not footage of ours")
    await env.index.add_segment(NewSegment("front", T0, T0 + 60 * US, str(outside), 19, 1, 1,
                                           "h264", 64, 64, "0" * 64))
    await env.add_segment("front", T0 + 60 * US, b"x" * 100)
    env.clock.advance(40)
    report = await env.executor().run_once()
    assert report.refused == (str(outside),) and report.deleted == 1
    assert outside.read_bytes() == b"not footage of ours"
    assert await env.paths_in_index() == {str(outside)}


async def test_per_camera_retention_and_future_hold(env: Env) -> None:
    env.config = env.config.model_copy(update={"cameras": [
        env.config.cameras[0].model_copy(update={"retention_days": 7}), env.config.cameras[1]]})
    # A hold on lobby from now on: footage recorded after it was made is covered too.
    await env.holds.create(["lobby"], T0, T0 + 400 * DAY, "ongoing investigation", None,
                           None, "director", env.clock())
    front = await env.add_segment("front", T0, b"f" * 10)
    lobby = await env.add_segment("lobby", T0 + 5 * DAY, b"l" * 10)
    env.clock.advance(8)
    await env.executor().run_once()
    assert env.files_on_disk() == {lobby} and front not in await env.paths_in_index()
    env.clock.advance(60)
    await env.executor().run_once()
    assert env.files_on_disk() == {lobby}


async def test_hold_created_while_a_pass_plans_still_wins(env: Env) -> None:
    """A hold placed on day-30 footage in the moment a pass is deciding must keep it."""
    paths = [await env.add_segment("front", T0 + i * 60 * US, tiny_fmp4(i)) for i in range(3)]
    digests = {p: sha256(p) for p in paths}
    env.clock.advance(31)
    ex = env.executor()
    plan_before_hold = ex.plan

    async def plan_then_director_holds(at_us: int | None = None,  # type: ignore[no-untyped-def]
                                       clock_in_doubt: bool = False):
        plan = await plan_before_hold(at_us, clock_in_doubt=clock_in_doubt)
        assert len(plan.delete) == 3  # the pass has decided to delete everything…
        await env.holds.create(["front"], T0, T0 + 10 * 60 * US, "late incident", None, None,
                               "director", env.clock())  # …and then the hold lands
        return plan

    ex.plan = plan_then_director_holds  # type: ignore[method-assign]
    report = await ex.run_once()
    assert report.deleted == 0
    assert env.files_on_disk() == set(paths) and await env.paths_in_index() == set(paths)
    assert all(sha256(p) == d for p, d in digests.items())
