"""Repair a camera's packet timestamps before they reach the muxer (pure; no PyAV needed).

In the spirit of Home Assistant's TimestampValidator, with repairs where HA only drops:

- The first keyframe may arrive with pts = dts = None (docs/design.md, "Media facts"): it is kept, not dropped.
  FFmpeg's RTP depacketizer also splits one access unit (a sliced IDR frame with in-band SPS/PPS)
  into several packets with the *same* dts; mux() would raise on the equal dts, and dropping a
  piece loses slices of the picture. So equal dts = the same frame: the pieces are MERGED.
- A dts that goes backwards by a little is DROPPED (a duplicate or a late retransmission); after
  `max_dropped` in a row the stream is broken and TimestampError is raised (session restarts).
- A jump of more than `max_jump_s` either way is a DISCONTINUITY (camera restarted its clock):
  the packet is flagged so the writer starts a new segment with a new time anchor.
- pts < dts is impossible for a valid stream; pts is NUDGED up to dts. pts != dts (B-frames) is
  otherwise kept as it is.

One packet is held back so each emitted packet carries its exact duration (next dts - dts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Generic, TypeVar

P = TypeVar("P")


class TimestampError(Exception):
    """Raised when too many packets in a row had unusable timestamps (last/this dts given)."""


@dataclass
class InPacket(Generic[P]):
    pts: int | None
    dts: int | None
    key: bool
    payload: P
    arrival_mono_us: int = 0


@dataclass
class OutPacket(Generic[P]):
    pts: int
    dts: int
    duration: int
    key: bool
    payloads: list[P]
    arrival_mono_us: int
    discontinuity: bool = False  # first packet after a timestamp jump: start a new segment


@dataclass
class _Pending(Generic[P]):
    pts: int | None
    dts: int | None
    key: bool
    payloads: list[P]
    arrival_mono_us: int
    discontinuity: bool


@dataclass
class TimestampRepair(Generic[P]):
    time_base: Fraction
    frame_ticks: int  # a guess of one frame interval, in time_base ticks (from the stream rate)
    max_jump_s: float = 10.0
    max_dropped: int = 60
    counts: dict[str, int] = field(default_factory=dict)
    _pending: _Pending[P] | None = field(default=None, init=False)
    _last_duration: int = field(default=0, init=False)
    _dropped_run: int = field(default=0, init=False)
    _next_is_discontinuity: bool = field(default=False, init=False)
    _notes: list[tuple[str, dict[str, object]]] = field(default_factory=list, init=False)
    # Computed once: Fraction arithmetic costs tens of µs, too much for every packet.
    max_jump_ticks: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.max_jump_ticks = int(self.max_jump_s / self.time_base)

    def _note(self, what: str, **detail: object) -> None:
        n = self.counts.get(what, 0) + 1
        self.counts[what] = n
        if n <= 3:  # the first few of each kind are worth a log line; then only the counters
            self._notes.append((what, detail))

    def drain_notes(self) -> list[tuple[str, dict[str, object]]]:
        if not self._notes:  # the usual case, once per packet: allocate nothing
            return []
        notes, self._notes = self._notes, []
        return notes

    def feed(self, p: InPacket[P]) -> list[OutPacket[P]]:
        pend = self._pending
        if pend is None:
            self._begin(p)
            return []
        if p.dts is None and p.pts is None:
            self._note("merged_no_timestamp")
            self._merge(pend, p)
            return []
        dts = p.dts if p.dts is not None else p.pts
        pts = p.pts if p.pts is not None else dts
        assert dts is not None and pts is not None
        if pts < dts:
            self._note("nudged_pts", pts=pts, dts=dts)
            pts = dts
        if pend.dts is None:
            if p.key:  # the rest of the timestamp-less first keyframe
                self._note("filled_first_keyframe", dts=dts)
                self._merge(pend, p)
                pend.dts, pend.pts = dts, pts
                return []
            self._note("filled_missing", dts=dts - self.frame_ticks)
            pend.dts = pend.pts = dts - self.frame_ticks
        assert pend.dts is not None
        if dts == pend.dts:
            self._note("merged_same_dts", dts=dts)
            self._merge(pend, p)
            return []
        if abs(dts - pend.dts) > self.max_jump_ticks:
            self._note("discontinuity", last_dts=pend.dts, dts=dts)
            out = self._emit(pend, self._last_duration or self.frame_ticks)
            self._pending = None
            self._next_is_discontinuity = True
            self._begin(p)
            return [out]
        if dts < pend.dts:
            self._dropped_run += 1
            self._note("dropped_backwards", last_dts=pend.dts, dts=dts)
            if self._dropped_run > self.max_dropped:
                raise TimestampError(
                    f"{self._dropped_run} packets in a row went backwards: "
                    f"last dts = {pend.dts}, dts = {dts}"
                )
            return []
        self._dropped_run = 0
        self._last_duration = dts - pend.dts
        out = self._emit(pend, self._last_duration)
        self._pending = _Pending(pts, dts, p.key, [p.payload], p.arrival_mono_us, False)
        return [out]

    def flush(self) -> OutPacket[P] | None:
        """The held-back packet at the end of a session (its duration is the last one seen)."""
        pend, self._pending = self._pending, None
        if pend is None or pend.dts is None:
            return None
        return self._emit(pend, self._last_duration or self.frame_ticks)

    def _begin(self, p: InPacket[P]) -> None:
        if not p.key:
            self._note("dropped_before_keyframe")
            return
        dts = p.dts if p.dts is not None else p.pts
        pts = p.pts if p.pts is not None else dts
        self._pending = _Pending(
            pts, dts, True, [p.payload], p.arrival_mono_us, self._next_is_discontinuity
        )
        self._next_is_discontinuity = False

    @staticmethod
    def _merge(pend: _Pending[P], p: InPacket[P]) -> None:
        pend.payloads.append(p.payload)
        pend.key = pend.key or p.key

    @staticmethod
    def _emit(pend: _Pending[P], duration: int) -> OutPacket[P]:
        assert pend.dts is not None and pend.pts is not None
        return OutPacket(
            pend.pts, pend.dts, duration, pend.key, pend.payloads, pend.arrival_mono_us,
            pend.discontinuity,
        )
