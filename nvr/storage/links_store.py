"""The statements on `view_links` (the links themselves are nvr.web.links'). Only the token's
sha256 is stored; rows come back as tuples in `COLUMNS` order."""

from __future__ import annotations

from typing import Any

from nvr.storage.db import Db

COLUMNS = ("id", "kind", "token_hash", "actor", "uid", "role", "cameras", "start_us", "end_us",
           "purpose", "created_us", "expires_us", "ended_us", "ended_why")
_COLS = ", ".join(COLUMNS)


async def expiring_after(db: Db, after_us: int) -> list[tuple[Any, ...]]:
    """Every link that expires after `after_us`."""
    async with db.execute(f"SELECT {_COLS} FROM view_links WHERE expires_us > ?",
                          (after_us,)) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def insert(db: Db, row: tuple[Any, ...]) -> None:
    """One link, its values in `COLUMNS` order."""
    await db.execute(
        f"INSERT INTO view_links ({_COLS}) VALUES ({', '.join('?' * len(COLUMNS))})", row)


async def end(db: Db, link_id: str, *, now_us: int, why: str) -> None:
    await db.execute("UPDATE view_links SET ended_us = ?, ended_why = ? WHERE id = ?",
                     (now_us, why, link_id))
