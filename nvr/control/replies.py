"""What each control-socket op answers: the `result` object of its final line, as types.

The handlers return these, the CLI's renderers read them, and `nvr COMMAND --json` prints them
(export, still and masks preview print the `…Shown` forms: the file's path instead of the
descriptor; on the wire their result also says `"fd": true`, see nvr.control.protocol.Reply).
tests/cli/test_reply_types.py holds docs/commands.md's JSON shapes against these types, key for
key, and tests/cli/test_reply_shapes_live.py a real daemon's answers.

A key marked NotRequired is present only in some answers (a disabled camera has no recorder
figures; `next` only when there is another page). Every instant is UTC ISO 8601 text
(nvr.timeutil.to_iso), every size in bytes, every length in seconds.

TypedDict from typing_extensions: pydantic validates those on Python 3.11 (the tests do).
"""

# No `from __future__ import annotations`: NotRequired must be evaluated for TypedDict to know
# which keys are required (__required_keys__), which the tests and pydantic read.
from typing import Literal, NotRequired

from typing_extensions import TypedDict

# -- status -----------------------------------------------------------------------------------


class CameraBase(TypedDict):
    """A camera's row before its footage figures: the map's names and the recorder's state.
    A camera without a running recorder has only `state: "disabled"`."""

    id: str
    name: str
    area: str
    state: str
    reason: NotRequired[str]
    fps: NotRequired[float]
    bitrate_bps: NotRequired[int]
    frames: NotRequired[int]
    reader: NotRequired[str]
    transport: NotRequired[str]
    transport_reason: NotRequired[str]
    last_segment_end: NotRequired[str | None]
    errors: NotRequired[int]
    last_error: NotRequired[str | None]
    dropped: NotRequired[int]
    last_error_at: NotRequired[str | None]
    timestamp_steps: NotRequired[int]
    resent_frames_dropped: NotRequired[int]
    anchor_delay_s: NotRequired[float | None]
    clock_offset_s: NotRequired[float | None]
    packets_lost: NotRequired[int]


class CameraStatus(CameraBase):
    """A camera's row of `nvr status` (nvr.control.status adds the footage figures)."""

    oldest_footage: str | None
    segments: int
    recordings_bytes: int
    daily_bytes: int | None
    held_bytes: int
    held_seconds: float
    holds: int


class DiskUse(TypedDict):
    root: str
    total_bytes: int
    free_bytes: int
    free_percent: float
    min_free_percent: float
    recordings_bytes: int


class DiskStatus(DiskUse):
    reserve_bytes: int
    daily_bytes: int | None
    days_left: float | None


class RetentionStatus(TypedDict):
    days: float
    oldest_footage: str | None


class RecoveryProgress(TypedDict):
    """The background check of the footage from before start-up (nvr.storage.recovery)."""

    state: str
    checked: int
    total: int
    missing: int
    recovered: int
    quarantined: int


class AlertRow(TypedDict):
    kind: str
    camera: str | None
    message: str


class HeldTotal(TypedDict):
    holds: int
    bytes: int
    seconds: float


class LinkRow(TypedDict):
    """A viewing link as `nvr view list` shows it (nvr.web.links.Link.to_dict)."""

    id: str
    kind: Literal["live", "playback", "emergency"]
    actor: str
    role: str
    cameras: list[str]
    start: str | None
    end: str | None
    purpose: str
    created: str
    expires: str
    minutes_left: int
    state: Literal["open", "ended", "expired"]
    ended_why: str | None
    sessions: int


class EmergencyRow(LinkRow):
    agency: str
    seconds_left: int


class _StatusCommon(TypedDict):
    """What `status` says of the site, the retention, the pause and the recovery, as gathered."""

    site: str
    retention: RetentionStatus
    paused: list[str]
    alert: str | None
    clock_alert: str | None
    recovery: RecoveryProgress
    emergencies: list[EmergencyRow]


class StatusBase(_StatusCommon):
    """`status` as the handler gathers it, before nvr.control.status adds what people read."""

    cameras: list[CameraBase]
    disk: DiskUse


class StatusReply(_StatusCommon):
    cameras: list[CameraStatus]
    disk: DiskStatus
    held: HeldTotal
    alerts: list[AlertRow]
    at: str


# -- recordings ---------------------------------------------------------------------------------


class SegmentRow(TypedDict):
    start: str
    end: str
    path: str
    bytes: int
    frames: int
    sha256: str
    codec: str
    width: int
    height: int
    recovered: bool


class GapRow(TypedDict):
    start: str
    end: str
    reason: str
    detail: str


class RecordingsPage(TypedDict):
    after_us: int


class RecordingsReply(TypedDict):
    camera: str
    segments: list[SegmentRow]
    gaps: list[GapRow]
    next: NotRequired[RecordingsPage]  # another page follows: ask again with these args


# -- footage that leaves: export, still, masks preview ---------------------------------------------


class ClipGap(TypedDict):
    start: str
    end: str
    reason: str


class ExportReply(TypedDict):
    export: str
    sha256: str
    start: str
    end: str
    frames: int
    bytes: int
    gaps: list[ClipGap]
    requested_seconds: float
    recorded_seconds: float
    fingerprint: str
    manifest_bytes_b64: str
    signature_b64: str


class ExportShown(TypedDict):
    """`nvr export --json`: where the clip and its manifest were written."""

    path: str
    sha256: str
    start: str
    end: str
    manifest: str
    fingerprint: NotRequired[str]


class StillReply(TypedDict):
    still: str
    sha256: str
    at: str
    until: str


class StillShown(TypedDict):
    """`nvr still --json`."""

    still: str
    sha256: str
    at: str
    until: str
    path: str


class MaskOutline(TypedDict):
    n: int
    note: str
    polygon: list[list[float]]


class MasksPreviewReply(TypedDict):
    camera: str
    at: str
    sha256: str
    width: int
    height: int
    masks: list[MaskOutline]


class MasksPreviewShown(MasksPreviewReply):
    """`nvr masks preview --json`."""

    path: str


class KeyShowReply(TypedDict):
    algorithm: str
    fingerprint: str
    public_key_pem: str
    path: str
    published: NotRequired[str]


# -- holds, grants, requests, breaches -----------------------------------------------------------


class HoldRow(TypedDict):
    id: str
    cameras: list[str]
    start: str | None
    end: str | None
    reason: str
    incident: str | None
    until: str | None
    created: str | None
    created_by: str
    released: str | None
    released_by: str | None
    release_reason: str | None


class HoldList(TypedDict):
    holds: list[HoldRow]


class GrantRow(TypedDict):
    id: str
    user: str
    cameras: list[str]
    start: str
    end: str
    expires: str
    reason: str
    created: str
    created_by: str
    revoked: str | None
    revoked_by: str | None


class GrantList(TypedDict):
    grants: list[GrantRow]


class RequestRow(TypedDict):
    id: str
    kind: str
    requester: str
    details: str
    status: str
    created: str
    created_by: str
    decided: str | None
    decided_by: str | None
    decision_reason: str | None
    releases: list[dict[str, str]]
    cameras: list[str] | None
    start: str | None
    end: str | None
    expires: str | None
    advice: NotRequired[str]  # a public request: where such requests go instead


class RequestList(TypedDict):
    requests: list[RequestRow]


class BreachRow(TypedDict):
    id: str
    at: str
    reporter: str
    details: str


# -- watching -------------------------------------------------------------------------------------


class ViewLink(TypedDict):
    """A link just made by `live` or `playback`; the token is after `#` in the url."""

    id: str
    url: str
    expires: str
    cameras: list[str]


class EmergencyLink(ViewLink):
    agency: str


class ViewList(TypedDict):
    links: list[LinkRow]


class EmergencyList(TypedDict):
    emergencies: list[EmergencyRow]


class EmergencyEnded(TypedDict):
    ended: list[str]


# -- audit, retention, reload ----------------------------------------------------------------------


class AuditEntry(TypedDict):
    """One row of the audit log (nvr.policy.audit); `detail` is what the row records, as
    stored (its keys differ by action)."""

    seq: int
    at: str
    actor: str
    uid: int | None
    role: str
    action: str
    allowed: bool
    detail: dict[str, object]
    hash: str


class AuditPage(TypedDict):
    rows: list[AuditEntry]
    head_seq: int
    next_after_seq: int | None


class AuditVerifyReply(TypedDict):
    ok: bool
    rows: int
    head: str
    head_seq: int
    checkpoints: int
    journal_checkpoint_seq: NotRequired[int | None]  # with --journal
    warnings: NotRequired[list[str]]  # checkpoint lines from before they were chained


class PlanRow(TypedDict):
    camera: str
    path: str
    why: str


class RetentionPlan(TypedDict):
    at: str
    delete: list[PlanRow]
    keep: list[PlanRow]
    paused: list[str]
    alert: str | None
    clock_alert: str | None


class ClockConfirmed(TypedDict):
    confirmed: str
    alert_cleared: str | None


class Reloaded(TypedDict):
    added: list[str]
    removed: list[str]
    changed: list[str]
    restart_needed: NotRequired[list[str]]  # settings applied only at the next restart


# What each op answers (the wire's `result`), for the tests and the docs check.
REPLIES: dict[str, type] = {
    "status": StatusReply,
    "recordings": RecordingsReply,
    "export": ExportReply,
    "still": StillReply,
    "masks_preview": MasksPreviewReply,
    "key_show": KeyShowReply,
    "hold_create": HoldRow,
    "hold_list": HoldList,
    "hold_release": HoldRow,
    "grant_create": GrantRow,
    "grant_list": GrantList,
    "grant_revoke": GrantRow,
    "request_create": RequestRow,
    "request_list": RequestList,
    "request_approve": RequestRow,
    "request_deny": RequestRow,
    "live": ViewLink,
    "playback": ViewLink,
    "view_list": ViewList,
    "view_revoke": LinkRow,
    "emergency_start": EmergencyLink,
    "emergency_list": EmergencyList,
    "emergency_end": EmergencyEnded,
    "audit_list": AuditPage,
    "audit_verify": AuditVerifyReply,
    "breach_report": BreachRow,
    "retention_plan": RetentionPlan,
    "retention_confirm_clock": ClockConfirmed,
    "reload": Reloaded,
}
