"""RTCP (RFC 3550 §6), the little a receiver of one video stream needs (pure: bytes in and out).

- Sender reports (SR, packet type 200) give the camera's own wall clock: the NTP time at which
  the RTP clock read a given timestamp. `sender_reports()` finds them in a compound packet.
- A BYE (203) says a source has left: a server that ends its stream (a file served in a loop
  reaching its end, a relay losing its camera) sends it, and then nothing more comes.
- Receiver reports (RR, 201) with a source description (SDES CNAME: RFC 3550 §6.1 wants one in
  every compound packet) tell the camera what arrives; a server that times out a receiver
  without them (over UDP, where the RTSP connection may stay quiet) keeps the stream going.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

NTP_UNIX_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP's epoch) to 1970-01-01
_SR = struct.Struct(">IIIII")  # sender SSRC, NTP seconds, NTP fraction, RTP timestamp, packets
_RR_BLOCK = struct.Struct(">IIIIII")
CNAME = b"nvr"


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_us: int  # the sender's wall clock, µs since the Unix epoch
    ntp_middle: int  # the middle 32 bits of its NTP timestamp (LSR in a receiver report)
    rtp_ts: int  # the RTP timestamp that goes with ntp_us


def _packets(data: bytes, start: int, end: int | None) -> Iterator[tuple[int, int, int]]:
    """(packet type, offset, size) of each packet of the compound RTCP packet data[start:end];
    a malformed one (not version 2, or a length that overruns) ends the walk."""
    end = len(data) if end is None else end
    pos = start
    while end - pos >= 4:
        size = 4 * (((data[pos + 2] << 8) | data[pos + 3]) + 1)
        if data[pos] >> 6 != 2 or pos + size > end:
            return
        yield data[pos + 1], pos, size
        pos += size


def sender_reports(data: bytes, start: int = 0, end: int | None = None) -> list[SenderReport]:
    """The sender reports in the compound RTCP packet data[start:end]; anything else in it, or
    anything malformed, is skipped (a packet whose length overruns ends the walk)."""
    out: list[SenderReport] = []
    for pt, pos, size in _packets(data, start, end):
        if pt == 200 and size >= 28:
            ssrc, sec, frac, rtp_ts, _ = _SR.unpack_from(data, pos + 4)
            ntp_us = (sec - NTP_UNIX_OFFSET_S) * 1_000_000 + (frac * 1_000_000 >> 32)
            out.append(SenderReport(ssrc, ntp_us, ((sec & 0xFFFF) << 16) | (frac >> 16), rtp_ts))
    return out


def says_bye(data: bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether the compound RTCP packet data[start:end] holds a BYE (RFC 3550 §6.6), for any
    SSRC or none; malformed packets end the walk as in sender_reports()."""
    return any(pt == 203 for pt, _, _ in _packets(data, start, end))


@dataclass(slots=True)
class ReceptionStats:
    """What a receiver report says of one source (RFC 3550 §6.4.1, A.3)."""

    ssrc: int = 0  # the camera's stream (from its packets)
    base_seq: int | None = None  # the first sequence number, extended
    max_seq: int = 0  # the highest sequence number seen, extended across wraps
    received: int = 0
    _expected_prior: int = 0
    _received_prior: int = 0

    def packet(self, ssrc: int, seq: int) -> None:
        """One RTP packet taken (in order or not; duplicates count, as in RFC 3550 A.3)."""
        self.ssrc = ssrc
        self.received += 1
        if self.base_seq is None:
            self.base_seq = self.max_seq = seq
            return
        ext = (self.max_seq & ~0xFFFF) | seq
        # The nearest extension to the highest seen: a packet just before a wrap, or after it.
        if ext < self.max_seq - 0x8000:
            ext += 0x10000
        elif ext > self.max_seq + 0x8000:
            ext -= 0x10000
        if ext > self.max_seq:
            self.max_seq = ext

    def report_block(self, last_sr: SenderReport | None, since_sr_s: float) -> bytes:
        base = self.max_seq if self.base_seq is None else self.base_seq
        expected = self.max_seq - base + 1 if self.base_seq is not None else 0
        lost = max(0, expected - self.received)
        interval_expected = expected - self._expected_prior
        interval_lost = interval_expected - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = expected, self.received
        fraction = (interval_lost << 8) // interval_expected \
            if interval_expected > 0 and interval_lost > 0 else 0
        lsr = last_sr.ntp_middle if last_sr is not None else 0
        dlsr = int(since_sr_s * 65536) & 0xFFFFFFFF if last_sr is not None else 0
        # Jitter is sent as 0: reads are paced (several frames a recv), so arrival times here
        # measure the pacing, not the network.
        return _RR_BLOCK.pack(self.ssrc, (min(fraction, 255) << 24) | min(lost, 0x7FFFFF),
                              self.max_seq & 0xFFFFFFFF, 0, lsr, dlsr)


def receiver_report(own_ssrc: int, block: bytes | None) -> bytes:
    """A compound RTCP packet: RR (with one report block, or none before any packet) and SDES
    with our CNAME."""
    count = 1 if block else 0
    rr = struct.pack(">BBHI", 0x80 | count, 201, 1 + 6 * count, own_ssrc) + (block or b"")
    item = bytes((1, len(CNAME))) + CNAME + b"\0"  # CNAME, then the end of the list
    item += b"\0" * (-len(item) % 4)
    sdes = struct.pack(">BBHI", 0x81, 202, (4 + len(item)) // 4, own_ssrc) + item
    return rr + sdes
