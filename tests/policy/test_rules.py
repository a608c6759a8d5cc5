"""Every cell of docs/policy.md "What each may do", and the rules that are not about who.

EXPECTED below is transcribed from the matrix by hand, independently of nvr.policy.rules.MATRIX,
so a change to either shows here. Test ids read `action|role|cell|"first words of the clause"`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvr.config.model import Role
from nvr.errors import PermissionDenied
from nvr.policy import rules
from nvr.policy.actions import Action, action_for_op
from nvr.policy.rules import (
    MATRIX,
    AccessContext,
    CameraInfo,
    Grant,
    Kind,
    RequestInfo,
    decide,
)

H = 3_600_000_000  # one hour in µs
NOW = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
ROLES = [Role.director, Role.assistant_director, Role.staff, Role.elder_affairs_director,
         Role.it, Role.facilities, Role.public]
SYM = {"✔": Kind.allow, "✘": Kind.deny, "G": Kind.grant, "S": Kind.shared}

# Columns: director, asst. dir., staff, elder affairs, it, facilities, public.
EXPECTED: dict[Action, str] = {
    Action.status: "✔✔✔✔✔✔✘",
    Action.recordings: "✔✔✔✔✔✔✘",
    Action.live: "✔✔GS✔✔✘",
    Action.export: "✔✔GS✘✘✘",
    Action.release: "✔✔✘✘✘✘✘",
    Action.still: "✔✔✘✘✘✘✘",
    Action.hold_create: "✔✔✘✘✘✘✘",
    Action.hold_release: "✔✘✘✘✘✘✘",
    Action.grant_create: "✔✘✘✘✘✘✘",
    Action.grant_revoke: "✔✘✘✘✘✘✘",
    Action.request_create: "✔✔✔✔✔✔✘",
    Action.request_decide: "✔✘✘✘✘✘✘",
    Action.emergency_start: "✔✔✘✘✘✘✘",
    Action.emergency_end: "✔✔✘✘✔✔✘",
    Action.audit_list: "✔✔✘✘✘✘✘",
    Action.audit_verify: "✔✔✔✔✔✔✘",
    Action.breach_report: "✔✔✔✔✔✔✘",
    Action.reload: "✔✘✘✘✔✔✘",
    Action.retention_plan: "✔✔✘✘✔✔✘",
    Action.fsck: "✔✘✘✘✔✔✘",
    # Not in the matrix: the choices commented in rules.py.
    Action.hold_list: "✔✔✘✘✔✔✘",
    Action.grant_list: "✔✔✘✘✘✘✘",
    Action.request_list: "✔✔✘✘✘✘✘",
    Action.retention_confirm_clock: "✔✘✘✘✔✘✘",
    Action.key_show: "✔✔✔✔✔✔✘",
    # Watching (issue 12): playback is "view recorded footage"; links are listed/revoked by
    # everyone (own links only, but directors: the handler filters).
    Action.playback: "✔✔GS✘✘✘",
    Action.view_list: "✔✔✔✔✔✔✘",
    Action.view_revoke: "✔✔✔✔✔✔✘",
    Action.emergency_list: "✔✔✘✘✔✔✘",
    # Issue 26: placing privacy masks (the brief: Director, Assistant Director, IT, facilities).
    Action.masks_preview: "✔✔✘✘✔✔✘",
}

CELLS = [(a, r, SYM[EXPECTED[a][i]]) for a in Action for i, r in enumerate(ROLES)]


def _cell_id(cell: tuple[Action, Role, Kind]) -> str:
    action, role, kind = cell
    clause = " ".join(MATRIX[action].cells[role].clause.split()[:7])
    return f'{action.value}|{role.value}|{kind.value}|"{clause}"'


FRONT = CameraInfo("front-entrance", shared_with_senior_center=False)
SHARED = CameraInfo("senior-lounge", shared_with_senior_center=True)


def _grant(**kw: object) -> Grant:
    base: dict[str, object] = dict(
        id="G-00000001", user="clerk", cameras=frozenset({"front-entrance"}),
        start_us=NOW - 10 * H, end_us=NOW + 10 * H, expires_us=NOW + 24 * H, revoked_us=None)
    base.update(kw)
    return Grant(**base)  # type: ignore[arg-type]


def _req(rid: str, kind: str, status: str, **kw: object) -> RequestInfo:
    """A request whose scope covers what _ctx asks for (camera FRONT, NOW-2h..NOW-1h)."""
    base: dict[str, object] = dict(cameras=frozenset({FRONT.id}), start_us=NOW - 3 * H,
                                   end_us=NOW, expires_us=NOW + H)
    base.update(kw)
    return RequestInfo(rid, kind, status, **base)  # type: ignore[arg-type]


def _ctx(action: Action, *cams: CameraInfo, **kw: object) -> AccessContext:
    """A context that satisfies every rule not about who, so only the cell decides."""
    base: dict[str, object] = dict(
        cameras=cams or (FRONT,), start_us=NOW - 2 * H, end_us=NOW - H, reason="incident 42",
        request=_req("R-00000001", "subpoena",
                     "pending" if action is Action.request_decide else "approved"),
        approve=True, minutes=30)
    base.update(kw)
    return AccessContext(**base)  # type: ignore[arg-type]


def test_the_matrix_has_every_action_and_role() -> None:
    assert set(MATRIX) == set(Action) == set(EXPECTED)
    for row in MATRIX.values():
        assert set(row.cells) == set(Role)


@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
def test_matrix_cell(cell: tuple[Action, Role, Kind]) -> None:
    action, role, kind = cell
    assert MATRIX[action].cells[role].kind is kind
    # The cell decides: a context meeting G (a covering grant) and S (a shared camera).
    cams = (SHARED,) if kind is Kind.shared else (FRONT,)
    d = decide(role, action, _ctx(action, *cams), [_grant()], NOW, "clerk")
    assert d.allowed is (kind is not Kind.deny), d.message
    assert d.rule == f"matrix.{action.value}.{role.value}.{kind.value}"
    assert d.clause == MATRIX[action].cells[role].clause and d.clause in d.message
    assert d.message.startswith("allowed: " if d.allowed else "denied: ")
    if not d.allowed:
        with pytest.raises(PermissionDenied, match="denied"):
            d.check()


def _policy_text() -> str | None:
    for p in (Path(__file__).parents[2] / "docs" / "security-camera-policy.txt",):
        if p.exists():
            return " ".join(p.read_text(encoding="utf-8").split())
    return None


def test_every_clause_is_quoted_exactly_from_the_policy() -> None:
    text = _policy_text()
    if text is None:
        pytest.skip("the policy text is not on this machine")
    clauses = {c.clause for row in MATRIX.values() for c in row.cells.values()}
    clauses |= {rules.PURPOSE, rules.SUBPOENA, rules.PUBLIC_ADVICE, rules.EMERGENCY_END}
    for clause in clauses:
        assert clause in text, clause


# ---- G: staff only inside a grant -----------------------------------------------------------
STAFF = '"Other staff members may be given authorization to access or view footage"'


GRANT_CASES: list[tuple[Grant, dict[str, object], bool, str]] = [
    (_grant(), {}, True, "inside"),
    (_grant(cameras=frozenset({"back-door"})), {}, False, "no grant for camera"),
    (_grant(start_us=NOW - 90 * 60_000_000), {}, False, "do not cover"),
    (_grant(end_us=NOW - 90 * 60_000_000), {}, False, "do not cover"),
    (_grant(expires_us=NOW), {}, False, "expired"),
    (_grant(expires_us=NOW - 1), {}, False, "expired"),
    (_grant(revoked_us=NOW - 1), {}, False, "revoked"),
    (_grant(revoked_us=NOW + H), {}, False, "revoked"),
    (_grant(user="someone-else"), {}, False, "no grant"),
    (_grant(), {"cameras": (FRONT, CameraInfo("back-door"))}, False, "back-door"),
    (_grant(cameras=frozenset({"front-entrance", "back-door"})),
     {"cameras": (FRONT, CameraInfo("back-door"))}, True, "all cameras"),
    (_grant(), {"start_us": None}, False, "no footage window"),
]


@pytest.mark.parametrize(
    "grant, ctx_kw, allowed, why", GRANT_CASES,
    ids=[f"export|staff|G|{'ok' if c[2] else 'denied'}: {c[3]}|{STAFF}" for c in GRANT_CASES],
)
def test_staff_export_only_inside_a_grant(
    grant: Grant, ctx_kw: dict[str, object], allowed: bool, why: str
) -> None:
    d = decide(Role.staff, Action.export, _ctx(Action.export, **ctx_kw), [grant], NOW, "clerk")
    assert d.allowed is allowed, d.message
    assert d.clause == rules.STAFF
    if not allowed:
        assert why in d.message and "staff may export a recorded clip only inside" in d.message


def test_staff_grant_needs_a_known_user() -> None:
    d = decide(Role.staff, Action.export, _ctx(Action.export), [_grant()], NOW, None)
    assert not d.allowed


def test_grants_of_two_cameras_may_come_from_two_grants() -> None:
    grants = [_grant(), _grant(id="G-00000002", cameras=frozenset({"back-door"}))]
    ctx = _ctx(Action.export, FRONT, CameraInfo("back-door"))
    assert decide(Role.staff, Action.export, ctx, grants, NOW, "clerk").allowed


@pytest.mark.parametrize(
    "grant, allowed",
    [(_grant(), True), (_grant(end_us=NOW - 1), False), (_grant(start_us=NOW + 1), False),
     (_grant(revoked_us=NOW), False), (_grant(expires_us=NOW), False)],
    ids=[f"live|staff|G|{w}|{STAFF}" for w in
         ["window-includes-now", "window-ended", "window-not-started", "revoked", "expired"]],
)
def test_staff_live_needs_a_grant_whose_window_includes_now(grant: Grant, allowed: bool) -> None:
    # The requested footage window is irrelevant for live view: it is "now".
    ctx = _ctx(Action.live, start_us=None, end_us=None)
    assert decide(Role.staff, Action.live, ctx, [grant], NOW, "clerk").allowed is allowed


# ---- S: Elder Affairs only shared cameras ---------------------------------------------------
@pytest.mark.parametrize("action", [Action.live, Action.export])
@pytest.mark.parametrize(
    "cams, allowed", [((SHARED,), True), ((FRONT,), False), ((SHARED, FRONT), False), ((), False)],
    ids=["shared", "not-shared", "mixed", "none"],
)
def test_elder_affairs_only_shared_cameras(
    action: Action, cams: tuple[CameraInfo, ...], allowed: bool
) -> None:
    ctx = AccessContext(cameras=cams, start_us=NOW - H, end_us=NOW, reason="fall in lounge")
    d = decide(Role.elder_affairs_director, action, ctx, [], NOW, "elderaffairs")
    assert d.allowed is allowed, d.message
    assert d.clause == rules.ELDER
    if not allowed:
        assert "Senior Center" in d.message


# ---- IT / facilities ------------------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.it, Role.facilities])
def test_operations_staff_get_metadata_and_live_never_pictures_to_keep(role: Role) -> None:
    for action in (Action.status, Action.recordings, Action.live):
        assert decide(role, action, _ctx(action), [], NOW, "itstaff").allowed
    for action in (Action.export, Action.still, Action.release):
        d = decide(role, action, _ctx(action), [_grant(user="itstaff")], NOW, "itstaff")
        assert not d.allowed and d.rule.endswith(".deny")


@pytest.mark.parametrize("action", list(Action), ids=str)
def test_the_public_is_denied_everything(action: Action) -> None:
    d = decide(Role.public, action, _ctx(action), [_grant(user="x")], NOW, "x")
    assert not d.allowed and d.clause == rules.PUBLIC


# ---- rules not about who --------------------------------------------------------------------
@pytest.mark.parametrize("action", sorted(rules.NEEDS_REASON), ids=str)
@pytest.mark.parametrize("reason", [None, "", "   "], ids=["none", "empty", "blank"])
def test_footage_access_needs_a_reason(action: Action, reason: str | None) -> None:
    d = decide(Role.director, action, _ctx(action, reason=reason), [], NOW, "director")
    assert not d.allowed and d.rule == "purpose.reason_required" and d.clause == rules.PURPOSE


@pytest.mark.parametrize(
    "request_, rule",
    [(None, "release.request_missing"),
     (_req("R-1", "subpoena", "pending"), "release.not_approved"),
     (_req("R-1", "court_order", "denied"), "release.not_approved"),
     (_req("R-1", "emergency", "approved"), "release.kind"),
     (_req("R-1", "public", "approved"), "release.kind"),
     (_req("R-1", "subpoena", "approved"), None),
     (_req("R-1", "court_order", "approved"), None),
     (_req("R-1", "voluntary", "approved"), None)],
    ids=["missing", "pending", "denied", "emergency-kind", "public-kind", "subpoena",
         "court-order", "voluntary"],
)
@pytest.mark.parametrize("role", [Role.director, Role.assistant_director])
def test_release_needs_an_approved_lawful_request(
    role: Role, request_: RequestInfo | None, rule: str | None
) -> None:
    d = decide(role, Action.release, _ctx(Action.release, request=request_), [], NOW, "director")
    assert d.allowed is (rule is None), d.message
    if rule:
        assert d.rule == rule


def test_a_public_request_is_never_approved() -> None:
    req = RequestInfo("R-2", "public", "pending")
    d = decide(Role.director, Action.request_decide, _ctx(Action.request_decide, request=req),
               [], NOW, "director")
    assert not d.allowed and d.rule == "request.public_never_approved"
    assert "public records request" in d.clause
    deny = decide(Role.director, Action.request_decide,
                  _ctx(Action.request_decide, request=req, approve=False), [], NOW, "director")
    assert deny.allowed
    # A caller that does not say approve or deny is judged as approving: the strict case.
    unsure = decide(Role.director, Action.request_decide,
                    _ctx(Action.request_decide, request=req, approve=None), [], NOW, "director")
    assert not unsure.allowed


@pytest.mark.parametrize("minutes, allowed", [(1, True), (240, True), (241, False), (0, False),
                                              (-5, False), (None, True)])
def test_emergency_minutes_within_the_maximum(minutes: int | None, allowed: bool) -> None:
    ctx = _ctx(Action.emergency_start, minutes=minutes, max_minutes=240)
    d = decide(Role.assistant_director, Action.emergency_start, ctx, [], NOW, "assistant")
    assert d.allowed is allowed
    if not allowed:
        assert d.rule == "emergency.max_minutes" and "240" in d.message


def test_emergency_must_name_cameras() -> None:
    ctx = AccessContext(cameras=(), minutes=10)
    d = decide(Role.director, Action.emergency_start, ctx, [], NOW, "director")
    assert not d.allowed and d.rule == "emergency.cameras"


def test_action_for_op() -> None:
    assert action_for_op("export", {"request": "R-1"}) is Action.release
    assert action_for_op("export", {}) is Action.export
    assert action_for_op("request_approve") is action_for_op("request_deny") is Action.request_decide
    assert action_for_op("hold_create") is Action.hold_create
    assert action_for_op("no_such_op") is None


# ---- property: decide never allows what the table denies ------------------------------------
_ids = st.sampled_from(["front-entrance", "senior-lounge", "back-door"])
_cams = st.builds(CameraInfo, _ids, st.booleans())
_t = st.integers(NOW - 100 * H, NOW + 100 * H)
_grants = st.builds(Grant, st.text(max_size=4), st.sampled_from(["clerk", "other"]),
                    st.frozensets(_ids), _t, _t, _t, st.none() | _t)
_reqs = st.none() | st.builds(
    RequestInfo, st.just("R-9"),
    st.sampled_from(["subpoena", "court_order", "voluntary", "emergency", "public"]),
    st.sampled_from(["pending", "approved", "denied", "refused"]))
_ctxs = st.builds(AccessContext, st.tuples(_cams) | st.lists(_cams, max_size=3).map(tuple),
                  st.none() | _t, st.none() | _t, st.none() | st.text(max_size=5), _reqs,
                  st.none() | st.booleans(), st.none() | st.integers(-5, 500),
                  st.integers(1, 300))


@given(st.sampled_from(ROLES), st.sampled_from(list(Action)), _ctxs, st.lists(_grants, max_size=3),
       _t, st.none() | st.sampled_from(["clerk", "other"]))
def test_decide_never_allows_a_denied_cell(
    role: Role, action: Action, ctx: AccessContext, grants: list[Grant], now: int,
    user: str | None,
) -> None:
    d = decide(role, action, ctx, grants, now, user)
    assert d.clause.strip() and d.message.strip() and "\n" not in d.message
    if d.allowed:
        kind = SYM[EXPECTED[action][ROLES.index(role)]]
        assert kind is not Kind.deny
        if kind is Kind.grant:
            assert user is not None and any(g.user == user and g.revoked_us is None
                                            and now < g.expires_us for g in grants)
        if kind is Kind.shared:
            assert ctx.cameras and all(c.shared_with_senior_center for c in ctx.cameras)
        if action in rules.NEEDS_REASON:
            assert (ctx.reason or "").strip()
        if action is Action.release:
            assert ctx.request is not None and ctx.request.status == "approved"
            assert ctx.request.kind in {"subpoena", "court_order", "voluntary"}


@pytest.mark.parametrize(
    ("request_", "ctx", "words"),
    [(_req("R-1", "subpoena", "approved"), {"cameras": (CameraInfo("other"),)},
      "camera other is not in request R-1"),
     (_req("R-1", "subpoena", "approved"), {"start_us": NOW - 4 * H},
      "is outside request R-1's window"),
     (_req("R-1", "subpoena", "approved"), {"end_us": NOW + 1},
      "is outside request R-1's window"),
     (_req("R-1", "subpoena", "approved", expires_us=NOW), {},
      "the approval of request R-1 expired at"),
     (RequestInfo("R-1", "subpoena", "approved"), {}, "names no cameras and time window")],
    ids=["camera", "before-window", "after-window", "expired", "no-scope"],
)
def test_release_only_inside_the_approved_scope(request_: RequestInfo, ctx: dict[str, object],
                                                words: str) -> None:
    d = decide(Role.assistant_director, Action.release,
               _ctx(Action.release, request=request_, **ctx), [], NOW, "assistant")
    assert not d.allowed and d.rule == "release.outside_approval", d.message
    assert words in d.message, d.message
