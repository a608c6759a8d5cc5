"""Decode times for a stream whose transport carries only presentation times (pure).

RTP gives each access unit its pts and nothing else. Without B-frames dts = pts. With B-frames
(decode order I0 P4 B2 b1 b3 …) the muxer needs a dts that never decreases and never passes
its own pts. If at most D frames are decoded ahead of their place in display order (the
stream's reorder depth), then dts_i = S_(i-D), the (i-D)-th smallest pts of the stream, is such
a dts: it rises with i, and frame i's pts has rank ≥ i-D. S_(i-D) is known as soon as frame i
has arrived. The first D frames have no S_(i-D): their dts count back from S_0, one frame
(the smallest pts step of the first GOP) apart, which keeps them below their pts.

D is measured on the first group of pictures (from the first keyframe to the next, at most
`max_probe` frames): D = max(i - rank_i). A later frame reordered deeper than that would get a
dts above its pts; the repairer nudges its pts up to its dts and counts it.
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
    max_probe: int = 64
    depth: int | None = None  # measured on the first GOP unless given
    _probe: list[tuple[int, bool, T]] = field(default_factory=list)
    _heap: list[int] = field(default_factory=list)
    _seen: int = 0
    _first: int = 0  # S_0: the smallest pts of the first GOP
    _step: int | None = None  # one frame, as the first GOP's pts show it

    def feed(self, pts: int, key: bool, item: T) -> list[tuple[int, int | None, bool, T]]:
        """(pts, dts or None, key, item) for the frames now ready, in decode order."""
        if self.depth is None:
            if self._probe and key or len(self._probe) >= self.max_probe:
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
        probed, self._probe = self._probe, []
        pts = [p for p, _, _ in probed]
        self.depth = reorder_depth(pts)
        ordered = sorted(set(pts))
        gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
        self._first, self._step = ordered[0], (min(gaps) if gaps else None)
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

