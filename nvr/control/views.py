"""Control ops that mint, list and end viewing links (docs/commands.md, "Watching").

`nvr live`, `nvr playback` and `nvr emergency start` are decided by the policy as the caller
(SO_PEERCRED) like every other op, and audited; only then is a link minted. The web server
(nvr.web) checks the link on every request after that.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from nvr import log
from nvr.config.model import Role
from nvr.control import footage
from nvr.control.ports import LinkKind, ViewingPort
from nvr.control.ports import ViewLink as OpenLink
from nvr.control.protocol import (
    Caller,
    EmergencyEndArgs,
    EmergencyStartArgs,
    LiveArgs,
    PlaybackArgs,
    ViewRevokeArgs,
)
from nvr.control.replies import (
    EmergencyEnded,
    EmergencyLink,
    EmergencyList,
    EmergencyRow,
    LinkRow,
    ViewLink,
    ViewList,
)
from nvr.errors import Unavailable, UsageError
from nvr.policy.actions import Action
from nvr.policy.rules import Decision
from nvr.timeutil import parse_time, to_iso

if TYPE_CHECKING:
    # What the ops here use of the handlers (a Protocol: the handlers import this module).
    from nvr.control.ports import OpContext as Handlers

_log = log.get("nvr.control.views")
LIVE_DEFAULT_MINUTES = 15
PLAYBACK_DEFAULT_MINUTES = 60
DAY_US = 86_400_000_000
# Who sees and ends every link, not only their own (docs/policy.md: "all").
ALL_LINKS = frozenset({Role.director, Role.assistant_director})


def _web(h: Handlers) -> ViewingPort:
    web = h.svc.viewing
    if web is None:
        why = h.svc.web_alert
        if why:
            raise Unavailable(why)  # names the address, the cause and the setting to fix
        raise Unavailable("the web server is not running, so no viewing link can be made; "
                          "the recorder's log says why (journalctl -u nvr)")
    return web


def _actor(caller: Caller) -> str:
    return caller.user or f"uid {caller.uid}"


async def _mint(h: Handlers, caller: Caller, kind: LinkKind, cameras: list[str], minutes: int,
                purpose: str, start_us: int | None = None,
                end_us: int | None = None) -> ViewLink:
    web = _web(h)
    now = h.svc.clock()
    link, token = await web.mint_link(
        kind=kind, actor=_actor(caller), uid=caller.uid, role=h.role(caller).value,
        cameras=cameras, start_us=start_us, end_us=end_us, purpose=purpose, now_us=now,
        expires_us=now + minutes * 60_000_000,
    )
    await web.audit_link(link.id, "view_link_created", cameras=cameras,
                         expires=to_iso(link.expires_us),
                         **({"start": to_iso(start_us), "end": to_iso(end_us)}
                            if start_us is not None and end_us is not None else {}))
    return {"id": link.id, "url": f"{web.base_url()}/view#{token}",
            "expires": to_iso(link.expires_us), "cameras": cameras}


async def live(h: Handlers, caller: Caller, a: LiveArgs) -> ViewLink:
    now = h.svc.clock()
    minutes = a.minutes or LIVE_DEFAULT_MINUTES
    # The decision, the link and its audit row commit as one unit of work.
    async with h.authorized(caller, Action.live, cameras=a.cameras, start_us=now, end_us=now,
                            reason=a.reason, detail={"minutes": minutes}):
        for cam_id in a.cameras:
            h.camera(cam_id)
        return await _mint(h, caller, "live", list(a.cameras), minutes, a.reason)


async def playback(h: Handlers, caller: Caller, a: PlaybackArgs) -> ViewLink:
    now = h.svc.clock()
    start = parse_time(a.start)
    # Without --end: to the end of that day, or now if that is earlier (a day's timeline).
    end = parse_time(a.end) if a.end else min(now, start + DAY_US)
    if end <= start:
        raise UsageError("--end must be after --start (and --start in the past)")
    minutes = a.minutes or PLAYBACK_DEFAULT_MINUTES
    # The page must start each camera at the keyframe before --start: the decision covers that
    # lead-in too, as an export's does (a staff grant's window must include it).
    shown_from = start
    if all(h.may_plan(caller, Action.playback, c) for c in a.cameras):
        for cam_id in a.cameras:
            shown_from = min(shown_from, await footage.lead_in(h.svc, cam_id, start))
    detail: dict[str, Any] = {"minutes": minutes}
    if shown_from < start - 1000:  # (1 ms of slack, as export's)
        detail.update(requested_start=to_iso(start), lead_in_from=to_iso(shown_from))
    else:
        shown_from = start
    # The decision, the link and its audit row commit as one unit of work.
    async with h.authorized(caller, Action.playback, cameras=a.cameras, start_us=shown_from,
                            end_us=end, reason=a.reason, detail=detail):
        for cam_id in a.cameras:
            h.camera(cam_id)
        return await _mint(h, caller, "playback", list(a.cameras), minutes, a.reason, start,
                           end)


async def emergency_start(h: Handlers, caller: Caller, a: EmergencyStartArgs) -> EmergencyLink:
    # The decision, the link and its audit row commit as one unit of work.
    async with h.authorized(caller, Action.emergency_start, cameras=a.cameras, minutes=a.minutes,
                            detail={"agency": a.agency}):
        for cam_id in a.cameras:
            h.camera(cam_id)
        link = await _mint(h, caller, "emergency", list(a.cameras), a.minutes,
                           f"emergency: {a.agency}")
    return EmergencyLink(**link, agency=a.agency)


def _mine(h: Handlers, caller: Caller) -> str | None:
    return None if h.role(caller) in ALL_LINKS else _actor(caller)


async def view_list(h: Handlers, caller: Caller) -> ViewList:
    await h.authorize(caller, Action.view_list)
    web = _web(h)
    now = h.svc.clock()
    return {"links": [_row(lk, now)
                      for lk in web.list_links(actor=_mine(h, caller), now_us=now)]}


def _row(link: OpenLink, now_us: int) -> LinkRow:
    # Link.to_dict is this shape (tests/cli/test_reply_shapes_live.py checks it).
    return cast(LinkRow, link.to_dict(now_us))


async def view_revoke(h: Handlers, caller: Caller, a: ViewRevokeArgs) -> LinkRow:
    await h.authorize(caller, Action.view_revoke, detail={"link": a.link_id})
    web = _web(h)
    link = web.find_link(a.link_id)
    mine = _mine(h, caller)
    if link is None or (mine is not None and link.actor != mine):
        raise UsageError(f"no viewing link {a.link_id!r} of yours; see `nvr view list`")
    await web.close_link(link.id, f"revoked by {_actor(caller)}")
    return _row(link, h.svc.clock())


def active_emergencies(web: ViewingPort, now_us: int) -> list[EmergencyRow]:
    return [EmergencyRow(**_row(lk, now_us), agency=lk.purpose.removeprefix("emergency: "),
                         seconds_left=max(0, (lk.expires_us - now_us) // 1_000_000))
            for lk in web.list_links(kind="emergency", open_only=True, now_us=now_us)]


async def emergency_list(h: Handlers, caller: Caller) -> EmergencyList:
    await h.authorize(caller, Action.emergency_list)
    return {"emergencies": active_emergencies(_web(h), h.svc.clock())}


async def emergency_end(h: Handlers, caller: Caller, a: EmergencyEndArgs) -> EmergencyEnded:
    await h.authorize(caller, Action.emergency_end, detail={"emergency": a.emergency_id})
    web = _web(h)
    now = h.svc.clock()
    open_ = web.list_links(kind="emergency", open_only=True, now_us=now)
    targets: list[OpenLink] = list(open_) if a.emergency_id is None else [
        lk for lk in open_ if lk.id == a.emergency_id]
    if a.emergency_id is not None and not targets:
        raise UsageError(f"no active emergency feed {a.emergency_id!r}; see `nvr emergency list`")
    for link in targets:
        await web.close_link(link.id, f"ended by {_actor(caller)}")
    return {"ended": [lk.id for lk in targets]}


# -- rights that change under an open link ------------------------------------------------------

_ACTION_OF: dict[str, Action] = {"live": Action.live, "playback": Action.playback,
                                 "emergency": Action.emergency_start}


async def recheck_links(h: Handlers) -> list[str]:
    """Decide every open link again, as its maker, against today's grants and camera map; end
    the ones the policy would now refuse. A link carries the rights it was made with only while
    they last: a revoked or expired grant, a person taken out of `people:`, a camera taken out of
    the map all end its streams within LINK_RECHECK_INTERVAL_S (revoking a grant, at once).
    One pass at a time; a link that fails to be checked is logged and tried again next pass.
    Returns the ids of the links this pass ended."""
    web = h.svc.viewing
    if web is None:
        return []
    async with web.recheck_lock:
        ended: list[str] = []
        for link in web.list_links(open_only=True, now_us=h.svc.clock()):
            try:
                if await _end_if_refused(h, web, link):
                    ended.append(link.id)
            except Exception:
                _log.exception("view_link_recheck_failed", link=link.id)
        return ended



async def _end_if_refused(h: Handlers, web: ViewingPort, link: OpenLink) -> bool:
    now = h.svc.clock()
    why = _camera_gone(h, link)
    rule = "camera.not_in_map"
    if why is None:
        decision = await _decide_again(h, link, now)
        if decision is None or decision.allowed:
            return False
        why, rule = decision.message.removeprefix("denied: "), decision.rule
    if not link.usable(h.svc.clock()):  # ended or expired while we asked
        return False
    if not await web.close_link(link.id, f"ended because the policy no longer allows it: {why}"):
        return False
    # The recorder ends it, not its maker: a system row that names the maker.
    await h.svc.audit.append(
        at_us=h.svc.clock(), actor="nvr", uid=os.getuid(), role="system",
        action="view_link_ended", allowed=True,
        detail={"link": link.id, "kind": link.kind, "maker": link.actor,
                "purpose": link.purpose, "why": why, "rule": rule},
    )
    return True


def _camera_gone(h: Handlers, link: OpenLink) -> str | None:
    gone = [c for c in link.cameras if h.svc.config.camera(c) is None]
    if gone:
        return f"camera {', '.join(gone)} is no longer in the camera map"
    return None


async def _decide_again(h: Handlers, link: OpenLink, now: int) -> Decision | None:
    action = _ACTION_OF.get(link.kind)
    if action is None:
        return None
    user = None if link.actor.startswith("uid ") else link.actor  # _actor() above
    caller = Caller(uid=link.uid if link.uid is not None else -1, gid=-1, pid=0, user=user,
                    role=h.svc.config.role_of(user))
    start: int | None = now if action is Action.live else link.start_us
    end: int | None = now if action is Action.live else link.end_us
    # An emergency feed's length was judged when it started; its expiry is its time box. A
    # later change of live.emergency_max_minutes (or a clock step) must not cut the police off.
    return await h.decision(caller, action, now, cameras=list(link.cameras), start_us=start,
                            end_us=end, reason=link.purpose or None, minutes=None)
