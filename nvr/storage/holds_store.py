"""The statements on `holds` (the records and their checks are nvr.retention.holds')."""

from __future__ import annotations

import sqlite3

from nvr.storage.db import Db


async def insert(db: Db, *, id: str, cameras: str, start_us: int, end_us: int, reason: str,
                 incident: str | None, until_us: int | None, created_us: int,
                 created_by: str) -> None:
    await db.execute(
        "INSERT INTO holds (id, cameras, start_us, end_us, reason, incident, until_us, "
        "created_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, cameras, start_us, end_us, reason, incident, until_us, created_us, created_by),
    )


async def get(db: Db, hold_id: str) -> sqlite3.Row | None:
    async with db.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)) as cur:
        return await cur.fetchone()


async def all_holds(db: Db) -> list[sqlite3.Row]:
    """Every hold, released and expired too, oldest first."""
    async with db.execute("SELECT * FROM holds ORDER BY created_us, id") as cur:
        return await cur.fetchall()


async def release(db: Db, hold_id: str, *, by: str, reason: str, now_us: int) -> int:
    """Rows changed: 0 if there is no such hold or it was released already (a second release,
    even a racing one, changes nothing)."""
    cur = await db.execute(
        "UPDATE holds SET released_us = ?, released_by = ?, release_reason = ? "
        "WHERE id = ? AND released_us IS NULL",
        (now_us, by, reason, hold_id),
    )
    return cur.rowcount
