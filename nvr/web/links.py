"""Viewing links: purpose-bound, expiring, revocable; the token is stored only as its hash.

A link is minted by `nvr live`, `nvr playback` or `nvr emergency start` after the policy
allowed it for the caller. The URL carries the token after `#`, so it never reaches a server
log or a Referer header; the page trades it once for a session cookie (nvr.web.server).
The table `view_links` is in the index (schema v4, nvr.storage.db; statements in
nvr.storage.links_store), so that a link survives a daemon restart until it expires.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from nvr.storage import links_store
from nvr.storage.db import Db
from nvr.timeutil import to_iso

Kind = Literal["live", "playback", "emergency"]
EXPIRED = "expired"



def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Link:
    id: str
    kind: Kind
    token_hash: str
    actor: str
    uid: int | None
    role: str
    cameras: tuple[str, ...]
    start_us: int | None
    end_us: int | None
    purpose: str
    created_us: int
    expires_us: int
    ended_us: int | None = None
    ended_why: str | None = None
    # Browser sessions currently open on this link (session id → remote address).
    sessions: dict[str, str] = field(default_factory=dict)

    def usable(self, now_us: int) -> bool:
        return self.ended_us is None and now_us < self.expires_us

    def why_not(self, now_us: int) -> str:
        if self.ended_us is not None and self.ended_why != EXPIRED:
            return f"this viewing link was {self.ended_why or 'revoked'}"
        if now_us >= self.expires_us or self.ended_why == EXPIRED:
            return f"this viewing link expired at {to_iso(self.expires_us)}"
        return ""

    def to_dict(self, now_us: int) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "actor": self.actor, "role": self.role,
            "cameras": list(self.cameras),
            "start": None if self.start_us is None else to_iso(self.start_us),
            "end": None if self.end_us is None else to_iso(self.end_us),
            "purpose": self.purpose, "created": to_iso(self.created_us),
            "expires": to_iso(self.expires_us),
            "minutes_left": max(0, (self.expires_us - now_us) // 60_000_000)
            if self.usable(now_us) else 0,
            "state": "open" if self.usable(now_us) else (
                "ended" if self.ended_us and self.ended_why != EXPIRED else "expired"),
            "ended_why": self.ended_why, "sessions": len(self.sessions),
        }


class Links:
    """The one writer of view_links. Links are kept in memory too: every HTTP request looks
    its link up, and a revocation must be seen by the very next request."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.by_id: dict[str, Link] = {}
        self.by_hash: dict[str, Link] = {}

    async def load(self, now_us: int) -> None:
        # Links still open (and a day of ended ones, for `view list`).
        for row in await links_store.expiring_after(self.db, now_us - 86_400_000_000):
            link = Link(row[0], row[1], row[2], row[3], row[4], row[5],
                        tuple(json.loads(row[6])), row[7], row[8], row[9], row[10], row[11],
                        row[12], row[13])
            self._keep(link)

    def _keep(self, link: Link) -> None:
        self.by_id[link.id] = link
        self.by_hash[link.token_hash] = link

    async def mint(self, *, kind: Kind, actor: str, uid: int | None, role: str,
                   cameras: list[str], start_us: int | None, end_us: int | None,
                   purpose: str, now_us: int, expires_us: int) -> tuple[Link, str]:
        token = secrets.token_urlsafe(32)
        prefix = "em" if kind == "emergency" else "v"
        link = Link(f"{prefix}-{secrets.token_hex(4)}", kind, token_hash(token), actor, uid, role,
                    tuple(cameras), start_us, end_us, purpose, now_us, expires_us)
        async with self.db.unit():
            await links_store.insert(self.db, (
                link.id, kind, link.token_hash, actor, uid, role, json.dumps(list(cameras)),
                start_us, end_us, purpose, now_us, expires_us, None, None))
        self._keep(link)
        return link, token

    def find_token(self, token: str) -> Link | None:
        return self.by_hash.get(token_hash(token))

    async def end(self, link: Link, now_us: int, why: str) -> bool:
        """End a link; False if it had already ended (the first end and its reason stand)."""
        if link.ended_us is not None:
            return False
        link.ended_us, link.ended_why = now_us, why
        async with self.db.unit():
            await links_store.end(self.db, link.id, now_us=now_us, why=why)
        return True

    def listing(self, *, kind: Kind | None = None, actor: str | None = None,
                open_only: bool = False, now_us: int) -> list[Link]:
        out = [lk for lk in self.by_id.values()
               if (kind is None or lk.kind == kind) and (actor is None or lk.actor == actor)
               and (not open_only or lk.usable(now_us))]
        return sorted(out, key=lambda lk: lk.created_us)
