"""Decode times for a stream whose transport carries only presentation times (pure).

RTP gives each access unit its pts and nothing else. Without B-frames dts = pts. With B-frames
(decode order I0 P4 B2 b1 b3 …) the muxer needs a dts that never decreases and never passes
its own pts. If at most D frames are decoded ahead of their place in display order (the
stream's reorder depth), then dts_i = S_(i-D), the (i-D)-th smallest pts of the stream, is such
a dts: it rises with i, and frame i's pts has rank ≥ i-D. S_(i-D) is known as soon as frame i
has arrived. The first D frames have no S_(i-D): their dts count back from S_0, one frame
(the smallest pts step of the first GOP) apart, which keeps them below their pts.

D is the larger of the depth the stream's SPS declares (FFmpeg reads it while probing the
first keyframe: `reorder_depth`; a conforming encoder never reorders deeper) and the depth
measured on the first group of pictures (from the first keyframe to the next, at least
`min_probe` and at most `max_probe` frames or `max_probe_bytes`): max(i - rank_i). A frame of a
non-conforming stream reordered deeper than D gets a dts that goes backwards, and the timestamp
repairer drops it and counts it (`dropped_backwards` in the log).

A jump of the camera's clock (more than `max_jump` ticks either way) starts afresh: the heap of
the old timeline would otherwise hand out dts from before the jump.

A *step* is smaller: relays that re-sync their RTP clock step it by about +0.5 s or -0.8 s in
the middle of a GOP (docs/time.md, "Discontinuities, steps and gaps"). Unrepaired, a backward step gives
dts that go backwards (the repairer drops those frames, references included, until the
timeline has caught up), and either way the frames around it show out of the order the
bitstream displays them in (decoders: "non monotonically increasing dts", "co located POCs
unavailable"). Encoders repeat their GOP's structure, so the pts change from one frame to the
next in decode order, by position from the keyframe, is a *pattern*: learnt from the last full
GOP (keyframe to keyframe, the change into the next keyframe included) that had no step
repaired by the fallback below. A step is a pts change more than 3 frames above, or 2 below,
what the pattern expects at the frame's position (what the first GOP showed as its largest
rise and fall, where the pattern cannot tell). From the step on, pts are shifted so that the
frame at the step gets the change expected at its position: the new timeline continues the
old one in display order, as if there had been no step, and the display time lost or added
is under a frame. The pattern tells only while the GOP so far has followed it (within half a
frame) and the frame's position is within it; where it cannot tell, or where the frame would
land on a pts already handed on or at or below the last dts, the frame is shifted instead
to just above every pts so far, by as much as a frame can come below the running maximum in
the first GOP (B-pyramid): no later frame of the new timeline then shares or falls below a
pts of the old one and every dts rises, at the cost of a few frames' worth of display time.
`steps` counts them, `last_step` is the last one's size (ticks, beyond the expected change).
A change off the pattern but within what the first GOP showed, that lands in order (above
the last dts, on no pts handed on, no higher above the largest pts than the first GOP rose),
is the encoder choosing another GOP, not a step, if it moves the frame by a whole number of
frames (an encoder keeps the frame grid; a relay's step almost never does: the soak's +0.3 s,
4.5 frames at 15 fps, was taken for a GOP change and shown out of order). Known gap: a forward
step of a whole 3.5 to 5 frames that lands in order is still taken for a GOP change. At the end of the first GOP, before any
pattern, a keyframe is expected just above every frame before it (closed GOPs). Not repaired:
a step within the first GOP, and steps under those thresholds, which stay as they come.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

RECENT_PTS = 128  # how far back a frame's pts is checked against those before it


def reorder_depth(pts: list[int]) -> int:
    """max(i - rank_i) over a run of frames in decode order (0 when pts only rise)."""
    ranks = {p: r for r, p in enumerate(sorted(pts))}
    return max((i - ranks[p] for i, p in enumerate(pts)), default=0)


@dataclass
class DecodeTimes(Generic[T]):
    min_depth: int = 0  # what the SPS declares (av CodecContext.reorder_depth)
    max_jump: int | None = None  # ticks; None: no jump detection
    # What a frame that shares a recent pts holds (nvr.media.access_unit.picture_kind):
    # "piece" (of the picture before), "unreferenced" or "reference". None: no such check.
    kind: Callable[[T], str] | None = None
    min_probe: int = 8
    max_probe: int = 64
    max_probe_bytes: int = 32 * 1024 * 1024
    depth: int | None = None  # measured on the first GOP unless given
    _probe_bytes: int = 0
    _last_pts: int | None = None
    _probe: list[tuple[int, bool, T]] = field(default_factory=list)
    _heap: list[int] = field(default_factory=list)
    _seen: int = 0
    _first: int = 0  # S_0: the smallest pts of the first GOP
    _step: int | None = None  # one frame, as the first GOP's pts show it
    # What the first GOP showed between consecutive frames: the largest rise and fall of pts,
    # and how far a frame came below, and above, the largest pts before it.
    _rise: int = 0
    _fall: int = 0
    _below: int = 0
    _above: int = 0
    _shift: int = 0  # added to every pts since the last step
    _max_pts: int | None = None  # the largest pts handed on (shifted)
    _last_dts: int | None = None  # the last dts handed on
    # The GOP's pattern: the shifted pts change into each position from the keyframe, in
    # decode order ([0]: into the next keyframe); the current GOP's changes so far ([0] unused,
    # None: position unknown until the next keyframe); whether it has followed the pattern,
    # and whether it may become the pattern (no step repaired by the fallback).
    _pattern: list[int] | None = None
    _gop: list[int] | None = None
    _follows: bool = False
    _learnable: bool = False
    _guard: int = 0  # keyframes until frames are no longer checked after a step
    max_gop: int = 1024  # frames; a longer GOP gives no pattern
    steps: int = 0  # steps repaired
    last_step: int = 0  # the last one, in ticks beyond the change expected
    # Frames that came with the (shifted) pts of one of the last RECENT_PTS: dropped, or moved.
    shared_dropped: int = 0
    shared_moved: int = 0
    _recent: set[int] = field(default_factory=set)
    _recent_ring: list[int] = field(default_factory=list)
    _recent_at: int = 0

    def feed(self, pts: int, key: bool, item: T, size: int = 0
             ) -> list[tuple[int, int | None, bool, T]]:
        """(pts, dts or None, key, item) for the frames now ready, in decode order. `size`
        (bytes) bounds what the first GOP's probe holds."""
        out: list[tuple[int, int | None, bool, T]] = []
        raw, before = pts, self._shift
        last, self._last_pts = self._last_pts, raw
        if last is not None:
            d = pts - last
            if self.max_jump is not None and abs(d) > self.max_jump:
                out = self.flush()  # the probe of the old timeline, if it was still probing
                self.depth, self._heap, self._seen, self._max_pts = None, [], 0, None
                self._recent, self._recent_ring, self._recent_at = set(), [], 0
                self._last_dts, self._gop = None, None  # its position in the GOP: unknown
            else:
                if self.depth is None and self._probe_ends(key, size):
                    out = self._end_probe()  # so that a step on this frame is told
                if self._step is not None and self._max_pts is not None and self.depth is not None:
                    expected = self._expected(key)
                    if expected is None and key and self._pattern is None and self._gop:
                        # The first GOP's end: a keyframe shows after every frame before it.
                        expected = self._max_pts + self._step - (last + before)
                    self._repair(raw, d, expected)
        pts = raw + self._shift
        if self._guard and self._max_pts is not None and self._step is not None and (
                self._last_dts is not None and pts <= self._last_dts or pts in self._heap):
            # Since a step, a frame the pattern misplaced (the GOP changed with it) would
            # share a pts handed on or give a dts that does not rise: above everything instead.
            pts = self._max_pts + self._step + self._below
            self._shift, self._learnable = pts - raw, False
        if last is not None:
            self._follow(pts - (last + before), key)
        elif key:
            self._gop, self._follows, self._learnable = [0], True, True
        if self.kind is not None:
            if pts in self._recent:
                # Two pictures sent with one time (VLC, in the first GOP of a file with
                # B-frames): one decode time for both would make them one sample ("two slices
                # reporting being the first in the same frame"). One no picture refers to is
                # dropped; a reference picture is moved a tick past every pts of the last
                # RECENT_PTS frames. A piece of the picture before (a camera that marks each
                # slice's end) keeps its time: the timestamp repairer joins the pieces.
                kind = self.kind(item)
                if kind == "unreferenced":
                    self.shared_dropped += 1
                    return out
                if kind == "reference":
                    self.shared_moved += 1
                    while pts in self._recent:
                        pts += 1
                    self._remember(pts)
            else:
                self._remember(pts)
        if self._max_pts is None or pts > self._max_pts:
            self._max_pts = pts
        return out + self._feed(pts, key, item, size)

    def _remember(self, pts: int) -> None:
        ring = self._recent_ring
        if len(ring) < RECENT_PTS:
            ring.append(pts)
        else:
            self._recent.discard(ring[self._recent_at])
            ring[self._recent_at] = pts
            self._recent_at = (self._recent_at + 1) % RECENT_PTS
        self._recent.add(pts)

    def _expected(self, key: bool) -> int | None:
        """The pts change the pattern expects into this frame, or None if it cannot tell."""
        pat, gop = self._pattern, self._gop
        if pat is None or gop is None or not self._follows:
            return None
        if key:
            return pat[0] if len(gop) == len(pat) else None
        return pat[len(gop)] if len(gop) < len(pat) else None

    def _repair(self, pts: int, d: int, expected: int | None) -> None:
        """A step of the camera's clock into this frame (raw `pts`, `d` from the frame before)
        gets the timeline shifted from here on."""
        assert self._step is not None and self._max_pts is not None
        within = self._fall - 2 * self._step <= d <= self._rise + 3 * self._step
        if expected is None and within:
            return
        if expected is not None:
            if expected - 2 * self._step <= d <= expected + 3 * self._step:
                return
            at = pts + self._shift  # where the frame lands unrepaired
            if within and self._on_grid(d - expected) and (
                    (self._last_dts is None or at > self._last_dts)
                    and at not in self._heap and at <= self._max_pts + self._above):
                return  # not the pattern, but in order: the encoder chose another GOP
        self.steps += 1
        self.last_step = d - (expected if expected is not None else 0)
        self._guard = 2  # keyframes: the GOP of the step and the next are watched
        if expected is not None:
            # The frame lands where the old timeline would have put it (the guard in feed
            # moves it if that meets a pts handed on).
            self._shift += expected - d
            return
        self._shift = self._max_pts + self._step + self._below - pts
        self._learnable = False  # the changes of this GOP are not the encoder's any more

    def _on_grid(self, off: int) -> bool:
        """Whether `off` ticks is a whole number of frames: an encoder that chooses another
        GOP moves frames by whole frames; a relay's clock step almost never does."""
        assert self._step is not None
        rest = off % self._step
        return min(rest, self._step - rest) * 8 <= self._step

    def _follow(self, d: int, key: bool) -> None:
        """The GOP's pattern, from this frame's (shifted) pts change `d`."""
        expected = self._expected(key)
        if expected is not None and abs(d - expected) * 2 > (self._step or 0):
            self._follows = False
        gop = self._gop
        if key:
            self._guard = max(0, self._guard - 1)
            if gop is not None and self._learnable:
                self._pattern = [d, *gop[1:]]
            self._gop, self._follows, self._learnable = [0], True, True
        elif gop is not None:
            gop.append(d)
            if len(gop) > self.max_gop:
                self._gop = None

    def _feed(self, pts: int, key: bool, item: T, size: int
              ) -> list[tuple[int, int | None, bool, T]]:
        if self.depth is None:
            if self._probe_ends(key, size):
                return self._end_probe() + self._assign(pts, key, item)
            self._probe_bytes += size
            self._probe.append((pts, key, item))
            return []
        return self._assign(pts, key, item)

    def _probe_ends(self, key: bool, size: int) -> bool:
        """Whether the probe of the first GOP ends before this frame."""
        return bool(self._probe) and (
            key and len(self._probe) >= self.min_probe or len(self._probe) >= self.max_probe
            or self._probe_bytes + size > self.max_probe_bytes)

    def _end_probe(self) -> list[tuple[int, int | None, bool, T]]:
        probed = self._measure()
        return [r for p, k, it in probed for r in self._assign(p, k, it)]

    def flush(self) -> list[tuple[int, int | None, bool, T]]:
        """The probe still held at the end of a session (a stream shorter than one GOP)."""
        if self.depth is not None or not self._probe:
            return []
        return self._end_probe()

    def _measure(self) -> list[tuple[int, bool, T]]:
        probed, self._probe, self._probe_bytes = self._probe, [], 0
        pts = [p for p, _, _ in probed]
        self.depth = max(self.min_depth, reorder_depth(pts))
        ordered = sorted(set(pts))
        gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
        self._first, self._step = ordered[0], (min(gaps) if gaps else None)
        deltas = [b - a for a, b in zip(pts, pts[1:], strict=False)]
        self._rise, self._fall = max(deltas, default=0), min(deltas, default=0)
        top, self._below, self._above = pts[0], 0, 0
        for p in pts:
            self._above = max(self._above, p - top)
            top = max(top, p)
            self._below = max(self._below, top - p)
        return probed

    def _assign(self, pts: int, key: bool, item: T) -> list[tuple[int, int | None, bool, T]]:
        assert self.depth is not None
        heapq.heappush(self._heap, pts)
        i = self._seen
        self._seen += 1
        if i < self.depth:
            if self._step is None:  # one frame only: the repairer derives it
                return [(pts, None, key, item)]
            dts = self._first - (self.depth - i) * self._step
        else:
            dts = heapq.heappop(self._heap)
        self._last_dts = dts
        return [(pts, dts, key, item)]

