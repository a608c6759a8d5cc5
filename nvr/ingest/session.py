"""One ingest session: open the camera's RTSP stream, read video packets, repair their
timestamps, hand them to the segment writer, until the stream ends or we are told to stop.

Plain blocking code for the camera's own thread (FFmpeg's reads release the GIL). Why a
session ended is classified into a SessionEnd: the gap reason, the state and a message that is
safe to show (never the URL's credentials).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from threading import Lock
from typing import TYPE_CHECKING, Protocol, TypeAlias
from urllib.parse import urlsplit

import av
import av.container
import av.error
import av.stream

from nvr import log
from nvr.ingest.redact import host_of, redact_text
from nvr.ingest.timestamps import InPacket, OutPacket, TimestampError, TimestampRepair
from nvr.media.rtsp import BASIC_REFUSED, RtspError, only_basic_offered
from nvr.storage.segment_writer import SegmentWriter

_log = log.get("nvr.ingest.session")
if TYPE_CHECKING:  # PyAV's stubs make Packet generic in its stream (not so at run time)
    Packet: TypeAlias = av.Packet[av.stream.Stream]
# A camera thread that has not beaten its heart (should_stop(), a packet, a second of waiting)
# for this long is wedged: the watchdog replaces it. It must exceed the longest single blocking
# step of a camera thread: an ONVIF look-up (60 s) and an RTSP set-up (a few io timeouts).
CAMERA_STALL_S = float(os.environ.get("NVR_CAMERA_STALL_SECONDS", "90"))


class WallClock(Protocol):
    def wall_us(self) -> int: ...
    def mono_us(self) -> int: ...


class SystemClock:
    def wall_us(self) -> int:
        return time.time_ns() // 1000

    def mono_us(self) -> int:
        return time.monotonic_ns() // 1000


@dataclass(frozen=True)
class SessionEnd:
    """Why a session ended. `gap_reason` names the hole in the footage (gaps.reason)."""

    gap_reason: str  # offline, timeout, credentials, no_video, stopped, disk_full
    message: str  # shown in status; no credentials
    permanent: bool = False  # fast retrying cannot fix it: state failed, retried slowly
    # The recorder's own reader cannot read this camera (a protocol, URL or codec it does not
    # speak), where FFmpeg's might: `reader: auto` switches the camera to FFmpeg's.
    own_reader_cannot: bool = False
    tcp_refused: bool = False  # the camera refuses RTP over TCP (wants UDP)


STOPPED = SessionEnd("stopped", "stopped")
RATE_WINDOW_US = 5_000_000  # `nvr status`'s fps and bitrate: the frames of the last 5 s


@dataclass
class Stats:
    """Counters the thread updates and status() reads (under the lock)."""

    frames: int = 0
    bytes: int = 0
    timestamp_steps: int = 0  # RTP clock steps the own reader repaired (nvr.ingest.decode_times)
    packets_lost: int = 0  # RTP packets that never came (sequence gaps; the own reader)
    # The camera's own clock minus the box's, µs (RTCP sender reports), while it sends them.
    clock_offset_us: int | None = None
    # (arrival µs, size, decode time µs on the camera's clock or None), newest last.
    _window: deque[tuple[int, int, int | None]] = field(default_factory=lambda: deque(maxlen=512))
    _lock: Lock = field(default_factory=Lock)

    def add(self, mono_us: int, size: int, media_us: int | None = None) -> None:
        with self._lock:
            self.frames += 1
            self.bytes += size
            self._window.append((mono_us, size, media_us))

    def rates(self, now_mono_us: int, span_us: int = RATE_WINDOW_US) -> tuple[float, int]:
        """(frames per second, bits per second) of the frames that arrived in the last
        `span_us`, measured on the camera's own timestamps: frames arrive in bursts (a
        reader's batch, TCP), and a burst's arrival times made a 15 fps camera read 16.5;
        the time between the first and the last frame's decode times does not burst. Arrival
        times only when the frames carry none, or a timestamp jump lies in the window."""
        with self._lock:
            recent = [e for e in self._window if now_mono_us - e[0] <= span_us]
        if len(recent) < 2:
            return 0.0, 0
        first, last = recent[0][2], recent[-1][2]
        if first is not None and last is not None and 0 < last - first <= 2 * span_us:
            dt = (last - first) / 1e6
        else:
            dt = (recent[-1][0] - recent[0][0]) / 1e6
        if dt <= 0:
            return 0.0, 0
        # n frames span n-1 frame intervals; the first frame's bytes came before the span.
        return round((len(recent) - 1) / dt, 2), int(sum(e[1] for e in recent[1:]) * 8 / dt)


@dataclass
class SessionContext:
    camera_id: str
    url: str
    writer: SegmentWriter
    clock: WallClock
    stats: Stats
    should_stop: Callable[[], SessionEnd | None]
    on_started: Callable[[int], None]  # the first segment's start_us
    io_timeout_s: float = 5.0
    # Live view (nvr.web.fanout): every packet written, with its stream; returns at once.
    on_packet: Callable[[OutPacket[Packet] | OutPacket[bytes], av.stream.Stream],
                        None] | None = None
    # Whether somebody watches live now (the own reader then waits less between reads).
    watched: Callable[[], bool] | None = None
    # Told the own reader's camera socket when it opens (None when it closes), so that the
    # watchdog abandoning a wedged thread can shut the socket and the thread ends.
    on_socket: Callable[[socket.socket | None], object] | None = None
    # Whether the password may go out with Basic authentication (nvr.media.rtsp.
    # basic_auth_allowed), and the status line that names the setting when it may not.
    allow_basic: bool = True
    basic_refusal: str = ""
    transport: str = "tcp"  # how RTP comes: "tcp" (interleaved) or "udp"


def open_input(url: str, io_timeout_s: float, transport: str = "tcp"
               ) -> av.container.InputContainer:
    """Open the stream, video only: audio is never SET UP (docs/policy.md: no audio)."""
    host = host_of(url)
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        if e.errno == socket.EAI_AGAIN:  # the name server is unreachable: a network failure
            raise _End(SessionEnd("offline", f"cannot resolve {host} now: {e.strerror}")) from None
        raise _End(SessionEnd("offline", f"host {host} does not resolve", permanent=True)) from None
    except UnicodeError:
        raise _End(SessionEnd("offline", f"host {host} does not resolve", permanent=True)) from None
    options = {
        "rtsp_transport": transport,
        "timeout": str(int(io_timeout_s * 1_000_000)),  # µs; FFmpeg's, not PyAV's GIL callback
        "allowed_media_types": "video",
        # The SDP already names the codec and its parameter sets. FFmpeg's default 5 s probe
        # buffers ~2 s of packets that then arrive in one burst; the anchor is not misled by a
        # burst (docs/time.md), but a shorter one costs less memory and start-up time.
        "analyzeduration": "200000",
    }
    try:
        return av.open(url, options=options)
    except av.error.HTTPUnauthorizedError:
        raise _End(SessionEnd("credentials", "credentials refused by camera", True)) from None
    except av.error.HTTPOtherClientError as e:
        # With audio filtered out, a camera with no video stream has nothing to SET UP, and
        # the PLAY that follows is refused with a 4xx (seen: GStreamer's rtsp-server).
        _log.info("open_refused", error=redact_text(str(e), url))
        raise _End(SessionEnd("no_video", "stream has no video", True)) from None
    except av.error.OSError as e:
        if e.errno == errno.EPROTONOSUPPORT and transport == "tcp":
            # FFmpeg's word for a SETUP answered 461 Unsupported Transport.
            raise _End(SessionEnd("offline", "the camera refuses RTP over TCP (SETUP: 461 "
                                  "Unsupported Transport)", tcp_refused=True)) from None
        raise _End(_classify(e, url)) from None
    except Exception as e:  # noqa: BLE001 - every other failure is "camera unreachable"
        raise _End(_classify(e, url)) from None


class _End(Exception):
    def __init__(self, end: SessionEnd) -> None:
        super().__init__(end.message)
        self.end = end


# FFmpeg's errors in words a person can act on; str() of one is "[Errno 1094995529] Invalid
# data found when processing input: 'rtsp://…'", its number meaning nothing to anyone.
_FFMPEG_WORDS: dict[type[BaseException], str] = {
    av.error.InvalidDataError: "the camera sent a stream FFmpeg cannot read (invalid data): "
                               "check the camera's codec (H.264 or H.265) and its rtsp: path",
    av.error.HTTPNotFoundError: "the camera has no stream at this path (RTSP 404): check the "
                                "path in its rtsp: address",
    av.error.HTTPForbiddenError: "the camera forbids this stream to this account (RTSP 403)",
    av.error.HTTPBadRequestError: "the camera refused the request (RTSP 400)",
    av.error.HTTPServerError: "the camera reported an internal error (RTSP 5xx)",
    av.error.EOFError: "the camera ended the stream",
}


def error_words(e: BaseException, url: str) -> str:
    """`e` in words, without an errno number and without the camera's address (which may
    carry its password)."""
    for kind, words in _FFMPEG_WORDS.items():
        if isinstance(e, kind):
            return words
    strerror = getattr(e, "strerror", None)
    if isinstance(e, OSError | av.error.FFmpegError) and isinstance(strerror, str) and strerror:
        return f"{strerror[0].lower()}{strerror[1:]} ({host_of(url)})"
    return redact_text(str(e), url)


def _classify(e: BaseException, url: str) -> SessionEnd:
    text = error_words(e, url)
    if isinstance(e, TimeoutError) or getattr(e, "errno", None) == errno.ETIMEDOUT:
        return SessionEnd("timeout", f"camera stopped answering: {text}")
    if isinstance(e, TimestampError):
        return SessionEnd("offline", f"unusable timestamps: {text}")
    return SessionEnd("offline", f"camera unreachable: {text}")


def _basic_only(ctx: SessionContext) -> SessionEnd | None:
    """FFmpeg's reader answers a Basic challenge with the password in clear and has no option
    to refuse it; so where Basic is not allowed, the camera is first asked, without
    credentials, how it challenges, and a Basic-only camera is refused before FFmpeg talks to
    it. Best effort: a camera whose RTSP the probe cannot parse is left to FFmpeg."""
    try:
        has_user = bool(urlsplit(ctx.url).username)
    except ValueError:
        return None
    if ctx.allow_basic or not has_user:
        return None
    try:
        basic_only = only_basic_offered(ctx.url, ctx.io_timeout_s)
    except (RtspError, OSError, TimeoutError) as e:
        if isinstance(e, RtspError) and e.kind != "offline":
            return None
        return SessionEnd("offline", f"camera unreachable: {e}" if str(e) else
                          "camera stopped answering while asked how it authenticates")
    if basic_only:
        return SessionEnd("credentials", ctx.basic_refusal or BASIC_REFUSED, permanent=True)
    return None


def run_session(ctx: SessionContext) -> SessionEnd:
    """Record until the stream fails or should_stop() says why to stop. Never raises for
    camera trouble; the open segment is always finished before returning."""
    refused = _basic_only(ctx)
    if refused is not None:
        return refused
    try:
        container = open_input(ctx.url, ctx.io_timeout_s, ctx.transport)
    except _End as e:
        return e.end
    try:
        if not container.streams.video:
            return SessionEnd("no_video", "stream has no video", permanent=True)
        return _read(ctx, container, container.streams.video[0])
    except _End as e:
        return e.end
    except Exception as e:  # noqa: BLE001 - a read error ends this session; the recorder retries
        return _classify(e, ctx.url)
    finally:
        try:
            ctx.writer.end_session()
        finally:
            container.close()


def _read(
    ctx: SessionContext, container: av.container.InputContainer, video: av.stream.Stream
) -> SessionEnd:
    tb = Fraction(video.time_base or Fraction(1, 90000))
    us_per_tick = float(tb) * 1_000_000  # a float: this runs for every frame
    rate = video.average_rate or video.guessed_rate or 15
    repair: TimestampRepair[Packet] = TimestampRepair(tb, max(1, int(1 / (tb * rate))))
    wall0, mono0 = ctx.clock.wall_us(), ctx.clock.mono_us()
    started = False
    first: tuple[int, int] | None = None  # (anchor µs, its dts) for the camera's clock
    clock_read = False  # its offset from the box's is known (status: clock_offset_s)

    def handle(op: OutPacket[Packet]) -> None:
        nonlocal started, first, clock_read
        if not started or op.discontinuity:
            # One wall/monotonic pairing a session, for every arrival: a step of the box's
            # clock mid-session cannot reorder segments (docs/time.md).
            start = ctx.writer.start_session(video, wall0 + (op.arrival_mono_us - mono0))
            first = (start, op.dts)
            if not started:
                started = True
                ctx.on_started(start)
        ctx.writer.write(op)
        if op.key and not clock_read and first is not None:
            # The camera's first sender report, once FFmpeg has read one (looked for at
            # keyframes: it comes a second or so into the stream, and does not change).
            rt = getattr(container, "start_time_realtime", None)
            if rt:
                ctx.stats.clock_offset_us = int(rt + first[1] * tb * 1_000_000) - first[0]
                clock_read = True
        if ctx.on_packet is not None:
            ctx.on_packet(op, video)
        payloads = op.payloads
        size = payloads[0].size if len(payloads) == 1 else sum(p.size for p in payloads)
        ctx.stats.add(op.arrival_mono_us, size, int(op.dts * us_per_tick))

    try:
        for pkt in container.demux(video):
            why = ctx.should_stop()
            if why is not None:
                return why
            if pkt.size == 0:
                continue
            for op in repair.feed(InPacket(pkt.pts, pkt.dts, pkt.is_keyframe, pkt, ctx.clock.mono_us())):
                handle(op)
            for what, detail in repair.drain_notes():
                _log.info("timestamps_repaired", camera=ctx.camera_id, action=what, **detail)
        return SessionEnd("offline", "camera closed the stream")
    finally:
        for last in repair.flush():  # a kept frame is written even as the session ends
            handle(last)
        if first is not None:
            _log_camera_clock(ctx.camera_id, container, tb, *first)


def _log_camera_clock(
    camera: str, container: av.container.InputContainer, tb: Fraction, anchor_us: int, dts: int
) -> None:
    """The camera's own clock (RTCP sender reports: wall time at pts 0) as a second opinion on
    our anchor; logged only, since cameras' clocks are often wrong (docs/design.md, "Media facts")."""
    rt = getattr(container, "start_time_realtime", None)
    if rt:
        camera_us = int(rt + dts * tb * 1_000_000)
        _log.info("camera_clock", camera=camera, offset_ms=round((camera_us - anchor_us) / 1000))
