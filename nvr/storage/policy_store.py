"""The statements on `grants`, `requests` and `breaches` (the records are nvr.policy.store's).

Rows come back as sqlite3.Row, by column name. Conditional writes return how many rows they
changed, so the caller can tell a lost race from a success.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from nvr.storage.db import Db


# ---- grants ---------------------------------------------------------------------------------
async def insert_grant(db: Db, *, id: str, user: str, cameras: str, start_us: int, end_us: int,
                       expires_us: int, reason: str, created_us: int, created_by: str) -> None:
    await db.execute(
        "INSERT INTO grants (id, user, cameras, start_us, end_us, expires_us, reason, "
        "created_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, user, cameras, start_us, end_us, expires_us, reason, created_us, created_by),
    )


async def grant(db: Db, grant_id: str) -> sqlite3.Row | None:
    async with db.execute("SELECT * FROM grants WHERE id = ?", (grant_id,)) as cur:
        return await cur.fetchone()


async def grants(db: Db, user: str | None = None) -> list[sqlite3.Row]:
    """Every grant (of `user`), oldest first."""
    params: tuple[str, ...] = ()
    if user is None:
        sql = "SELECT * FROM grants ORDER BY created_us, id"
    else:
        sql, params = "SELECT * FROM grants WHERE user = ? ORDER BY created_us, id", (user,)
    async with db.execute(sql, params) as cur:
        return await cur.fetchall()


async def revoke_grant(db: Db, grant_id: str, *, now_us: int, by: str) -> int:
    """Rows changed: 0 when there is no such grant or it was revoked already."""
    cur = await db.execute(
        "UPDATE grants SET revoked_us = ?, revoked_by = ? WHERE id = ? AND revoked_us IS NULL",
        (now_us, by, grant_id),
    )
    return cur.rowcount


# ---- requests -------------------------------------------------------------------------------
async def insert_request(
    db: Db, *, id: str, kind: str, requester: str, details: str, status: str, created_us: int,
    created_by: str, decided_us: int | None, decided_by: str | None,
    decision_reason: str | None, cameras: str | None, start_us: int | None,
    end_us: int | None,
) -> None:
    await db.execute(
        "INSERT INTO requests (id, kind, requester, details, status, created_us, created_by,"
        " decided_us, decided_by, decision_reason, cameras, start_us, end_us)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, kind, requester, details, status, created_us, created_by, decided_us, decided_by,
         decision_reason, cameras, start_us, end_us),
    )


async def request(db: Db, request_id: str) -> sqlite3.Row | None:
    async with db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)) as cur:
        return await cur.fetchone()


async def requests(db: Db, status: str | None = None) -> list[sqlite3.Row]:
    sql, params = "SELECT * FROM requests", list[Any]()
    if status is not None:
        sql, params = sql + " WHERE status = ?", [status]
    async with db.execute(sql + " ORDER BY created_us, id", params) as cur:
        return await cur.fetchall()


async def decide_request(db: Db, request_id: str, *, status: str, now_us: int, by: str,
                         reason: str | None, expires_us: int | None) -> int:
    """Decide a pending request. Rows changed: 0 if it was not pending (two deciders racing
    cannot both win)."""
    cur = await db.execute(
        "UPDATE requests SET status = ?, decided_us = ?, decided_by = ?, decision_reason = ?, "
        "expires_us = ? WHERE id = ? AND status = 'pending'",
        (status, now_us, by, reason, expires_us, request_id))
    return cur.rowcount


async def add_release(db: Db, request_id: str, release_json: str) -> int:
    """Append one release (JSON) to an approved request. Rows changed: 0 if not approved."""
    cur = await db.execute(
        "UPDATE requests SET releases = json_insert(releases, '$[#]', json(?)) "
        "WHERE id = ? AND status = 'approved'", (release_json, request_id))
    return cur.rowcount


# ---- breaches -------------------------------------------------------------------------------
async def insert_breach(db: Db, *, id: str, at_us: int, reporter: str, details: str) -> None:
    await db.execute("INSERT INTO breaches (id, at_us, reporter, details) VALUES (?, ?, ?, ?)",
                     (id, at_us, reporter, details))


async def breaches(db: Db) -> list[sqlite3.Row]:
    async with db.execute("SELECT * FROM breaches ORDER BY at_us, id") as cur:
        return await cur.fetchall()
