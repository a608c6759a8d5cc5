"""Incident and legal holds: cameras × time range that retention and disk pressure never touch.

"the Library reserves the right to save recordings for as long as it deems necessary"
(Security Camera Policy). Stored through nvr.storage.holds_store.
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nvr.errors import UsageError
from nvr.retention.planner import HoldInfo
from nvr.storage import holds_store
from nvr.storage.db import Db
from nvr.timeutil import to_iso


@dataclass(frozen=True, slots=True)
class HoldRecord:
    id: str
    cameras: tuple[str, ...]
    start_us: int
    end_us: int
    reason: str
    incident: str | None
    until_us: int | None
    created_us: int
    created_by: str
    released_us: int | None = None
    released_by: str | None = None
    release_reason: str | None = None

    def info(self) -> HoldInfo:
        return HoldInfo(
            id=self.id, cameras=frozenset(self.cameras), start_us=self.start_us,
            end_us=self.end_us, until_us=self.until_us, released_us=self.released_us,
            reason=self.reason, incident=self.incident,
        )

    def active(self, now_us: int) -> bool:
        return self.info().active(now_us)

    def to_dict(self, now_us: int | None = None) -> dict[str, Any]:
        def iso(us: int | None) -> str | None:
            return None if us is None else to_iso(us)

        out: dict[str, Any] = {
            "id": self.id, "cameras": list(self.cameras), "start": iso(self.start_us),
            "end": iso(self.end_us), "reason": self.reason, "incident": self.incident,
            "until": iso(self.until_us), "created": iso(self.created_us),
            "created_by": self.created_by, "released": iso(self.released_us),
            "released_by": self.released_by, "release_reason": self.release_reason,
        }
        if now_us is not None:
            out["active"] = self.active(now_us)
        return out


def _record(row: sqlite3.Row) -> HoldRecord:
    return HoldRecord(
        id=row["id"], cameras=tuple(json.loads(row["cameras"])), start_us=row["start_us"],
        end_us=row["end_us"], reason=row["reason"], incident=row["incident"],
        until_us=row["until_us"], created_us=row["created_us"], created_by=row["created_by"],
        released_us=row["released_us"], released_by=row["released_by"],
        release_reason=row["release_reason"],
    )


class Holds:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def create(
        self,
        cameras: Iterable[str],
        start_us: int,
        end_us: int,
        reason: str,
        incident: str | None,
        until_us: int | None,
        created_by: str,
        now_us: int,
    ) -> HoldRecord:
        cams = tuple(sorted(set(cameras)))
        if not cams:
            raise UsageError("a hold needs at least one camera (--camera ID)")
        if end_us <= start_us:
            raise UsageError(
                f"hold end {to_iso(end_us)} is not after its start {to_iso(start_us)}"
            )
        if not reason.strip():
            raise UsageError("a hold needs a reason (--reason TEXT)")
        if until_us is not None and until_us <= now_us:
            raise UsageError(f"hold expiry {to_iso(until_us)} is already past")
        rec = HoldRecord(
            id=f"H-{secrets.token_hex(4)}", cameras=cams, start_us=start_us, end_us=end_us,
            reason=reason.strip(), incident=incident or None, until_us=until_us,
            created_us=now_us, created_by=created_by,
        )
        await holds_store.insert(
            self.db, id=rec.id, cameras=json.dumps(list(cams)), start_us=start_us,
            end_us=end_us, reason=rec.reason, incident=rec.incident, until_us=until_us,
            created_us=now_us, created_by=created_by)
        return rec

    async def get(self, hold_id: str) -> HoldRecord | None:
        row = await holds_store.get(self.db, hold_id)
        return None if row is None else _record(row)

    async def list(
        self, include_inactive: bool = False, *, now_us: int
    ) -> builtins.list[HoldRecord]:
        rows = [_record(r) for r in await holds_store.all_holds(self.db)]
        return rows if include_inactive else [r for r in rows if r.active(now_us)]

    async def active(self, now_us: int) -> builtins.list[HoldInfo]:
        return [r.info() for r in await self.list(now_us=now_us)]

    async def release(self, hold_id: str, by: str, reason: str, now_us: int) -> HoldRecord:
        """Stops protecting at once: the next retention pass may delete what it covered."""
        if not reason.strip():
            raise UsageError("releasing a hold needs a reason (--reason TEXT)")
        changed = await holds_store.release(self.db, hold_id, by=by, reason=reason.strip(),
                                            now_us=now_us)
        rec = await self.get(hold_id)
        if rec is None:
            raise UsageError(f"no hold {hold_id!r}; `nvr hold list` shows the holds")
        if changed == 0:
            raise UsageError(
                f"hold {hold_id} was already released at {to_iso(rec.released_us or 0)} "
                f"by {rec.released_by} ({rec.release_reason})"
            )
        return rec
