"""The misbehaving relay of tests/ingest/rtsp_relay.py, made to last half an hour and to
misbehave more:

- it keeps only the last `keep_s` seconds of the camera's packets (the relay of the ingest
  tests keeps all of them: a soak would hold gigabytes), and sends those at once to every client
  that connects, then the live packets;
- its RTP clock steps as `steps` says (forward and back, mid-GOP), counted from each
  connection's first packet, so every reconnection re-syncs the clock too;
- with `sps_inband=False` it sends the in-band PPS but never the in-band SPS (the SDP has both),
  renumbering RTP sequence numbers so nothing reads as lost;
- with `drop_every_s` it closes the client's connection that often, as relays do when their own
  upstream hiccups; the client reconnects and gets the buffer again.

`connects` holds the wall-clock time (s) each burst went out; `drops` when each connection was
closed by the relay.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from tests.ingest.rtsp_relay import Relay

_SPS_H264 = 7
_STAP_A = 24


def _payload_at(p: bytes) -> int:
    """Where an RTP packet's payload starts (after CSRCs and a header extension)."""
    at = 12 + 4 * (p[0] & 0x0F)
    if p[0] & 0x10 and len(p) >= at + 4:
        at += 4 + 4 * int.from_bytes(p[at + 2:at + 4], "big")
    return at


def without_sps(p: bytes) -> bytes | None:
    """An H.264 RTP packet with any SPS taken out: None when nothing is left of it."""
    at = _payload_at(p)
    if len(p) <= at:
        return p
    kind = p[at] & 0x1F
    if kind == _SPS_H264:
        return None
    if kind != _STAP_A:
        return p
    units, i = [], at + 1
    while i + 2 <= len(p):
        size = int.from_bytes(p[i:i + 2], "big")
        unit = p[i + 2:i + 2 + size]
        if unit and unit[0] & 0x1F != _SPS_H264:
            units.append(unit)
        i += 2 + size
    if not units:
        return None
    return p[:at + 1] + b"".join(len(u).to_bytes(2, "big") + u for u in units)


class SoakRelay(Relay):
    """A Relay with a bounded buffer, missing SPS and dropped connections (module docstring)."""

    def __init__(self, upstream_url: str, *, keep_s: float = 10.0, sps_inband: bool = True,
                 drop_every_s: float | None = None, content_base: str | None = None,
                 steps: list[tuple[float, int]] | None = None) -> None:
        super().__init__(upstream_url, content_base=content_base, steps=steps)
        self.keep_s = keep_s
        self.sps_inband = sps_inband
        self.drop_every_s = drop_every_s
        self.connects: list[float] = []
        self.drops: list[float] = []
        self.sps_dropped = 0
        self._base = 0  # absolute index of packets.items[0]

    def _read_upstream(self) -> None:
        assert self._upstream is not None
        pk = self.packets

        def got(data: bytes, start: int, stop: int) -> None:
            now = time.monotonic()
            with pk.cond:
                pk.items.append((now, data[start:stop]))
                old = 0
                while old < len(pk.items) and now - pk.items[old][0] > self.keep_s:
                    old += 1
                if old:
                    del pk.items[:old]
                    self._base += old
                pk.cond.notify_all()

        while not self._stop.is_set():
            try:
                self._upstream.read_some(got)
            except Exception:  # noqa: BLE001 - upstream gone: the relay stops feeding
                break

    def _filter(self) -> Callable[[float, bytes], bytes | None]:
        """The packets as this connection sends them: stepped, maybe without SPS, renumbered."""
        rewrite = self._stepper()
        dropped = 0

        def send(at: float, p: bytes) -> bytes | None:
            nonlocal dropped
            out = rewrite(at, p)
            if not self.sps_inband:
                kept = without_sps(out)
                if kept is None:
                    dropped += 1
                    self.sps_dropped += 1
                    return None
                out = kept
            if dropped:
                seq = (int.from_bytes(out[2:4], "big") - dropped) & 0xFFFF
                out = out[:2] + seq.to_bytes(2, "big") + out[4:]
            return out

        return send

    def _stream(self, conn: socket.socket, rest: bytes) -> None:
        """What the base relay's _stream does, over the bounded buffer; the burst starts at the
        oldest packet kept."""
        pk = self.packets
        send = self._filter()
        started = time.monotonic()
        with pk.cond:
            start = self._base
            sent = start
        first = True
        conn.setblocking(True)
        conn.settimeout(0.05)
        buf = rest
        while not self._stop.is_set():
            if self.drop_every_s is not None and time.monotonic() - started >= self.drop_every_s:
                self.drops.append(time.time())
                return  # _serve closes the connection
            with pk.cond:
                if sent == self._base + len(pk.items) and not pk.done:
                    pk.cond.wait(0.05)
                sent = max(sent, self._base)  # trimmed while this client lagged: skip ahead
                batch = pk.items[sent - self._base:]
                sent = self._base + len(pk.items)
            if batch:
                data = []
                for at, p in batch:
                    out = send(at, p)
                    if out is not None:
                        data.append(b"$\x00" + len(out).to_bytes(2, "big") + out)
                conn.settimeout(5)
                conn.sendall(b"".join(data))
                conn.settimeout(0.05)
                if first:
                    self.burst_sent_at, self.burst_packets, first = \
                        time.monotonic(), len(batch), False
                    self.connects.append(time.time())
            got = self._answer_requests(conn, buf)
            if got is None:
                return
            buf = got
