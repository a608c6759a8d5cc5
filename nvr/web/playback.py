"""Recorded playback: a camera's runs and gaps inside the link's window, and the segment files
themselves, served as they are (HTTP byte ranges; no copy per view).

The page appends whole fMP4 segment files to one Media Source Extensions SourceBuffer in
"sequence" mode (docs/design.md, "Media facts": each file has its own moov with the same codec config), so
playback runs across segments without a stall and a gap simply is not in the buffer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from nvr.timeutil import to_iso
from nvr.web.links import Link
from nvr.web.server import Refused, Session, WebServer


def avc_codec(path: str) -> str:
    """The MSE codec string (avc1.PPCCLL) from the file's avcC box; a safe default if absent."""
    try:
        with open(path, "rb") as f:
            head = f.read(256 * 1024)
    except OSError:
        return "avc1.42e01e"
    i = head.find(b"avcC")
    if i < 0 or i + 8 > len(head):
        return "avc1.42e01e"
    return "avc1." + head[i + 5:i + 8].hex()


def add_routes(app: web.Application, srv: WebServer) -> None:
    async def covered(request: web.Request) -> tuple[Link, Session, str]:
        link, sess = srv.session(request, request.match_info["link"])
        camera = request.match_info["camera"]
        if link.kind != "playback":
            raise await srv.refuse(request, "refused: this link is for live view, not recorded "
                                   "footage", link, camera=camera)
        if camera not in link.cameras:
            raise await srv.refuse(request, f"refused: this link does not cover camera {camera}",
                                   link, camera=camera)
        return link, sess, camera

    def window(link: Link) -> tuple[int, int]:
        assert link.start_us is not None and link.end_us is not None
        return link.start_us, link.end_us

    async def timeline(request: web.Request) -> web.StreamResponse:
        link, sess, camera = await covered(request)
        start, end = window(link)
        segs = await srv.svc.index.segments(camera, start, end)
        gaps = await srv.svc.index.gaps(camera, start, end)
        codec = await asyncio.to_thread(avc_codec, segs[0].path) if segs else "avc1.42e01e"
        return web.json_response({
            "camera": camera, "start": to_iso(start), "end": to_iso(end),
            "start_us": start, "end_us": end, "mime": f'video/mp4; codecs="{codec}"',
            "segments": [{"id": s.id, "start_us": s.start_us, "end_us": s.end_us,
                          "start": to_iso(s.start_us), "end": to_iso(s.end_us),
                          "bytes": s.bytes, "codec": s.codec,
                          "url": f"/api/l/{link.id}/media/{camera}/{s.id}"} for s in segs],
            "gaps": [{"start_us": g.start_us, "end_us": g.end_us, "start": to_iso(g.start_us),
                      "end": to_iso(g.end_us), "reason": g.reason} for g in gaps],
        })

    async def media(request: web.Request) -> web.StreamResponse:
        link, sess, camera = await covered(request)
        try:
            seg_id = int(request.match_info["segment"])
        except ValueError:
            raise Refused("no such segment", 404) from None
        start, end = window(link)
        seg = next((s for s in await srv.svc.index.segments(camera, start, end)
                    if s.id == seg_id), None)
        if seg is None:
            raise await srv.refuse(request, "refused: that recording is outside this link's "
                                   "cameras and time window", link, camera=camera,
                                   segment=seg_id)
        if camera not in sess.cameras_seen:
            sess.cameras_seen.add(camera)
            await srv.audit(link, "view_connect", remote=request.remote, camera=camera,
                            stream="playback")
        return web.FileResponse(Path(seg.path), headers={"Content-Type": "video/mp4"})

    app.router.add_get("/api/l/{link}/timeline/{camera}", timeline)
    app.router.add_get("/api/l/{link}/media/{camera}/{segment}", media)
