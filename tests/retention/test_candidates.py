"""Issue 9: retention plans from SQL candidates, page by page, never from every row. The plan
over the candidates must be the plan over every row (real SQLite, random footage and holds)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nvr.retention.planner import DAY_US, DiskState, SegmentInfo, plan
from nvr.storage.db import connect
from nvr.storage.index import Index, NewSegment
from tests.retention.env import T0, camera_map

CAMS = ("a", "b", "c")
MIN = 60_000_000

segments = st.lists(
    st.tuples(st.sampled_from(CAMS), st.integers(0, 40 * 24 * 6),  # 10-minute slots, 40 days
              st.integers(1, 10), st.integers(1, 5000)),
    max_size=60,
)
holds = st.lists(
    st.tuples(st.sets(st.sampled_from(CAMS), min_size=1), st.integers(0, 40 * 24 * 6),
              st.integers(1, 2000), st.booleans()),
    max_size=4,
)


@settings(max_examples=40)
@given(segments, holds, st.integers(0, 200_000), st.integers(1, 7), st.integers(1, 3))
def test_plan_from_candidates_equals_plan_from_every_row(
    tmp_path_factory: object, segs: list[tuple[str, int, int, int]],
    hs: list[tuple[set[str], int, int, bool]], free: int, page: int, days_b: int,
) -> None:
    root = tmp_path_factory.mktemp("c")  # type: ignore[attr-defined]
    asyncio.run(_check(Path(root), segs, hs, free, page, days_b))


async def _check(root: Path, segs: list[tuple[str, int, int, int]],
                 hs: list[tuple[set[str], int, int, bool]], free: int, page: int,
                 days_b: int) -> None:
    from nvr.policy.audit import AuditLog
    from nvr.retention.executor import RetentionExecutor
    from nvr.retention.holds import Holds

    db = await connect(root / "index.db")
    index, hold_store = Index(db), Holds(db)
    now = T0 + 40 * DAY_US
    seen: set[tuple[str, int]] = set()
    for i, (cam, slot, minutes, size) in enumerate(segs):
        if (cam, slot) in seen:
            continue
        seen.add((cam, slot))
        start = T0 + slot * 10 * MIN
        await index.add_segment(NewSegment(cam, start, start + minutes * MIN,
                                           str(root / "segments" / cam / f"{i}.mp4"), size,
                                           1, 1, "h264", 1, 1, "x"))
    for cams, slot, minutes, future in hs:
        start = T0 + slot * 10 * MIN
        await hold_store.create(cams, start, start + minutes * MIN, "r", None,
                                now + DAY_US if future else None, "director", T0)
    cfg = camera_map(root, CAMS, min_free=10)
    cfg = cfg.model_copy(update={"cameras": [
        c.model_copy(update={"retention_days": days_b}) if c.id == "b" else c
        for c in cfg.cameras]})
    disk = DiskState(total_bytes=500_000, free_bytes=free)
    ex = RetentionExecutor(db, index, hold_store, AuditLog(db), cfg, disk=lambda _: disk)
    ex.page = page
    try:
        got = await ex.plan(now)
        every = [SegmentInfo(s.id, s.camera, s.start_us, s.end_us, s.path, s.bytes)
                 for s in await index.all_segments()]
        days = {c.id: cfg.retention_days_for(c.id) for c in cfg.cameras}
        want = plan(every, await hold_store.active(now), days, cfg.retention.days, disk, now,
                    min_free_percent=10)
        assert [d.segment.id for d in got.delete] == [d.segment.id for d in want.delete]
        assert [k.segment.id for k in got.keep] == [k.segment.id for k in want.keep]
        assert got.paused_cameras == want.paused_cameras
        assert got.free_after_bytes == want.free_after_bytes
    finally:
        await db.close()
