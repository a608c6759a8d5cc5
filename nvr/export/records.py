"""The rows behind what left the recorder: `exports` (the signed manifest of each release) and
`stills` (the recorder's own copy of each still, deleted when its suspension ends). The only
module that writes these tables; callers put its writes in a unit of work with their audit row
(docs/design.md, "The index and its units of work")."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from nvr import log
from nvr.policy.audit import AuditLog
from nvr.storage.db import Db

logger = log.get("nvr.export")


class Exports:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def record(
        self, *, export_id: str, at_us: int, camera: str, start_us: int, end_us: int,
        sha256: str, manifest: str, requester: str, request_id: str | None,
        incident: str | None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO exports (id, at_us, camera, start_us, end_us, sha256, manifest, "
            "requester, request_id, incident) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (export_id, at_us, camera, start_us, end_us, sha256, manifest, requester,
             request_id, incident),
        )


class Stills:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def create_pending(
        self, *, still_id: str, camera: str, at_us: int, until_us: int, path: str,
        reason: str, created_by: str,
    ) -> None:
        """The row (with its expiry) exists before the file does, so the expirer finds every
        copy, even one left by a crash between the two."""
        await self.db.execute(
            "INSERT INTO stills (id, camera, at_us, until_us, path, sha256, reason, created_by) "
            "VALUES (?, ?, ?, ?, ?, '', ?, ?)",
            (still_id, camera, at_us, until_us, path, reason, created_by),
        )

    async def delivered(self, still_id: str, frame_us: int, sha256: str) -> None:
        await self.db.execute("UPDATE stills SET at_us = ?, sha256 = ? WHERE id = ?",
                              (frame_us, sha256, still_id))

    async def due(self, now_us: int) -> list[tuple[str, str, str]]:
        """(id, path, camera) of each still whose suspension has ended and whose copy remains."""
        async with self.db.execute(
            "SELECT id, path, camera FROM stills WHERE deleted_us IS NULL AND until_us <= ?",
            (now_us,),
        ) as cur:
            return [(str(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]

    async def mark_deleted(self, still_id: str, now_us: int) -> None:
        await self.db.execute("UPDATE stills SET deleted_us = ? WHERE id = ?", (now_us, still_id))


def still_expirer(
    db: Db, audit: AuditLog, clock: Callable[[], int]
) -> Callable[[], Awaitable[None]]:
    """A periodic job: delete the recorder's copy of each still whose suspension has ended,
    and audit it (the deletion mark and its audit row in one unit of work)."""
    stills = Stills(db)

    async def expire_stills() -> None:
        now = clock()
        for still_id, path, camera in await stills.due(now):
            await asyncio.to_thread(Path(path).unlink, missing_ok=True)
            async with db.unit():
                await stills.mark_deleted(still_id, now)
                await audit.append(
                    at_us=now, actor="nvr", uid=os.getuid(), role="system",
                    action="still_expired", allowed=True,
                    detail={"still": still_id, "camera": camera, "path": path},
                )
            logger.info("still_expired", still=still_id, camera=camera)

    return expire_stills
