"""Issue 9: the index answers from indexes, not scans, and stays exact: per-camera totals kept
by triggers, overlap queries bounded by the longest segment, a v1 index migrated in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from nvr.storage import db as dbmod
from nvr.storage.index import Index, NewSegment, rebase_paths, segment_paths

MIN = 60_000_000
T0 = 1_772_355_600_000_000


def seg(cam: str, start: int, minutes: int, size: int = 10) -> NewSegment:
    return NewSegment(cam, start, start + minutes * MIN, f"/x/{cam}/{start}.mp4", size, 1, 1,
                      "h264", 1, 1, "x")


async def test_overlap_query_finds_a_long_segment_and_totals_follow_rows(tmp_path: Path) -> None:
    db = await dbmod.connect(tmp_path / "index.db")
    index = Index(db)
    try:
        for i in range(10):
            await index.add_segment(seg("a", T0 + i * MIN, 1))
        long_id = await index.add_segment(seg("a", T0 + 20 * MIN, 30, size=1000))  # recovered
        await index.add_segment(seg("b", T0, 1, size=5))
        inside = await index.segments("a", T0 + 40 * MIN, T0 + 41 * MIN)
        assert [s.id for s in inside] == [long_id]
        assert len(await index.segments("a", T0 + 5 * MIN + 1, T0 + 7 * MIN)) == 2
        assert await index.segments("zzz", T0, T0 + MIN) == []
        assert await index.total_bytes() == 10 * 10 + 1000 + 5
        assert await index.segment_count() == 12
        await index.remove([long_id])
        assert await index.total_bytes() == 105 and await index.segment_count() == 11
        assert await index.cameras_with_segments() == ["a", "b"]
    finally:
        await db.close()


async def test_a_v1_index_with_rows_migrates_to_totals(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    raw = sqlite3.connect(path, isolation_level=None)
    for stmt in dbmod._statements(dbmod.SCHEMA_V1):
        raw.execute(stmt)
    raw.execute("PRAGMA user_version = 1")
    raw.executemany(
        "INSERT INTO segments (camera, start_us, end_us, path, bytes, frames, keyframes, codec, "
        "width, height, sha256) VALUES (?, ?, ?, ?, ?, 1, 1, 'h264', 1, 1, 'x')",
        [("a", T0, T0 + 2 * MIN, "/p1", 7), ("a", T0 + 2 * MIN, T0 + 3 * MIN, "/p2", 8)])
    raw.close()
    db = await dbmod.connect(path)
    try:
        assert await dbmod.schema_version(db) == dbmod.SCHEMA_VERSION
        index = Index(db)
        assert await index.total_bytes() == 15
        assert len(await index.segments("a", T0 + MIN, T0 + MIN + 1)) == 1
    finally:
        await db.close()


async def test_restore_rebases_only_the_paths_under_the_old_root(tmp_path: Path) -> None:
    """`%` and `_` in the old root are literal: a sibling folder that LIKE would match stays."""
    path = tmp_path / "index.db"
    db = await dbmod.connect(path)
    index = Index(db)
    try:
        for root, start in (("/srv/a_b%", T0), ("/srv/aXbY", T0 + MIN), ("/srv/a_b%x", T0 + 2 * MIN)):
            await index.add_segment(NewSegment("a", start, start + MIN, f"{root}/seg/{start}.mp4",
                                               10, 1, 1, "h264", 1, 1, "x"))
    finally:
        await db.close()
    rebase_paths(path, "/srv/a_b%", "/new")
    assert segment_paths(path) == [f"/new/seg/{T0}.mp4", f"/srv/aXbY/seg/{T0 + MIN}.mp4",
                                   f"/srv/a_b%x/seg/{T0 + 2 * MIN}.mp4"]
