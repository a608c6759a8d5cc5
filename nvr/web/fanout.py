"""Live fan-out: the camera's packets, as the camera sent them, to everyone watching it.

The camera's ingest thread calls `LiveFeed.from_thread` for every packet it has written. While
nobody watches, that is one attribute read and a return. While someone does, the packet's bytes
are copied and handed to the event loop with call_soon_threadsafe, which never blocks: a viewer
can never slow recording. Each viewer has a bounded queue; a viewer that falls behind loses its
queue and waits for the next keyframe (a decoder can only restart there: aiortc cannot ask the
camera for one). A new viewer starts with the current GOP, from its keyframe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nvr import log
from nvr.storage.segment_writer import Frame

_log = log.get("nvr.web.fanout")

# About 8 s of 15 fps video: more than that behind is not "live" any more.
VIEWER_QUEUE = 120
# A GOP longer than this many packets is not replayed whole to a new viewer.
MAX_GOP = 600


@dataclass(frozen=True, slots=True)
class LivePacket:
    data: bytes        # Annex-B, SPS/PPS in front of every keyframe
    key: bool
    arrival_s: float   # loop.time() when it reached the loop


def _has_sps(data: bytes) -> bool:
    """True if an Annex-B access unit carries an SPS (NAL type 7) in its first NAL units."""
    i, n = 0, min(len(data), 512)
    while True:
        i = data.find(b"\x00\x00\x01", i, n)
        if i < 0 or i + 3 >= len(data):
            return False
        if data[i + 3] & 0x1F == 7:
            return True
        i += 3


def unsupported_reason(codec: str, has_b_frames: bool) -> str | None:
    """Why WebRTC passthrough cannot carry this stream (docs/design.md, "Media facts"), or None."""
    if codec != "h264":
        return (f"the camera sends {codec.upper()}, which a browser cannot play over WebRTC "
                "without re-encoding, and nvr never re-encodes")
    if has_b_frames:
        return ("the camera's H.264 uses B-frames, which WebRTC cannot carry as they are; set "
                "live_rtsp: to an H.264 substream without B-frames for live view")
    return None


class Viewer:
    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed
        self.queue: deque[LivePacket] = deque()
        self.waiting_key = True
        self.dropped = 0
        self.sent = 0
        self._ready = asyncio.Event()
        self.closed = False

    def push(self, pkt: LivePacket) -> None:
        if self.waiting_key:
            if not pkt.key:
                return
            self.waiting_key = False
        if len(self.queue) >= VIEWER_QUEUE:
            # Too slow: drop what is queued and restart at the next keyframe.
            self.dropped += len(self.queue)
            self.queue.clear()
            self.waiting_key = not pkt.key
            if self.waiting_key:
                return
        self.queue.append(pkt)
        self._ready.set()

    async def get(self) -> LivePacket:
        while not self.queue:
            if self.closed:
                raise EOFError("viewer closed")
            self._ready.clear()
            await self._ready.wait()
        self.sent += 1
        return self.queue.popleft()

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self.feed.leave(self)


class LiveFeed:
    """One camera's live packets. Loop side except `from_thread` (the camera thread)."""

    def __init__(self, camera_id: str, loop: asyncio.AbstractEventLoop,
                 on_active: Callable[[LiveFeed, bool], None] | None = None) -> None:
        self.camera_id = camera_id
        self.loop = loop
        self.viewers: set[Viewer] = set()
        self.gop: list[LivePacket] = []
        # Read by the camera thread without a lock: a bool assignment is atomic, and a packet
        # more or less around the moment it flips does not matter.
        self.active = False
        self.unsupported: str | None = None
        # H.264 with B-frames: WebRTC cannot carry it, MSE can (nvr.web.tail). Known from the
        # first packet that shows them and kept for the stream (new_stream() forgets it).
        self.b_frames = False
        self.codec = ""
        self.packets_in = 0
        self.on_active = on_active
        # Fed from the camera's live_rtsp: substream rather than the recorded stream.
        self.substream = False

    # -- camera thread --------------------------------------------------------------------
    def from_thread(self, data: bytes, key: bool, extradata: bytes | None, codec: str,
                    b_frames: bool) -> None:
        if not self.active:
            return
        if key and extradata and not _has_sps(data):
            data = extradata + data
        try:
            self.loop.call_soon_threadsafe(self._deliver, data, key, codec, b_frames)
        except RuntimeError:  # loop closed at shutdown
            pass

    # -- loop -----------------------------------------------------------------------------
    def new_stream(self) -> None:
        """A new recorder feeds this camera: what was learnt of the old stream is forgotten."""
        self.unsupported = None
        self.b_frames = False
        self.codec = ""

    def _deliver(self, data: bytes, key: bool, codec: str, b_frames: bool) -> None:
        if codec != self.codec:
            self.codec, self.b_frames = codec, False
        # Only some packets of a stream with B-frames show it (pts != dts); a B-frame itself
        # has pts == dts. So one such packet settles it for the stream: otherwise the packets
        # still queued when the first viewer was let go would undo it, and the next viewer
        # would get neither a picture nor the fMP4 fallback.
        self.b_frames = self.b_frames or (codec == "h264" and b_frames)
        self.unsupported = unsupported_reason(codec, self.b_frames)
        if self.unsupported is not None:
            # Nothing a viewer could decode: end them; the page asks why (link info).
            for viewer in list(self.viewers):
                viewer.close()
            return
        self.packets_in += 1
        pkt = LivePacket(data, key, self.loop.time())
        if key:
            self.gop = [pkt]
        elif self.gop and len(self.gop) < MAX_GOP:
            self.gop.append(pkt)
        for viewer in list(self.viewers):
            viewer.push(pkt)

    def join(self) -> Viewer:
        viewer = Viewer(self)
        for pkt in self.gop:
            viewer.push(pkt)
        self.viewers.add(viewer)
        if not self.active:
            self.active = True
            _log.info("live_feed_on", camera=self.camera_id)
            if self.on_active:
                self.on_active(self, True)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers and self.active:
            self.active = False
            self.gop = []
            _log.info("live_feed_off", camera=self.camera_id)
            if self.on_active:
                self.on_active(self, False)


class LiveHub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.feeds: dict[str, LiveFeed] = {}

    def feed(self, camera_id: str) -> LiveFeed:
        if camera_id not in self.feeds:
            self.feeds[camera_id] = LiveFeed(camera_id, self.loop)
        return self.feeds[camera_id]


class _CodecContext(Protocol):
    @property
    def extradata(self) -> bytes | None: ...

    @property
    def name(self) -> str: ...


class TappedStream(Protocol):
    """The video stream a tapped packet belongs to (an av video stream, or the own reader's)."""

    @property
    def codec_context(self) -> _CodecContext: ...


# A packet as the recorder wrote it: the segment writer's frame (nvr.ingest.timestamps.OutPacket);
# its payloads each support bytes() (av.Packets from FFmpeg's reader, bytes from the own one).
TappedPacket = Frame


def tap_for(feed: LiveFeed) -> Callable[[TappedPacket, TappedStream], None]:
    """The recorder's live tap for one camera (nvr.web.ports.LiveSource.add_live_tap)."""

    def tap(op: TappedPacket, video: TappedStream) -> None:
        if not feed.active:
            return
        payloads = op.payloads
        data = bytes(payloads[0]) if len(payloads) == 1 else b"".join(bytes(p) for p in payloads)
        cc = video.codec_context
        feed.from_thread(data, bool(op.key), cc.extradata, cc.name, op.pts != op.dts)

    return tap
