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
timeline has caught up) and a forward one a frozen picture. A step is a pts change between
consecutive frames outside what the first GOP showed (its largest rise by 3 frames, its largest
fall by 2); from it on, pts are shifted so that the frame lands just above every pts so far, by
as much as a frame can come below the running maximum in that GOP (B-pyramid): so no later
frame of the new timeline shares or falls below a pts of the old one, every dts rises, and at
most a few frames' worth of display time is lost or added at the step. `steps` counts them.
A forward step that lands on a frame that falls (a B-frame) may stay within those bounds: it is
then left as it is, in order (dts still rise), a freeze of its length.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def reorder_depth(pts: list[int]) -> int:
    """max(i - rank_i) over a run of frames in decode order (0 when pts only rise)."""
    ranks = {p: r for r, p in enumerate(sorted(pts))}
    return max((i - ranks[p] for i, p in enumerate(pts)), default=0)


@dataclass
class DecodeTimes(Generic[T]):
    min_depth: int = 0  # what the SPS declares (av CodecContext.reorder_depth)
    max_jump: int | None = None  # ticks; None: no jump detection
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
    # and how far a frame came below the largest pts before it.
    _rise: int = 0
    _fall: int = 0
    _below: int = 0
    _shift: int = 0  # added to every pts since the last step
    _max_pts: int | None = None  # the largest pts handed on (shifted)
    steps: int = 0  # steps repaired
    last_step: int = 0  # the last one, in ticks

    def feed(self, pts: int, key: bool, item: T, size: int = 0
             ) -> list[tuple[int, int | None, bool, T]]:
        """(pts, dts or None, key, item) for the frames now ready, in decode order. `size`
        (bytes) bounds what the first GOP's probe holds."""
        out: list[tuple[int, int | None, bool, T]] = []
        last, self._last_pts = self._last_pts, pts
        if last is not None:
            d = pts - last
            if self.max_jump is not None and abs(d) > self.max_jump:
                out = self.flush()  # the probe of the old timeline, if it was still probing
                self.depth, self._heap, self._seen, self._max_pts = None, [], 0, None
            elif (self._step is not None and self._max_pts is not None and self.depth is not None
                  and (d > self._rise + 3 * self._step or d < self._fall - 2 * self._step)):
                self._shift = self._max_pts + self._step + self._below - pts
                self.steps += 1
                self.last_step = d
        pts += self._shift
        if self._max_pts is None or pts > self._max_pts:
            self._max_pts = pts
        return out + self._feed(pts, key, item, size)

    def _feed(self, pts: int, key: bool, item: T, size: int
              ) -> list[tuple[int, int | None, bool, T]]:
        if self.depth is None:
            self._probe_bytes += size
            if (self._probe and key and len(self._probe) >= self.min_probe
                    or len(self._probe) >= self.max_probe
                    or self._probe_bytes > self.max_probe_bytes):
                probed = self._measure()
                out = [r for p, k, it in probed for r in self._assign(p, k, it)]
                return out + self._assign(pts, key, item)
            self._probe.append((pts, key, item))
            return []
        return self._assign(pts, key, item)

    def flush(self) -> list[tuple[int, int | None, bool, T]]:
        """The probe still held at the end of a session (a stream shorter than one GOP)."""
        if self.depth is not None or not self._probe:
            return []
        probed = self._measure()
        return [r for p, k, it in probed for r in self._assign(p, k, it)]

    def _measure(self) -> list[tuple[int, bool, T]]:
        probed, self._probe, self._probe_bytes = self._probe, [], 0
        pts = [p for p, _, _ in probed]
        self.depth = max(self.min_depth, reorder_depth(pts))
        ordered = sorted(set(pts))
        gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
        self._first, self._step = ordered[0], (min(gaps) if gaps else None)
        deltas = [b - a for a, b in zip(pts, pts[1:], strict=False)]
        self._rise, self._fall = max(deltas, default=0), min(deltas, default=0)
        top, self._below = pts[0], 0
        for p in pts:
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
            return [(pts, self._first - (self.depth - i) * self._step, key, item)]
        return [(pts, heapq.heappop(self._heap), key, item)]

