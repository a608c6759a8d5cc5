"""What the daemon does for each control-socket op: decide (nvr.policy) → audit → act.

Every op goes through `authorize`, which asks the pure policy for a decision, appends it to
the audit log whether allowed or not, and raises PermissionDenied with the rule's one-line
reason when refused. Nothing touches footage before that returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from nvr import log
from nvr.config.loader import ConfigError
from nvr.config.model import CameraConfig, Role
from nvr.control import footage
from nvr.control.ports import Progress, RecorderPort
from nvr.control.protocol import (
    Args,
    AuditListArgs,
    AuditVerifyArgs,
    BreachReportArgs,
    Caller,
    EmergencyEndArgs,
    EmergencyStartArgs,
    ExportArgs,
    GrantCreateArgs,
    GrantRevokeArgs,
    HoldCreateArgs,
    HoldReleaseArgs,
    LiveArgs,
    MasksPreviewArgs,
    NoArgs,
    PlaybackArgs,
    RecordingsArgs,
    Reply,
    RequestApproveArgs,
    RequestCreateArgs,
    RequestDenyArgs,
    RetentionPlanArgs,
    StillArgs,
    ViewRevokeArgs,
)
from nvr.control.replies import (
    AuditEntry,
    AuditPage,
    AuditVerifyReply,
    BreachRow,
    CameraBase,
    ClockConfirmed,
    EmergencyEnded,
    EmergencyLink,
    EmergencyList,
    EmergencyRow,
    ExportReply,
    GrantList,
    GrantRow,
    HoldList,
    HoldRow,
    KeyShowReply,
    LinkRow,
    MasksPreviewReply,
    RecordingsReply,
    RecoveryProgress,
    Reloaded,
    RequestList,
    RequestRow,
    RetentionPlan,
    StatusBase,
    StatusReply,
    StillReply,
    ViewLink,
    ViewList,
)
from nvr.errors import (
    DataError,
    IntegrityError,
    NvrError,
    PermissionDenied,
    UsageError,
)
from nvr.policy.actions import Action
from nvr.policy.rules import MATRIX, AccessContext, CameraInfo, Decision, Kind, RequestInfo, decide
from nvr.policy.store import new_id
from nvr.retention.disk import disk_state
from nvr.retention.holds import HoldRecord
from nvr.timeutil import parse_time, to_iso

logger = log.get("nvr.control")

# Audit rows per `audit list` reply: read and shaped in a worker thread, encoded on the loop
# in under a millisecond (1000 rows: ~2 ms, and 40 ms stalls measured from GIL contention).
AUDIT_PAGE = 250


# Whether the request being served has its audit row yet (set by authorize/audit_refusal):
# a request refused before any decision still gets exactly one row (see dispatch).
_AUDITED: contextvars.ContextVar[bool] = contextvars.ContextVar("nvr_audited", default=False)


def _op_action(op: str | None) -> Action | None:
    from nvr.policy.actions import action_for_op

    return None if op is None else action_for_op(op)


# Segments per `recordings` answer (NVR_RECORDINGS_PAGE: a smaller page, e.g. for tests).
RECORDINGS_PAGE = int(os.environ.get("NVR_RECORDINGS_PAGE", "5000"))


def _opt_time(text: str | None, *, end_of_day: bool = False) -> int | None:
    return None if text is None else parse_time(text, end_of_day=end_of_day)


class Handlers:
    def __init__(self, service: RecorderPort) -> None:
        self.svc = service

    async def dispatch(self, caller: Caller, op: str, args: Args,
                       progress: Progress) -> Reply[Mapping[str, object]]:
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise UsageError(f"unknown op {op!r}")
        _AUDITED.set(False)
        try:
            result = await handler(caller, args, progress)
        except NvrError as exc:
            if _AUDITED.get():
                raise
            # Refused before the policy was asked (a bad time, a reversed range, a date in the
            # past): the policy decides first, and the refusal is audited all the same.
            raise await self.refused_input(caller, op, str(exc), exc) from None
        except Exception as exc:
            if not _AUDITED.get():  # a bug; the request is still on the record
                await self.audit_refusal(caller, op, {"op": op, "rule": "internal_error",
                                                      "refusal": type(exc).__name__})
            raise
        return result if isinstance(result, Reply) else Reply(result)

    async def refused_input(self, caller: Caller, op: str | None, problem: str,
                            exc: NvrError | None = None) -> NvrError:
        """The error to answer for a request whose input is bad, after auditing it: the
        matrix's refusal when the caller's role may not do the op at all (a public account
        learns nothing about its input), else the input problem itself."""
        action = _op_action(op)
        role = self.role(caller)
        detail: dict[str, Any] = {"op": op}
        if action is not None and MATRIX[action].cells[role].kind is Kind.deny:
            decision = decide(role, action, AccessContext(), [], self.svc.clock(), caller.user)
            detail.update(rule=decision.rule, refusal=decision.message, input_problem=problem)
            await self.audit_refusal(caller, action.value, detail)
            return PermissionDenied(decision.message)
        detail.update(rule="input.invalid", refusal=problem)
        await self.audit_refusal(caller, action.value if action else "bad_request", detail)
        return exc if exc is not None else UsageError(problem)

    async def bad_request(self, caller: Caller, line: bytes | None, exc: NvrError) -> NvrError:
        """The control server's hook for a request line that never became a request (not
        JSON, nested too deep, too long, wrong types): audited like every refusal."""
        op: str | None = None
        if line is not None and len(line) <= 64 * 1024:
            try:
                raw = json.loads(line)
                if isinstance(raw, dict) and isinstance(raw.get("op"), str):
                    op = raw["op"][:64]
            except (ValueError, RecursionError, UnicodeDecodeError):
                pass
        return await self.refused_input(caller, op, str(exc), exc)

    async def audit_refusal(self, caller: Caller, action: str, detail: dict[str, Any]) -> bool:
        """The one place a refusal is written to the audit log (policy denials, bad input,
        unknown ids). True if it got a row of its own, False if it was counted into a
        coalesced row: refusals are rate-limited per account, repeats coalesced, caller text
        capped (nvr/policy/refusals.py), so they cannot grow the index without bound."""
        own = await self.svc.refusals.refused(
            at_us=self.svc.clock(), actor=caller.user or f"uid {caller.uid}", uid=caller.uid,
            role=self.role(caller).value, action=action, detail=detail,
        )
        _AUDITED.set(True)
        return own

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
        unmasked: bool = False,
    ) -> Decision:
        """The policy's decision on this context, made once and recorded: an allowed one is
        returned with its audit row appended, a refused one is audited and raised."""
        now = self.svc.clock()
        decision = await self.decision(caller, action, now, cameras=cameras,
                                        start_us=start_us, end_us=end_us, reason=reason,
                                        request=request, approve=approve, minutes=minutes,
                                        unmasked=unmasked)
        return await self._record(caller, action, decision, now, cameras=cameras,
                                  start_us=start_us, end_us=end_us, reason=reason,
                                  request=request, detail=detail)

    async def _record(
        self, caller: Caller, action: Action, decision: Decision, now: int, *,
        cameras: Sequence[str] = (), start_us: int | None = None, end_us: int | None = None,
        reason: str | None = None, request: RequestInfo | None = None,
        detail: dict[str, Any] | None = None, **_decided_on: Any,
    ) -> Decision:
        """Audit a decision already made (never decide again here); raise it if refused."""
        role = self.role(caller)
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
        if decision.allowed:
            await self.svc.audit.append(
                at_us=now, actor=caller.user or f"uid {caller.uid}", uid=caller.uid,
                role=role.value, action=action.value, allowed=True, detail=record,
            )
            _AUDITED.set(True)
            return decision
        # The log, like the audit log, says each refusal once, not each one of a flood.
        if await self.audit_refusal(caller, action.value, record):
            logger.info("denied", actor=caller.user, uid=caller.uid, role=role.value,
                        action=action.value, rule=decision.rule)
        raise PermissionDenied(decision.message)

    async def decision(
        self, caller: Caller, action: Action, now: int, *, cameras: Sequence[str] = (),
        start_us: int | None = None, end_us: int | None = None, reason: str | None = None,
        request: RequestInfo | None = None, approve: bool | None = None,
        minutes: int | None = None, unmasked: bool = False,
    ) -> Decision:
        """The policy's decision, nothing recorded (authorize() records it)."""
        grants = await self.svc.grants.for_user(caller.user) if caller.user else []
        ctx = AccessContext(cameras=self.camera_infos(cameras), start_us=start_us,
                            end_us=end_us, reason=reason, request=request, approve=approve,
                            minutes=minutes,
                            max_minutes=self.svc.config.live.emergency_max_minutes,
                            unmasked=unmasked)
        return decide(self.role(caller), action, ctx, grants, now, caller.user)

    @asynccontextmanager
    async def authorized(self, caller: Caller, action: Action, **kw: Any) -> AsyncIterator[Decision]:
        """One decision, then the body (the action), as ONE unit of work: the decision's audit
        row commits with the action's rows, or neither does. A refusal is audited alone and
        raised before the unit opens. If the action fails after an allowed decision, the unit
        rolls back whole and the same decision is then audited alone, as an attempt."""
        now = self.svc.clock()
        ctx = {k: v for k, v in kw.items() if k != "detail"}  # detail is only recorded
        decision = await self.decision(caller, action, now, **ctx)
        if not decision.allowed:
            await self._record(caller, action, decision, now, **kw)  # audits, raises
        try:
            async with self.svc.index.unit():
                yield await self._record(caller, action, decision, now, **kw)
        except BaseException:
            await self._record(caller, action, decision, now, **kw)
            raise

    # -- metadata ---------------------------------------------------------------------------

    async def op_status(self, caller: Caller, a: NoArgs, progress: Progress) -> StatusReply:
        await self.authorize(caller, Action.status)
        svc = self.svc
        cams: list[CameraBase] = []
        for cam in svc.config.cameras:
            rec = svc.recorders.get(cam.id)
            # The recorder's status() gives this row's recorder keys (a camera without a
            # recorder is only "disabled"); tests/cli/test_reply_shapes_live.py checks them.
            row: CameraBase = {"id": cam.id, "name": cam.name, "area": cam.area,
                               "state": "disabled"}
            cams.append({**row, **cast(CameraBase, rec.status())} if rec else row)
        disk = await asyncio.to_thread(disk_state, svc.root)
        oldest = await svc.index.oldest_start()
        result: StatusBase = {
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
            # Rows and files from before start-up, checked in the background.
            "recovery": cast(RecoveryProgress, svc.recovery_check.progress()),
            "emergencies": _emergencies(svc),
        }
        # Oldest and held footage, today's rate, days left, alerts (nvr.control.status).
        from nvr.control import status as status_extra

        return await status_extra.enrich(svc, result)

    async def op_recordings(
        self, caller: Caller, a: RecordingsArgs, progress: Progress
    ) -> RecordingsReply:
        start, end = _opt_time(a.start), _opt_time(a.end)
        await self.authorize(caller, Action.recordings, cameras=[a.camera], start_us=start,
                             end_us=end)
        cam = self.camera(a.camera)
        after = a.after_us
        from_us = start if after is None else max(start or 0, after + 1)
        segs = await self.svc.index.segments(cam.id, from_us, end)
        if after is not None:
            segs = [s for s in segs if s.start_us > after]
        # One answer is at most a page: a month of one camera is ~43 000 segments, megabytes of
        # JSON that a client might never read. The CLI asks for the next page by itself.
        more = len(segs) > RECORDINGS_PAGE
        segs = segs[:RECORDINGS_PAGE]
        gaps = await self.svc.index.gaps(cam.id, start, end) if after is None else []
        reply: RecordingsReply = {
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
        if more:
            reply["next"] = {"after_us": segs[-1].start_us}
        return reply

    # -- footage: export and stills (nvr.control.footage) ----------------------------------

    def may_plan(self, caller: Caller, action: Action, camera: str) -> bool:
        """Whether to look at footage to plan before deciding: not for an account the policy
        refuses this action outright, nor for a camera not in the map (no disk read for
        them, and they learn nothing about what is recorded)."""
        denied = MATRIX[action].cells[self.role(caller)].kind is Kind.deny
        return not denied and self.svc.config.camera(camera) is not None

    async def op_export(
        self, caller: Caller, a: ExportArgs, progress: Progress
    ) -> Reply[ExportReply]:
        """Plan the clip (which frames, from the keyframe before --start), decide ONCE on the
        window it will really deliver, then copy → sign → record (nvr.control.footage)."""
        start, end = parse_time(a.start), parse_time(a.end)
        if end <= start:
            raise UsageError("--end must be after --start")
        action = Action.release if a.request else Action.export
        request: RequestInfo | None = None
        if a.request:
            request = await self._request_info(caller, action, a.request)
        planned = (await footage.plan_export(self.svc, a.camera, start, end)
                   if self.may_plan(caller, action, a.camera) else None)
        detail: dict[str, Any] = {"incident": a.incident, **self._mask_detail(a)}
        window_start = start
        # (1 ms of slack: timestamps in 1/90000 s round to the microsecond.)
        if planned is not None and planned.start_us < start - 1000:
            # The clip starts at the keyframe before --start: the decision covers that
            # lead-in too (a staff grant's or an approved request's window must include it).
            window_start = planned.start_us
            detail.update(requested_start=to_iso(start), lead_in_from=to_iso(window_start))
        await self.authorize(caller, action, cameras=[a.camera], start_us=window_start,
                             end_us=end, reason=a.reason, request=request, detail=detail,
                             unmasked=bool(a.unmasked))
        cam = self.camera(a.camera)
        if planned is None:
            raise DataError(await footage.no_footage(self.svc, cam.id, start, end))
        return await footage.export(self.svc, caller, self.role(caller), a, cam, planned,
                                    progress)

    async def op_still(self, caller: Caller, a: StillArgs, progress: Progress) -> Reply[StillReply]:
        """Find the frame the still will show, decide ONCE on that frame's time, then decode."""
        at = parse_time(a.at)
        until = parse_time(a.until, end_of_day=True)
        if until <= self.svc.clock():
            raise UsageError("--until must be in the future: it is when the suspension ends")
        planned = (await footage.plan_still(self.svc, a.camera, at)
                   if self.may_plan(caller, Action.still, a.camera) else None)
        shown = at if planned is None else planned.frame_us
        detail: dict[str, Any] = {"until": to_iso(until), **self._mask_detail(a)}
        if shown != at:
            detail["asked"] = to_iso(at)
        await self.authorize(caller, Action.still, cameras=[a.camera], start_us=shown,
                             end_us=shown, reason=a.reason, detail=detail,
                             unmasked=bool(a.unmasked))
        cam = self.camera(a.camera)
        if planned is None:
            raise DataError(await footage.no_footage(self.svc, cam.id, at, None))
        return await footage.still(self.svc, caller, self.role(caller), a, cam, planned, until)

    def _mask_detail(self, a: ExportArgs | StillArgs) -> dict[str, Any]:
        """For the audit row of an export or still asked `--unmasked`: the notes of the masks
        it lifts (of the camera map in force when the decision is made)."""
        if not a.unmasked:
            return {}
        cam = self.svc.config.camera(a.camera)
        return {"unmasked": True,
                "masks_lifted": [m.note for m in cam.privacy_masks] if cam else []}

    async def op_masks_preview(
        self, caller: Caller, a: MasksPreviewArgs, progress: Progress
    ) -> Reply[MasksPreviewReply]:
        """The camera's latest keyframe with its masks outlined and numbered (to place them)."""
        cam = self.svc.config.camera(a.camera)
        notes = [m.note for m in cam.privacy_masks] if cam else []
        seg = await self.svc.index.last_segment(a.camera)
        await self.authorize(caller, Action.masks_preview, cameras=[a.camera],
                             start_us=seg.start_us if seg else None,
                             end_us=seg.end_us if seg else None, detail={"masks": notes})
        cam = self.camera(a.camera)
        if seg is None:
            raise DataError(f"no footage of camera {cam.id} yet to draw its masks on; "
                            "see `nvr status`")
        return await footage.masks_preview(self.svc, cam, seg)

    async def op_key_show(self, caller: Caller, a: NoArgs, progress: Progress) -> KeyShowReply:
        from nvr.export.signing import key_show, published_key_path

        await self.authorize(caller, Action.key_show)
        shown = await asyncio.to_thread(key_show, self.svc.root,
                                        published_key_path(self.svc.config.control.socket))
        return cast(KeyShowReply, shown)  # its keys: see _hold below

    # -- holds ------------------------------------------------------------------------------

    async def op_hold_create(
        self, caller: Caller, a: HoldCreateArgs, progress: Progress
    ) -> HoldRow:
        start, end = parse_time(a.start), parse_time(a.end)
        until = _opt_time(a.until, end_of_day=True)
        if end <= start:
            raise UsageError("--end must be after --start")
        async with self.authorized(caller, Action.hold_create, cameras=a.cameras,
                                   start_us=start, end_us=end, reason=a.reason,
                                   detail={"incident": a.incident}):
            for cam_id in a.cameras:
                self.camera(cam_id)
            hold = await self.svc.holds.create(
                cameras=a.cameras, start_us=start, end_us=end, reason=a.reason,
                incident=a.incident, until_us=until, created_by=caller.user or str(caller.uid),
                now_us=self.svc.clock(),
            )
        return _hold(hold)

    async def op_hold_list(self, caller: Caller, a: NoArgs, progress: Progress) -> HoldList:
        await self.authorize(caller, Action.hold_list)
        holds = await self.svc.holds.list(include_inactive=True, now_us=self.svc.clock())
        return {"holds": [_hold(h) for h in holds]}

    async def op_hold_release(
        self, caller: Caller, a: HoldReleaseArgs, progress: Progress
    ) -> HoldRow:
        async with self.authorized(caller, Action.hold_release, reason=a.reason,
                                   detail={"hold": a.hold_id}):
            hold = await self.svc.holds.release(a.hold_id, by=caller.user or str(caller.uid),
                                                reason=a.reason, now_us=self.svc.clock())
        return _hold(hold)

    # -- grants -----------------------------------------------------------------------------

    async def op_grant_create(
        self, caller: Caller, a: GrantCreateArgs, progress: Progress
    ) -> GrantRow:
        start, end = parse_time(a.start), parse_time(a.end)
        expires = parse_time(a.expires, end_of_day=True)
        if end <= start:
            raise UsageError("--end must be after --start")
        async with self.authorized(caller, Action.grant_create, cameras=a.cameras,
                                   start_us=start, end_us=end, reason=a.reason,
                                   detail={"grantee": a.user, "expires": to_iso(expires)}):
            for cam_id in a.cameras:
                self.camera(cam_id)
            if self.svc.config.role_of(a.user) is not Role.staff:
                raise UsageError(
                    f"{a.user!r} is not listed as staff in people:; grants are for staff")
            grant = await self.svc.grants.create(
                user=a.user, cameras=a.cameras, start_us=start, end_us=end, expires_us=expires,
                reason=a.reason, created_by=caller.user or str(caller.uid),
                now_us=self.svc.clock(),
            )
        return cast(GrantRow, grant.to_dict())

    async def op_grant_list(self, caller: Caller, a: NoArgs, progress: Progress) -> GrantList:
        await self.authorize(caller, Action.grant_list)
        grants = await self.svc.grants.list(active_only=False)
        return {"grants": [cast(GrantRow, g.to_dict()) for g in grants]}

    async def op_grant_revoke(
        self, caller: Caller, a: GrantRevokeArgs, progress: Progress
    ) -> GrantRow:
        async with self.authorized(caller, Action.grant_revoke, detail={"grant": a.grant_id}):
            grant = await self.svc.grants.revoke(a.grant_id, by=caller.user or str(caller.uid),
                                                 now_us=self.svc.clock())
        # Revoking stops access at once: the grantee's open viewing links too, not at expiry.
        # The revocation has committed; the answer says so whatever the re-check meets (it
        # logs its own failures, and the periodic pass tries again within a second).
        from nvr.control import views

        await views.recheck_links(self)
        return cast(GrantRow, grant.to_dict())

    # -- requests ---------------------------------------------------------------------------

    async def op_request_create(
        self, caller: Caller, a: RequestCreateArgs, progress: Progress
    ) -> RequestRow:
        start, end = _opt_time(a.start), _opt_time(a.end)
        # The id is chosen first so that the audit row names the request it records: the
        # chain request → approval → release → delivery is then one request id throughout.
        request_id = new_id("R")
        async with self.authorized(caller, Action.request_create, cameras=a.cameras or (),
                                   start_us=start, end_us=end,
                                   detail={"kind": a.kind, "requester": a.requester,
                                           "request": request_id}):
            for cam_id in a.cameras or ():
                self.camera(cam_id)
            req = await self.svc.requests.create(
                kind=a.kind, requester=a.requester, details=a.details,
                created_by=caller.user or str(caller.uid), now_us=self.svc.clock(),
                cameras=a.cameras, start_us=start, end_us=end, request_id=request_id,
            )
        return cast(RequestRow, req.to_dict())

    async def op_request_list(self, caller: Caller, a: NoArgs, progress: Progress) -> RequestList:
        await self.authorize(caller, Action.request_list)
        return {"requests": [cast(RequestRow, r.to_dict())
                             for r in await self.svc.requests.list()]}

    async def _request_info(self, caller: Caller, action: Action, request_id: str) -> RequestInfo:
        req = await self.svc.requests.get(request_id)
        if req is None and MATRIX[action].cells[self.role(caller)].kind is Kind.deny:
            # The policy answers first: an account that may not do this at all learns nothing
            # about which requests exist.
            return RequestInfo(request_id, "unknown", "unknown")
        if req is None:
            # Refused before any decision could be made; audited all the same, like every
            # refusal (and the account learns nothing more than "no such request").
            await self.audit_refusal(caller, action.value,
                                     {"request": request_id, "refusal": "no such request"})
            raise UsageError(f"no request {request_id!r}; see `nvr request list`")
        return req.info

    async def op_request_approve(
        self, caller: Caller, a: RequestApproveArgs, progress: Progress
    ) -> RequestRow:
        expires = _opt_time(a.expires, end_of_day=True)
        info = await self._request_info(caller, Action.request_decide, a.request_id)
        async with self.authorized(caller, Action.request_decide, request=info, approve=True,
                                   detail={"decision": "approve",
                                           "expires": None if expires is None
                                           else to_iso(expires)}):
            req = await self.svc.requests.approve(a.request_id, by=caller.user or str(caller.uid),
                                                  now_us=self.svc.clock(), expires_us=expires)
        return cast(RequestRow, req.to_dict())

    async def op_request_deny(
        self, caller: Caller, a: RequestDenyArgs, progress: Progress
    ) -> RequestRow:
        info = await self._request_info(caller, Action.request_decide, a.request_id)
        async with self.authorized(caller, Action.request_decide, request=info,
                                   reason=a.reason, approve=False, detail={"decision": "deny"}):
            req = await self.svc.requests.deny(a.request_id, by=caller.user or str(caller.uid),
                                               reason=a.reason, now_us=self.svc.clock())
        return cast(RequestRow, req.to_dict())

    # -- watching: viewing links (nvr.control.views) ----------------------------------------

    async def op_live(self, caller: Caller, a: LiveArgs, progress: Progress) -> ViewLink:
        from nvr.control import views

        return await views.live(self, caller, a)

    async def op_playback(self, caller: Caller, a: PlaybackArgs, progress: Progress) -> ViewLink:
        from nvr.control import views

        return await views.playback(self, caller, a)

    async def op_view_list(self, caller: Caller, a: NoArgs, progress: Progress) -> ViewList:
        from nvr.control import views

        return await views.view_list(self, caller)

    async def op_view_revoke(
        self, caller: Caller, a: ViewRevokeArgs, progress: Progress
    ) -> LinkRow:
        from nvr.control import views

        return await views.view_revoke(self, caller, a)

    async def op_emergency_start(
        self, caller: Caller, a: EmergencyStartArgs, progress: Progress
    ) -> EmergencyLink:
        from nvr.control import views

        return await views.emergency_start(self, caller, a)

    async def op_emergency_list(
        self, caller: Caller, a: NoArgs, progress: Progress
    ) -> EmergencyList:
        from nvr.control import views

        return await views.emergency_list(self, caller)

    async def op_emergency_end(
        self, caller: Caller, a: EmergencyEndArgs, progress: Progress
    ) -> EmergencyEnded:
        from nvr.control import views

        return await views.emergency_end(self, caller, a)

    # -- audit, breach, retention, reload ------------------------------------------------------

    async def op_audit_list(
        self, caller: Caller, a: AuditListArgs, progress: Progress
    ) -> AuditPage:
        since = _opt_time(a.since)
        after = a.after_seq or 0
        await self.authorize(caller, Action.audit_list,
                             detail={"after_seq": after} if after else None)
        from nvr.policy.audit import read_page

        limit = a.limit or AUDIT_PAGE
        head_seq, _ = await self.svc.audit.head()
        rows = await asyncio.to_thread(read_page, self.svc.root / "index.db", after_seq=after,
                                       limit=limit, since_us=since)
        more = len(rows) == limit
        # read_page's rows are AuditRow.to_dict(), this shape (see _hold below).
        return {"rows": cast(list[AuditEntry], rows), "head_seq": head_seq,
                "next_after_seq": rows[-1]["seq"] if more else None}

    async def op_audit_verify(
        self, caller: Caller, a: AuditVerifyArgs, progress: Progress
    ) -> AuditVerifyReply:
        from nvr.policy import checkpoint

        await self.authorize(caller, Action.audit_verify)
        svc = self.svc
        path = checkpoint.checkpoint_path(svc.root)
        # Both in a worker thread, the chain streamed from a read-only connection of its own:
        # the loop is never blocked, whatever the table size.
        public = svc.signing_key.public_key()
        read = await asyncio.to_thread(checkpoint.read, path, public)
        journal = None if a.journal is None else checkpoint.read_journal(list(a.journal), public)
        verdict = await asyncio.to_thread(checkpoint.verify_db, svc.root / "index.db", read,
                                          journal)
        if not verdict.ok:
            raise IntegrityError(verdict.problem)
        out: AuditVerifyReply = {"ok": True, "rows": verdict.rows, "head": verdict.head_hash,
                               "head_seq": verdict.head_seq, "checkpoints": verdict.checkpoints}
        if journal is not None:
            out["journal_checkpoint_seq"] = journal.newest.seq if journal.newest else None
        if verdict.warnings:
            out["warnings"] = list(verdict.warnings)
        return out

    async def op_breach_report(
        self, caller: Caller, a: BreachReportArgs, progress: Progress
    ) -> BreachRow:
        from nvr.policy.notify import notify_director

        async with self.authorized(caller, Action.breach_report):
            breach = await self.svc.breaches.create(
                reporter=caller.user or str(caller.uid), details=a.details,
                now_us=self.svc.clock(),
            )
        await notify_director(self.svc.config.notify_command, a.details, logger)
        return cast(BreachRow, breach.to_dict())

    async def op_retention_plan(
        self, caller: Caller, a: RetentionPlanArgs, progress: Progress
    ) -> RetentionPlan:
        at = _opt_time(a.at) or self.svc.clock()
        await self.authorize(caller, Action.retention_plan, detail={"at": to_iso(at)})
        # Without --at: what the next pass would do, so with the clock alert's rules if one stands.
        plan = await self.svc.retention.plan_dict(None if a.at is None else at)
        return cast(RetentionPlan, plan)  # its keys: see _hold below

    async def op_retention_confirm_clock(
        self, caller: Caller, a: NoArgs, progress: Progress
    ) -> ClockConfirmed:
        alert = self.svc.retention.clock_alert
        await self.authorize(caller, Action.retention_confirm_clock,
                             detail={"alert": alert, "clock": to_iso(self.svc.clock())})
        self.svc.confirm_clock()
        return {"confirmed": to_iso(self.svc.clock()), "alert_cleared": alert}

    async def op_reload(self, caller: Caller, a: NoArgs, progress: Progress) -> Reloaded:
        await self.authorize(caller, Action.reload)
        try:
            changes = await self.svc.reload(f"requested by {caller.user}")
        except ConfigError as exc:
            problems = "; ".join(str(exc).splitlines())  # one line, as every refusal is
            raise DataError(f"camera map not reloaded, the running one stays: {problems}") from None
        # added, removed, changed and perhaps restart_needed (see _hold below)
        return cast(Reloaded, changes)


def _emergencies(svc: RecorderPort) -> list[EmergencyRow]:
    """Active emergency live feeds, for `nvr status` (none when the web server is off)."""
    web = svc.viewing
    if web is None:
        return []
    from nvr.control.views import active_emergencies

    return active_emergencies(web, svc.clock())


# The records' to_dict() (and key_show, plan_dict, reload) are typed dict[str, Any] in their
# layers; each is the reply type it is cast to here, key for key, as
# tests/cli/test_reply_shapes_live.py checks on a real daemon's replies.


def _hold(hold: HoldRecord) -> HoldRow:
    return cast(HoldRow, hold.to_dict())
