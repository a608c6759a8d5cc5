"""The rows behind what left the recorder: `exports` (the signed manifest of each release) and
`stills` (the recorder's own copy of each still, deleted when its suspension ends), written
through nvr.storage.exports_store; callers put a write in a unit of work with its audit row
(docs/design.md, "The index and its units of work")."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from nvr import log
from nvr.storage import exports_store
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
        await exports_store.insert_export(
            self.db, export_id=export_id, at_us=at_us, camera=camera, start_us=start_us,
            end_us=end_us, sha256=sha256, manifest=manifest, requester=requester,
            request_id=request_id, incident=incident)


class Stills:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def create_pending(
        self, *, still_id: str, camera: str, at_us: int, until_us: int, path: str,
        reason: str, created_by: str,
    ) -> None:
        """The row (with its expiry) exists before the file does, so the expirer finds every
        copy, even one left by a crash between the two."""
        await exports_store.insert_still(
            self.db, still_id=still_id, camera=camera, at_us=at_us, until_us=until_us,
            path=path, reason=reason, created_by=created_by)

    async def delivered(self, still_id: str, frame_us: int, sha256: str) -> None:
        await exports_store.still_delivered(self.db, still_id, frame_us, sha256)

    async def due(self, now_us: int) -> list[tuple[str, str, str]]:
        """(id, path, camera) of each still whose suspension has ended and whose copy remains."""
        return await exports_store.stills_due(self.db, now_us)

    async def mark_deleted(self, still_id: str, now_us: int) -> None:
        await exports_store.still_deleted(self.db, still_id, now_us)


class AuditAppend(Protocol):
    """What the expirer needs of the audit log (nvr.policy.audit.AuditLog, passed in: export
    and policy are siblings and do not import each other)."""

    async def append(self, *, at_us: int, actor: str, uid: int | None, role: str,
                     action: str, allowed: bool, detail: dict[str, Any]) -> Any: ...


def still_expirer(
    db: Db, audit: AuditAppend, clock: Callable[[], int]
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
