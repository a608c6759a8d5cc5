"""Repair a camera's packet timestamps before they reach the muxer (pure; no PyAV needed).

In the spirit of Home Assistant's TimestampValidator, with repairs where HA only drops:

- Session start: FFmpeg's RTSP demuxer hands over the first packets of a session with an
  unknown dts (the first keyframe even with pts = dts = None; docs/design.md, "Media facts") until its parser
  has seen enough of the stream. With B-frames (x264 bframes=2 + B-pyramid, most cameras' main
  stream) those are the first 3-4 packets, and their pts are out of order. They are HELD (the
  "head") until the first packet with a known dts arrives, and their dts are DERIVED backwards
  from it, one frame apart and never above their own pts: every frame is kept (none dropped,
  none merged) in decode order, and the reordering is untouched. The keyframe's missing pts is
  one frame before the smallest pts that follows it (an IDR shows first). A stream that never
  gives a dts is resolved the same way after `max_head` packets.
- FFmpeg's RTP depacketizer also splits one access unit (a sliced IDR frame with in-band
  SPS/PPS) into several packets with the *same* timestamps; mux() would raise on the equal dts,
  and dropping a piece loses slices of the picture. So equal dts = the same frame: the pieces
  are MERGED (in the head: equal pts and dts, or no timestamps at all).
- A later packet with no dts gets the one that follows the last (its pts if that lies between).
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
    max_head: int = 64  # packets held at session start while their dts is unknown
    counts: dict[str, int] = field(default_factory=dict)
    _pending: _Pending[P] | None = field(default=None, init=False)
    # From a session's first keyframe until a packet with a known dts: held, dts derived.
    _head: list[_Pending[P]] = field(default_factory=list, init=False)
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
            return self._feed_head(p)
        assert pend.dts is not None
        if p.dts is None and p.pts is None:
            self._note("merged_no_timestamp")
            self._merge(pend, p)
            return []
        if p.dts is not None:
            dts = p.dts
        elif p.pts is not None and abs(p.pts - pend.dts) > self.max_jump_ticks:
            dts = p.pts  # a jump all the same: a new head starts at this packet
        else:  # the one that follows the last; its pts if that lies in between
            dts = pend.dts + (self._last_duration or self.frame_ticks)
            if p.pts is not None and pend.dts < p.pts < dts:
                dts = p.pts
            self._note("filled_missing_dts", dts=dts)
        pts = p.pts if p.pts is not None else dts
        if pts < dts:
            self._note("nudged_pts", pts=pts, dts=dts)
            pts = dts
        if dts == pend.dts:
            self._note("merged_same_dts", dts=dts)
            self._merge(pend, p)
            return []
        if abs(dts - pend.dts) > self.max_jump_ticks:
            self._note("discontinuity", last_dts=pend.dts, dts=dts)
            out = self._emit(pend, self._last_duration or self.frame_ticks)
            self._pending = None
            self._next_is_discontinuity = True
            return [out, *self._feed_head(p)]
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

    def flush(self) -> list[OutPacket[P]]:
        """What is still held at the end of a session: a head whose dts never became known
        (derived, not lost), then the held-back packet (its duration is the last one seen)."""
        out: list[OutPacket[P]] = []
        if self._head:
            self._note("derived_at_end", packets=len(self._head))
            out = self._resolve()
        pend, self._pending = self._pending, None
        if pend is not None and pend.dts is not None:
            out.append(self._emit(pend, self._last_duration or self.frame_ticks))
        return out

    # -- session start ---------------------------------------------------------------------------
    def _feed_head(self, p: InPacket[P]) -> list[OutPacket[P]]:
        head = self._head
        if not head:
            if not p.key:  # undecodable without the frames before it
                self._note("dropped_before_keyframe")
                return []
            head.append(
                _Pending(p.pts, p.dts, True, [p.payload], p.arrival_mono_us,
                         self._next_is_discontinuity)
            )
            self._next_is_discontinuity = False
            return self._resolve() if p.dts is not None else []
        last = head[-1]
        if p.pts is None and p.dts is None:
            self._note("merged_no_timestamp")
            self._merge(last, p)
            return []
        if last.pts is None and last.dts is None and last.key and p.key:
            self._note("filled_first_keyframe", pts=p.pts, dts=p.dts)
            self._merge(last, p)  # the rest of the timestamp-less first keyframe
            last.pts, last.dts = p.pts, p.dts
            return self._resolve() if p.dts is not None else []
        if p.pts == last.pts and p.dts == last.dts:
            self._note("merged_same_dts", dts=p.dts)
            self._merge(last, p)
            return []
        head.append(_Pending(p.pts, p.dts, p.key, [p.payload], p.arrival_mono_us, False))
        if p.dts is not None or len(head) >= self.max_head:
            return self._resolve()
        return []

    def _resolve(self) -> list[OutPacket[P]]:
        """Give every held packet a dts, counting back from the last one; emit all but the
        last, which becomes the held-back packet."""
        head, self._head = self._head, []
        known_pts = sorted({e.pts for e in head if e.pts is not None})
        gaps = [b - a for a, b in zip(known_pts, known_pts[1:], strict=False)]
        step = min(gaps) if gaps else self.frame_ticks  # one frame, as the pts show it
        anchor = head[-1]
        if anchor.dts is None:  # no dts at all: as low as the last few pts allow
            self._note("derived_without_dts", packets=len(head))
            recent = [e.pts for e in head[-8:] if e.pts is not None]
            anchor.dts = min(recent) if recent else 0
        if anchor.pts is None:
            anchor.pts = anchor.dts
        elif anchor.pts < anchor.dts:
            self._note("nudged_pts", pts=anchor.pts, dts=anchor.dts)
            anchor.pts = anchor.dts
        nxt = anchor.dts
        for e in reversed(head[:-1]):
            d = nxt - step
            if e.pts is not None and e.pts < d:  # a frame never decodes after it shows
                d = e.pts
            e.dts = nxt = d
        if len(head) > 1:
            self._note("derived_dts", packets=len(head) - 1, step=step)
        first = head[0]
        assert first.dts is not None
        if first.pts is None:  # an IDR shows before everything that follows it
            first.pts = max(first.dts, known_pts[0] - step) if known_pts else first.dts
        for e in head:
            if e.pts is None:
                e.pts = e.dts
        out: list[OutPacket[P]] = []
        for e, n in zip(head, head[1:], strict=False):
            assert e.dts is not None and n.dts is not None
            self._last_duration = n.dts - e.dts
            out.append(self._emit(e, self._last_duration))
        self._pending = anchor
        return out

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
