"""RTP video payloads → access units (pure: bytes in, access units out; no sockets, no PyAV).

The recorder's own depacketizer for H.264 (RFC 6184: single NAL unit, STAP-A, FU-A) and H.265
(RFC 7798: single NAL unit, AP, FU), so that a camera can be read with many RTP packets per
recv() instead of FFmpeg's four syscalls per packet (docs/design.md, "Ingest hot path").

An access unit ends at the RTP marker bit, or when the timestamp changes (a lost marker). Its
NAL units are written each behind its 4-byte big-endian length: MP4's form, so the segment
writer stores them as they are (nvr.media.access_unit.annexb gives the start-code form FFmpeg's
parsers and the live view take). A sequence-number gap drops the fragment in
progress and marks the access unit `damaged`: the recorder decides what to do with it (the
bytes of a damaged picture still decode up to the hole; counting them is what matters).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Literal

Codec = Literal["h264", "hevc"]
_LEN = struct.Struct(">I")  # a NAL unit's length, before it
_SEQ_TS = struct.Struct(">HI")  # an RTP header's sequence number and timestamp
# An access unit larger than this is dropped (a 4K keyframe at a high rate is ~2 MB): a broken
# or hostile camera that never ends a unit must not grow the recorder's memory without bound.
MAX_UNIT_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class AccessUnit:
    rtp_ts: int  # the RTP timestamp: presentation time in clock-rate ticks, mod 2^32
    data: bytes  # NAL units, each behind its 4-byte length
    key: bool  # H.264 IDR (type 5); H.265 IRAP (types 16-21)
    damaged: bool  # a packet inside it was lost


@dataclass(slots=True)
class Depacketizer:
    codec: Codec
    lost: int = 0  # RTP packets lost (sequence gaps), over the session
    unsupported: int = 0  # packets of payload types we do not take (STAP-B, MTAP, FU-B, PACI)
    _nals: list[bytes] = field(default_factory=list)
    _fu: bytearray | None = None
    _ts: int | None = None
    _key: bool = False
    _damaged: bool = False
    _seq: int | None = None
    _size: int = 0  # bytes of the unit so far
    oversized: int = 0  # access units dropped for passing MAX_UNIT_BYTES
    ready: list[AccessUnit] = field(default_factory=list)  # completed, not yet taken

    def push(self, pkt: bytes | memoryview) -> list[AccessUnit]:
        """One RTP packet (header included); the access units it completes (0, 1 or 2)."""
        data = bytes(pkt)
        self.push_at(data, 0, len(data))
        out, self.ready = self.ready, []
        return out

    def push_at(self, data: bytes, start: int, end: int) -> None:
        """The RTP packet data[start:end]; the access units it completes are appended to
        `ready` (the caller takes them). The reader's hot path: no slice, list or view per
        packet."""
        out = self.ready
        if end - start < 12 or data[start] >> 6 != 2:
            return
        b0 = data[start]
        hdr = start + 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension
            if end < hdr + 4:
                return
            hdr += 4 + 4 * ((data[hdr + 2] << 8) | data[hdr + 3])
        stop = end - (data[end - 1] if b0 & 0x20 else 0)  # padding
        if stop <= hdr:
            return
        seq, ts = _SEQ_TS.unpack_from(data, start + 2)
        if self._seq is not None and seq != (self._seq + 1) & 0xFFFF:
            gap = (seq - self._seq - 1) & 0xFFFF
            if gap < 0x8000:  # lost packets
                self.lost += gap
            elif 0x10000 - gap <= 64:  # just behind: a duplicate or a late retransmission
                return
            # else the camera restarted its sequence (RFC 3550 A.1): follow it.
            self._fu = None
            self._damaged = True
        self._seq = seq
        if self._ts is not None and ts != self._ts:
            if self._nals or self._fu is not None:
                out.extend(self._finish())  # the marker of the previous unit was lost
            else:
                self._size = 0  # a unit dropped as oversized ended without its marker
        self._ts = ts
        self._size += stop - hdr
        if self._size > MAX_UNIT_BYTES:
            if self._nals or self._fu is not None:
                self.oversized += 1
            self._nals, self._fu, self._damaged = [], None, True
            if data[start + 1] & 0x80:
                self._size, self._key, self._damaged = 0, False, False
            return
        if self.codec == "h264":
            self._h264(data, hdr, stop)
        else:
            self._h265(data, hdr, stop)
        if data[start + 1] & 0x80:
            out.extend(self._finish())

    def _finish(self) -> list[AccessUnit]:
        nals, self._nals = self._nals, []
        self._size = 0
        if self._fu is not None:  # a fragment without its end: lost
            self._fu = None
            self._damaged = True
        key, damaged = self._key, self._damaged
        self._key = self._damaged = False
        if not nals or self._ts is None:
            return []
        return [AccessUnit(self._ts, b"".join(nals), key, damaged)]

    # -- H.264 (RFC 6184): the payload is p[a:b] ----------------------------------------------
    def _h264(self, p: bytes, a: int, b: int) -> None:
        kind = p[a] & 0x1F
        if 1 <= kind <= 23:
            self._key = self._key or kind == 5
            self._nals.append(_LEN.pack(b - a) + p[a:b])
        elif kind == 24:  # STAP-A: [size][NAL] ...
            i = a + 1
            while i + 2 < b:
                size = (p[i] << 8) | p[i + 1]
                if size == 0 or i + 2 + size > b:
                    break
                self._key = self._key or (p[i + 2] & 0x1F) == 5
                self._nals.append(_LEN.pack(size) + p[i + 2:i + 2 + size])
                i += 2 + size
        elif kind == 28 and b - a > 2:  # FU-A: [indicator][FU header] payload
            fu = p[a + 1]
            self._fragment(p, fu, bytes(((p[a] & 0xE0) | (fu & 0x1F),)) if fu & 0x80 else b"",
                           (fu & 0x1F) == 5, a + 2, b)
        else:
            self.unsupported += 1

    # -- H.265 (RFC 7798): the payload is p[a:b] ----------------------------------------------
    def _h265(self, p: bytes, a: int, b: int) -> None:
        if b - a < 3:
            return
        kind = (p[a] >> 1) & 0x3F
        if kind < 48:
            self._key = self._key or 16 <= kind <= 21
            self._nals.append(_LEN.pack(b - a) + p[a:b])
        elif kind == 48:  # AP: [size][NAL] ...
            i = a + 2
            while i + 2 < b:
                size = (p[i] << 8) | p[i + 1]
                if size < 2 or i + 2 + size > b:
                    break
                self._key = self._key or 16 <= (p[i + 2] >> 1) & 0x3F <= 21
                self._nals.append(_LEN.pack(size) + p[i + 2:i + 2 + size])
                i += 2 + size
        elif kind == 49 and b - a > 3:  # FU: [payload header, 2][FU header] payload
            fu = p[a + 2]
            inner = fu & 0x3F
            self._fragment(p, fu, bytes(((p[a] & 0x81) | (inner << 1), p[a + 1]))
                           if fu & 0x80 else b"", 16 <= inner <= 21, a + 3, b)
        else:
            self.unsupported += 1

    # -- fragmentation units, both codecs ---------------------------------------------------
    def _fragment(self, p: bytes, fu: int, nal_header: bytes, key: bool, a: int, b: int) -> None:
        """One fragment p[a:b] of a NAL unit (H.264 FU-A, H.265 FU: the start bit 0x80 and
        the end bit 0x40 of `fu` are the same in both). `nal_header` is the unit's own
        header, rebuilt from the fragment's (only looked at on the start fragment); `key`
        whether the unit is a keyframe's. A fragment without its start is dropped."""
        if fu & 0x80:
            self._fu = bytearray(4)  # the unit's length, written when it is complete
            self._fu += nal_header
            self._key = self._key or key
        if self._fu is not None:
            self._fu += memoryview(p)[a:b]
            if fu & 0x40:
                _LEN.pack_into(self._fu, 0, len(self._fu) - 4)
                self._nals.append(bytes(self._fu))
                self._fu = None


class Reorder:
    """RTP packets that came over UDP, back in sequence order, for the depacketizer.

    Bounded both ways: a packet waits for a missing one before it for at most `wait_us`
    (or until `depth` packets wait); then the missing ones are given up for lost and the
    depacketizer, seeing the gap, counts them. A packet behind the next one due (a duplicate,
    or one given up for) is dropped and counted `late`; one far ahead or far behind (the
    camera restarted its sequence, RFC 3550 A.1) restarts the order from itself.
    """

    __slots__ = ("depth", "wait_us", "late", "reordered", "_next", "_held")

    def __init__(self, depth: int = 64, wait_us: int = 200_000) -> None:
        self.depth, self.wait_us = depth, wait_us
        self.late = 0  # dropped: came after their turn (or twice)
        self.reordered = 0  # came early, and waited for one before them
        self._next: int | None = None  # the sequence number due next
        self._held: dict[int, tuple[bytes, int]] = {}  # seq → (packet, arrival µs)

    def push(self, seq: int, pkt: bytes, now_us: int, out: list[bytes]) -> None:
        """One packet with sequence number `seq`, arrived at `now_us`; the packets now in
        order are appended to `out`."""
        nxt = self._next
        if nxt is None or (not self._held and seq == nxt):
            out.append(pkt)  # the common case: in order, nothing waiting
            self._next = (seq + 1) & 0xFFFF
            return
        ahead = (seq - nxt) & 0xFFFF
        if ahead >= 0x8000:  # behind the one due
            if 0x10000 - ahead <= 4 * self.depth:
                self.late += 1
                return
            self._restart(seq, pkt, out)
            return
        if ahead > 4 * self.depth:
            self._restart(seq, pkt, out)
            return
        if seq in self._held:
            self.late += 1
            return
        if ahead:
            self.reordered += 1
        self._held[seq] = (pkt, now_us)
        self._release(now_us, out)

    def expire(self, now_us: int, out: list[bytes]) -> None:
        """Give up on what has been missing for longer than the wait (called on each read,
        so that a lost packet holds the ones after it back for `wait_us` at most)."""
        if self._held:
            self._release(now_us, out)

    def flush(self, out: list[bytes]) -> None:
        """Everything held, in order (the session ends)."""
        while self._held:
            self._skip()
            self._in_order(out)

    def _restart(self, seq: int, pkt: bytes, out: list[bytes]) -> None:
        self.flush(out)
        out.append(pkt)
        self._next = (seq + 1) & 0xFFFF

    def _in_order(self, out: list[bytes]) -> None:
        held, nxt = self._held, self._next
        assert nxt is not None
        while nxt in held:
            out.append(held.pop(nxt)[0])
            nxt = (nxt + 1) & 0xFFFF
        self._next = nxt

    def _skip(self) -> None:
        """The next due becomes the first held: the ones before it are lost."""
        nxt = self._next
        assert nxt is not None
        self._next = min(self._held, key=lambda s: (s - nxt) & 0xFFFF)

    def _release(self, now_us: int, out: list[bytes]) -> None:
        self._in_order(out)
        while self._held and (len(self._held) > self.depth or now_us - min(
                t for _, t in self._held.values()) > self.wait_us):
            self._skip()
            self._in_order(out)
