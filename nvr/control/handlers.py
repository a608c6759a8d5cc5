"""What the daemon does for each control-socket op: decide (nvr.policy) → audit → act.

Every op goes through `authorize`, which asks the pure policy for a decision, appends it to
the audit log whether allowed or not, and raises PermissionDenied with the rule's one-line
reason when refused. Nothing touches footage before that returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nvr import log
from nvr.config.loader import ConfigError
from nvr.config.model import CameraConfig, Role
from nvr.control.protocol import Caller, Reply
from nvr.errors import DataError, IntegrityError, PermissionDenied, Unavailable, UsageError
from nvr.policy.actions import Action
from nvr.policy.rules import AccessContext, CameraInfo, Decision, RequestInfo, decide
from nvr.retention.disk import disk_state
from nvr.service import Service
from nvr.timeutil import parse_time, to_iso

logger = log.get("nvr.control")

Progress = Callable[[dict[str, Any]], Awaitable[None]]


# Segments per `recordings` answer (NVR_RECORDINGS_PAGE: a smaller page, e.g. for tests).
RECORDINGS_PAGE = int(os.environ.get("NVR_RECORDINGS_PAGE", "5000"))


def _opt_time(text: str | None, *, end_of_day: bool = False) -> int | None:
    return None if text is None else parse_time(text, end_of_day=end_of_day)


class Handlers:
    def __init__(self, service: Service) -> None:
        self.svc = service

    async def dispatch(self, caller: Caller, op: str, args: BaseModel, progress: Progress) -> Reply:
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise UsageError(f"unknown op {op!r}")
        result = await handler(caller, args, progress)
        return result if isinstance(result, Reply) else Reply(result=result)

    # -- helpers --------------------------------------------------------------------------

    def role(self, caller: Caller) -> Role:
        # From the current camera map, so a reload that changes people: applies at once.
        return self.svc.config.role_of(caller.user)

    def camera(self, camera_id: str) -> CameraConfig:
        cam = self.svc.config.camera(camera_id)
        if cam is None:
            known = ", ".join(c.id for c in self.svc.config.cameras) or "none"
            raise UsageError(f"no camera {camera_id!r} in the camera map (cameras: {known})")
        return cam

    def camera_infos(self, ids: Sequence[str]) -> tuple[CameraInfo, ...]:
        infos = []
        for cam_id in ids:
            cam = self.svc.config.camera(cam_id)
            infos.append(CameraInfo(cam_id, bool(cam and cam.shared_with_senior_center)))
        return tuple(infos)

    async def authorize(
        self,
        caller: Caller,
        action: Action,
        *,
        cameras: Sequence[str] = (),
        start_us: int | None = None,
        end_us: int | None = None,
        reason: str | None = None,
        request: RequestInfo | None = None,
        detail: dict[str, Any] | None = None,
        approve: bool | None = None,
        minutes: int | None = None,
    ) -> Decision:
        now = self.svc.clock()
        role = self.role(caller)
        grants = await self.svc.grants.for_user(caller.user) if caller.user else []
        ctx = AccessContext(cameras=self.camera_infos(cameras), start_us=start_us,
                            end_us=end_us, reason=reason, request=request, approve=approve,
                            minutes=minutes,
                            max_minutes=self.svc.config.live.emergency_max_minutes)
        decision = decide(role, action, ctx, grants, now, caller.user)
        record: dict[str, Any] = {"cameras": list(cameras), "rule": decision.rule}
        if start_us is not None:
            record["start"] = to_iso(start_us)
        if end_us is not None:
            record["end"] = to_iso(end_us)
        if reason:
            record["reason"] = reason
        if request is not None:
            record["request"] = request.id
        if not decision.allowed:
            record["refusal"] = decision.message
        record.update(detail or {})
        if not decision.allowed:
            # Rate-limited per account, repeats coalesced into one counting row, caller text
            # capped (nvr/policy/refusals.py): refusals cannot grow the index without bound.
            if await self.svc.refusals.refused(
                at_us=now, actor=caller.user or f"uid {caller.uid}", uid=caller.uid,
                role=role.value, action=action.value, detail=record,
            ):
                logger.info("denied", actor=caller.user, uid=caller.uid, role=role.value,
                            action=action.value, rule=decision.rule)
            raise PermissionDenied(decision.message)
        await self.svc.audit.append(
            at_us=now, actor=caller.user or f"uid {caller.uid}", uid=caller.uid,
            role=role.value, action=action.value, allowed=decision.allowed, detail=record,
        )
        return decision

    # -- metadata ---------------------------------------------------------------------------

    async def op_status(self, caller: Caller, a: BaseModel, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.status)
        svc = self.svc
        cams = []
        for cam in svc.config.cameras:
            rec = svc.recorders.get(cam.id)
            row: dict[str, Any] = {"id": cam.id, "name": cam.name, "area": cam.area}
            row.update(rec.status() if rec else {"state": "disabled"})
            cams.append(row)
        disk = await asyncio.to_thread(disk_state, svc.root)
        oldest = await svc.index.oldest_start()
        return {
            "site": svc.config.site,
            "cameras": cams,
            "disk": {
                "root": str(svc.root),
                "total_bytes": disk.total_bytes,
                "free_bytes": disk.free_bytes,
                "free_percent": round(100 * disk.free_bytes / max(disk.total_bytes, 1), 2),
                "min_free_percent": svc.config.storage.min_free_percent,
                "recordings_bytes": await svc.index.total_bytes(),
            },
            "retention": {
                "days": svc.config.retention.days,
                "oldest_footage": None if oldest is None else to_iso(oldest),
            },
            "paused": sorted(svc.paused),
            "alert": svc.pause_alert or svc.retention.clock_alert,
            "clock_alert": svc.retention.clock_alert,
        }

    async def op_recordings(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        start, end = _opt_time(a.start), _opt_time(a.end)
        await self.authorize(caller, Action.recordings, cameras=[a.camera], start_us=start,
                             end_us=end)
        cam = self.camera(a.camera)
        after = getattr(a, "after_us", None)
        from_us = start if after is None else max(start or 0, after + 1)
        segs = await self.svc.index.segments(cam.id, from_us, end)
        if after is not None:
            segs = [s for s in segs if s.start_us > after]
        # One answer is at most a page: a month of one camera is ~43 000 segments, megabytes of
        # JSON that a client might never read. The CLI asks for the next page by itself.
        more = len(segs) > RECORDINGS_PAGE
        segs = segs[:RECORDINGS_PAGE]
        gaps = await self.svc.index.gaps(cam.id, start, end) if after is None else []
        page: dict[str, Any] = {"next": {"after_us": segs[-1].start_us}} if more else {}
        return {
            **page,
            "camera": cam.id,
            "segments": [
                {"start": to_iso(s.start_us), "end": to_iso(s.end_us), "path": s.path,
                 "bytes": s.bytes, "frames": s.frames, "sha256": s.sha256, "codec": s.codec,
                 "width": s.width, "height": s.height, "recovered": s.recovered}
                for s in segs
            ],
            "gaps": [
                {"start": to_iso(g.start_us), "end": to_iso(g.end_us), "reason": g.reason,
                 "detail": g.detail}
                for g in gaps
            ],
        }

    # -- footage: export and stills (nvr.control.footage) ----------------------------------

    async def op_export(self, caller: Caller, a: Any, progress: Progress) -> Reply:
        from nvr.control.footage import export

        return await export(self, caller, a, progress)

    async def op_still(self, caller: Caller, a: Any, progress: Progress) -> Reply:
        from nvr.control.footage import still

        return await still(self, caller, a)

    async def op_key_show(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        from nvr.export.signing import key_show

        await self.authorize(caller, Action.key_show)
        return await asyncio.to_thread(key_show, self.svc.root)

    # -- holds ------------------------------------------------------------------------------

    async def op_hold_create(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        start, end = parse_time(a.start), parse_time(a.end)
        until = _opt_time(a.until, end_of_day=True)
        if end <= start:
            raise UsageError("--end must be after --start")
        await self.authorize(caller, Action.hold_create, cameras=a.cameras, start_us=start,
                             end_us=end, reason=a.reason, detail={"incident": a.incident})
        for cam_id in a.cameras:
            self.camera(cam_id)
        hold = await self.svc.holds.create(
            cameras=a.cameras, start_us=start, end_us=end, reason=a.reason,
            incident=a.incident, until_us=until, created_by=caller.user or str(caller.uid),
            now_us=self.svc.clock(),
        )
        return hold.to_dict()

    async def op_hold_list(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.hold_list)
        holds = await self.svc.holds.list(include_inactive=True, now_us=self.svc.clock())
        return {"holds": [h.to_dict() for h in holds]}

    async def op_hold_release(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.hold_release, reason=a.reason,
                             detail={"hold": a.hold_id})
        hold = await self.svc.holds.release(a.hold_id, by=caller.user or str(caller.uid),
                                            reason=a.reason, now_us=self.svc.clock())
        return hold.to_dict()

    # -- grants -----------------------------------------------------------------------------

    async def op_grant_create(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        start, end = parse_time(a.start), parse_time(a.end)
        expires = parse_time(a.expires, end_of_day=True)
        if end <= start:
            raise UsageError("--end must be after --start")
        await self.authorize(caller, Action.grant_create, cameras=a.cameras, start_us=start,
                             end_us=end, reason=a.reason,
                             detail={"grantee": a.user, "expires": to_iso(expires)})
        for cam_id in a.cameras:
            self.camera(cam_id)
        if self.svc.config.role_of(a.user) is not Role.staff:
            raise UsageError(f"{a.user!r} is not listed as staff in people:; grants are for staff")
        grant = await self.svc.grants.create(
            user=a.user, cameras=a.cameras, start_us=start, end_us=end, expires_us=expires,
            reason=a.reason, created_by=caller.user or str(caller.uid), now_us=self.svc.clock(),
        )
        return _as_dict(grant)

    async def op_grant_list(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.grant_list)
        grants = await self.svc.grants.list(active_only=False)
        return {"grants": [_as_dict(g) for g in grants]}

    async def op_grant_revoke(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.grant_revoke, detail={"grant": a.grant_id})
        grant = await self.svc.grants.revoke(a.grant_id, by=caller.user or str(caller.uid),
                                             now_us=self.svc.clock())
        return _as_dict(grant)

    # -- requests ---------------------------------------------------------------------------

    async def op_request_create(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.request_create,
                             detail={"kind": a.kind, "requester": a.requester})
        req = await self.svc.requests.create(
            kind=a.kind, requester=a.requester, details=a.details,
            created_by=caller.user or str(caller.uid), now_us=self.svc.clock(),
        )
        return _as_dict(req)

    async def op_request_list(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.request_list)
        return {"requests": [_as_dict(r) for r in await self.svc.requests.list()]}

    async def _request_info(self, caller: Caller, action: Action, request_id: str) -> RequestInfo:
        req = await self.svc.requests.get(request_id)
        if req is None:
            # Refused before any decision could be made; audited all the same, like every
            # refusal (and the account learns nothing more than "no such request").
            await self.svc.refusals.refused(
                at_us=self.svc.clock(), actor=caller.user or f"uid {caller.uid}",
                uid=caller.uid, role=self.role(caller).value, action=action.value,
                detail={"request": request_id, "refusal": "no such request"},
            )
            raise UsageError(f"no request {request_id!r}; see `nvr request list`")
        return RequestInfo(id=req.id, kind=req.kind, status=req.status)

    async def op_request_approve(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        info = await self._request_info(caller, Action.request_decide, a.request_id)
        await self.authorize(caller, Action.request_decide, request=info, approve=True,
                             detail={"decision": "approve"})
        req = await self.svc.requests.approve(a.request_id, by=caller.user or str(caller.uid),
                                              now_us=self.svc.clock())
        return _as_dict(req)

    async def op_request_deny(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        info = await self._request_info(caller, Action.request_decide, a.request_id)
        await self.authorize(caller, Action.request_decide, request=info, reason=a.reason,
                             approve=False, detail={"decision": "deny"})
        req = await self.svc.requests.deny(a.request_id, by=caller.user or str(caller.uid),
                                           reason=a.reason, now_us=self.svc.clock())
        return _as_dict(req)

    # -- live view (the WebRTC server is a later issue) --------------------------------------

    async def op_live(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        now = self.svc.clock()
        await self.authorize(caller, Action.live, cameras=[a.camera], start_us=now, end_us=now,
                             reason="live view")
        self.camera(a.camera)
        raise Unavailable("live view is not available yet in this version of nvr")

    async def op_emergency_start(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.emergency_start, cameras=a.cameras,
                             minutes=a.minutes, detail={"agency": a.agency})
        raise Unavailable("emergency live feeds need live view, which is not available yet")

    async def op_emergency_end(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.emergency_end, detail={"emergency": a.emergency_id})
        raise Unavailable("emergency live feeds need live view, which is not available yet")

    # -- audit, breach, retention, reload ------------------------------------------------------

    async def op_audit_list(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        since = _opt_time(a.since)
        await self.authorize(caller, Action.audit_list)
        rows = await self.svc.audit.rows(since)
        return {"rows": [r.to_dict() for r in rows]}

    async def op_audit_verify(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.audit_verify)
        result = await self.svc.audit.verify()
        if not result.ok:
            raise IntegrityError(
                f"audit chain broken at seq {result.first_bad_seq}: {result.problem}"
            )
        seq, head = await self.svc.audit.head()
        return {"ok": True, "rows": seq, "head": head}

    async def op_breach_report(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        from nvr.policy.notify import notify_director

        await self.authorize(caller, Action.breach_report)
        breach = await self.svc.breaches.create(
            reporter=caller.user or str(caller.uid), details=a.details, now_us=self.svc.clock()
        )
        await notify_director(self.svc.config.notify_command, a.details, logger)
        return _as_dict(breach)

    async def op_retention_plan(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        at = _opt_time(a.at) or self.svc.clock()
        await self.authorize(caller, Action.retention_plan, detail={"at": to_iso(at)})
        return await self.svc.retention.plan_dict(at)

    async def op_retention_confirm_clock(
        self, caller: Caller, a: Any, progress: Progress
    ) -> dict[str, Any]:
        alert = self.svc.retention.clock_alert
        await self.authorize(caller, Action.retention_confirm_clock,
                             detail={"alert": alert, "clock": to_iso(self.svc.clock())})
        self.svc.confirm_clock()
        return {"confirmed": to_iso(self.svc.clock()), "alert_cleared": alert}

    async def op_reload(self, caller: Caller, a: Any, progress: Progress) -> dict[str, Any]:
        await self.authorize(caller, Action.reload)
        try:
            return await self.svc.reload(f"requested by {caller.user}")
        except ConfigError as exc:
            problems = "; ".join(str(exc).splitlines())  # one line, as every refusal is
            raise DataError(f"camera map not reloaded, the running one stays: {problems}") from None


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()  # type: ignore[no-any-return]
    raise TypeError(f"{type(obj).__name__} has no to_dict()")


def expire_stills(service: Service) -> Callable[[], Awaitable[None]]:
    """Delete the recorder's copy of each still whose suspension has ended, and audit it."""

    async def run() -> None:
        now = service.clock()
        async with service.db.execute(
            "SELECT id, path, camera FROM stills WHERE deleted_us IS NULL AND until_us <= ?",
            (now,),
        ) as cur:
            due = list(await cur.fetchall())
        for still_id, path, camera in due:
            await asyncio.to_thread(Path(path).unlink, missing_ok=True)
            await service.db.execute("UPDATE stills SET deleted_us = ? WHERE id = ?",
                                     (now, still_id))
            await service.audit.append(
                at_us=now, actor="nvr", uid=os.getuid(), role="system", action="still_expired",
                allowed=True, detail={"still": still_id, "camera": camera, "path": path},
            )
            logger.info("still_expired", still=still_id, camera=camera)

    run.__name__ = "expire_stills"
    return run

