"""One ingest session through the recorder's own RTSP reader (`reader: nvr` in the camera map).

The same contract as nvr.ingest.session.run_session — the same SessionContext, SessionEnd kinds,
timestamp repair, segment writer and live tap — with nvr.ingest.rtsp and nvr.ingest.rtp in place
of FFmpeg's RTSP demuxer: many RTP packets a recv(), and Python work per access unit rather than
poll+recv pairs per RTP packet (docs/design.md, "Ingest hot path").

What FFmpeg's demuxer gave that is made here:
- the input stream the writer copies (codec, size, extradata): from the SDP's parameter sets and
  the first keyframe, through FFmpeg's raw H.264/H.265 probe (never decoded);
- dts: RTP carries only pts (nvr.ingest.decode_times);
- pts across the 32-bit RTP timestamp's wrap (13 h at 90 kHz).
"""

from __future__ import annotations

import io
import socket
import time
from fractions import Fraction

import av
import av.container
import av.stream

from nvr import log
from nvr.ingest.decode_times import DecodeTimes
from nvr.ingest.redact import host_of
from nvr.ingest.rtp import AccessUnit, Depacketizer
from nvr.ingest.rtsp import RECV_BYTES, RtspError, RtspSession, VideoTrack
from nvr.ingest.session import SessionContext, SessionEnd
from nvr.ingest.timestamps import InPacket, OutPacket, TimestampError, TimestampRepair

_log = log.get("nvr.ingest.own_session")
READ_PACE_S = 0.5  # nobody watches: half a second of video a read
LIVE_PACE_S = 0.04  # somebody watches live: under one frame at 25 fps
PACE_BYTES = 128 * 1024  # at most this much gathered in one wait: a fresh TCP buffer (tcp_rmem)


class _Stop(Exception):
    def __init__(self, end: SessionEnd) -> None:
        super().__init__(end.message)
        self.end = end


def _resolve(url: str) -> None:
    host = host_of(url)
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        if e.errno == socket.EAI_AGAIN:
            raise _Stop(SessionEnd("offline", f"cannot resolve {host} now: {e.strerror}")) from None
        raise _Stop(SessionEnd("offline", f"host {host} does not resolve", True)) from None
    except UnicodeError:
        raise _Stop(SessionEnd("offline", f"host {host} does not resolve", True)) from None


def _end_of(e: RtspError) -> SessionEnd:
    if e.kind == "credentials":
        return SessionEnd("credentials", str(e), permanent=True)
    if e.kind == "no_video":
        return SessionEnd("no_video", str(e), permanent=True)
    return SessionEnd("offline", str(e))


def template_stream(track: VideoTrack, first_key: bytes) -> tuple[av.container.InputContainer,
                                                                   av.stream.Stream]:
    """An input stream that describes the camera's video (codec, size, extradata), probed by
    FFmpeg from the SDP's parameter sets and the first keyframe. The caller closes it."""
    head = b"".join(b"\x00\x00\x00\x01" + p for p in track.params)
    probe = av.open(io.BytesIO(head + first_key), "r", format=track.codec)
    assert isinstance(probe, av.container.InputContainer)
    stream: av.stream.Stream = probe.streams.video[0]
    stream.time_base = Fraction(1, track.clock_rate)
    return probe, stream


class _Unwrap:
    """32-bit RTP timestamps → a pts that keeps rising across the wrap, from 0."""

    def __init__(self) -> None:
        self.base: int | None = None
        self.last = 0
        self.value = 0

    def __call__(self, ts: int) -> int:
        if self.base is None:
            self.base = self.last = ts
            return 0
        delta = (ts - self.last) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000  # backwards (a B-frame shows before the frame sent before it)
        self.last = ts
        self.value += delta
        return self.value


def run_own_session(ctx: SessionContext) -> SessionEnd:
    """Record until the stream fails or should_stop() says why to stop (never raises for
    camera trouble; the open segment is always finished before returning)."""
    probes: list[av.container.InputContainer] = []  # closed after the writer is done with it
    try:
        rtsp = RtspSession(ctx.url, ctx.io_timeout_s)
    except RtspError as e:  # a URL it cannot read, or not rtsp://
        return SessionEnd("offline", str(e), permanent=True)
    try:
        _resolve(ctx.url)
        try:
            track = rtsp.open()
        except RtspError as e:
            return _end_of(e)
        except TimeoutError:
            return SessionEnd("timeout", "camera stopped answering while setting up the stream")
        return _read(ctx, rtsp, track, probes)
    except _Stop as e:
        return e.end
    except RtspError as e:
        return _end_of(e)
    except TimeoutError:
        return SessionEnd("timeout", f"camera stopped answering: no data for "
                                     f"{ctx.io_timeout_s:g} s")
    except TimestampError as e:
        return SessionEnd("offline", f"unusable timestamps: {e}")
    finally:
        try:
            ctx.writer.end_session()
        finally:
            rtsp.close()
            for probe in probes:
                probe.close()


def _read(ctx: SessionContext, rtsp: RtspSession, track: VideoTrack,
          probes: list[av.container.InputContainer]) -> SessionEnd:
    tb = Fraction(1, track.clock_rate)
    depack = Depacketizer(track.codec)
    unwrap = _Unwrap()
    # A jump of the camera's clock of more than 10 s starts the dts derivation afresh (the
    # timestamp repairer calls the same jump a discontinuity: a new segment).
    times: DecodeTimes[tuple[bytes, int]] = DecodeTimes(max_jump=10 * track.clock_rate)
    # One frame at 15 fps until the repairer has seen real durations.
    repair: TimestampRepair[av.Packet] = TimestampRepair(tb, track.clock_rate // 15)
    wall0, mono0 = ctx.clock.wall_us(), ctx.clock.mono_us()
    state: dict[str, object] = {"video": None, "started": False}
    units: list[AccessUnit] = []

    def handle(op: OutPacket[av.Packet]) -> None:
        video = state["video"]
        assert isinstance(video, av.stream.Stream)
        if not state["started"] or op.discontinuity:
            start = ctx.writer.start_session(video, wall0 + (op.arrival_mono_us - mono0))
            if not state["started"]:
                state["started"] = True
                ctx.on_started(start)
        ctx.writer.write(op)
        if ctx.on_packet is not None:
            ctx.on_packet(op, video)
        ctx.stats.add(op.arrival_mono_us, sum(p.size for p in op.payloads))

    def emit(ready: list[tuple[int, int | None, bool, tuple[bytes, int]]]) -> None:
        for pts, dts, key, (data, arrival) in ready:
            pkt = av.Packet(data)
            pkt.time_base = tb
            for op in repair.feed(InPacket(pts, dts, key, pkt, arrival)):
                handle(op)
        for what, detail in repair.drain_notes():
            _log.info("timestamps_repaired", camera=ctx.camera_id, action=what, **detail)

    try:
        while True:
            got = rtsp.read_some(lambda p: units.extend(depack.push(p)))
            now = ctx.clock.mono_us()  # the arrival of what this recv() took
            for au in units:
                if state["video"] is None:
                    if not au.key:
                        continue  # undecodable before the first keyframe
                    probe, video = template_stream(track, au.data)
                    probes.append(probe)
                    state["video"] = video
                    # The reorder depth the SPS declares (FFmpeg read it while probing).
                    times.min_depth = int(getattr(video.codec_context, "reorder_depth", 0) or 0)
                emit(times.feed(unwrap(au.rtp_ts), au.key, (au.data, now), len(au.data)))
            units.clear()
            # Asked after a read, so that a stop that came during the wait below still takes
            # what the socket holds (up to READ_PACE_S of video) into the last segment.
            why = ctx.should_stop()
            if why is not None:
                return why
            if got < RECV_BYTES and state["started"]:
                # The socket is drained: let the next frames gather in its buffer, so that one
                # wake-up and one recv() take several frames, not one RTP packet as it lands
                # (docs/design.md, "Ingest hot path"). While somebody watches live, a shorter
                # wait keeps the picture prompt. The buffer holds seconds of video, and a full
                # recv() never waits.
                # (Until the first frame is written, no wait: its arrival is the session's
                # wall-clock anchor.) At a high bit rate the wait shrinks, so that one wait
                # never gathers more than PACE_BYTES, whatever the socket buffer has grown to.
                watched = ctx.watched is not None and ctx.watched()
                pace = LIVE_PACE_S if watched else READ_PACE_S
                time.sleep(min(pace, pace * PACE_BYTES / max(got, 1)))
    finally:
        if state["video"] is not None:
            emit(times.flush())
            for last in repair.flush():
                handle(last)
        if depack.lost:
            _log.warning("rtp_packets_lost", camera=ctx.camera_id, packets=depack.lost)
