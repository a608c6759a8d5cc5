"""The control socket's wire protocol: newline-delimited JSON, one request, then replies.

The client sends one line `{"op": NAME, "args": {...}}`. The daemon answers with zero or more
`{"progress": {...}}` lines and one final `{"ok": true, "result": {...}}` or
`{"ok": false, "code": N, "error": TEXT}` line. Who asks is never part of a request: it comes
from SO_PEERCRED, and every args model forbids extra fields, so a `user`, `uid` or `role` field
sent by a client is refused rather than ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from nvr.config.model import CAMERA_ID_PATTERN, Role
from nvr.errors import UsageError

MAX_REQUEST_BYTES = 64 * 1024

# No control characters except tab and newline: they end up in tables, logs and the audit log.
_PRINTABLE = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"


CameraId = Annotated[str, StringConstraints(pattern=CAMERA_ID_PATTERN)]
# Times travel as the user typed them; the daemon parses them with nvr.timeutil.parse_time.
# Text a person typed: trimmed, not empty, printable, and bounded.
TimeText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                            pattern=_PRINTABLE)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000,
                                          pattern=_PRINTABLE)]
Details = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=20000, pattern=_PRINTABLE)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                        pattern=_PRINTABLE)]
# Holds, grants, requests and emergencies are TEXT ids in the index.
ObjectId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")]
AccountName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]
Cameras = Annotated[list[CameraId], Field(min_length=1, max_length=64)]
Minutes = Annotated[int, Field(ge=1, le=24 * 60)]
RequestKind = Literal["subpoena", "court_order", "voluntary", "emergency", "public"]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    pass


class RecordingsArgs(Args):
    camera: CameraId
    start: TimeText | None = None
    end: TimeText | None = None
    # Paging: the segments that start after this µs time; the CLI follows "next".
    after_us: Annotated[int, Field(ge=0)] | None = None


class ExportArgs(Args):
    camera: CameraId
    start: TimeText
    end: TimeText
    reason: Reason
    incident: Name | None = None
    request: ObjectId | None = None
    # The name (not the path) of the --out file, so the signed manifest names the clip.
    out_name: Annotated[str, StringConstraints(pattern=r"^[^/\x00]{1,255}$")] | None = None
    # The camera's privacy masks left out (Director only; the audit row names what was lifted).
    # None (not given) is False; left out of the request unless asked.
    unmasked: bool | None = None


class MasksPreviewArgs(Args):
    camera: CameraId


class StillArgs(Args):
    camera: CameraId
    at: TimeText
    until: TimeText
    reason: Reason
    unmasked: bool | None = None


class HoldCreateArgs(Args):
    cameras: Cameras
    start: TimeText
    end: TimeText
    reason: Reason
    incident: Name | None = None
    until: TimeText | None = None


class HoldReleaseArgs(Args):
    hold_id: ObjectId
    reason: Reason


class GrantCreateArgs(Args):
    # The grantee, not the caller: the caller is always the socket's peer.
    user: AccountName
    cameras: Cameras
    start: TimeText
    end: TimeText
    expires: TimeText
    reason: Reason


class GrantRevokeArgs(Args):
    grant_id: ObjectId


class RequestCreateArgs(Args):
    kind: RequestKind
    requester: Name
    details: Details
    # Scope: what an approval will cover (all three, or none).
    cameras: Cameras | None = None
    start: TimeText | None = None
    end: TimeText | None = None


class RequestApproveArgs(Args):
    request_id: ObjectId
    expires: TimeText | None = None  # default: 30 days


class RequestDenyArgs(Args):
    request_id: ObjectId
    reason: Reason


class LiveArgs(Args):
    cameras: Cameras
    reason: Reason
    minutes: Minutes | None = None


class PlaybackArgs(Args):
    cameras: Cameras
    start: TimeText
    end: TimeText | None = None
    reason: Reason
    minutes: Minutes | None = None


class ViewRevokeArgs(Args):
    link_id: ObjectId


class EmergencyStartArgs(Args):
    agency: Name
    cameras: Cameras
    minutes: Minutes


class EmergencyEndArgs(Args):
    emergency_id: ObjectId | None = None


class AuditListArgs(Args):
    since: TimeText | None = None
    # Paging: rows after this seq, at most `limit` of them. The CLI asks page by
    # page, so neither the daemon nor the loop ever holds the whole log.
    after_seq: Annotated[int, Field(ge=0, le=2**62)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None


# A checkpoint line as the journal holds it (about 400 characters; nvr.policy.checkpoint).
JournalLine = Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class AuditVerifyArgs(Args):
    # `nvr audit verify --journal FILE`: the newest checkpoint lines the journal holds, oldest
    # first; the daemon checks their signatures and holds the newest against its file.
    # (32 newest and up to 64 where the chain breaks: nvr.cli.commands.journal_checkpoints)
    journal: Annotated[list[JournalLine], Field(max_length=96)] | None = None


class BreachReportArgs(Args):
    details: Details


class RetentionPlanArgs(Args):
    at: TimeText | None = None


ARGS: dict[str, type[Args]] = {
    "status": NoArgs,
    "recordings": RecordingsArgs,
    "export": ExportArgs,
    "still": StillArgs,
    "hold_create": HoldCreateArgs,
    "hold_list": NoArgs,
    "hold_release": HoldReleaseArgs,
    "grant_create": GrantCreateArgs,
    "grant_list": NoArgs,
    "grant_revoke": GrantRevokeArgs,
    "request_create": RequestCreateArgs,
    "request_list": NoArgs,
    "request_approve": RequestApproveArgs,
    "request_deny": RequestDenyArgs,
    "live": LiveArgs,
    "playback": PlaybackArgs,
    "view_list": NoArgs,
    "view_revoke": ViewRevokeArgs,
    "emergency_list": NoArgs,
    "emergency_start": EmergencyStartArgs,
    "emergency_end": EmergencyEndArgs,
    "audit_list": AuditListArgs,
    "audit_verify": AuditVerifyArgs,
    "breach_report": BreachReportArgs,
    "retention_plan": RetentionPlanArgs,
    "retention_confirm_clock": NoArgs,
    "reload": NoArgs,
    "key_show": NoArgs,
    "masks_preview": MasksPreviewArgs,
}

Op = Literal[
    "status", "recordings", "export", "still", "hold_create", "hold_list", "hold_release",
    "grant_create", "grant_list", "grant_revoke", "request_create", "request_list",
    "request_approve", "request_deny", "live", "emergency_start", "emergency_end",
    "audit_list", "audit_verify", "breach_report", "retention_plan", "reload", "key_show",
    "playback", "view_list", "view_revoke", "emergency_list",
    "retention_confirm_clock", "masks_preview",
]  # fmt: skip


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Op
    args: dict[str, Any] = {}


class BadRequest(UsageError):
    """Raised by parse_request when a request line is not valid JSON or not a valid request."""


@dataclass(frozen=True)
class Caller:
    """Who is asking, from the kernel (SO_PEERCRED) and `people:`; never from the request."""

    uid: int
    gid: int
    pid: int
    user: str | None
    role: Role


# A reply's result: the op's reply type (nvr.control.replies) in the daemon; on the client side
# the JSON object as received, dict[str, Any], which the CLI reads as the op's reply type.
R = TypeVar("R", bound=Mapping[str, object], covariant=True)


@dataclass(frozen=True)
class Reply(Generic[R]):
    """A dispatch result. `fd`, if set, is sent with the final line (SCM_RIGHTS) and then closed
    by the server, and the final line's result says `"fd": true`; on the client side it is the
    received descriptor, owned by the caller (and the client takes `fd` out of the result)."""

    result: R
    fd: int | None = None


def _describe(err: ValidationError, prefix: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown field (who is asking comes from the socket, not the request)"
    if first["type"] == "literal_error" and first["loc"] == ("op",):
        return f"op: unknown operation {first.get('input')!r}"
    return f"{where}: {first['msg']}"


def parse_request(line: bytes) -> tuple[str, Args]:
    """One request line → (op, validated args). Raises BadRequest naming the field."""
    if len(line) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request is {len(line)} bytes; the limit is {MAX_REQUEST_BYTES}")
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request is nested too deeply to be a request") from None
    if not isinstance(raw, dict):
        raise BadRequest('request must be a JSON object {"op": ..., "args": {...}}')
    try:
        req = Request.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(_describe(exc, "")) from None
    try:
        args = ARGS[req.op].model_validate(req.args)
    except ValidationError as exc:
        raise BadRequest(_describe(exc, "args")) from None
    except RecursionError:
        raise BadRequest("args are nested too deeply") from None
    return req.op, args


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def request_line(op: str, args: dict[str, Any]) -> bytes:
    return _line({"op": op, "args": args})


def progress_line(done: int, total: int, message: str = "") -> bytes:
    return _line({"progress": {"done": done, "total": total, "message": message}})


def ok_line(result: Mapping[str, object], *, fd: bool = False) -> bytes:
    body = dict(result, fd=True) if fd else dict(result)
    return _line({"ok": True, "result": body})


def error_line(code: int, error: str) -> bytes:
    # One line naming the problem: a multi-line message would not fit `nvr: <message>`.
    return _line({"ok": False, "code": code, "error": " ".join(error.split())})
