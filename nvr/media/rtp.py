"""RTP video payloads → access units (pure: bytes in, access units out; no sockets, no PyAV).

The recorder's own depacketizer for H.264 (RFC 6184: single NAL unit, STAP-A, FU-A) and H.265
(RFC 7798: single NAL unit, AP, FU), so that a camera can be read with many RTP packets per
recv() instead of FFmpeg's four syscalls per packet (docs/design.md, "Ingest hot path").

An access unit ends at the RTP marker bit, or when the timestamp changes (a lost marker). Its
NAL units are written each behind its 4-byte big-endian length: MP4's form, so the segment
writer stores them as they are (nvr.storage.fmp4.annexb gives the start-code form FFmpeg's
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
