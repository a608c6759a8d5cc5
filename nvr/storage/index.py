"""The statements on `cameras`, `segments`, `gaps` and `segment_totals`: the only module that
writes them.

Lifecycle of a segment row (docs/design.md, "Lifecycle of a segment"):
  create  — the writer fsyncs the file and its folder, *then* add_segment() inserts the row;
  delete  — mark_deleting() → unlink → fsync folder → remove(); a crash between the steps
            leaves a 'deleting' row that start-up recovery finishes.
So a 'complete' row always names a file that is on disk and durable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import aiosqlite

from nvr.storage.db import Db, open_file

_SEG_COLUMNS = (
    "camera, start_us, end_us, path, bytes, frames, keyframes, codec, width, height, sha256, "
    "recovered"
)


@dataclass(frozen=True, slots=True)
class NewSegment:
    camera: str
    start_us: int
    end_us: int
    path: str  # absolute
    bytes: int
    frames: int
    keyframes: int
    codec: str  # "h264" or "hevc"
    width: int
    height: int
    sha256: str
    recovered: bool = False  # indexed by start-up recovery rather than by the writer


@dataclass(frozen=True, slots=True)
class Segment(NewSegment):
    id: int = 0
    state: str = "complete"  # or "deleting"


@dataclass(frozen=True, slots=True)
class Gap:
    camera: str
    start_us: int
    end_us: int
    reason: str
    detail: str = ""


class SegmentRow(NamedTuple):
    """The columns retention plans with: a lighter row than Segment for paged scans."""

    id: int
    camera: str
    start_us: int
    end_us: int
    path: str
    bytes: int


_ROW = "id, camera, start_us, end_us, path, bytes"


def _row(r: aiosqlite.Row) -> SegmentRow:
    return SegmentRow(int(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]), int(r[5]))


def _segment(row: aiosqlite.Row) -> Segment:
    return Segment(
        camera=row["camera"], start_us=row["start_us"], end_us=row["end_us"], path=row["path"],
        bytes=row["bytes"], frames=row["frames"], keyframes=row["keyframes"],
        codec=row["codec"], width=row["width"], height=row["height"], sha256=row["sha256"],
        recovered=bool(row["recovered"]), id=row["id"], state=row["state"],
    )


def _overlapping(camera: str, start_us: int | None, end_us: int | None) -> tuple[str, list[object]]:
    """WHERE clause for rows of `camera` overlapping [start_us, end_us); None is open-ended."""
    sql = "camera = ?"
    args: list[object] = [camera]
    if start_us is not None:
        sql += " AND end_us > ?"
        args.append(start_us)
    if end_us is not None:
        sql += " AND start_us < ?"
        args.append(end_us)
    return sql, args


class Index:
    def __init__(self, db: Db) -> None:
        self.db = db

    def unit(self) -> AbstractAsyncContextManager[Db]:
        """A unit of work (nvr.storage.db): every statement this task runs inside it, through
        any store on this index's connection, commits or rolls back as one."""
        return self.db.unit()

    async def ensure_camera(self, camera_id: str, name: str, now_us: int) -> None:
        await self.db.execute(
            "INSERT INTO cameras (id, name, first_seen_us) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name",
            (camera_id, name, now_us),
        )

    async def add_segment(self, seg: NewSegment) -> int:
        """Insert a row for a segment whose file and folder are already fsynced."""
        values = asdict(seg)
        values["recovered"] = int(seg.recovered)
        cur = await self.db.execute(
            f"INSERT INTO segments ({_SEG_COLUMNS}) VALUES "
            "(:camera, :start_us, :end_us, :path, :bytes, :frames, :keyframes, :codec, :width, "
            ":height, :sha256, :recovered)",
            values,
        )
        return int(cur.lastrowid or 0)

    async def add_gap(
        self, camera: str, start_us: int, end_us: int, reason: str, detail: str = ""
    ) -> None:
        if end_us <= start_us:
            return
        await self.db.execute(
            "INSERT INTO gaps (camera, start_us, end_us, reason, detail) VALUES (?, ?, ?, ?, ?)",
            (camera, start_us, end_us, reason, detail),
        )

    async def segments(
        self,
        camera: str,
        start_us: int | None = None,
        end_us: int | None = None,
        *,
        include_deleting: bool = False,
    ) -> list[Segment]:
        """Segments of `camera` overlapping [start_us, end_us), in time order."""
        where, args = _overlapping(camera, start_us, end_us)
        if start_us is not None:
            # No segment is longer than max_len_us: bound the start from below as well, so a
            # day of one camera is an index range, not every row before the day's end.
            async with self.db.execute(
                "SELECT max_len_us FROM segment_totals WHERE camera = ?", (camera,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return []
            where += " AND start_us > ?"
            args.append(start_us - int(row[0]))
        sql = "SELECT * FROM segments WHERE " + where
        if not include_deleting:
            sql += " AND state = 'complete'"
        sql += " ORDER BY start_us"
        async with self.db.execute(sql, args) as cur:
            return [_segment(r) for r in await cur.fetchall()]

    async def all_segments(self, *, include_deleting: bool = False) -> list[Segment]:
        sql = "SELECT * FROM segments"
        if not include_deleting:
            sql += " WHERE state = 'complete'"
        async with self.db.execute(sql + " ORDER BY camera, start_us") as cur:
            return [_segment(r) for r in await cur.fetchall()]

    async def segment_by_path(self, path: str) -> Segment | None:
        async with self.db.execute("SELECT * FROM segments WHERE path = ?", (path,)) as cur:
            row = await cur.fetchone()
        return None if row is None else _segment(row)

    async def last_segment(self, camera: str) -> Segment | None:
        async with self.db.execute(
            "SELECT * FROM segments WHERE camera = ? ORDER BY end_us DESC LIMIT 1", (camera,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else _segment(row)

    async def unexplained_hole_before(self, camera: str, start_us: int) -> int | None:
        """Where the footage before `start_us` ends, if nothing (no segment, no gap) accounts
        for the time from there to `start_us`; None when the two abut or a gap starts there."""
        async with self.db.execute(
            "SELECT end_us FROM segments WHERE camera = ? AND start_us < ? "
            "ORDER BY start_us DESC LIMIT 1", (camera, start_us),
        ) as cur:
            row = await cur.fetchone()
        if row is None or start_us - int(row[0]) <= 1000:  # abutting (1 ms: timestamp rounding)
            return None
        end = int(row[0])
        async with self.db.execute(
            "SELECT 1 FROM gaps WHERE camera = ? AND start_us <= ? AND end_us > ? LIMIT 1",
            (camera, end + 1000, end),
        ) as cur:
            return None if await cur.fetchone() is not None else end

    async def newest_end(self) -> int | None:
        """The end of the newest footage of any camera: one seek per camera on (camera, end_us),
        never a scan (retention's clock check asks before every pass)."""
        async with self.db.execute(
            "SELECT MAX((SELECT MAX(end_us) FROM segments s WHERE s.camera = c.id)) FROM cameras c"
        ) as cur:
            row = await cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def gaps(
        self, camera: str, start_us: int | None = None, end_us: int | None = None
    ) -> list[Gap]:
        where, args = _overlapping(camera, start_us, end_us)
        sql = "SELECT camera, start_us, end_us, reason, detail FROM gaps WHERE " + where
        async with self.db.execute(sql + " ORDER BY start_us", args) as cur:
            return [Gap(*tuple(r)) for r in await cur.fetchall()]

    async def mark_deleting(self, ids: Sequence[int]) -> None:
        await self.db.executemany(
            "UPDATE segments SET state = 'deleting' WHERE id = ?", [(i,) for i in ids]
        )

    async def deleting(self) -> list[Segment]:
        async with self.db.execute(
            "SELECT * FROM segments WHERE state = 'deleting' ORDER BY start_us"
        ) as cur:
            return [_segment(r) for r in await cur.fetchall()]

    async def remove(self, ids: Sequence[int]) -> None:
        await self.db.executemany("DELETE FROM segments WHERE id = ?", [(i,) for i in ids])

    # -- paged queries for retention (a month of 64 cameras is 2.8 million rows) --------------

    async def cameras_with_segments(self) -> list[str]:
        """Every camera that has a row, one index seek per camera (not a scan of every row)."""
        out: list[str] = []
        while True:
            sql = "SELECT MIN(camera) FROM segments" + (" WHERE camera > ?" if out else "")
            async with self.db.execute(sql, (out[-1],) if out else ()) as cur:
                row = await cur.fetchone()
            if row is None or row[0] is None:
                return out
            out.append(str(row[0]))

    async def ended_by_pages(
        self, camera: str, cutoff_us: int, page: int = 2000
    ) -> AsyncIterator[list[SegmentRow]]:
        """'complete' rows of `camera` with end_us <= cutoff_us, by end time, a page at a time
        (each page one short statement: other tasks get the connection in between)."""
        after: tuple[int, int] = (-(2**62), 0)
        while True:
            async with self.db.execute(
                f"SELECT {_ROW} FROM segments WHERE camera = ? AND end_us <= ? "
                "AND state = 'complete' AND end_us >= ? AND (end_us > ? OR id > ?) "
                "ORDER BY end_us, id LIMIT ?",
                (camera, cutoff_us, after[0], after[0], after[1], page),
            ) as cur:
                rows = [_row(r) for r in await cur.fetchall()]
            if not rows:
                return
            yield rows
            if len(rows) < page:
                return
            after = (rows[-1].end_us, rows[-1].id)

    async def oldest_pages(self, ended_by_us: int, page: int = 2000
                           ) -> AsyncIterator[list[SegmentRow]]:
        """'complete' rows that ended by `ended_by_us`, oldest start first, across cameras, a
        page at a time. A page never splits rows that share a start time."""
        after: tuple[int, int] = (-(2**62), 0)
        while True:
            async with self.db.execute(
                f"SELECT {_ROW} FROM segments WHERE start_us >= ? AND (start_us > ? OR id > ?) "
                "AND state = 'complete' AND end_us <= ? ORDER BY start_us, id LIMIT ?",
                (after[0], after[0], after[1], ended_by_us, page),
            ) as cur:
                rows = [_row(r) for r in await cur.fetchall()]
            if not rows:
                return
            if len(rows) == page:  # finish the last start time, so ties are never split
                async with self.db.execute(
                    f"SELECT {_ROW} FROM segments WHERE start_us = ? AND id > ? "
                    "AND state = 'complete' AND end_us <= ? ORDER BY id",
                    (rows[-1].start_us, rows[-1].id, ended_by_us),
                ) as cur:
                    rows += [_row(r) for r in await cur.fetchall()]
            yield rows
            if len(rows) < page:
                return
            after = (rows[-1].start_us, rows[-1].id)

    async def pages_by_start(
        self, camera: str, before_us: int, page: int = 1000
    ) -> AsyncIterator[list[Segment]]:
        """Rows of `camera` starting before `before_us`, in start order, a page at a time."""
        after: tuple[int, int] = (-(2**62), 0)
        while True:
            async with self.db.execute(
                "SELECT * FROM segments WHERE camera = ? AND start_us < ? AND start_us >= ? "
                "AND (start_us > ? OR id > ?) ORDER BY start_us, id LIMIT ?",
                (camera, before_us, after[0], after[0], after[1], page),
            ) as cur:
                rows = [_segment(r) for r in await cur.fetchall()]
            if not rows:
                return
            yield rows
            if len(rows) < page:
                return
            after = (rows[-1].start_us, rows[-1].id)

    async def segment_count(self) -> int:
        async with self.db.execute("SELECT COALESCE(SUM(segments), 0) FROM segment_totals") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def oldest_start(self) -> int | None:
        """Start of the oldest footage kept: where the retention horizon stands now."""
        async with self.db.execute("SELECT MIN(start_us) FROM segments") as cur:
            row = await cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def total_bytes(self) -> int:
        # Kept per camera by triggers (schema v2): summing 2.8 million rows took ~0.5 s.
        async with self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segment_totals") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0


# ---- a copy of the index outside the daemon (nvr backup, nvr restore) ------------------------
def footage_summary(con: sqlite3.Connection) -> tuple[int, int]:
    """(segments, bytes) indexed, on a plain connection (a backup's copy of the index)."""
    row = con.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segments").fetchone()
    return int(row[0]), int(row[1])


def rebase_paths(db_path: Path, old: str, new: str) -> None:
    """Point every segment under folder `old` at the same place under `new`, in the index file
    at `db_path` (a staged copy no daemon uses)."""
    like = old.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
    con = open_file(db_path, readonly=False)
    try:
        with con:
            con.execute("UPDATE segments SET path = ? || substr(path, ?) "
                        "WHERE path LIKE ? ESCAPE '\\'", (new, len(old) + 1, like))
    finally:
        con.close()


def segment_paths(db_path: Path) -> list[str]:
    """Every segment's path in the index file at `db_path`."""
    con = open_file(db_path)
    try:
        return [str(r[0]) for r in con.execute("SELECT path FROM segments ORDER BY id")]
    finally:
        con.close()
