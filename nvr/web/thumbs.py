"""Timeline thumbnails: a small JPEG of the keyframe nearest a moment, made on
demand from the recording, with the camera's privacy masks burned in.

Only keyframes are decoded (one packet each, no GOP run-up), in a worker thread, at most
`WORKERS` at once; beyond `QUEUE` waiting the request is refused (429) rather than queued
without end, so hovering over a long timeline cannot take the recorder's CPU. The result is
kept in an LRU with a byte cap: hovering back over a moment costs nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import av
from av.video.stream import VideoStream

from nvr.config.model import PrivacyMask
from nvr.export.remux import NoFootage
from nvr.export.still import _jpeg, _wall
from nvr.media.masks import MaskPlanes, fill
from nvr.storage.index import Segment

WIDTH = 240  # pixels: a popup over the timeline, not a picture to identify anyone from
WORKERS = 2  # decodes at once (the box has 2 cores; recording comes first)
QUEUE = 4  # requests waiting for a worker; more are refused with 429
CACHE_BYTES = 8 * 1024 * 1024  # ~1,000 thumbnails of ~8 kB


@dataclass(frozen=True, slots=True)
class Thumb:
    jpeg: bytes
    frame_us: int  # wall time of the keyframe shown


class Busy(Exception):
    """More thumbnails asked for at once than the server makes; the page asks again later."""


def _masks_key(masks: Sequence[PrivacyMask]) -> tuple[tuple[tuple[float, float], ...], ...]:
    return tuple(tuple((float(x), float(y)) for x, y in m.polygon) for m in masks)


def make_thumb(seg: Segment, at_us: int, start_us: int, end_us: int,
               masks: Sequence[PrivacyMask], width: int = WIDTH) -> Thumb:
    """The keyframe of `seg` nearest `at_us` among those a playback of [start_us, end_us) shows
    (inside the window, or the lead-in keyframe just before its start), masked, scaled, JPEG."""
    # No sha256 check (a still's is): like playback, a glance at the recording, not evidence;
    # hashing a whole segment per hover would cost more than the decode.
    with av.open(seg.path, "r") as src:
        ist = src.streams.video[0]
        tb = ist.time_base
        assert tb is not None
        base: int | None = None
        lead: tuple[int, av.Packet[VideoStream]] | None = None
        best: tuple[int, av.Packet[VideoStream]] | None = None
        for pkt in src.demux(ist):
            if pkt.size == 0 or pkt.dts is None or not pkt.is_keyframe:
                continue
            pts = pkt.pts if pkt.pts is not None else pkt.dts
            base = pts if base is None else base
            wall = _wall(seg, pts, base, tb)
            if wall >= end_us:
                break
            if wall < start_us:
                lead = (wall, pkt)  # the lead-in: only if nothing inside is nearer
                continue
            if best is None or abs(wall - at_us) < abs(best[0] - at_us):
                best = (wall, pkt)
        if lead is not None and (best is None or abs(lead[0] - at_us) < abs(best[0] - at_us)):
            best = lead
        if best is None:
            raise NoFootage("no keyframe of that recording is inside this link's window")
        frames = [*ist.codec_context.decode(best[1]), *ist.codec_context.decode(None)]
    if not frames:
        raise NoFootage("the keyframe there could not be decoded")
    frame = frames[0]
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    if not masks:
        return Thumb(_jpeg(frame.reformat(width=width, height=height)), best[0])
    # Filled at full size first (the scaler then cannot carry masked pixels out past the
    # mask's edge), and again at the small size in whole 16-pixel blocks (the JPEG's MCUs), so
    # the scaler's and the encoder's filters cannot smear the picture into it.
    frame = fill(frame, MaskPlanes.of(masks, frame.width, frame.height))
    small = frame.reformat(width=width, height=height, format="yuv420p")
    small = fill(small, MaskPlanes.of(masks, width, height))
    return Thumb(_jpeg(small), best[0])


class Thumbnails:
    """The LRU and the bound on work, shared by every link (the CPU is the box's)."""

    def __init__(self, workers: int = WORKERS, queue: int = QUEUE,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.workers, self.queue, self.cache_bytes = workers, queue, cache_bytes
        self._sem = asyncio.Semaphore(workers)
        self._pending = 0  # working or waiting
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[object, ...], Thumb] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = self.refused = 0

    def _get(self, key: tuple[object, ...]) -> Thumb | None:
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
            return found

    def _put(self, key: tuple[object, ...], thumb: Thumb) -> None:
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = thumb
            self._bytes += len(thumb.jpeg)
            while self._bytes > self.cache_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._bytes -= len(old.jpeg)

    async def get(self, camera: str, seg: Segment, at_us: int, start_us: int, end_us: int,
                  masks: Sequence[PrivacyMask]) -> tuple[Thumb, bool]:
        """(the thumbnail, whether it came from the cache); Busy when too many are asked for.
        Keyed by the moment to a tenth of a second: a hover over one spot is one decode."""
        key: tuple[object, ...] = (camera, seg.id, seg.sha256, at_us // 100_000, start_us,
                                   end_us, _masks_key(masks))
        found = self._get(key)
        if found is not None:
            self.hits += 1
            return found, True
        if self._pending >= self.workers + self.queue:
            self.refused += 1
            raise Busy(f"refused: {self._pending} thumbnails are being made; ask again shortly")
        self._pending += 1
        try:
            async with self._sem:
                found = self._get(key)  # made while this one waited
                if found is not None:
                    self.hits += 1
                    return found, True
                self.misses += 1
                thumb = await asyncio.to_thread(make_thumb, seg, at_us, start_us, end_us, masks)
        finally:
            self._pending -= 1
        self._put(key, thumb)
        return thumb, False
