"""Grants, law-enforcement/public requests and breach reports: the rows behind the policy.

The decisions are in nvr.policy.rules; these classes only store, through
nvr.storage.policy_store. They still refuse the state
changes the policy never allows (approving a public request, approving twice), so a caller that
forgot to ask `decide()` cannot corrupt the record.
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nvr.errors import PermissionDenied, UsageError
from nvr.policy import rules
from nvr.storage import policy_store
from nvr.storage.db import Db
from nvr.timeutil import to_iso

REQUEST_KINDS = ("subpoena", "court_order", "voluntary", "emergency", "public")
# What a member of the public is told, verbatim from the policy ("Requests from the General
# Public"); it is stored as the decision reason of every public request.
PUBLIC_ADVICE = (
    "Refused: the recorder's footage is not shown to the general public. "
    f'Policy: "{rules.PUBLIC_ADVICE}." File a police report or a public records request.'
)
SYSTEM = "nvr"
# How long an approval lasts when the Director does not say (`request approve --expires`).
APPROVAL_DAYS = 30


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _iso(us: int | None) -> str | None:
    return None if us is None else to_iso(us)


# ---- grants ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GrantRecord:
    id: str
    user: str
    cameras: tuple[str, ...]
    start_us: int
    end_us: int
    expires_us: int
    reason: str
    created_us: int
    created_by: str
    revoked_us: int | None = None
    revoked_by: str | None = None

    @property
    def grant(self) -> rules.Grant:
        return rules.Grant(self.id, self.user, frozenset(self.cameras), self.start_us,
                           self.end_us, self.expires_us, self.revoked_us)

    def active(self, now_us: int) -> bool:
        return self.revoked_us is None and now_us < self.expires_us

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "cameras": list(self.cameras),
                "start": to_iso(self.start_us), "end": to_iso(self.end_us),
                "expires": to_iso(self.expires_us), "reason": self.reason,
                "created": to_iso(self.created_us), "created_by": self.created_by,
                "revoked": _iso(self.revoked_us), "revoked_by": self.revoked_by}


def _grant(r: sqlite3.Row) -> GrantRecord:
    return GrantRecord(r["id"], r["user"], tuple(json.loads(r["cameras"])), r["start_us"],
                       r["end_us"], r["expires_us"], r["reason"], r["created_us"],
                       r["created_by"], r["revoked_us"], r["revoked_by"])


class Grants:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def create(
        self, *, user: str, cameras: Sequence[str], start_us: int, end_us: int,
        expires_us: int, reason: str, now_us: int, created_by: str,
    ) -> GrantRecord:
        if not cameras:
            raise UsageError("a grant needs at least one --camera")
        if end_us <= start_us:
            raise UsageError(f"grant window ends ({to_iso(end_us)}) before it starts "
                             f"({to_iso(start_us)})")
        if expires_us <= now_us:
            raise UsageError(f"--expires {to_iso(expires_us)} is already past")
        if not reason.strip():
            raise UsageError("a grant needs a --reason")
        rec = GrantRecord(new_id("G"), user, tuple(sorted(set(cameras))), start_us, end_us,
                          expires_us, reason, now_us, created_by)
        await policy_store.insert_grant(
            self.db, id=rec.id, user=rec.user, cameras=json.dumps(list(rec.cameras)),
            start_us=rec.start_us, end_us=rec.end_us, expires_us=rec.expires_us,
            reason=rec.reason, created_us=rec.created_us, created_by=rec.created_by)
        return rec

    async def get(self, grant_id: str) -> GrantRecord | None:
        row = await policy_store.grant(self.db, grant_id)
        return None if row is None else _grant(row)

    async def list(self, active_only: bool = False, now_us: int | None = None) -> builtins.list[GrantRecord]:
        out = [_grant(r) for r in await policy_store.grants(self.db)]
        if active_only:
            if now_us is None:
                raise ValueError("active_only needs now_us")
            out = [g for g in out if g.active(now_us)]
        return out

    async def for_user(self, user: str) -> builtins.list[rules.Grant]:
        """Every grant of `user`, expired and revoked too: decide() tells them apart."""
        return [_grant(r).grant for r in await policy_store.grants(self.db, user)]

    async def revoke(self, grant_id: str, *, now_us: int, by: str) -> GrantRecord:
        """Revoking stops access at once; revoking twice keeps the first revocation."""
        await policy_store.revoke_grant(self.db, grant_id, now_us=now_us, by=by)
        rec = await self.get(grant_id)
        if rec is None:
            raise UsageError(f"no grant {grant_id}; see `nvr grant list`")
        return rec


# ---- requests -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RequestRecord:
    id: str
    kind: str
    requester: str
    details: str
    status: str  # pending, approved, denied, refused
    created_us: int
    created_by: str
    decided_us: int | None
    decided_by: str | None
    decision_reason: str | None
    releases: tuple[dict[str, Any], ...] = ()
    # Scope (schema v2): what an approval covers, until expires_us.
    cameras: tuple[str, ...] | None = None
    start_us: int | None = None
    end_us: int | None = None
    expires_us: int | None = None

    @property
    def info(self) -> rules.RequestInfo:
        return rules.RequestInfo(
            self.id, self.kind, self.status,
            None if self.cameras is None else frozenset(self.cameras),
            self.start_us, self.end_us, self.expires_us)

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "requester": self.requester,
               "details": self.details, "status": self.status,
               "created": to_iso(self.created_us), "created_by": self.created_by,
               "decided": _iso(self.decided_us), "decided_by": self.decided_by,
               "decision_reason": self.decision_reason, "releases": list(self.releases),
               "cameras": None if self.cameras is None else list(self.cameras),
               "start": _iso(self.start_us), "end": _iso(self.end_us),
               "expires": _iso(self.expires_us)}
        if self.kind == "public":
            out["advice"] = PUBLIC_ADVICE
        return out


def _request(r: sqlite3.Row) -> RequestRecord:
    cams = r["cameras"]
    return RequestRecord(r["id"], r["kind"], r["requester"], r["details"], r["status"],
                         r["created_us"], r["created_by"], r["decided_us"], r["decided_by"],
                         r["decision_reason"], tuple(json.loads(r["releases"])),
                         None if cams is None else tuple(json.loads(cams)),
                         r["start_us"], r["end_us"], r["expires_us"])


class Requests:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def create(
        self, *, kind: str, requester: str, details: str, now_us: int, created_by: str,
        cameras: Sequence[str] | None = None, start_us: int | None = None,
        end_us: int | None = None, request_id: str | None = None,
    ) -> RequestRecord:
        """`request_id`: chosen by the caller when its audit row must name the request before
        the request exists (the row and the request commit together)."""
        if kind not in REQUEST_KINDS:
            raise UsageError(f"request kind {kind!r} is not one of {', '.join(REQUEST_KINDS)}")
        if not requester.strip() or not details.strip():
            raise UsageError("a request needs --requester and --details")
        # A public request is recorded and refused at once, with the policy's advice.
        public = kind == "public"
        scope = (cameras, start_us, end_us)
        if any(x is not None for x in scope) and not all(scope):
            raise UsageError("a request's scope needs all of --camera, --start and --end")
        if start_us is not None and end_us is not None and end_us <= start_us:
            raise UsageError(f"--end {to_iso(end_us)} must be after --start {to_iso(start_us)}")
        cams = None if cameras is None else tuple(sorted(set(cameras)))
        rec = RequestRecord(request_id or new_id("R"), kind, requester, details,
                            "refused" if public else "pending", now_us, created_by,
                            now_us if public else None, SYSTEM if public else None,
                            PUBLIC_ADVICE if public else None, (), cams, start_us, end_us)
        await policy_store.insert_request(
            self.db, id=rec.id, kind=rec.kind, requester=rec.requester, details=rec.details,
            status=rec.status, created_us=rec.created_us, created_by=rec.created_by,
            decided_us=rec.decided_us, decided_by=rec.decided_by,
            decision_reason=rec.decision_reason,
            cameras=None if cams is None else json.dumps(list(cams)), start_us=start_us,
            end_us=end_us)
        return rec

    async def get(self, request_id: str) -> RequestRecord | None:
        row = await policy_store.request(self.db, request_id)
        return None if row is None else _request(row)

    async def list(self, status: str | None = None) -> builtins.list[RequestRecord]:
        return [_request(r) for r in await policy_store.requests(self.db, status)]

    async def _must(self, request_id: str) -> RequestRecord:
        rec = await self.get(request_id)
        if rec is None:
            raise UsageError(f"no request {request_id}; see `nvr request list`")
        return rec

    async def _decide(self, request_id: str, status: str, reason: str | None, now_us: int,
                      by: str, expires_us: int | None = None) -> RequestRecord:
        rec = await self._must(request_id)
        if rec.kind == "public" and status == "approved":
            raise PermissionDenied(f"request {request_id} is from the general public and cannot be "
                                   f'approved (policy: "{rules.PUBLIC_ADVICE}")')
        # Conditional: two deciders racing cannot both win.
        changed = await policy_store.decide_request(
            self.db, request_id, status=status, now_us=now_us, by=by, reason=reason,
            expires_us=expires_us)
        if changed != 1:
            raise UsageError(f"request {request_id} is {rec.status}, not pending")
        return await self._must(request_id)

    async def approve(self, request_id: str, *, now_us: int, by: str,
                      expires_us: int | None = None) -> RequestRecord:
        """Approve until `expires_us` (default: APPROVAL_DAYS from now)."""
        expires = now_us + APPROVAL_DAYS * 86_400_000_000 if expires_us is None else expires_us
        if expires <= now_us:
            raise UsageError(f"--expires {to_iso(expires)} is already past")
        return await self._decide(request_id, "approved", None, now_us, by, expires)

    async def deny(self, request_id: str, reason: str, *, now_us: int, by: str) -> RequestRecord:
        if not reason.strip():
            raise UsageError("denying a request needs a --reason")
        return await self._decide(request_id, "denied", reason, now_us, by)

    async def add_release(self, request_id: str, export_record: dict[str, Any]) -> RequestRecord:
        """Tie an export to the approved request it was released under."""
        changed = await policy_store.add_release(self.db, request_id, json.dumps(export_record))
        rec = await self._must(request_id)
        if changed != 1:
            raise PermissionDenied(f"request {request_id} is {rec.status}, not approved by the "
                                   f'Director (policy: "{rules.VOLUNTARY}")')
        return rec


# ---- breaches -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BreachRecord:
    id: str
    at_us: int
    reporter: str
    details: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": to_iso(self.at_us), "reporter": self.reporter,
                "details": self.details}


class Breaches:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def create(self, *, details: str, reporter: str, now_us: int) -> BreachRecord:
        if not details.strip():
            raise UsageError("a breach report needs --details")
        rec = BreachRecord(new_id("B"), now_us, reporter, details)
        await policy_store.insert_breach(self.db, id=rec.id, at_us=rec.at_us,
                                         reporter=rec.reporter, details=rec.details)
        return rec

    async def list(self) -> builtins.list[BreachRecord]:
        return [BreachRecord(r["id"], r["at_us"], r["reporter"], r["details"])
                for r in await policy_store.breaches(self.db)]
