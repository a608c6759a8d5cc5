"""Recorded playback: a camera's runs and gaps inside the link's window, and the segment files
themselves, served as they are (HTTP byte ranges; no copy per view).

Only the link's window is served: a segment wholly inside it is served as it is; one
the window's start or end cuts is served as a short fMP4 of its own (the segment's ftyp+moov
and one fragment) holding exactly the frames an export of the window would take from it — from
the keyframe at or before the start (the lead-in a player needs) to the last frame shown
before the end (`nvr.export.remux.segment_window`, the export's own plan). The timeline gives
such a piece's own start and end, so the page's wall-clock mapping stays exact.

The page appends whole fMP4 segment files to one Media Source Extensions SourceBuffer in
"sequence" mode (docs/design.md, "Media facts": each file has its own moov with the same codec config), so
playback runs across segments without a stall and a gap simply is not in the buffer.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from nvr.errors import UsageError
from nvr.export.remux import NoFootage, segment_layout, segment_window
from nvr.media.mp4 import fragment as fmp4
from nvr.storage.index import Segment
from nvr.timeutil import parse_time, to_iso
from nvr.web.links import Link
from nvr.web.server import Refused, Session, WebServer
from nvr.web.thumbs import Busy, Thumbnails


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


@dataclass(frozen=True, slots=True)
class Piece:
    """What of one segment the link may see: the whole file, or a cut (bytes made here)."""

    seg: Segment
    start_us: int
    end_us: int
    whole: bool
    frames: list[int] | None = None


def piece_of(seg: Segment, start_us: int, end_us: int) -> Piece | None:
    """The part of `seg` inside [start_us, end_us) (reads the segment's small boxes if the
    window cuts it); None if nothing decodable is inside."""
    if seg.start_us >= start_us and seg.end_us <= end_us:
        return Piece(seg, seg.start_us, seg.end_us, True)
    win = segment_window(seg, segment_layout(seg), start_us, end_us)
    if win is None or not win.frames:
        return None
    return Piece(seg, win.start_us, win.end_us, False, win.frames)


def cut_bytes(piece: Piece) -> bytes:
    """A self-contained fMP4 of the piece's frames: the segment's own ftyp+moov, then one
    moof+mdat (the frames' bytes copied as they are, their times the segment's own)."""
    assert piece.frames is not None
    layout = segment_layout(piece.seg)
    fd = os.open(piece.seg.path, os.O_RDONLY)
    try:
        moov_at, moov = next((pos, body) for pos, body in layout.boxes
                             if body[4:8] == b"moov")
        head = os.pread(fd, moov_at + len(moov), 0)
        frag = fmp4.Fragment()
        for i in piece.frames:
            data = os.pread(fd, layout.size[i], layout.offset[i])
            if len(data) != layout.size[i]:
                raise OSError(f"segment {piece.seg.path} shrank while it was being read")
            frag.add(layout.dts[i], layout.cto[i], layout.duration[i], bool(layout.key[i]), data)
    finally:
        os.close(fd)
    with_cts = any(layout.cto[i] for i in piece.frames)
    return b"".join([head, fmp4.moof(1, frag, with_cts), fmp4.mdat_header(frag.nbytes),
                     *frag.data])


class _Download(web.FileResponse):
    """A segment file being sent, held open in its session: when the session ends (the link
    revoked or expired) the connection is aborted, so a download in progress stops there."""

    def __init__(self, path: Path, sess: Session) -> None:
        super().__init__(path, headers={"Content-Type": "video/mp4"})
        self.sess = sess

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        transport = request.transport

        async def abort() -> None:
            if transport is not None:
                transport.abort()

        if self.sess.ended:  # ended between the check and now
            await abort()
            return None
        self.sess.closers.add(abort)
        try:
            return await super().prepare(request)  # the whole file (or range) is sent here
        finally:
            self.sess.closers.discard(abort)


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
        pieces = [p for p in [await asyncio.to_thread(piece_of, s, start, end) for s in segs]
                  if p is not None]
        codec = await asyncio.to_thread(avc_codec, segs[0].path) if segs else "avc1.42e01e"
        return web.json_response({
            "camera": camera, "start": to_iso(start), "end": to_iso(end),
            "start_us": start, "end_us": end, "mime": f'video/mp4; codecs="{codec}"',
            "segments": [{"id": p.seg.id, "start_us": p.start_us, "end_us": p.end_us,
                          "start": to_iso(p.start_us), "end": to_iso(p.end_us),
                          "bytes": p.seg.bytes if p.whole else None, "codec": p.seg.codec,
                          "cut": not p.whole,
                          "url": f"/api/l/{link.id}/media/{camera}/{p.seg.id}"}
                         for p in pieces],
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
        piece = await asyncio.to_thread(piece_of, seg, start, end)
        if piece is None:
            raise Refused("nothing decodable of that recording is inside this link's window",
                          404)
        if camera not in sess.cameras_seen:
            sess.cameras_seen.add(camera)
            await srv.audit(link, "view_connect", remote=request.remote, camera=camera,
                            stream="playback")
        if piece.whole:
            return _Download(Path(seg.path), sess)
        body = await asyncio.to_thread(cut_bytes, piece)
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.content_length = len(body)
        transport = request.transport

        async def abort() -> None:  # like _Download: the session's end stops the sending
            if transport is not None:
                transport.abort()

        sess.closers.add(abort)
        try:
            await resp.prepare(request)
            for at in range(0, len(body), 256 * 1024):
                if sess.ended:
                    break
                await resp.write(body[at:at + 256 * 1024])
            await resp.write_eof()
        finally:
            sess.closers.discard(abort)
        return resp

    thumbs = Thumbnails()

    async def thumb(request: web.Request) -> web.StreamResponse:
        """GET …/thumb/{camera}?t=ISO: the keyframe nearest t, masked, as a small JPEG."""
        link, sess, camera = await covered(request)
        start, end = window(link)
        try:
            at = parse_time(request.query.get("t", ""))
        except UsageError:
            raise Refused("refused: t must be a time (ISO 8601, e.g. 2026-12-07T14:05:03Z)",
                          400) from None
        if not start <= at < end:
            raise await srv.refuse(request, "refused: that moment is outside this link's time "
                                   "window", link, camera=camera, at=to_iso(at))
        seg = next((s for s in await srv.svc.index.segments(camera, at, at + 1)
                    if s.start_us <= at < s.end_us), None)
        if seg is None:
            raise Refused("nothing was recorded at that moment", 404)
        cam = srv.svc.config.camera(camera)
        try:
            found, cached = await thumbs.get(camera, seg, at, start, end,
                                             cam.privacy_masks if cam else [])
        except Busy as e:
            raise Refused(str(e), 429) from None
        except NoFootage as e:
            raise Refused(str(e), 404) from None
        if camera not in sess.cameras_seen:
            sess.cameras_seen.add(camera)
            await srv.audit(link, "view_connect", remote=request.remote, camera=camera,
                            stream="thumbnail")
        return web.Response(body=found.jpeg, headers={
            "Content-Type": "image/jpeg", "X-Frame-Time": to_iso(found.frame_us),
            "X-Cache": "hit" if cached else "miss", "Cache-Control": "private, max-age=60"})

    app.router.add_get("/api/l/{link}/thumb/{camera}", thumb)
    app.router.add_get("/api/l/{link}/timeline/{camera}", timeline)
    app.router.add_get("/api/l/{link}/media/{camera}/{segment}", media)
