"""The daemon's web server (aiohttp, on `live.listen`): the viewing pages and what they fetch.

Who may watch was decided when the link was minted (nvr.control.views, as the caller, by the
policy). Here every request proves it holds a session of a usable link: the page trades the
link's token (from the URL's `#`, never sent in a URL) for an HttpOnly, SameSite=Strict cookie
named after the link; every request and WebSocket re-checks the cookie and the link (expired
or revoked → 403); state-changing requests and WebSockets must come from this origin. When a
link ends, its open streams are closed by `watch_once` within `WATCH_INTERVAL_S`.

The server shares the recorder's file descriptors, so it is bounded (nvr.web.limits): open
connections in all and per address, sessions and WebRTC peers per link and in all, a deadline
for request headers, for TLS and for ICE/DTLS; idle sessions end; refusals beyond the limits
are audited coalesced, one row per kind (per link) and minute plus one with the count.

It sees the recorder through `nvr.web.ports.WebPort`, and is what the control ops see as
their `ViewingPort` (nvr.control.ports). Routes are added before start: the page's and
playback's by nvr.web.app, others (GET /metrics on a loopback address) by the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from nvr import log
from nvr.timeutil import local_zone, to_iso
from nvr.web import limits
from nvr.web.fanout import LiveFeed, LiveHub, tap_for
from nvr.web.links import EXPIRED, Kind, Link, Links
from nvr.web.ports import LiveSource, WebPort
from nvr.web.substream import SubstreamReader

_log = log.get("nvr.web")
STATIC = Path(__file__).parent / "static"
WATCH_INTERVAL_S = 0.25
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'self'; media-src 'self' blob:; "
                                "connect-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'"),
}


@dataclass
class Session:
    id_hash: str
    link_id: str
    remote: str
    started_us: int
    last_seen_us: int = 0  # the last request made with it (idle sessions end)
    closers: set[Callable[[], Awaitable[None]]] = field(default_factory=set)
    cameras_seen: set[str] = field(default_factory=set)
    ended: bool = False


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def refused_page(text: str, status: int = 403) -> web.Response:
    body = (f"<!doctype html><meta charset=utf-8><title>nvr: refused</title>"
            f"<p id=nvr-refused>{html.escape(text)}</p>\n")
    return web.Response(status=status, text=body, content_type="text/html",
                        headers=SECURITY_HEADERS)


class Refused(Exception):
    def __init__(self, text: str, status: int = 403) -> None:
        super().__init__(text)
        self.status = status


class WebServer:
    def __init__(self, port: WebPort) -> None:
        self.svc = port
        self.links = Links(port.db)
        self.hub = LiveHub(asyncio.get_running_loop())
        self.sessions: dict[str, Session] = {}
        self._extra: list[tuple[str, str, Handler]] = []
        self._route_sets: list[Callable[[web.Application], None]] = []
        # The recorder each camera's live tap was given to: a different one (a reload or the
        # watchdog replaced it) gets a tap of its own, and its stream is judged afresh.
        self._tapped: dict[str, LiveSource] = {}
        # One re-check of the open links against the policy at a time (nvr.control.views).
        self.recheck_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._stopped = False
        self._substreams: dict[str, SubstreamReader] = {}
        self.tls = port.config.live.tls is not None
        self.port = 0
        self.acceptor: limits.Acceptor | None = None
        # WebRTC peers open, in all and per link (each holds UDP sockets: descriptors).
        self.peers = 0
        self.link_peers: dict[str, int] = {}
        self.coalescer = limits.Coalescer(self._write_refusal)
        self.background: set[asyncio.Future[None]] = set()  # e.g. WebRTC connect deadlines

    # -- routes other modules add (the pages, playback, GET /metrics) -------------------------
    def add_route(self, method: str, path: str, handler: Handler) -> None:
        if self._runner is not None:
            raise RuntimeError("add routes before the web server starts")
        self._extra.append((method, path, handler))

    def add_routes(self, add: Callable[[web.Application], None]) -> None:
        """`add(app)` is called at start to add its routes to the application."""
        if self._runner is not None:
            raise RuntimeError("add routes before the web server starts")
        self._route_sets.append(add)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.links.load(self.svc.clock())
        app = web.Application(client_max_size=256 * 1024, middlewares=[self._headers])
        for add in self._route_sets:
            add(app)
        for method, path, handler in self._extra:
            app.router.add_route(method, path, handler)
        # keepalive_timeout: aiohttp closes a connection that has no whole request waiting
        # this long after it opened or after its last response: the header deadline.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0,
                                     keepalive_timeout=limits.HEADER_TIMEOUT_S)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        host, _, port = self.svc.config.live.listen.rpartition(":")
        host = host.strip("[]")
        ctx = None
        live_tls = self.svc.config.live.tls
        if live_tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(live_tls.cert, live_tls.key)
        # Our own accept loop rather than a TCPSite: connections are counted and refused
        # before TLS or aiohttp spend anything on them (nvr.web.limits).
        self.acceptor = limits.Acceptor(lambda: server(), ssl_context=ctx,
                                        on_refused=self._connection_refused)
        self.port = self.acceptor.listen(host, int(port))
        self.attach_all()
        _log.info("web_started", listen=self.svc.config.live.listen, tls=self.tls)

    def attach_all(self) -> None:
        """Give each camera recorder its live tap (again after a reload restarts one); a
        camera with `live_rtsp:` is fed from that substream instead, only while watched."""
        recorders = self.svc.recorders
        for gone in set(self._tapped) - set(recorders):
            del self._tapped[gone]
        for cam_id, rec in recorders.items():
            feed = self.hub.feed(cam_id)
            fresh = self._tapped.get(cam_id) is not rec
            if fresh:
                self._tapped[cam_id] = rec
                feed.new_stream()  # a new recorder: judge its stream afresh
            cam = self.svc.config.camera(cam_id)
            if cam is not None and cam.live_rtsp:
                reader = self._substreams.get(cam_id)
                if reader is None or reader.url != cam.live_rtsp:
                    if reader is not None:
                        reader.stop()
                    reader = self._substreams[cam_id] = SubstreamReader(feed, cam.live_rtsp)
                    feed.on_active = _switch(reader)
                    if feed.active:
                        reader.start()
                feed.substream = True
                rec.remove_live_tap()
            else:
                feed.substream = False
                feed.on_active = None
                if fresh:
                    rec.add_live_tap(tap_for(feed), _watched(feed))

    async def stop(self) -> None:
        self._stopped = True
        if self.acceptor is not None:
            await self.acceptor.close()
        for sess in list(self.sessions.values()):
            await self.end_session(sess, "the recorder is stopping")
        for reader in self._substreams.values():
            reader.stop()
        for task in list(self.background):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(Exception):
            await self.coalescer.flush(self.svc.clock(), everything=True)

    def base_url(self) -> str:
        host, _, _ = self.svc.config.live.listen.rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.getfqdn()
        elif ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    # -- middleware --------------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except Refused as exc:
            return refused_page(str(exc), exc.status)
        if not isinstance(resp, web.WebSocketResponse) and not resp.prepared:
            for k, v in SECURITY_HEADERS.items():
                resp.headers.setdefault(k, v)
        return resp

    # -- sessions ----------------------------------------------------------------------------
    def check_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        expected = f"{request.scheme}://{request.host}"
        if origin != expected:
            raise Refused(f"refused: request from origin {origin or 'none'}, not {expected}")

    async def refuse(self, request: web.Request, why: str, link: Link | None = None,
                     **detail: Any) -> Refused:
        """Audit one refused attempt and return the exception to raise."""
        # Through the refusal limiter, like the control socket's: a flood of made-up tokens
        # is counted into one row, it cannot grow the index without bound.
        await self.svc.refusals.refused(
            at_us=self.svc.clock(), actor=link.actor if link else "browser",
            uid=link.uid if link else None, role=link.role if link else "public",
            action="view_refused",
            detail={"remote": request.remote, "link": link.id if link else None,
                    "purpose": link.purpose if link else None, "refusal": why, **detail},
        )
        return Refused(why)

    # -- limits (nvr.web.limits) ---------------------------------------------------------------
    def _connection_refused(self, peer: str, why: str) -> None:
        self.coalescer.note(("connection",), self.svc.clock(),
                            {"refusal": f"refused: {why}", "remote": peer}, peer)

    def refuse_limited(self, request: web.Request, link: Link | None, kind: str, why: str,
                       status: int = 429) -> Refused:
        """A refusal because a limit is reached: audited coalesced (one row for the first of
        this kind on this link each minute, one more with the count), never one per attempt."""
        self.coalescer.note((link.id if link else "-", kind), self.svc.clock(),
                            {"refusal": why, "link": link.id if link else None, "limit": kind,
                             "actor": link.actor if link else "browser",
                             "uid": link.uid if link else None,
                             "role": link.role if link else "public",
                             "remote": request.remote}, request.remote)
        _log.info("web_limit_reached", limit=kind, link=link.id if link else None,
                  remote=request.remote)
        return Refused(why, status)

    async def _write_refusal(self, at_us: int, detail: dict[str, Any],
                             counted: dict[str, Any] | None) -> None:
        d = dict(detail)
        actor, uid, role = d.pop("actor", "browser"), d.pop("uid", None), d.pop("role", "public")
        if counted is None:
            await self.svc.audit.append(at_us=at_us, actor=actor, uid=uid, role=role,
                                        action="view_refused", allowed=False, detail=d)
            return
        d.update(counted)
        d["refusal"] = (f"{counted['count']} more of: {detail['refusal']} (within "
                        f"{counted['window_s']:g} s; counted here, not one row each)")
        d.pop("remote", None)
        await self.svc.audit.append(at_us=at_us, actor=actor, uid=uid, role=role,
                                    action="refusals_coalesced", allowed=False, detail=d)

    def peer_slot(self, request: web.Request, link: Link) -> Callable[[], None]:
        """Take a WebRTC peer's place (Refused beyond the limits); the returned function gives
        it back, once however often it is called."""
        if self.peers >= limits.MAX_PEERS:
            raise self.refuse_limited(request, link, "peers", "refused: too many live views "
                                      f"open on this recorder ({limits.MAX_PEERS}); try again "
                                      "when one closes", 503)
        if self.link_peers.get(link.id, 0) >= limits.MAX_PEERS_PER_LINK:
            raise self.refuse_limited(request, link, "link_peers", "refused: this link has "
                                      f"{limits.MAX_PEERS_PER_LINK} live views open, the most "
                                      "allowed; close one first")
        short = limits.descriptors_short()
        if short is not None:
            raise self.refuse_limited(request, link, "descriptors",
                                      f"refused: no live view now: {short}", 503)
        self.peers += 1
        self.link_peers[link.id] = self.link_peers.get(link.id, 0) + 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if given_back:
                return
            given_back = True
            self.peers -= 1
            left = self.link_peers.get(link.id, 1) - 1
            if left > 0:
                self.link_peers[link.id] = left
            else:
                self.link_peers.pop(link.id, None)

        return give_back

    async def open_session(self, request: web.Request, token: str) -> tuple[Link, str]:
        link = self.links.find_token(token)
        now = self.svc.clock()
        if link is None:
            raise await self.refuse(request, "refused: this viewing link is not valid")
        if not link.usable(now):
            raise await self.refuse(request, "refused: " + link.why_not(now), link)
        if len(link.sessions) >= limits.MAX_SESSIONS_PER_LINK:
            raise self.refuse_limited(
                request, link, "sessions", f"refused: this link is open in "
                f"{limits.MAX_SESSIONS_PER_LINK} windows, the most allowed; close one (an idle "
                f"one ends by itself after {limits.SESSION_IDLE_S:g} s)")
        secret = secrets.token_urlsafe(32)
        sess = Session(_hash(secret), link.id, request.remote or "?", now, now)
        self.sessions[sess.id_hash] = sess
        link.sessions[sess.id_hash] = sess.remote
        await self.audit(link, "view_session_start", remote=sess.remote)
        return link, secret

    def session(self, request: web.Request, link_id: str) -> tuple[Link, Session]:
        """The request's session for link_id; Refused (403) unless usable right now."""
        link = self.links.by_id.get(link_id)
        cookie = request.cookies.get(cookie_name(link_id))
        if link is None or cookie is None:
            raise Refused("refused: no viewing session; open the link you were given")
        sess = self.sessions.get(_hash(cookie))
        now = self.svc.clock()
        if not link.usable(now):
            raise Refused("refused: " + link.why_not(now))
        if sess is None or sess.link_id != link_id or sess.ended:
            raise Refused("refused: this viewing session has ended; open the link again")
        sess.last_seen_us = now
        return link, sess

    async def audit(self, link: Link, action: str, **detail: Any) -> None:
        await self.svc.audit.append(
            at_us=self.svc.clock(), actor=link.actor, uid=link.uid, role=link.role,
            action=action, allowed=True,
            detail={"link": link.id, "kind": link.kind, "purpose": link.purpose, **detail},
        )

    async def end_session(self, sess: Session, why: str) -> None:
        if sess.ended:
            return
        sess.ended = True
        self.sessions.pop(sess.id_hash, None)
        link = self.links.by_id.get(sess.link_id)
        for closer in list(sess.closers):
            with contextlib.suppress(Exception):
                await closer()
        if link is not None:
            link.sessions.pop(sess.id_hash, None)
            await self.audit(link, "view_session_end", remote=sess.remote, why=why)

    # -- the control ops' view of links (nvr.control.ports.ViewingPort) -----------------------
    async def mint_link(self, *, kind: Kind, actor: str, uid: int | None, role: str,
                        cameras: list[str], start_us: int | None, end_us: int | None,
                        purpose: str, now_us: int, expires_us: int) -> tuple[Link, str]:
        return await self.links.mint(kind=kind, actor=actor, uid=uid, role=role,
                                     cameras=cameras, start_us=start_us, end_us=end_us,
                                     purpose=purpose, now_us=now_us, expires_us=expires_us)

    def find_link(self, link_id: str) -> Link | None:
        return self.links.by_id.get(link_id)

    def list_links(self, *, kind: Kind | None = None, actor: str | None = None,
                   open_only: bool = False, now_us: int) -> list[Link]:
        return self.links.listing(kind=kind, actor=actor, open_only=open_only, now_us=now_us)

    async def close_link(self, link_id: str, why: str) -> bool:
        link = self.links.by_id.get(link_id)
        return link is not None and await self.end_link(link, why)

    async def audit_link(self, link_id: str, action: str, **detail: Any) -> None:
        link = self.links.by_id.get(link_id)
        if link is None:
            raise KeyError(f"no viewing link {link_id!r}")
        await self.audit(link, action, **detail)

    async def end_link(self, link: Link, why: str) -> bool:
        """Revoke (or end) a link now: its sessions and their streams close at once. False if
        it had already ended (then nothing changes)."""
        if not await self.links.end(link, self.svc.clock(), why):
            return False
        await self._close_link_sessions(link, f"this viewing link was {why}")
        return True

    async def _close_link_sessions(self, link: Link, why: str) -> None:
        for sess in [s for s in self.sessions.values() if s.link_id == link.id]:
            await self.end_session(sess, why)

    async def watch_once(self) -> None:
        """One pass, every WATCH_INTERVAL_S while the server runs (the recorder's task
        supervisor runs it: a failure is logged with its traceback and counted): close the
        streams of links that expired (revocations close them directly), end idle sessions,
        write the coalesced refusals that are due."""
        if self._stopped or self._runner is None:
            return
        now = self.svc.clock()
        for link in list(self.links.by_id.values()):
            if link.sessions and not link.usable(now):
                await self._close_link_sessions(link, link.why_not(now))
            if link.ended_us is None and now >= link.expires_us:
                # Ended by itself (an emergency feed "terminated"): say so once.
                await self.links.end(link, link.expires_us, EXPIRED)
                await self.audit(link, "view_link_expired", expires=to_iso(link.expires_us))
        # A session nothing is open on (no events socket, stream or peer) and no request came
        # for: the window was closed. Its place on the link is freed.
        idle_us = int(limits.SESSION_IDLE_S * 1_000_000)
        for sess in list(self.sessions.values()):
            # The clock read now, not at the top: a session opened while this pass awaited is
            # not idle (and a test's clock may have moved back).
            if not sess.closers and self.svc.clock() - sess.last_seen_us >= idle_us:
                await self.end_session(sess, "idle")
        await self.coalescer.flush(now)

    # -- helpers for the pages ---------------------------------------------------------------
    def link_info(self, link: Link) -> dict[str, Any]:
        cams = []
        for cam_id in link.cameras:
            cam = self.svc.config.camera(cam_id)
            feed = self.hub.feeds.get(cam_id)
            cams.append({"id": cam_id, "name": cam.name if cam else cam_id,
                         # Filled solid over the picture by the page (docs/policy.md,
                         # "Privacy masks"): the polygons and why, never who set them.
                         "masks": [{"note": m.note, "polygon": [list(p) for p in m.polygon]}
                                   for m in (cam.privacy_masks if cam else [])],
                         "unsupported": feed.unsupported if feed else None,
                         # A stream MSE can play from the segment being written (nvr.web.tail).
                         "fallback": "fmp4" if feed and feed.b_frames and feed.unsupported
                         and not feed.substream else None})
        return {"id": link.id, "kind": link.kind, "cameras": cams,
                "start": None if link.start_us is None else to_iso(link.start_us),
                "end": None if link.end_us is None else to_iso(link.end_us),
                "expires": to_iso(link.expires_us), "purpose": link.purpose,
                # Who made the link (the page's watermark) and the box's zone (its times).
                "actor": link.actor, "role": link.role, "zone": local_zone(),
                "now": to_iso(self.svc.clock())}

    async def events(self, request: web.Request, link: Link, sess: Session) -> web.StreamResponse:
        """A WebSocket the page keeps open: told at once when the link ends."""
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)

        async def close() -> None:
            with contextlib.suppress(Exception):
                await ws.send_json({"ended": link.why_not(self.svc.clock())
                                    or "this viewing session has ended"})
                await ws.close()

        sess.closers.add(close)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            sess.closers.discard(close)
        return ws


def _watched(feed: LiveFeed) -> Callable[[], bool]:
    return lambda: feed.active


def _switch(reader: SubstreamReader) -> Callable[[LiveFeed, bool], None]:
    def on_active(feed: LiveFeed, active: bool) -> None:
        if active:
            reader.start()
        else:
            reader.stop()

    return on_active


def cookie_name(link_id: str) -> str:
    return "nvr_" + link_id.replace("-", "_")
