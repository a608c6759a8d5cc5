"""A viewing link lasts only while the rights it was made with last: revoking the grant ends
the staff member's open stream at once, an expiring grant ends it within seconds, and a
camera map that takes the person out ends theirs too. Each end is audited with the reason.

In-process with the real Service, policy, SQLite and web server, and aiohttp as the browser
(the page's own reaction to an ended link is tested with Chromium in test_live_browser.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from nvr.config.loader import load_camera_map
from nvr.config.model import Role
from nvr.control import views
from nvr.control.handlers import Handlers
from nvr.control.protocol import Caller, EmergencyStartArgs, GrantRevokeArgs, LiveArgs
from nvr.errors import PermissionDenied
from nvr.runtime.service import Service
from tests.web.browser import free_port
from tests.web.maps import write_map

HOUR_US = 3_600_000_000


def _config(tmp: Path, port: int, staff: bool = True) -> Path:
    return write_map(tmp, port,
                     people_extra="  - {user: staffer, role: staff}\n" if staff else "")


STAFFER = Caller(uid=4242, gid=4242, pid=1, user="staffer", role=Role.staff)
DIRECTOR = Caller(uid=4243, gid=4243, pid=1, user="director", role=Role.director)


async def _watch_until_ended(base: str, link_id: str, token: str,
                             act: object) -> tuple[str, float]:
    """Open a session and the page's event socket, run `act`, return the end message and how
    long it took to arrive."""
    async with aiohttp.ClientSession(headers={"Origin": base},
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base}/api/session", json={"token": token}) as r:
            assert r.status == 200, await r.text()
        async with http.ws_connect(f"{base}/api/l/{link_id}/events") as ws:
            t0 = time.monotonic()
            await act()  # type: ignore[operator]
            msg = await asyncio.wait_for(ws.receive_json(), 5.0)
            took = time.monotonic() - t0
        async with http.get(f"{base}/api/l/{link_id}/info") as r:
            assert r.status == 403, "an ended link still answered"
            assert "policy no longer allows" in await r.text()
    return str(msg["ended"]), took


async def test_revoking_the_grant_ends_the_staff_members_open_live_link(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, port)
    svc = Service(cfg, load_camera_map(cfg))
    await svc.start()
    try:
        h = Handlers(svc)
        now = svc.clock()
        grant = await svc.grants.create(
            user="staffer", cameras=["lobby"], start_us=now - HOUR_US, end_us=now + HOUR_US,
            expires_us=now + HOUR_US, reason="cover the desk", now_us=now,
            created_by="director")
        minted = await views.live(h, STAFFER, LiveArgs(
            cameras=["lobby"], minutes=10, reason="desk cover"))
        token = minted["url"].split("#", 1)[1]
        assert await views.recheck_links(h) == [], "a link still within its grant was ended"

        async def revoke() -> None:
            await h.op_grant_revoke(DIRECTOR, GrantRevokeArgs(grant_id=grant.id), None)

        ended, took = await _watch_until_ended(f"http://127.0.0.1:{port}", minted["id"], token,
                                               revoke)
        assert "policy no longer allows" in ended and "grant" in ended, ended
        assert took < 2, f"the stream stayed open {took:.1f} s after the grant was revoked"
        # The periodic pass racing the one after the revoke: still one row, by the recorder.
        await asyncio.gather(views.recheck_links(h), views.recheck_links(h))
        rows = [r for r in await svc.audit.rows() if r.action == "view_link_ended"]
        assert len(rows) == 1 and (rows[0].actor, rows[0].role) == ("nvr", "system")
        assert rows[0].detail["maker"] == "staffer" and rows[0].detail["link"] == minted["id"]
        assert "grant" in rows[0].detail["why"] and not rows[0].detail["why"].startswith("denied")
        # Nor can the staffer make a new one.
        try:
            await views.live(h, STAFFER, LiveArgs(cameras=["lobby"], minutes=10,
                                                         reason="again"))
        except PermissionDenied as exc:
            assert "grant" in str(exc)
        else:
            raise AssertionError("a staff member with a revoked grant got a new live link")
    finally:
        await svc.stop()


async def test_an_expiring_grant_and_a_reload_without_the_person_end_their_links(
        tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, port)
    offset = [0]
    svc = Service(cfg, load_camera_map(cfg), clock=lambda: time.time_ns() // 1000 + offset[0])
    await svc.start()
    try:
        h = Handlers(svc)
        now = svc.clock()
        await svc.grants.create(
            user="staffer", cameras=["lobby"], start_us=now - HOUR_US, end_us=now + HOUR_US,
            expires_us=now + 120_000_000, reason="cover the desk", now_us=now,
            created_by="director")
        first = await views.live(h, STAFFER, LiveArgs(
            cameras=["lobby"], minutes=10, reason="desk cover"))

        async def expire() -> None:  # the periodic re-check finds it, no call from here
            offset[0] += 121_000_000

        ended, took = await _watch_until_ended(f"http://127.0.0.1:{port}", first["id"],
                                               first["url"].split("#", 1)[1], expire)
        assert "expired" in ended and "grant" in ended, ended
        assert took < 3, f"the stream stayed open {took:.1f} s after the grant expired"

        # A director's link ends when the camera map no longer lists the director.
        offset[0] = 0
        second = await views.live(h, DIRECTOR, LiveArgs(
            cameras=["lobby"], minutes=10, reason="incident"))
        # An emergency feed outlives a lower live.emergency_max_minutes: its length was judged
        # when it started, and its expiry is its time box.
        feed = await views.emergency_start(h, DIRECTOR, EmergencyStartArgs(
            cameras=["lobby"], minutes=100, agency="Fire department"))
        cfg.write_text(cfg.read_text().replace("live:\n", "live:\n  emergency_max_minutes: 30\n"))
        await svc.reload("test")
        assert svc.config.live.emergency_max_minutes == 30
        await views.recheck_links(h)
        assert svc.web is not None and svc.web.links.by_id[feed["id"]].usable(svc.clock())
        # The director taken out of people: their link ends.
        cfg.write_text(cfg.read_text().replace("  - {user: director, role: director}\n", ""))

        async def reload() -> None:
            await svc.reload("test")

        ended, took = await _watch_until_ended(f"http://127.0.0.1:{port}", second["id"],
                                               second["url"].split("#", 1)[1], reload)
        assert "policy no longer allows" in ended, ended
        assert took < 3, took
    finally:
        await svc.stop()


async def test_a_camera_taken_out_of_the_map_ends_its_links(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, port)
    text = cfg.read_text()
    cfg.write_text(text + '  - {id: stacks, name: Stacks, area: stacks, '
                          'rtsp: "rtsp://127.0.0.1:9/none"}\n')
    svc = Service(cfg, load_camera_map(cfg))
    await svc.start()
    try:
        h = Handlers(svc)
        both = await views.live(h, DIRECTOR, LiveArgs(
            cameras=["lobby", "stacks"], minutes=10, reason="incident"))
        lobby = await views.live(h, DIRECTOR, LiveArgs(
            cameras=["lobby"], minutes=10, reason="incident"))
        cfg.write_text(text)
        await svc.reload("test")
        await views.recheck_links(h)  # or the periodic pass did it already
        assert svc.web is not None
        assert not svc.web.links.by_id[both["id"]].usable(svc.clock())
        assert "stacks is no longer in the camera map" in (
            svc.web.links.by_id[both["id"]].ended_why or "")
        assert svc.web.links.by_id[lobby["id"]].usable(svc.clock())
    finally:
        await svc.stop()
