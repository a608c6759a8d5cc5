"""What a caller may ask for: one Action per control-socket op that needs a policy decision."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    status = "status"
    recordings = "recordings"
    live = "live"
    # View recorded footage in a browser (`nvr playback`).
    playback = "playback"
    view_list = "view_list"
    view_revoke = "view_revoke"
    export = "export"
    # An export tied to a law-enforcement request (`nvr export --request ID`).
    release = "release"
    still = "still"
    hold_create = "hold_create"
    hold_list = "hold_list"
    hold_release = "hold_release"
    grant_create = "grant_create"
    grant_list = "grant_list"
    grant_revoke = "grant_revoke"
    request_create = "request_create"
    request_list = "request_list"
    # request_approve and request_deny.
    request_decide = "request_decide"
    emergency_start = "emergency_start"
    emergency_end = "emergency_end"
    emergency_list = "emergency_list"
    audit_list = "audit_list"
    audit_verify = "audit_verify"
    breach_report = "breach_report"
    reload = "reload"
    retention_plan = "retention_plan"
    # After a clock jump paused deletion: the IT person says the clock is right now.
    retention_confirm_clock = "retention_confirm_clock"
    fsck = "fsck"
    key_show = "key_show"
    # A camera's latest keyframe with its privacy masks outlined (`nvr masks preview`).
    masks_preview = "masks_preview"


# Ops whose Action has the same name; the rest are mapped in action_for_op().
_SAME_NAME = frozenset(a.value for a in Action) - {"release", "request_decide", "fsck"}


def action_for_op(op: str, args: Mapping[str, Any] | None = None) -> Action | None:
    """The Action a control-socket op needs decided; None for an op this module doesn't know."""
    args = args or {}
    if op == "export":
        return Action.release if args.get("request") else Action.export
    if op in ("request_approve", "request_deny"):
        return Action.request_decide
    if op in _SAME_NAME:
        return Action(op)
    return None
