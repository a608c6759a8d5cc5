"""Routes of the viewing page: the page itself, trading the token, link info, events, live."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nvr import log
from nvr.web import limits, rtc
from nvr.web.server import STATIC, Refused, WebServer, cookie_name

_log = log.get("nvr.web.pages")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")


class OfferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sdp: str = Field(min_length=10, max_length=64 * 1024)


async def _json(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(json.loads(await request.read()))
    except (ValueError, ValidationError):
        raise Refused("bad request: not the JSON this page sends", 400) from None


BURN_MAX = 4


def add_routes(app: web.Application, srv: WebServer) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "view.html")

    async def script(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "view.js")

    async def no_icon(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})

    async def style(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "view.css")

    async def open_session(request: web.Request) -> web.StreamResponse:
        srv.check_origin(request)
        body = await _json(request, TokenIn)
        link, secret = await srv.open_session(request, body.token)
        resp = web.json_response(srv.link_info(link))
        max_age = max(1, (link.expires_us - srv.svc.clock()) // 1_000_000)
        resp.set_cookie(cookie_name(link.id), secret, max_age=max_age, path="/",
                        httponly=True, samesite="Strict", secure=srv.tls)
        return resp

    async def info(request: web.Request) -> web.StreamResponse:
        link, _ = srv.session(request, request.match_info["link"])
        return web.json_response(srv.link_info(link))

    async def events(request: web.Request) -> web.StreamResponse:
        srv.check_origin(request)
        link, sess = srv.session(request, request.match_info["link"])
        return await srv.events(request, link, sess)

    # Re-encoding live views (privacy_masks_live: burn) at once, for all links: each costs a
    # decode and a libx264 encode per frame, on the box that records.
    burning = [0]

    async def offer(request: web.Request) -> web.StreamResponse:
        srv.check_origin(request)
        link, sess = srv.session(request, request.match_info["link"])
        camera = request.match_info["camera"]
        if link.kind not in ("live", "emergency"):
            raise await srv.refuse(request, "refused: this link is for recorded footage, not "
                                   "live view", link, camera=camera)
        if camera not in link.cameras:
            raise await srv.refuse(request, f"refused: this link does not cover camera {camera}",
                                   link, camera=camera)
        body = await _json(request, OfferIn)
        feed = srv.hub.feed(camera)
        if feed.unsupported is None and not feed.substream:
            # Before any packet reached a viewer: what the camera recorded last says the codec.
            from nvr.web.fanout import unsupported_reason

            last = await srv.svc.index.last_segment(camera)
            if last is not None:
                feed.unsupported = unsupported_reason(last.codec, False)
        if feed.unsupported:
            raise Refused(f"no live picture: {feed.unsupported}", 409)
        cam = srv.svc.config.camera(camera)
        burn = list(cam.privacy_masks) if cam and cam.privacy_masks_live == "burn" else []
        if burn and burning[0] >= BURN_MAX:
            raise Refused(f"refused: {BURN_MAX} live views with masks burned in are being "
                          "encoded, the most at once; close another, or try again shortly", 429)
        peer_back = srv.peer_slot(request, link)  # Refused beyond the limits
        burning[0] += bool(burn)
        given = False

        def give_back() -> None:  # once, whichever way the view ends
            nonlocal given
            if not given:
                given = True
                burning[0] -= bool(burn)
                peer_back()

        viewer = feed.join()
        try:
            pc, sdp = await rtc.answer(body.sdp, viewer, burn or None)
        except Exception as exc:
            give_back()
            viewer.close()
            _log.info("rtc_offer_failed", camera=camera, error=str(exc))
            raise Refused(f"cannot start live view: {exc}", 400) from None

        async def close() -> None:
            viewer.close()
            give_back()
            await rtc.close_quietly(pc)

        sess.closers.add(close)

        ended = connected = False

        @pc.on("connectionstatechange")
        async def _state() -> None:
            nonlocal ended, connected
            if pc.connectionState == "connected" and not connected and not ended:
                # Audited when the stream really flows: an offer that never connects (a flood
                # of them, each without ICE candidates) is not a row each (below).
                connected = True
                await srv.audit(link, "view_connect", remote=request.remote, camera=camera,
                                stream="webrtc")
            if pc.connectionState in ("failed", "closed") and not ended:
                ended = True
                sess.closers.discard(close)
                viewer.close()
                give_back()
                await rtc.close_quietly(pc)
                if connected:
                    await srv.audit(link, "view_disconnect", remote=request.remote,
                                    camera=camera, stream="webrtc", packets=viewer.sent,
                                    dropped=viewer.dropped)
                elif not sess.ended:
                    srv.refuse_limited(request, link, "rtc_not_connected",
                                       f"refused: a live view of camera {camera} did not connect "
                                       f"(ICE/DTLS) within {limits.RTC_CONNECT_S:g} s; its offer "
                                       "was dropped")

        async def connect_deadline() -> None:
            # An offer whose ICE and DTLS never complete (no candidates, a peer that went
            # away) would keep its UDP sockets for good: closed after RTC_CONNECT_S.
            await asyncio.sleep(limits.RTC_CONNECT_S)
            if pc.connectionState != "connected" and not ended:
                _log.info("rtc_connect_timeout", camera=camera, state=pc.connectionState)
                sess.closers.discard(close)
                try:
                    await close()
                except Exception:  # nobody awaits this task: say so here, with the traceback
                    _log.exception("rtc_close_failed", camera=camera)

        deadline = asyncio.ensure_future(connect_deadline())
        srv.background.add(deadline)
        deadline.add_done_callback(srv.background.discard)
        return web.json_response({"sdp": sdp, "type": "answer"})

    async def fmp4(request: web.Request) -> web.StreamResponse:
        """Live fMP4 over a WebSocket, for an H.264 stream with B-frames (nvr.web.tail)."""
        from nvr.web import tail

        srv.check_origin(request)
        link, sess = srv.session(request, request.match_info["link"])
        camera = request.match_info["camera"]
        if link.kind not in ("live", "emergency") or camera not in link.cameras:
            raise await srv.refuse(request, f"refused: this link does not cover live view of "
                                   f"camera {camera}", link, camera=camera)
        rec = srv.svc.recorders.get(camera)
        if rec is None:
            raise Refused(f"no live picture: camera {camera} is not recording", 409)
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=1024)
        await ws.prepare(request)

        async def close() -> None:
            await ws.close()

        sess.closers.add(close)
        await srv.audit(link, "view_connect", remote=request.remote, camera=camera,
                        stream="fmp4")

        async def send(data: bytes) -> None:
            await asyncio.wait_for(ws.send_bytes(data), 10.0)

        async def send_mime(mime: str) -> None:
            await ws.send_json({"mime": mime})

        reader = asyncio.ensure_future(ws.receive())  # notices the page going away
        try:
            await tail.follow(rec, send, send_mime, lambda: ws.closed or reader.done())
        except (ConnectionError, TimeoutError, RuntimeError):
            pass
        finally:
            reader.cancel()
            sess.closers.discard(close)
            await ws.close()
        return ws

    app.router.add_get("/api/l/{link}/live/{camera}/fmp4", fmp4)
    app.router.add_get("/view", page)
    # Browsers ask every page for it; an empty 204 instead of a 404 in every log and console.
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/static/view.js", script)
    app.router.add_get("/static/view.css", style)
    app.router.add_post("/api/session", open_session)
    app.router.add_get("/api/l/{link}/info", info)
    app.router.add_get("/api/l/{link}/events", events)
    app.router.add_post("/api/l/{link}/live/{camera}/offer", offer)
