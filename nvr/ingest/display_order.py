"""Presentation times for a stream stamped in decode order (pure).

RTP stamps each frame with its presentation time (RFC 6184 5.1, RFC 7798 4.1): with B-frames
the times go down and up in the order frames are sent (I0 P3 B1 B2 …). Some servers stamp
frames in the order they send them instead, rising (aio-rtsp-toolkit's file server: its times
are the file's, held above a running cursor, so a B-frame gets the time after the P-frame before
it). Taken as they come, the segment shows every B-frame after the frame it precedes (decoders:
"non monotonically increasing dts"); FFmpeg's own RTSP reader records such a stream the same
broken way.

The pictures still know their order: each carries its picture order count (POC,
nvr.media.poc). The first group of pictures of a session is held (`hold_frames`, `hold_bytes`,
as the decode-time derivation holds it anyway; less if a frame shown before the frame decoded
ahead of it comes with a falling time) and compared:

1. where a picture's POC goes down from the frame before, its RTP time goes down too: the stamps
   are presentation times, and every frame passes unchanged from then on (the POC is no
   longer read);
2. where the RTP time rises at three such frames and never falls: the stamps are in decode
   order. From then on the times that came are handed out again in display order: the k-th
   picture shown gets the k-th smallest time received. With at most `depth` frames decoded
   after their place in display order (what the SPS declares, or the held GOP shows, if more;
   raised if a later frame comes deeper), the next picture to show is known once `depth`
   frames more have come, so frames wait a few frames' time. The times stay the camera's (no
   frame rate is assumed: jitter, lost frames, a changing rate keep every time distinct and in
   display order).
   Display order is (sequence, POC): a sequence starts at an IDR (or BLA, or a CRA first or
   after an end of sequence), at any keyframe whose POC is not above every POC of its sequence
   (a server looping a file that starts at a CRA), after lost packets (a POC read after them
   may be wrong) and at a jump of the clock (`max_jump`); what waits is placed first. Not
   followed: H.264's memory_management_control_operation 5 (a POC reset in a slice header's
   reference marking, rare in cameras). A unit that is a piece of the picture before (a later
   slice) takes that picture's time; one whose POC cannot be read is shown after the frame
   decoded before it. What waits is bounded as the hold is (`hold_frames` units,
   `hold_bytes`): beyond it, pictures are placed until the first waiting frame has its time.
3. With no frame shown out of decode order in the hold (no B-frames), the stamps are taken as
   they come.

A frame after lost packets is no evidence either way: its POC's high bits are guessed from the
frame before, and after a few lost frames guessed wrong. Nor is a POC that falls by about its
low bits' range (a relay that renumbers its packets hides a loss).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from nvr.media.poc import Picture

T = TypeVar("T")

EVIDENCE = 3  # frames out of decode order, all stamped rising, that make the verdict


@dataclass
class _Frame(Generic[T]):
    key: bool
    item: T
    order: tuple[int, int, int]  # (sequence, POC, n): display order
    size: int
    pts: int | None = None
    pieces: list[tuple[bool, T, int]] = field(default_factory=list)  # units after it, of it


@dataclass
class DisplayOrder(Generic[T]):
    picture: Callable[[T], Picture | None]  # the frame's POC (nvr.media.poc.PictureOrder)
    piece: Callable[[T], bool] = lambda _: False  # a unit that does not start a picture
    hold_frames: int = 64
    hold_bytes: int = 32 * 1024 * 1024
    min_hold: int = 8  # frames before a keyframe may end the hold (as the GOP probe)
    mode: str = "undecided"  # then "presentation" or "decode"
    min_depth: int = 0  # what the SPS declares (av CodecContext.reorder_depth)
    max_jump: int | None = None  # ticks: a jump of the clock (as DecodeTimes.max_jump)
    depth: int = 0
    _held: list[tuple[int, bool, T, Picture | None, int, bool]] = field(default_factory=list)
    _held_bytes: int = 0
    _rising: int = 0  # frames shown before the one decoded ahead, stamped above it
    _falling: int = 0  # … stamped below it, as RTP says
    _last: tuple[int, Picture | None] | None = None
    # Decode order: frames not yet handed on (in decode order), those without a time (by
    # display order), and the times received and not yet handed out.
    _pending: deque[_Frame[T]] = field(default_factory=deque)
    _unplaced: list[tuple[tuple[int, int, int], _Frame[T]]] = field(default_factory=list)
    _times: list[int] = field(default_factory=list)
    _sequence: int = 0
    _top: int | None = None  # the largest POC of the sequence
    _n: int = 0  # frames so far: ties broken in decode order
    _last_order: tuple[int, int, int] | None = None  # of the frame decoded last
    _placed: tuple[int, int, int] | None = None  # of the frame given a time last
    _last_pts: int | None = None  # handed on last
    _last_stamp: int | None = None  # received last
    _units: int = 0  # units waiting (frames and their pieces), and their bytes
    _bytes: int = 0

    def feed(self, pts: int, key: bool, item: T, size: int = 0, damaged: bool = False
             ) -> list[tuple[int, bool, T]]:
        """(pts, key, item) for the frames now ready, in decode order. `damaged`: packets were
        lost before or inside this frame (its POC may be misread: no evidence)."""
        if self.mode == "presentation":
            return [(pts, key, item)]
        pic = self.picture(item)
        if self.mode == "decode":
            return self._reorder(pts, key, item, pic, size, damaged)
        if key and len(self._held) >= self.min_hold or len(self._held) >= self.hold_frames \
                or self._held_bytes + size > self.hold_bytes:
            return self._decide() + self.feed(pts, key, item, size, damaged)
        if pic is not None or not self.piece(item):  # a piece says nothing of the order
            self._evidence(pts, None if damaged else pic)
        self._held.append((pts, key, item, pic, size, damaged))
        self._held_bytes += size
        if self._falling:
            return self._decide()
        return []

    def flush(self) -> list[tuple[int, bool, T]]:
        """What is still held (a session shorter than the hold, or the frames waiting for their
        place at its end)."""
        if self.mode == "undecided":
            return self._decide() + self.flush()
        self._place_all()
        return self._ready()

    def _evidence(self, pts: int, pic: Picture | None) -> None:
        last, self._last = self._last, (pts, pic)
        if last is None or pic is None or last[1] is None or pic.new_sequence:
            return
        drop = last[1].poc - pic.poc
        if 0 < drop and (not pic.wrap or 2 * drop < pic.wrap):  # shown before the frame before
            if pts > last[0]:
                self._rising += 1
            elif pts < last[0]:
                self._falling += 1

    def _decide(self) -> list[tuple[int, bool, T]]:
        held, self._held, self._held_bytes = self._held, [], 0
        self.mode = "presentation"
        if self._rising < EVIDENCE or self._falling:
            return [(p, k, it) for p, k, it, _, _, _ in held]
        self.mode = "decode"
        orders: list[tuple[int, int, int]] = []
        for _, k, it, pic, _, _ in held:
            order = self._order(k, it, pic)
            if not orders or order != orders[-1]:  # a piece is its picture's
                orders.append(order)
        ranks = {o: r for r, o in enumerate(sorted(orders))}
        self.depth = max(self.min_depth, *(i - ranks[o] for i, o in enumerate(orders)))
        self._sequence, self._top, self._n, self._last_order = 0, None, 0, None
        out: list[tuple[int, bool, T]] = []
        for p, k, it, pic, size, damaged in held:
            out += self._reorder(p, k, it, pic, size, damaged)
        return out

    def _order(self, key: bool, item: T, pic: Picture | None) -> tuple[int, int, int]:
        """A frame's place in display order; a piece's is its picture's."""
        n, self._n = self._n, self._n + 1
        if pic is None:
            last = self._last_order
            if last is not None and self.piece(item):
                return last
            order = (last[0], last[1], n) if last is not None else (self._sequence, 0, n)
        else:
            if pic.new_sequence or key and self._top is not None and pic.poc <= self._top:
                self._sequence += 1
                self._top = None
            self._top = pic.poc if self._top is None else max(self._top, pic.poc)
            order = (self._sequence, pic.poc, n)
        self._last_order = order
        return order

    def _reorder(self, pts: int, key: bool, item: T, pic: Picture | None, size: int,
                 damaged: bool) -> list[tuple[int, bool, T]]:
        if damaged or self.max_jump is not None and self._last_stamp is not None \
                and abs(pts - self._last_stamp) > self.max_jump:
            # After lost packets a POC may be misread; after a jump the times are another
            # clock's. What waits is placed, and what comes now shows after it.
            self._place_all()
            self._sequence, self._top = self._sequence + 1, None
        self._last_stamp = pts
        last = self._last_order
        order = self._order(key, item, pic)
        if order == last:  # a piece of the frame before
            if not self._pending:
                return [(self._last_pts if self._last_pts is not None else pts, key, item)]
            self._pending[-1].pieces.append((key, item, size))
        else:
            frame = _Frame(key, item, order, size)
            self._pending.append(frame)
            heapq.heappush(self._unplaced, (order, frame))
            heapq.heappush(self._times, pts)
        self._units += 1
        self._bytes += size
        while len(self._unplaced) > self.depth:
            self._place()
        out = self._ready()
        while self._pending and (self._units > self.hold_frames or self._bytes > self.hold_bytes):
            # The first frame waits too long (a POC far ahead of its place, a POC reset not
            # seen): the next pictures to show get their times until it has its own.
            self._place()
            out += self._ready()
        return out

    def _place_all(self) -> None:
        while self._unplaced:
            self._place()

    def _place(self) -> None:
        """The next picture to show gets the smallest time not handed out."""
        order, frame = heapq.heappop(self._unplaced)
        if self._placed is not None and order < self._placed:
            # It came later than the depth allowed: wait longer from now on.
            self.depth = min(self.depth + 1, self.hold_frames)
        self._placed = order
        frame.pts = heapq.heappop(self._times)

    def _ready(self) -> list[tuple[int, bool, T]]:
        out: list[tuple[int, bool, T]] = []
        pending = self._pending
        while pending and pending[0].pts is not None:
            frame = pending.popleft()
            assert frame.pts is not None
            out.append((frame.pts, frame.key, frame.item))
            out += [(frame.pts, k, piece) for k, piece, _ in frame.pieces]
            self._units -= 1 + len(frame.pieces)
            self._bytes -= frame.size + sum(size for _, _, size in frame.pieces)
            self._last_pts = frame.pts
        return out
