"""A small RTSP server for tests that behaves as relays and proxies in front of cameras do
(docs/time.md, "The anchor" and "Discontinuities, steps and gaps"):

- it reads a real camera (the GStreamer test camera) and keeps every RTP packet it got;
- a client that connects gets all of them at once (again at every connection: `drop_client()`
  ends the connections, as a relay restarting or a network blip does), interleaved over TCP (seconds of video
  within a fraction of a second), and then the live packets as they come;
- its Content-Base may be given without a scheme, as some cameras send it;
- its RTP clock may step (`steps`: seconds into the stream, ticks added from then on), at the
  first packet of a frame, as relays do when they re-sync.

Real sockets and real RTP: only the timing is the relay's. Every request line it got is kept,
so a test can check what the client asked for.
"""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nvr.media.rtsp import RtspSession, VideoTrack


@dataclass
class _Packets:
    """What the relay read from upstream: (arrival monotonic s, RTP packet), in order."""

    items: list[tuple[float, bytes]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    done: bool = False


class Relay:
    """One listening socket; each client connection is served on a thread of its own."""

    def __init__(self, upstream_url: str | None = None, *, content_base: str | None = None,
                 track: VideoTrack | None = None,
                 steps: list[tuple[float, int]] | None = None) -> None:
        self.upstream_url = upstream_url
        self.content_base = content_base  # a format string: {port} is this relay's port
        self.track = track
        self.steps = sorted(steps or [])
        self.stepped = threading.Event()  # every step has been applied
        self.requests: list[str] = []  # "METHOD URI" of every request, all connections
        self.closed = threading.Event()  # a client connection ended
        self.packets = _Packets()
        self.burst_sent_at: float | None = None  # monotonic s: when the buffer went out
        self.burst_packets = 0
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._srv.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._upstream: RtspSession | None = None
        self._streaming: list[socket.socket] = []  # connections past PLAY
        self._lock = threading.Lock()

    def url(self, path: str = "stream0") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def start(self) -> Relay:
        if self.upstream_url is not None:
            self._upstream = RtspSession(self.upstream_url, 5.0)
            self.track = self._upstream.open()
            self._spawn(self._read_upstream)
        self._spawn(self._accept)
        return self

    def buffered_s(self) -> float:
        with self.packets.cond:
            items = self.packets.items
            return items[-1][0] - items[0][0] if items else 0.0

    def wait_buffered(self, seconds: float, within_s: float = 30.0) -> None:
        """Until the relay holds `seconds` of the camera's video (by arrival)."""
        deadline = time.monotonic() + within_s
        with self.packets.cond:
            while not self.packets.items or \
                    self.packets.items[-1][0] - self.packets.items[0][0] < seconds:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the relay got under {seconds} s of video in {within_s} s")
                self.packets.cond.wait(left)

    def drop_client(self) -> int:
        """End every connection that is streaming (the client sees the stream close); returns
        how many."""
        with self._lock:
            conns, self._streaming = self._streaming, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)

    def stop(self) -> None:
        self._stop.set()
        with self.packets.cond:
            self.packets.done = True
            self.packets.cond.notify_all()
        self._srv.close()
        for t in self._threads:
            t.join(10)
        if self._upstream is not None:
            self._upstream.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- threads ---------------------------------------------------------------------------
    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _read_upstream(self) -> None:
        assert self._upstream is not None
        pk = self.packets

        def got(data: bytes, start: int, stop: int) -> None:
            with pk.cond:
                pk.items.append((time.monotonic(), data[start:stop]))
                pk.cond.notify_all()

        while not self._stop.is_set():
            try:
                self._upstream.read_some(got)
            except (OSError, Exception):  # noqa: BLE001 - upstream gone: the relay stops feeding
                break

    def _accept(self) -> None:
        self._srv.settimeout(0.2)  # (a close() from another thread does not wake accept())
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._spawn(self._serve, conn)

    def _sdp(self) -> str:
        track = self.track
        assert track is not None
        name = "H264" if track.codec == "h264" else "H265"
        if track.codec == "h264":
            fmtp = "packetization-mode=1;sprop-parameter-sets=" + ",".join(
                base64.b64encode(p).decode() for p in track.params)
        else:
            fmtp = ""
        return ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=relay\r\nt=0 0\r\na=control:*\r\n"
                f"m=video 0 RTP/AVP {track.payload_type}\r\n"
                f"a=rtpmap:{track.payload_type} {name}/{track.clock_rate}\r\n"
                f"a=fmtp:{track.payload_type} {fmtp}\r\na=control:trackID=1\r\n")

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        playing = False
        try:
            conn.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    chunk = None
                if chunk == b"":
                    return
                if chunk:
                    buf += chunk
                while (end := buf.find(b"\r\n\r\n")) >= 0:
                    head, buf = buf[:end].decode(), buf[end + 4:]
                    if self._answer(conn, head):
                        playing = True
                        self._stream(conn, buf)
                        return
                if playing:
                    return
        except OSError:
            pass
        finally:
            conn.close()
            self.closed.set()

    def _answer(self, conn: socket.socket, head: str) -> bool:
        """Answer one request; True after PLAY (the stream starts)."""
        method, uri = head.split(" ")[:2]
        self.requests.append(f"{method} {uri}")
        cseq = re.search(r"(?im)^cseq:\s*(\d+)", head)
        lines = ["RTSP/1.0 200 OK", f"CSeq: {cseq.group(1) if cseq else '0'}"]
        body = ""
        if method == "OPTIONS":
            lines.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER")
        elif method == "DESCRIBE":
            body = self._sdp()
            lines.append("Content-Type: application/sdp")
            if self.content_base is not None:
                lines.append("Content-Base: " + self.content_base.format(port=self.port))
        elif method == "SETUP":
            lines += ["Transport: RTP/AVP/TCP;unicast;interleaved=0-1", "Session: 4242;timeout=60"]
        elif method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
            lines.append("Session: 4242")
        lines.append(f"Content-Length: {len(body.encode())}")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
        return method == "PLAY"

    def _stepper(self) -> Callable[[float, bytes], bytes]:
        """The RTP packets as sent: their timestamps stepped as `steps` says."""
        t0: float | None = None
        shift, last_ts, done = 0, -1, 0

        def rewrite(at: float, p: bytes) -> bytes:
            nonlocal t0, shift, last_ts, done
            t0 = at if t0 is None else t0
            ts = int.from_bytes(p[4:8], "big")
            if ts != last_ts and done < len(self.steps) and at - t0 >= self.steps[done][0]:
                shift += self.steps[done][1]  # at a frame's first packet only
                done += 1
                if done == len(self.steps):
                    self.stepped.set()
            last_ts = ts
            if not shift:
                return p
            return p[:4] + ((ts + shift) & 0xFFFFFFFF).to_bytes(4, "big") + p[8:]

        return rewrite

    def _answer_requests(self, conn: socket.socket, buf: bytes) -> bytes | None:
        """Read what the client sent (waiting at most the socket's timeout) and answer each
        whole request in it; what is left of `buf`, or None when the client hung up."""
        try:
            chunk = conn.recv(4096)
            if chunk == b"":
                return None
            buf += chunk
        except TimeoutError:
            pass
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            head, buf = buf[:end].decode(), buf[end + 4:]
            self._answer(conn, head)
        return buf

    def _stream(self, conn: socket.socket, rest: bytes) -> None:
        """Everything buffered at once, then the live packets; requests are read and
        answered in between (keep-alives, TEARDOWN)."""
        pk = self.packets
        sent = 0
        first = True
        rewrite = self._stepper()
        conn.setblocking(True)
        conn.settimeout(0.05)
        buf = rest
        with self._lock:
            self._streaming.append(conn)
        while not self._stop.is_set():
            with pk.cond:
                batch = pk.items[sent:]
                sent = len(pk.items)
                idle = not batch and not pk.done
            if idle:
                # Polled, not pk.cond.wait(0.05): under libfaketime (the suite at other dates)
                # a timed Condition wait never times out, and the requests below would wait
                # for the next packet, which a relay without an upstream never gets.
                time.sleep(0.02)
            if batch:
                conn.settimeout(5)
                conn.sendall(b"".join(b"$\x00" + len(p).to_bytes(2, "big") + rewrite(at, p)
                                      for at, p in batch))
                conn.settimeout(0.05)
                if first:
                    self.burst_sent_at, self.burst_packets, first = time.monotonic(), len(batch), False
            got = self._answer_requests(conn, buf)
            if got is None:
                return
            buf = got
