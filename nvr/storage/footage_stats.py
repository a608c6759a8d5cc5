"""Figures about the footage kept, for `nvr status`: each a few index seeks, never a scan.

A month of 64 cameras is 2.8 million rows and status must answer at once, so nothing here
reads more rows than it reports on: totals come from `segment_totals` (kept by triggers,
schema v2); a camera's oldest footage is one seek on (camera, start_us); today's bytes read
only the last day's rows; held footage only the rows inside the holds' windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nvr.storage.db import Db

DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class Held:
    """Footage a camera keeps because of holds: whole segments (retention keeps whole ones)."""

    bytes: int = 0
    seconds: float = 0.0
    segments: int = 0


async def totals(db: Db) -> dict[str, tuple[int, int]]:
    """camera → (segments, bytes) indexed, from the trigger-kept totals."""
    async with db.execute("SELECT camera, segments, bytes FROM segment_totals") as cur:
        return {str(r[0]): (int(r[1]), int(r[2])) for r in await cur.fetchall()}


async def oldest_start(db: Db, camera: str) -> int | None:
    async with db.execute("SELECT MIN(start_us) FROM segments WHERE camera = ?",
                          (camera,)) as cur:  # fmt: skip
        row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])


async def daily_bytes(db: Db, camera: str, now_us: int) -> float | None:
    """The camera's bytes a day at today's rate: bytes of the segments that started in the
    last 24 hours ÷ the time they span (since the first of them, if it has recorded for less
    than a day). None when nothing was recorded in the last day."""
    since = now_us - DAY_US
    async with db.execute(
        "SELECT COALESCE(SUM(bytes), 0), MIN(start_us) FROM segments "
        "WHERE camera = ? AND start_us >= ? AND start_us < ?", (camera, since, now_us),
    ) as cur:
        row = await cur.fetchone()
    if row is None or row[1] is None:
        return None
    span_us = max(now_us - int(row[1]), 1_000_000)  # at least a second: no absurd first rate
    return int(row[0]) * DAY_US / span_us


def merge(windows: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching [start, end) windows as one; sorted."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(w for w in windows if w[1] > w[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


async def held(db: Db, camera: str, windows: Sequence[tuple[int, int]]) -> Held:
    """Segments of `camera` that overlap any of the holds' windows, each counted once.

    Per merged window: the rows that start inside it (a range on (camera, start_us)), plus the
    one row that starts before it and runs into it (a camera's segments follow one another, so
    only its last row before the window can), unless an earlier window already counted it."""
    total, micros, count = 0, 0, 0
    prev_end: int | None = None
    for start, end in merge(windows):
        async with db.execute(
            "SELECT start_us, end_us, bytes FROM segments WHERE camera = ? AND start_us < ? "
            "ORDER BY start_us DESC LIMIT 1", (camera, start),
        ) as cur:
            before = await cur.fetchone()
        if before is not None and int(before[1]) > start and (
                prev_end is None or int(before[0]) >= prev_end):
            total, micros, count = (total + int(before[2]),
                                    micros + int(before[1]) - int(before[0]), count + 1)
        async with db.execute(
            "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(end_us - start_us), 0), COUNT(*) "
            "FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ?",
            (camera, start, end),
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            total, micros, count = total + int(row[0]), micros + int(row[1]), count + int(row[2])
        prev_end = end
    return Held(total, micros / 1e6, count)
