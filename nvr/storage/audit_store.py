"""The statements on the `audit` table (the hash chain itself is nvr.policy.audit's).

Rows come back as tuples in `COLUMNS` order. The daemon's reads and the append run through
`Db`; `page` and `stream` open a read-only connection of their own (`db.open_file`), so a long
walk in a worker thread never holds the daemon's connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nvr.storage.db import Db, open_file

COLUMNS = ("seq", "at_us", "actor", "uid", "role", "action", "allowed", "detail", "prev_hash",
           "hash")
_COLS = ", ".join(COLUMNS)
_HEAD = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"

Raw = tuple[Any, ...]


def _head(row: Any) -> tuple[int, str] | None:
    return None if row is None else (int(row[0]), str(row[1]))


async def head(db: Db) -> tuple[int, str] | None:
    """(seq, hash) of the last row, None for an empty log."""
    async with db.execute(_HEAD) as cur:
        return _head(await cur.fetchone())


async def insert(db: Db, row: Raw) -> None:
    """One row, its values in `COLUMNS` order. The caller holds a unit of work from reading
    the head to this insert."""
    await db.execute(f"INSERT INTO audit ({_COLS}) VALUES ({', '.join('?' * len(COLUMNS))})",
                     row)


async def rows(db: Db, since_us: int | None = None) -> list[Raw]:
    sql, params = f"SELECT {_COLS} FROM audit", tuple[int, ...]()
    if since_us is not None:
        sql, params = sql + " WHERE at_us >= ?", (since_us,)
    async with db.execute(sql + " ORDER BY seq", params) as cur:
        return [tuple(r) for r in await cur.fetchall()]


def page(db_path: Path, *, after_seq: int, limit: int, since_us: int | None = None) -> list[Raw]:
    """Up to `limit` rows after `after_seq` (and at or after `since_us`), in seq order, from a
    read-only connection of its own (blocking: run it in a worker thread)."""
    sql, params = f"SELECT {_COLS} FROM audit WHERE seq > ?", tuple[int, ...]((after_seq,))
    if since_us is not None:
        sql, params = sql + " AND at_us >= ?", (after_seq, since_us)
    con = open_file(db_path)
    try:
        return [tuple(r) for r in con.execute(sql + " ORDER BY seq LIMIT ?", (*params, limit))]
    finally:
        con.close()


def stream(db_path: Path, batch: int = 2000) -> Iterator[Raw]:
    """Every row in seq order from a read-only connection of its own, `batch` rows at a time:
    memory stays constant whatever the table's size (blocking: run it in a worker thread)."""
    con = open_file(db_path, check_same_thread=False)
    try:
        cur = con.execute(f"SELECT {_COLS} FROM audit ORDER BY seq")
        while chunk := cur.fetchmany(batch):
            yield from chunk
    finally:
        con.close()


def head_of(con: sqlite3.Connection) -> tuple[int, str] | None:
    """`head` on a plain sqlite3 connection (a backup's copy of the index)."""
    return _head(con.execute(_HEAD).fetchone())
