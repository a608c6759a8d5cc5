"""Issue 11, clock sanity: a wall clock 40 days ahead deletes nothing for age, while a full disk
still frees its oldest unheld footage (injected clocks, real index, real files, real audit log)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nvr.retention.clockcheck import DAY_US, ClockRef, alert_text, clock_problem
from nvr.retention.executor import RetentionExecutor
from nvr.retention.planner import DiskState
from nvr.timeutil import US
from tests.retention.env import T0, Clock, Env, open_env, tiny_fmp4

MONO0 = 5_000 * US


def test_pure_clock_checks() -> None:
    ref = ClockRef(T0, MONO0, T0 - 60 * US)
    assert clock_problem(ref, T0 + 3600 * US, MONO0 + 3600 * US, T0) is None  # an hour, both
    # 40 days ahead in wall time, 1 minute in monotonic time: a jump.
    p = clock_problem(ref, T0 + 40 * DAY_US, MONO0 + 60 * US, T0)
    assert p is not None and "40.0 days ahead" in p
    p = clock_problem(ref, T0 - 3 * DAY_US, MONO0 + 60 * US, T0)
    assert p is not None and "back" in p
    # Footage that ends two days after now: the clock went back while we were off.
    p = clock_problem(ClockRef(T0, MONO0, T0 + 2 * DAY_US), T0, MONO0, T0 + 2 * DAY_US)
    assert p is not None and "after the clock's now" in p
    # Started 40 days after the newest footage: a person must confirm.
    started_late = ClockRef(T0 + 40 * DAY_US, MONO0, T0)
    assert "at start" in (clock_problem(started_late, T0 + 40 * DAY_US, MONO0, T0) or "")
    confirmed = ClockRef(T0 + 40 * DAY_US, MONO0, None)
    assert clock_problem(confirmed, T0 + 40 * DAY_US, MONO0, T0) is None
    assert "nvr retention confirm-clock" in alert_text("x")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = await open_env(tmp_path / "nvr", tmp_path / "nvr" / "index.db", ("front",), Clock(T0))
    yield e
    await e.db.close()


async def test_forty_days_ahead_deletes_nothing_until_confirmed(env: Env) -> None:
    for i in range(3):
        await env.add_segment("front", T0 + i * 60 * US, tiny_fmp4(i))
    mono = [MONO0]
    ref = [ClockRef(env.clock(), mono[0], T0 + 180 * US)]

    async def guard() -> str | None:
        p = clock_problem(ref[0], env.clock(), mono[0], T0 + 180 * US)
        return alert_text(p) if p else None

    ex = RetentionExecutor(env.db, env.index, env.holds, env.audit, env.config,
                           clock=env.clock, clock_guard=guard)
    env.clock.advance(1 / 24)
    mono[0] += 3600 * US
    assert (await ex.run_once()).deleted == 0 and ex.clock_alert is None
    env.clock.advance(40)  # the wall clock jumps; the monotonic clock moves a second
    mono[0] += US
    report = await ex.run_once()
    assert report.deleted == 0 and len(env.files_on_disk()) == 3
    assert ex.clock_alert is not None and "40.0 days ahead" in ex.clock_alert
    assert not [r for r in await env.audit.rows() if r.action == "retention_delete"]
    # The IT person confirms: now is the reference; the footage really is 40 days old.
    ref[0] = ClockRef(env.clock(), mono[0], None)
    assert (await ex.run_once()).deleted == 3 and ex.clock_alert is None


async def test_with_the_clock_in_doubt_a_full_disk_still_frees_the_oldest_unheld_footage(
        tmp_path: Path) -> None:
    """A clock alert left for days must not stop recording: disk pressure still deletes, oldest
    first, but nothing goes for age and a hold the wrong clock says ran out still protects."""
    env = await open_env(tmp_path / "nvr", tmp_path / "index.db", ("front",), Clock(T0),
                         min_free=50)
    try:
        paths = [await env.add_segment("front", T0 + i * 60 * US, tiny_fmp4(i)) for i in range(4)]
        # Footage of a camera since taken out of the map, newer than front's: it does not go
        # first just because the map no longer says how long to keep it.
        await env.index.ensure_camera("gone", "Gone", env.clock())
        gone = await env.add_segment("gone", T0 + 600 * US, tiny_fmp4(9))
        size = max(Path(p).stat().st_size for p in [*paths, gone])
        total = 8 * size

        def disk(_root: Path) -> DiskState:  # a small disk: the files on it are all it holds
            used = sum(Path(p).stat().st_size for p in env.files_on_disk())
            return DiskState(total_bytes=total, free_bytes=total - used)

        env.clock.advance(1 / 24)
        hold = await env.holds.create(["front"], T0, T0 + 30 * US, "fight", None,
                                      env.clock() + DAY_US, "director", env.clock())
        mono = [MONO0]
        ref = ClockRef(env.clock(), mono[0], T0 + 240 * US)

        async def guard() -> str | None:
            p = clock_problem(ref, env.clock(), mono[0], T0 + 240 * US)
            return alert_text(p) if p else None

        ex = RetentionExecutor(env.db, env.index, env.holds, env.audit, env.config,
                               clock=env.clock, clock_guard=guard, disk=disk)
        env.clock.advance(40)  # the wall clock jumps 40 days; the hold "expired" by it
        mono[0] += US
        report = await ex.run_once()
        # `nvr retention plan` (no --at) says what the next pass does; --at T is a question
        # about T, answered by the usual rules.
        now_plan = await ex.plan_dict()
        assert now_plan["clock_alert"] == ex.clock_alert
        at_plan = await ex.plan_dict(env.clock())
        assert at_plan["clock_alert"] is None and len(at_plan["delete"]) == 4, at_plan["delete"]
        assert ex.clock_alert is not None and "full disk still frees" in ex.clock_alert
        # 5 segments on an 8-segment disk that wants 50% free: one must go, and it is the oldest
        # one no hold covers (#1); #0 is held, #2 and #3 are "40 days old" by the wrong clock.
        assert report.deleted == 1, report
        assert env.files_on_disk() == {*paths, gone} - {paths[1]}
        rows = [r for r in await env.audit.rows() if r.action == "retention_delete"]
        assert [r.detail["why"] for r in rows] == ["disk"]
        # `nvr retention plan` now says the same: the disk is fine, nothing goes.
        again = await ex.plan_dict()
        assert again["delete"] == [], again
        assert (await ex.run_once()).deleted == 0 and len(env.files_on_disk()) == 4
        # The hold still protects #0 when the disk runs short again.
        assert paths[0] in env.files_on_disk() and hold.until_us is not None
    finally:
        await env.db.close()
