"""The Security Camera Policy as pure decisions (docs/policy.md is generated from MATRIX).

`MATRIX` is the roles × actions table as data, one Cell per (action, role), each quoting the
sentence of the policy it rests on. `decide()` looks the cell up, applies its condition (G: a
grant from the Director, S: cameras shared with the Senior Center) and then the rules that are
not about who (a reason for every footage access, releases need an approved request, …).
No I/O and no clock: the caller passes `now_us`, the caller's grants and what the request is
about, and audits the Decision it gets back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nvr.config.model import Role
from nvr.errors import PermissionDenied
from nvr.policy.actions import Action
from nvr.timeutil import to_iso

# ---- the sentences of the policy that decisions rest on (quoted exactly) -------------------
DIRECTORS = ("Only the Library Director and Assistant Director are authorized to access live "
             "and recorded footage in pursuit of incidents of criminal activity or violations of "
             "Library policy")
STAFF = "Other staff members may be given authorization to access or view footage on a limited basis"
ELDER = ("The Director of Elder Affairs shall have access to cameras monitoring areas shared by "
         "the Library and Senior Center")
OPERATIONS = ("Information technology staff and facilities maintenance staff may also use the "
              "Library's security cameras to aid in the operation of the Library/Senior Center "
              "facility and ensure proper operation of the system")
PUBLIC = ("Confidentiality and privacy issues prohibit the general public from viewing security "
          "camera footage that contains patron information")
PUBLIC_ADVICE = ("Members of the general public requesting to inspect security camera footage "
                 "will be advised to file a police report or public records request, subject to "
                 "applicable exemptions and protections")
LAW_TO_DIRECTOR = ("All requests for the viewing of live or recorded images by law enforcement "
                   "must be presented to the Library Director")
VOLUNTARY = ("Upon approval by the Library Director, recorded images may be shared voluntarily "
             "with law enforcement, unless the images are protected by Massachusetts law")
SUBPOENA = ("Access is also allowed by law enforcement when pursuant to a subpoena, court order, "
            "or when otherwise required by law")
AUTHORIZE = ("The Library Director may authorize the review or release of camera footage for "
             "legitimate purposes")
RETAIN = ("the Library reserves the right to save recordings for as long as it deems necessary")
STILLS = ("Recorded data may be shared with Library staff to identify those suspended from "
          "Library property and to maintain a safe, secure, and policy-compliant environment")
EMERGENCY = ("In the event of an emergency situation at the Library, Hanson Police, or other "
             "appropriate public safety/law enforcement authorities, will be granted temporary "
             "access to the Library's live camera feed in order to coordinate the emergency "
             "response")
EMERGENCY_END = ("This access must be terminated once the situation is under control and the "
                 "immediate danger to public safety has passed")
DISCIPLINE = "Failure to comply with this policy may result in disciplinary action"
BREACH = ("Any Library employee who becomes aware of any unauthorized disclosure of a video "
          "record and/or a potential privacy breach has a responsibility to immediately inform "
          "the Library Director of the breach")
PURPOSE = "in pursuit of incidents of criminal activity or violations of Library policy"
READING = ("Cameras are not positioned to identify a person's reading, viewing, or listening "
           "activities")
CONTROLLED = "The recorders and recorded data are located in a limited access, controlled area"

RELEASE_KINDS = frozenset({"subpoena", "court_order", "voluntary"})
# Actions that touch pictures and so must say why (clause PURPOSE).
# Actions that show footage: what a member of the public asks for, and is advised about.
FOOTAGE_ACTIONS = frozenset({Action.live, Action.playback, Action.export, Action.release,
                             Action.still})
NEEDS_REASON = frozenset({Action.export, Action.release, Action.still, Action.live,
                          Action.playback})


class Kind(StrEnum):
    allow = "allow"      # ✔
    deny = "deny"        # ✘
    grant = "grant"      # G: only inside an unexpired grant from the Director
    shared = "shared"    # S: only cameras shared with the Senior Center


@dataclass(frozen=True, slots=True)
class Cell:
    kind: Kind
    clause: str


@dataclass(frozen=True, slots=True)
class Row:
    what: str  # how a person says the action: "export a recorded clip"
    cells: Mapping[Role, Cell]


def _row(what: str, denied: str, **cells: Cell) -> Row:
    """A row where every role not named is denied by `denied` (the public always by PUBLIC)."""
    out = {role: cells.get(role.value, Cell(Kind.deny, denied)) for role in Role}
    if "public" not in cells:
        out[Role.public] = Cell(Kind.deny, PUBLIC)
    return Row(what, out)


def _ok(clause: str) -> Cell:
    return Cell(Kind.allow, clause)


_D, _A = _ok(DIRECTORS), _ok(DIRECTORS)
_EVERY_EMPLOYEE = {"director": _ok(DIRECTORS), "assistant_director": _ok(DIRECTORS),
                   "staff": _ok(STAFF), "elder_affairs_director": _ok(ELDER),
                   "it": _ok(OPERATIONS), "facilities": _ok(OPERATIONS)}

MATRIX: dict[Action, Row] = {
    Action.status: _row("see recorder status", CONTROLLED, **_EVERY_EMPLOYEE),
    Action.recordings: _row("list recordings", CONTROLLED, **_EVERY_EMPLOYEE),
    Action.live: _row("view live footage", DIRECTORS, director=_D, assistant_director=_A,
                      staff=Cell(Kind.grant, STAFF), elder_affairs_director=Cell(Kind.shared, ELDER),
                      it=_ok(OPERATIONS), facilities=_ok(OPERATIONS)),
    # IT and facilities: live view only, for operation; recorded footage is not theirs to see.
    Action.playback: _row("view recorded footage", DIRECTORS, director=_D, assistant_director=_A,
                          staff=Cell(Kind.grant, STAFF),
                          elder_affairs_director=Cell(Kind.shared, ELDER)),
    # "list / revoke viewing links: ✔ all (directors), own (everyone else)"; the handler shows
    # and revokes only the caller's own links unless the caller is a director.
    Action.view_list: _row("list viewing links", CONTROLLED, **_EVERY_EMPLOYEE),
    Action.view_revoke: _row("revoke a viewing link", CONTROLLED, **_EVERY_EMPLOYEE),
    Action.export: _row("export a recorded clip", DIRECTORS, director=_D, assistant_director=_A,
                        staff=Cell(Kind.grant, STAFF),
                        elder_affairs_director=Cell(Kind.shared, ELDER)),
    Action.release: _row("release footage to law enforcement", LAW_TO_DIRECTOR,
                         director=_ok(VOLUNTARY), assistant_director=_ok(VOLUNTARY)),
    Action.still: _row("make a still for a suspension notice", DIRECTORS,
                       director=_ok(STILLS), assistant_director=_ok(STILLS)),
    Action.hold_create: _row("create a hold", DIRECTORS, director=_ok(RETAIN),
                             assistant_director=_ok(RETAIN)),
    # Not in the matrix. Holds show in `retention plan`, which IT/facilities may run ("ensure
    # proper operation of the system"), so listing them reveals nothing more; staff and Elder
    # Affairs can neither create nor see the plan.
    Action.hold_list: _row("list holds", DIRECTORS, director=_ok(RETAIN),
                           assistant_director=_ok(RETAIN), it=_ok(OPERATIONS),
                           facilities=_ok(OPERATIONS)),
    Action.hold_release: _row("release a hold", AUTHORIZE, director=_ok(AUTHORIZE)),
    Action.grant_create: _row("create a staff grant", AUTHORIZE, director=_ok(AUTHORIZE)),
    # Not in the matrix. Grants are the Director's authorizations; the Assistant Director reads
    # them anyway in the audit log (matrix: "read the audit log" ✔), nobody else does.
    Action.grant_list: _row("list staff grants", AUTHORIZE, director=_ok(AUTHORIZE),
                            assistant_director=_ok(DIRECTORS)),
    Action.grant_revoke: _row("revoke a staff grant", AUTHORIZE, director=_ok(AUTHORIZE)),
    Action.request_create: _row("record a request", LAW_TO_DIRECTOR,
                                **{r: _ok(LAW_TO_DIRECTOR) for r in _EVERY_EMPLOYEE}),
    # Not in the matrix. Requests "must be presented to the Library Director"; the Assistant
    # Director, who may release footage, must see what was approved. Same readers as the audit log.
    Action.request_list: _row("list requests", LAW_TO_DIRECTOR, director=_ok(LAW_TO_DIRECTOR),
                              assistant_director=_ok(LAW_TO_DIRECTOR)),
    Action.request_decide: _row("approve or deny a request", VOLUNTARY,
                                director=_ok(VOLUNTARY)),
    Action.emergency_start: _row("start emergency live access", DIRECTORS,
                                 director=_ok(EMERGENCY), assistant_director=_ok(EMERGENCY)),
    Action.emergency_end: _row("end emergency live access", DIRECTORS,
                               director=_ok(EMERGENCY_END), assistant_director=_ok(EMERGENCY_END),
                               it=_ok(EMERGENCY_END), facilities=_ok(EMERGENCY_END)),
    # Not in the matrix. Those who may end an emergency feed must be able to see which run.
    Action.emergency_list: _row("list emergency live access", DIRECTORS,
                                director=_ok(EMERGENCY), assistant_director=_ok(EMERGENCY),
                                it=_ok(EMERGENCY_END), facilities=_ok(EMERGENCY_END)),
    Action.audit_list: _row("read the audit log", DIRECTORS, director=_D, assistant_director=_A),
    Action.audit_verify: _row("verify the audit chain", DISCIPLINE,
                              **{r: _ok(DISCIPLINE) for r in _EVERY_EMPLOYEE}),
    Action.breach_report: _row("report a breach", BREACH,
                               **{r: _ok(BREACH) for r in _EVERY_EMPLOYEE}),
    Action.reload: _row("reload the camera map", OPERATIONS, director=_D, it=_ok(OPERATIONS),
                        facilities=_ok(OPERATIONS)),
    Action.retention_plan: _row("see the retention plan", OPERATIONS, director=_D,
                                assistant_director=_A, it=_ok(OPERATIONS),
                                facilities=_ok(OPERATIONS)),
    # Not in the matrix: resuming deletion after a clock jump is an operations decision.
    Action.retention_confirm_clock: _row("confirm the clock after a jump", OPERATIONS,
                                         director=_D, it=_ok(OPERATIONS)),
    Action.fsck: _row("check the index against the disk", OPERATIONS, director=_D,
                      it=_ok(OPERATIONS), facilities=_ok(OPERATIONS)),
    # Not in the matrix. The public half of the export signing key lets anyone check a clip;
    # same readers as "verify the audit chain" (every account, never the public).
    # Not in the matrix. Placing privacy masks is setting the system up ("ensure proper
    # operation of the system"): IT and facilities, who see live pictures anyway, and the
    # directors. The preview shows one unmasked keyframe, so it is audited like a view.
    Action.masks_preview: _row("preview a camera's privacy masks", OPERATIONS, director=_D,
                               assistant_director=_A, it=_ok(OPERATIONS),
                               facilities=_ok(OPERATIONS)),
    Action.key_show: _row("show the export signing key", DISCIPLINE,
                          **{r: _ok(DISCIPLINE) for r in _EVERY_EMPLOYEE}),
}


# ---- inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CameraInfo:
    id: str
    shared_with_senior_center: bool = False


@dataclass(frozen=True, slots=True)
class RequestInfo:
    id: str
    kind: str    # subpoena, court_order, voluntary, emergency, public
    status: str  # pending, approved, denied, refused
    # Scope: what an approval covers, and until when. None: not recorded.
    cameras: frozenset[str] | None = None
    start_us: int | None = None
    end_us: int | None = None
    expires_us: int | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    user: str
    cameras: frozenset[str]
    start_us: int      # footage window
    end_us: int
    expires_us: int
    revoked_us: int | None = None


@dataclass(frozen=True, slots=True)
class AccessContext:
    cameras: tuple[CameraInfo, ...] = ()
    start_us: int | None = None
    end_us: int | None = None
    reason: str | None = None
    request: RequestInfo | None = None
    # request_decide: True to approve, False to deny. Whether the request is still pending is
    # the store's business (a usage error, not a policy refusal).
    approve: bool | None = None
    # emergency_start: the asked length and the configured maximum (live.emergency_max_minutes).
    minutes: int | None = None
    max_minutes: int = 240
    # export/release/still: the camera's privacy masks left out (`--unmasked`).
    unmasked: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str     # "matrix.export.staff.grant", "release.not_approved", …
    clause: str   # the quoted sentence of the policy
    message: str  # one line for a person
    detail: Mapping[str, Any] = field(default_factory=dict)

    def audit_detail(self) -> dict[str, Any]:
        return {"rule": self.rule, "clause": self.clause, "message": self.message, **self.detail}

    def check(self) -> None:
        """Raise PermissionDenied (exit 77) with the one-line message when denied."""
        if not self.allowed:
            raise PermissionDenied(self.message)


def _decision(allowed: bool, rule: str, clause: str, text: str) -> Decision:
    verdict = "allowed" if allowed else "denied"
    return Decision(allowed, rule, clause, f'{verdict}: {text} (policy: "{clause}")')


def _span(start_us: int | None, end_us: int | None) -> str:
    if start_us is None or end_us is None:
        return "(no time window given)"
    return f"from {to_iso(start_us)} to {to_iso(end_us)}"


# ---- the G and S conditions -----------------------------------------------------------------
def grant_usable(g: Grant, user: str | None, now_us: int) -> bool:
    """Unexpired and never revoked: a revocation stops access at once, whatever its time."""
    return user is not None and g.user == user and g.revoked_us is None and now_us < g.expires_us


def grant_problem(
    cameras: Sequence[str], start_us: int | None, end_us: int | None,
    grants: Sequence[Grant], user: str | None, now_us: int,
) -> str | None:
    """Why the grants do not cover every camera for the whole window; None when they do."""
    if not cameras:
        return "no camera was named"
    if start_us is None or end_us is None:
        return "no footage window was given"
    for cam in cameras:
        mine = [g for g in grants if g.user == user and cam in g.cameras]
        usable = [g for g in mine if grant_usable(g, user, now_us)]
        if any(g.start_us <= start_us and end_us <= g.end_us for g in usable):
            continue
        if usable:
            return (f"grant(s) {', '.join(g.id for g in usable)} for camera {cam} do not cover "
                    f"{_span(start_us, end_us)}")
        revoked = [g.id for g in mine if g.revoked_us is not None]
        if revoked:
            return f"grant {revoked[0]} for camera {cam} was revoked"
        if mine:
            return f"grant {mine[0].id} for camera {cam} expired at {to_iso(mine[0].expires_us)}"
        return f"there is no grant for camera {cam}"
    return None


def shared_problem(cameras: Sequence[CameraInfo]) -> str | None:
    if not cameras:
        return "no camera was named"
    private = [c.id for c in cameras if not c.shared_with_senior_center]
    if private:
        return f"camera {', '.join(private)} is not shared with the Senior Center"
    return None


def _condition(cell: Cell, action: Action, role: Role, ctx: AccessContext,
               grants: Sequence[Grant], now_us: int, user: str | None) -> Decision | None:
    """The G/S condition of a cell; a denial, or None when it holds."""
    rule = f"matrix.{action.value}.{role.value}.{cell.kind.value}"
    what = MATRIX[action].what
    ids = [c.id for c in ctx.cameras]
    if cell.kind is Kind.grant:
        # Live view: the grant's footage window must include now.
        start, end = (now_us, now_us) if action is Action.live else (ctx.start_us, ctx.end_us)
        problem = grant_problem(ids, start, end, grants, user, now_us)
        if problem:
            span = "now" if action is Action.live else _span(ctx.start_us, ctx.end_us)
            return _decision(False, rule, cell.clause,
                             f"staff may {what} only inside an unexpired grant from the Director "
                             f"covering camera {', '.join(ids) or '?'} {span}: {problem}")
    elif cell.kind is Kind.shared:
        problem = shared_problem(ctx.cameras)
        if problem:
            return _decision(False, rule, cell.clause,
                             f"the Director of Elder Affairs may {what} only from cameras shared "
                             f"with the Senior Center: {problem}")
    return None


# ---- rules that are not about who -----------------------------------------------------------
def release_scope_problem(req: RequestInfo, ctx: AccessContext, now_us: int) -> str | None:
    """Why an approved request does not cover this release; None when it does."""
    if req.cameras is None or req.start_us is None or req.end_us is None:
        return (f"request {req.id} names no cameras and time window, so its approval covers no "
                "footage; record a request with --camera, --start and --end")
    if req.expires_us is not None and now_us >= req.expires_us:
        return f"the approval of request {req.id} expired at {to_iso(req.expires_us)}"
    outside = [c.id for c in ctx.cameras if c.id not in req.cameras]
    if outside or not ctx.cameras:
        return (f"camera {', '.join(outside) or '?'} is not in request {req.id} "
                f"(cameras: {', '.join(sorted(req.cameras))})")
    if (ctx.start_us is None or ctx.end_us is None or ctx.start_us < req.start_us
            or ctx.end_us > req.end_us):
        return (f"footage {_span(ctx.start_us, ctx.end_us)} is outside request {req.id}'s "
                f"window {_span(req.start_us, req.end_us)}")
    return None


# Who may lift a camera's privacy masks from what leaves the recorder (`--unmasked`).
UNMASK_ROLES = frozenset({Role.director})


def _other_rules(action: Action, ctx: AccessContext, now_us: int = 0,
                 role: Role = Role.public) -> Decision | None:
    if action in NEEDS_REASON and not (ctx.reason or "").strip():
        return _decision(False, "purpose.reason_required", PURPOSE,
                         f"to {MATRIX[action].what} give a --reason: every access to footage "
                         "needs a purpose")
    if ctx.unmasked and role not in UNMASK_ROLES:
        return _decision(False, "masks.unmasked_director_only", READING,
                         f"only the Library Director may {MATRIX[action].what} without the "
                         "camera's privacy masks; leave out --unmasked")
    if action is Action.release:
        req = ctx.request
        if req is None:
            return _decision(False, "release.request_missing", LAW_TO_DIRECTOR,
                             "a release to law enforcement needs --request with an approved "
                             "request")
        if req.kind not in RELEASE_KINDS:
            clause = PUBLIC_ADVICE if req.kind == "public" else SUBPOENA
            return _decision(False, "release.kind", clause,
                             f"request {req.id} is of kind {req.kind}; only subpoena, court_order "
                             "or voluntary requests can release footage")
        if req.status != "approved":
            return _decision(False, "release.not_approved", VOLUNTARY,
                             f"request {req.id} is {req.status}, not approved by the Director")
        scope = release_scope_problem(req, ctx, now_us)
        if scope:
            return _decision(False, "release.outside_approval", VOLUNTARY,
                             f"the Director's approval does not cover this release: {scope}")
    if action is Action.request_decide and ctx.request is not None:
        # approve=None (the caller did not say which): judged as an approval, the strict case.
        if ctx.request.kind == "public" and ctx.approve is not False:
            return _decision(False, "request.public_never_approved", PUBLIC_ADVICE,
                             f"request {ctx.request.id} is from the general public and cannot "
                             "be approved")
    if action is Action.emergency_start:
        if not ctx.cameras:
            return _decision(False, "emergency.cameras", EMERGENCY,
                             "emergency live access must name the cameras it covers")
        # minutes=None: the caller checks the length itself (e.g. a default it applies later).
        if ctx.minutes is not None and not 0 < ctx.minutes <= ctx.max_minutes:
            return _decision(False, "emergency.max_minutes", EMERGENCY_END,
                             f"emergency live access lasts 1 to {ctx.max_minutes} minutes, "
                             f"not {ctx.minutes}")
    return None


def decide(
    caller_role: Role, action: Action, ctx: AccessContext, grants: Sequence[Grant],
    now_us: int, user: str | None,
) -> Decision:
    cell = MATRIX[action].cells[caller_role]
    rule = f"matrix.{action.value}.{caller_role.value}.{cell.kind.value}"
    who = caller_role.value.replace("_", " ")
    if cell.kind is Kind.deny:
        text = f"{who} may not {MATRIX[action].what}"
        if caller_role is Role.public and action in FOOTAGE_ACTIONS:
            # The policy's answer to a member of the public who asks to see footage.
            text += ("; to ask for footage, file a police report or a public records request "
                     f'(policy: "{PUBLIC_ADVICE}")')
        return _decision(False, rule, cell.clause, text)
    denied = _condition(cell, action, caller_role, ctx, grants, now_us, user)
    if denied is None:
        denied = _other_rules(action, ctx, now_us, caller_role)
    if denied is not None:
        return denied
    return _decision(True, rule, cell.clause, f"{who} may {MATRIX[action].what}")
