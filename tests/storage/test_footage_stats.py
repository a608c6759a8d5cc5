"""`nvr status` figures by index seeks (nvr.storage.footage_stats) must equal the same figures
computed from every row; and the alerts (nvr.runtime.alerts) and days left (nvr.control.status)
for people and systemd."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from nvr.control.status import days_left
from nvr.runtime import alerts
from nvr.runtime.alerts import CameraView
from nvr.storage import footage_stats
from nvr.storage.db import connect
from nvr.storage.index import Index, NewSegment

T0 = 1_790_000_000_000_000
MIN = 60_000_000

# A camera's segments follow one another: lengths of consecutive segments and gaps, in minutes.
runs = st.lists(st.tuples(st.integers(1, 12), st.integers(0, 5), st.integers(1, 9000)),
                max_size=40)
# A hold's window is never empty (Holds.create refuses end <= start): at least a minute.
windows = st.lists(st.tuples(st.integers(-30, 400), st.integers(1, 120)), max_size=5)


@settings(max_examples=60, deadline=None)
@given(runs, windows)
# A 10-minute segment starting in one hold's window and running into the next: counted once.
@example([(10, 0, 100), (10, 0, 200)], [(0, 5), (8, 7)])
def test_held_by_seeks_equals_held_from_every_row(
    tmp_path_factory: object, segs: list[tuple[int, int, int]], ws: list[tuple[int, int]],
) -> None:
    root = Path(tmp_path_factory.mktemp("h"))  # type: ignore[attr-defined]
    asyncio.run(_check(root, segs, ws))


async def _check(root: Path, segs: list[tuple[int, int, int]], ws: list[tuple[int, int]]) -> None:
    db = await connect(root / "index.db")
    index = Index(db)
    rows = []
    t = T0
    for i, (minutes, gap, size) in enumerate(segs):
        start, end = t, t + minutes * MIN
        await index.add_segment(NewSegment("a", start, end, f"/s/a/{i}.mp4", size, 1, 1, "h264",
                                           1, 1, "x"))
        await index.add_segment(NewSegment("b", start, end, f"/s/b/{i}.mp4", 7, 1, 1, "h264",
                                           1, 1, "x"))  # another camera: never counted for a
        rows.append((start, end, size))
        t = end + gap * MIN
    holds = [(T0 + s * MIN, T0 + (s + n) * MIN) for s, n in ws]
    covered = [r for r in rows if any(r[0] < he and r[1] > hs for hs, he in holds)]
    got = await footage_stats.held(db, "a", holds)
    assert got == footage_stats.Held(sum(r[2] for r in covered),
                                     sum(r[1] - r[0] for r in covered) / 1e6, len(covered))
    assert await footage_stats.oldest_start(db, "a") == (rows[0][0] if rows else None)
    totals = await footage_stats.totals(db)
    assert totals.get("a", (0, 0)) == (len(rows), sum(r[2] for r in rows))
    await db.close()


def test_daily_bytes_is_the_last_days_rate(tmp_path: Path) -> None:
    async def go() -> None:
        db = await connect(tmp_path / "index.db")
        index = Index(db)
        day = footage_stats.DAY_US
        # Two days of 1000-byte hour-long segments, then the last one still open is not a row.
        for h in range(48):
            start = T0 + h * 3600_000_000
            await index.add_segment(NewSegment("a", start, start + 3600_000_000, f"/s/{h}.mp4",
                                               1000, 1, 1, "h264", 1, 1, "x"))
        now = T0 + 2 * day
        assert await footage_stats.daily_bytes(db, "a", now) == 24 * 1000
        # A camera that has recorded for 2 hours: its rate over those 2 hours, per day.
        assert await footage_stats.daily_bytes(db, "a", T0 + 2 * 3600_000_000) == 24 * 1000
        assert await footage_stats.daily_bytes(db, "a", now + 2 * day) is None
        assert await footage_stats.daily_bytes(db, "nobody", now) is None
        await db.close()

    asyncio.run(go())


def test_merge_windows() -> None:
    assert footage_stats.merge([(5, 9), (1, 3), (3, 4), (8, 12), (20, 20)]) == [(1, 4), (5, 12)]


def test_alerts_storage_first_then_clock_then_each_camera_down() -> None:
    cams = [CameraView("lobby", "recording", "", 3), CameraView("gone", "backoff", "refused", 2),
            CameraView("new", "connecting"), CameraView("door", "failed", "wrong password", 1),
            CameraView("dock", "failed", "disk full of held footage"),
            CameraView("off", "disabled", "camera disabled in the camera map"),
            CameraView("flaky", "connecting", "timeout", 4),
            CameraView("resumed", "failed", "disk full of held footage")]  # paused a moment ago
    found = alerts.alerts(cams, {"dock"}, "disk full of held footage", "clock jumped 40 days")
    assert [(a.kind, a.camera) for a in found] == [
        ("storage_paused", None), ("clock", None), ("camera_failed", "gone"),
        ("camera_failed", "door"), ("camera_failed", "flaky")]
    assert found[0].message == "recording paused on 1 camera: disk full of held footage"
    assert found[2].message == "camera gone is not recording (backoff): refused"
    assert alerts.short(found) == ("recording paused on 1 camera: disk full of held footage; "
                                   "clock jumped 40 days; failed: gone,door,flaky")
    assert alerts.counts(found) == {"storage_paused": 1, "clock": 1, "camera_failed": 3}
    assert alerts.alerts([CameraView("a", "recording")], set(), None) == []
    assert alerts.short([]) == "none"
    assert alerts.counts([]) == {"storage_paused": 0, "camera_failed": 0}


def test_days_left_counts_only_the_space_above_the_retention_floor() -> None:
    # 500 GB disk, 10% floor (50 GB), 150 GB free, 10 GB a day: (150 - 50) / 10 = 10 days.
    assert days_left(150 * 10**9, 500 * 10**9, 10, 10 * 10**9) == 10.0
    assert days_left(40 * 10**9, 500 * 10**9, 10, 10 * 10**9) == 0.0  # below the floor
    assert days_left(150 * 10**9, 500 * 10**9, 10, None) is None
    assert days_left(150 * 10**9, 500 * 10**9, 10, 0) is None


def test_a_camera_whose_own_clock_is_off_by_over_a_minute_is_an_alert() -> None:
    """The camera's RTCP clock against the box's: within 60 s no alert; beyond, one line that
    says which way and by how much, and the fix."""
    cams = [CameraView("lobby", "recording", clock_offset_s=59.0),
            CameraView("door", "recording", clock_offset_s=-3 * 3600.0),
            CameraView("dock", "recording", clock_offset_s=75.4),
            CameraView("new", "recording")]
    found = alerts.alerts(cams, set(), None)
    assert [(a.kind, a.camera) for a in found] == [("camera_clock", "door"),
                                                   ("camera_clock", "dock")]
    assert found[0].message == ("camera door's own clock is 3 h behind the recorder's; set its "
                                "NTP server (the time it shows in its picture is wrong)")
    assert found[1].message.startswith("camera dock's own clock is 75 s ahead of the recorder's")
