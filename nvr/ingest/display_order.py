"""Presentation times for a stream stamped in decode order (pure).

RTP stamps each frame with its presentation time (RFC 6184 5.1, RFC 7798 4.1): with B-frames
the times go down and up in the order frames are sent (I0 P3 B1 B2 …). Some servers stamp
frames in the order they send them instead, rising evenly (aio-rtsp-toolkit's file server: its
times are the file's, held above a running cursor, so a B-frame gets the time after the P-frame
before it). Taken as they come, the segment shows every B-frame after the frame it precedes
(decoders: "non monotonically increasing dts"); FFmpeg's own RTSP reader records such a stream
the same broken way.

The pictures still know their order: each carries its picture order count (POC,
nvr.media.poc). The first frames of a session are held (until three frames that show before
the frame decoded ahead of them have been seen, or at most the first group of pictures,
`hold_frames`, `hold_bytes`; the decode-time derivation holds that GOP anyway) and compared:

1. where a picture's POC goes down from the frame before, its RTP time goes down too: the stamps
   are presentation times, and every frame passes unchanged from then on (the POC is no
   longer read);
2. where the RTP time rises at three such frames and never falls: the stamps are in decode
   order. From then on each frame's time is its RTP time moved by as many frames as its place
   in display order differs from its place in decode order, since the last IDR:
   pts = rtp + ((poc - poc_idr) / poc_step - n) · frame + depth · frame, with n the frame's
   index since that IDR, `poc_step` and `frame` the smallest changes of POC and RTP time the
   held frames show, and `depth` the most a held frame came ahead of its display place (so no
   frame is moved below its RTP time). A frame whose POC cannot be read keeps its place.
3. With no frame shown out of decode order in the hold (no B-frames), the stamps are taken as
   they come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from nvr.media.poc import Picture

T = TypeVar("T")

EVIDENCE = 3  # frames out of decode order, all stamped rising, that make the verdict


@dataclass
class DisplayOrder(Generic[T]):
    picture: Callable[[T], Picture | None]  # the frame's POC (nvr.media.poc.PictureOrder)
    hold_frames: int = 64
    hold_bytes: int = 32 * 1024 * 1024
    min_hold: int = 8  # frames before a keyframe may end the hold (as the GOP probe)
    mode: str = "undecided"  # then "presentation" or "decode"
    _held: list[tuple[int, bool, T, Picture | None]] = field(default_factory=list)
    _held_bytes: int = 0
    _rising: int = 0  # frames shown before the one decoded ahead, stamped above it
    _falling: int = 0  # … stamped below it, as RTP says
    _last: tuple[int, Picture | None] | None = None
    _frame: int = 0  # RTP ticks per frame
    _poc_step: int = 0
    _depth: int = 0
    _base: int | None = None  # the POC of the last IDR (or of the first picture)
    _n: int = 0  # frames since

    def feed(self, pts: int, key: bool, item: T, size: int = 0) -> list[tuple[int, bool, T]]:
        """(pts, key, item) for the frames now ready, in decode order."""
        if self.mode == "presentation":
            return [(pts, key, item)]
        pic = self.picture(item)
        if self.mode == "decode":
            return [(self._moved(pts, pic), key, item)]
        if key and len(self._held) >= self.min_hold or len(self._held) >= self.hold_frames \
                or self._held_bytes + size > self.hold_bytes:
            return self._decide() + self.feed(pts, key, item, size)
        self._evidence(pts, pic)
        self._held.append((pts, key, item, pic))
        self._held_bytes += size
        if self._falling or self._rising >= EVIDENCE:
            return self._decide()
        return []

    def flush(self) -> list[tuple[int, bool, T]]:
        """What is still held (a session shorter than the hold)."""
        return self._decide() if self.mode == "undecided" else []

    def _evidence(self, pts: int, pic: Picture | None) -> None:
        last, self._last = self._last, (pts, pic)
        if last is None or pic is None or last[1] is None or pic.new_sequence:
            return
        if pic.poc < last[1].poc:  # shown before the frame decoded ahead of it
            if pts > last[0]:
                self._rising += 1
            elif pts < last[0]:
                self._falling += 1

    def _decide(self) -> list[tuple[int, bool, T]]:
        held, self._held, self._held_bytes = self._held, [], 0
        self.mode = "presentation"
        if self._rising >= EVIDENCE and not self._falling and self._learn(held):
            self.mode = "decode"
            return [(self._moved(p, pic), k, it) for p, k, it, pic in held]
        return [(p, k, it) for p, k, it, _ in held]

    def _learn(self, held: list[tuple[int, bool, T, Picture | None]]) -> bool:
        """The frame's length in RTP ticks, the POC's step, and the depth, from the held
        frames; False if they do not show them."""
        frames = [b[0] - a[0] for a, b in zip(held, held[1:], strict=False) if b[0] > a[0]]
        steps = [abs(b[3].poc - a[3].poc) for a, b in zip(held, held[1:], strict=False)
                 if a[3] is not None and b[3] is not None and not b[3].new_sequence
                 and b[3].poc != a[3].poc]
        if not frames or not steps:
            return False
        self._frame, self._poc_step = min(frames), min(steps)
        base, n, depth = None, 0, 0
        for _, _, _, pic in held:
            if pic is None:
                n += 1
                continue
            if base is None or pic.new_sequence:
                base, n = pic.poc, 0
            depth = max(depth, n - (pic.poc - base) // self._poc_step)
            n += 1
        self._depth = depth
        return True

    def _moved(self, pts: int, pic: Picture | None) -> int:
        frame = self._frame
        if pic is not None and (self._base is None or pic.new_sequence):
            self._base, self._n = pic.poc, 0
        n, self._n = self._n, self._n + 1
        if pic is None or self._base is None:
            return pts + self._depth * frame
        return pts + (pic.poc - self._base) * frame // self._poc_step + (self._depth - n) * frame
