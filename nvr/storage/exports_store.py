"""The statements on `exports` (the signed manifest of each release) and `stills` (the
recorder's own copy of each still, deleted when its suspension ends). Callers put a write in a
unit of work with its audit row (docs/design.md, "The index and its units of work")."""

from __future__ import annotations

from nvr.storage.db import Db


async def insert_export(
    db: Db, *, export_id: str, at_us: int, camera: str, start_us: int, end_us: int,
    sha256: str, manifest: str, requester: str, request_id: str | None, incident: str | None,
) -> None:
    await db.execute(
        "INSERT INTO exports (id, at_us, camera, start_us, end_us, sha256, manifest, "
        "requester, request_id, incident) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (export_id, at_us, camera, start_us, end_us, sha256, manifest, requester,
         request_id, incident),
    )


async def insert_still(
    db: Db, *, still_id: str, camera: str, at_us: int, until_us: int, path: str, reason: str,
    created_by: str,
) -> None:
    """A still's row before its file exists (no sha256 yet)."""
    await db.execute(
        "INSERT INTO stills (id, camera, at_us, until_us, path, sha256, reason, created_by) "
        "VALUES (?, ?, ?, ?, ?, '', ?, ?)",
        (still_id, camera, at_us, until_us, path, reason, created_by),
    )


async def still_delivered(db: Db, still_id: str, frame_us: int, sha256: str) -> None:
    await db.execute("UPDATE stills SET at_us = ?, sha256 = ? WHERE id = ?",
                     (frame_us, sha256, still_id))


async def stills_due(db: Db, now_us: int) -> list[tuple[str, str, str]]:
    """(id, path, camera) of each still whose suspension has ended and whose copy remains."""
    async with db.execute(
        "SELECT id, path, camera FROM stills WHERE deleted_us IS NULL AND until_us <= ?",
        (now_us,),
    ) as cur:
        return [(str(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]


async def still_deleted(db: Db, still_id: str, now_us: int) -> None:
    await db.execute("UPDATE stills SET deleted_us = ? WHERE id = ?", (now_us, still_id))
