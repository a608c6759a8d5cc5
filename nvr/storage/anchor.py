"""The wall-clock anchor of one ingest session: when the session's media time 0 happened
(pure; docs/time.md, "The anchor", has the invariants this keeps).

Each frame gives one bound: it cannot have been captured after its last packet arrived, so
media time 0 happened at or before `arrival - media` (its *offset*). The anchor is the lowest
offset seen, so that no frame is ever stamped later than it arrived:

- a burst (a relay sending seconds of buffered video at once when a client connects) gives
  falling offsets, and the anchor falls with them: the buffered frames are stamped in the
  past, where they were captured, not counted on from the arrival of the first;
- a frame delayed by the network gives a high offset, which changes nothing;
- a camera clock that runs fast gives falling offsets: followed at once; one that runs slow
  gives rising offsets: the anchor may rise by RISE_PPM of the media time that passes, never
  past the offset of the frame in hand. So drift up to RISE_PPM is followed, not accumulated;
  and the anchor keeps close to the least delay of the last few seconds of frames.

Cost: a few integer operations a frame (it runs on the ingest hot path).
"""

from __future__ import annotations

# The anchor rises by at most this (parts per million of media time): twice the drift a
# camera's media clock is assumed to have (docs/time.md, "Assumptions").
RISE_PPM = 1000
# A fall of the anchor by more than this within SETTLE_US of arrival time is a burst in
# progress (network jitter and clock drift move it by milliseconds).
BURST_US = 100_000
SETTLE_US = 1_000_000


class WallAnchor:
    """Fed every frame (media µs since the session's first dts, arrival), in decode order."""

    __slots__ = ("wall_minus_mono", "anchor_us", "_media_us", "latest_wall_us", "delay_us",
                 "_mark_anchor_us", "_mark_mono_us", "_last_mono_us")

    def __init__(self, wall_minus_mono_us: int) -> None:
        self.wall_minus_mono = wall_minus_mono_us  # the session's one wall/monotonic pairing
        self.anchor_us: int | None = None  # wall µs of media time 0
        self._media_us = 0
        self.latest_wall_us = 0  # when the latest frame arrived
        self.delay_us = 0  # how long after its stamp the latest frame arrived
        self._mark_anchor_us = 0  # the anchor at the last burst-sized fall ...
        self._mark_mono_us = 0  # ... and when that was
        self._last_mono_us = 0

    def frame(self, media_us: int, arrival_mono_us: int) -> None:
        arrival = arrival_mono_us + self.wall_minus_mono
        offset = arrival - media_us
        anchor = self.anchor_us
        if anchor is None:
            anchor = self._mark_anchor_us = offset
            self._mark_mono_us = arrival_mono_us
        else:
            if media_us > self._media_us:
                anchor += (media_us - self._media_us) * RISE_PPM // 1_000_000
            if offset < anchor:
                anchor = offset
                if anchor < self._mark_anchor_us - BURST_US:
                    self._mark_anchor_us, self._mark_mono_us = anchor, arrival_mono_us
        self.anchor_us = anchor
        self._media_us = media_us
        self.latest_wall_us = arrival
        self.delay_us = offset - anchor
        self._last_mono_us = arrival_mono_us

    def wall_us(self, media_us: int) -> int:
        """The wall time of a media time, by the anchor as it is now."""
        assert self.anchor_us is not None
        return self.anchor_us + media_us

    def settled(self) -> bool:
        """No burst in the last second of arrivals: stamps given now will not move much."""
        return self._last_mono_us - self._mark_mono_us >= SETTLE_US
