"""One ingest session through the recorder's own RTSP reader (`reader: nvr` in the camera map).

The same contract as nvr.ingest.session.run_session — the same SessionContext, SessionEnd kinds,
timestamp repair, segment writer and live tap — with nvr.media.rtsp and nvr.media.rtp in place
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
from nvr.ingest.display_order import DisplayOrder
from nvr.ingest.read_loop import shared_read_loop
from nvr.ingest.redact import host_of
from nvr.ingest.session import SessionContext, SessionEnd
from nvr.ingest.timestamps import InPacket, OutPacket, TimestampError, TimestampRepair
from nvr.media.access_unit import annexb, hevc_single_layer, picture_kind
from nvr.media.poc import PictureOrder
from nvr.media.rtp import AccessUnit, Depacketizer
from nvr.media.rtsp import RECV_BYTES, RtspError, RtspSession, VideoTrack
from nvr.storage.anchor import WallAnchor

_log = log.get("nvr.ingest.own_session")
READ_PACE_S = 0.5  # nobody watches: half a second of video a read
LIVE_PACE_S = 0.04  # somebody watches live: under one frame at 25 fps
PACE_BYTES = 128 * 1024  # at most this much gathered in one wait: a fresh TCP buffer (tcp_rmem)
# Over UDP a full socket buffer drops datagrams: shorter waits, and less gathered in one (a
# datagram takes about twice its size of the buffer, whose default is ~200 KB).
UDP_PACE_S = 0.25
UDP_PACE_BYTES = 64 * 1024
# Video flowing this long without a keyframe (IDR/IRAP) the reader can start on: a stream it
# cannot record (e.g. intra refresh, which FFmpeg's reader starts on at a recovery point).
NO_KEYFRAME_S = 30.0
FRAME_TIMEOUTS = 2  # a whole frame at least every two io timeouts (10 s by default)
# A sender report's RTP time is the stream's now: one further than this from the latest frame's
# (a relay's burst is ~10 s) is not about this stream, and its wall time is not used.
SR_RTP_SLACK_S = 60


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


def _end_of(e: RtspError, ctx: SessionContext | None = None) -> SessionEnd:
    if e.basic_refused:  # the password was not sent; FFmpeg's reader would send it in clear
        return SessionEnd("credentials", (ctx.basic_refusal if ctx else "") or str(e),
                          permanent=True)
    if e.kind == "credentials":
        return SessionEnd("credentials", str(e), permanent=True)
    if e.kind == "no_video":  # no video at all, or not H.264/H.265 (FFmpeg may read that)
        return SessionEnd("no_video", str(e), permanent=True,
                          own_reader_cannot=e.codec_unsupported)
    return SessionEnd("offline", str(e), own_reader_cannot=e.kind == "protocol",
                      tcp_refused=e.tcp_refused)


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
    camera trouble; the open segment is always finished before returning).

    The camera's thread sets the stream up (blocking RTSP requests, one camera at a time) and
    then hands it to the shared read loop (nvr.ingest.read_loop), whose one thread reads every
    camera's socket; this thread waits until the loop hands the session back, then finishes it."""
    probes: list[av.container.InputContainer] = []  # closed after the writer is done with it
    reading: Reading | None = None
    try:
        rtsp = RtspSession(ctx.url, ctx.io_timeout_s, on_socket=ctx.on_socket,
                           allow_basic=ctx.allow_basic,
                           transport="udp" if ctx.transport == "udp" else "tcp")
    except RtspError as e:  # a URL it cannot read, or not rtsp://
        return SessionEnd("offline", str(e), permanent=True, own_reader_cannot=True)
    try:
        _resolve(ctx.url)
        try:
            track = rtsp.open()
        except RtspError as e:
            return _end_of(e, ctx)
        except TimeoutError as e:
            return SessionEnd("timeout", "camera stopped answering while setting up the stream"
                              + (f" ({e})" if str(e) else ""))
        reading = Reading(ctx, rtsp, track, probes)
        return shared_read_loop().run(reading)
    except _Stop as e:
        return e.end
    finally:
        try:
            if reading is not None:
                reading.flush()
        finally:
            try:
                ctx.writer.end_session()
            finally:
                rtsp.close()
                for probe in probes:
                    probe.close()


def end_of_error(e: BaseException, io_timeout_s: float) -> SessionEnd | None:
    """The session end that a camera's trouble while reading means; None for anything else
    (a bug or a disk error: raised in the camera's thread, which logs it and retries)."""
    if isinstance(e, _Stop):
        return e.end
    if isinstance(e, RtspError):
        return _end_of(e)
    if isinstance(e, TimeoutError):
        return SessionEnd("timeout", f"camera stopped answering: no data for {io_timeout_s:g} s")
    if isinstance(e, TimestampError):
        return SessionEnd("offline", f"unusable timestamps: {e}")
    return None


def starved(reading: Reading, now: float) -> SessionEnd | None:
    """A session whose bytes come but complete no frame for FRAME_TIMEOUTS io timeouts (a
    camera that trickles a byte every few seconds beats any per-recv() timeout) ends."""
    limit = FRAME_TIMEOUTS * reading.ctx.io_timeout_s
    if now - reading.last_unit > limit:
        return SessionEnd("timeout", f"camera sends no whole frame: none in {limit:g} s "
                                     "(bytes trickle in, too few to make one)")
    return None


class Reading:
    """One camera's stream after set-up: each step() takes what one recv() brings, through
    depacketizing, decode times and timestamp repair, into the segment writer. Steps run in
    the read loop's thread, one at a time; flush() runs in the camera's thread afterwards."""

    def __init__(self, ctx: SessionContext, rtsp: RtspSession, track: VideoTrack,
                 probes: list[av.container.InputContainer]) -> None:
        self.ctx, self.rtsp, self.track, self.probes = ctx, rtsp, track, probes
        self.sockets = rtsp.sockets()  # what the read loop waits on
        self.udp = rtsp.rtp_sock is not None
        self.tb = Fraction(1, track.clock_rate)
        self.us_per_tick = 1_000_000 / track.clock_rate  # a float: used for every frame
        self.depack = Depacketizer(track.codec)
        self.unwrap = _Unwrap()
        self.shared_pts = 0  # frames moved off another's pts, as last logged
        codec = track.codec
        single_layer = codec == "h264" or hevc_single_layer(track.params)
        # A server that stamps frames in decode order: presentation times from the pictures'
        # own order (docs/time.md, "Stamps in decode order").
        pictures = PictureOrder(codec, track.params)
        self.order: DisplayOrder[tuple[bytes, int]] = DisplayOrder(
            lambda frame: pictures.picture(frame[0]),
            lambda frame: picture_kind(frame[0], codec, single_layer) == "piece",
            max_jump=10 * track.clock_rate)
        # A jump of the camera's clock of more than 10 s starts the dts derivation afresh (the
        # timestamp repairer calls the same jump a discontinuity: a new segment).
        self.times: DecodeTimes[tuple[bytes, int]] = DecodeTimes(
            max_jump=10 * track.clock_rate,
            kind=lambda frame: picture_kind(frame[0], codec, single_layer))
        # One frame at 15 fps until the repairer has seen real durations. Frames stay the
        # depacketizer's bytes (length-prefixed NAL units) all the way into the segment file.
        self.repair: TimestampRepair[bytes] = TimestampRepair(
            self.tb, track.clock_rate // 15)
        self.wall0, self.mono0 = ctx.clock.wall_us(), ctx.clock.mono_us()
        # The box's time of a presentation time, for the camera's sender reports: an anchor
        # of its own (the writer's follows decode times), fed each frame that shows later
        # than every one before it.
        self.pts_anchor = WallAnchor(self.wall0 - self.mono0)
        self.max_pts = -1
        self.clock_logged = False
        self.decode_order_logged = False
        self.video: av.stream.Stream | None = None
        self.started = False
        self.last_data = time.monotonic()  # when a recv() last brought bytes
        self.last_unit = self.last_data  # when a recv() last completed a frame (progress)
        self.first_unit: float | None = None  # when the first access unit arrived
        self.got = 0  # what the last recv() took
        self.lost = 0  # RTP packets lost, counted so far
        self.steps = 0  # RTP timestamp steps repaired (nvr.ingest.decode_times), counted so far

    def step(self) -> None:
        """One recv() (the socket is readable: it does not block) and all it completes."""
        depack = self.depack
        self.got = self.rtsp.read_some(depack.push_at)
        units, depack.ready = depack.ready, []
        self.last_data = time.monotonic()
        if units:
            self.last_unit = self.last_data
        self._units(units, self.ctx.clock.mono_us())  # arrived now: what this recv() took
        if self.times.steps != self.steps:
            self._stepped()
        if self.times.shared_dropped + self.times.shared_moved != self.shared_pts:
            self._shared_pts()
        if depack.lost != self.lost:
            self._count_lost()
        if self.rtsp.sender_reports:
            self._camera_clock()

    def _camera_clock(self) -> None:
        """The camera's own clock minus the box's, from its latest sender report: the NTP
        time it gives an RTP timestamp, against the box's stamp of that timestamp (docs/time.md,
        "The camera's clock"). Reports that carry no wall time (NTP 0), or whose RTP time is
        far from the frames' (VLC sends some with RTP time 0), say nothing."""
        reports, self.rtsp.sender_reports = self.rtsp.sender_reports, []
        sr = reports[-1]
        if self.pts_anchor.anchor_us is None or self.unwrap.base is None or sr.ntp_us <= 0:
            return
        delta = (sr.rtp_ts - self.unwrap.last) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        if abs(delta) > SR_RTP_SLACK_S * self.track.clock_rate:
            return  # its RTP time is not this stream's now: it says nothing of the clock
        box_us = self.pts_anchor.wall_us(int((self.unwrap.value + delta) * self.us_per_tick))
        offset = self.ctx.stats.clock_offset_us = sr.ntp_us - box_us
        if not self.clock_logged:
            self.clock_logged = True
            _log.info("camera_clock", camera=self.ctx.camera_id, offset_ms=round(offset / 1000))

    def _count_lost(self) -> None:
        """RTP packets lost (sequence gaps the depacketizer met), into the camera's count."""
        self.ctx.stats.packets_lost += self.depack.lost - self.lost
        self.lost = self.depack.lost

    def _units(self, units: list[AccessUnit], now: int) -> None:
        for au in units:
            if self.video is None:
                if not au.key:
                    self._no_keyframe_yet()
                    continue  # undecodable before the first keyframe
                probe, video = template_stream(self.track, annexb(au.data))
                self.probes.append(probe)
                self.video = video
                # The reorder depth the SPS declares (FFmpeg read it while probing).
                depth = int(getattr(video.codec_context, "reorder_depth", 0) or 0)
                self.times.min_depth = self.order.min_depth = depth
            pts = self.unwrap(au.rtp_ts)
            if pts > self.max_pts:
                self.max_pts = pts
                self.pts_anchor.frame(int(pts * self.us_per_tick), now)
            self._ordered(self.order.feed(pts, au.key, (au.data, now), len(au.data),
                                          au.damaged))

    def _ordered(self, ready: list[tuple[int, bool, tuple[bytes, int]]]) -> None:
        if self.order.mode == "decode" and not self.decode_order_logged:
            self.decode_order_logged = True
            _log.warning("timestamps_in_decode_order", camera=self.ctx.camera_id,
                         action="display times taken from the pictures' own order (POC)")
        for pts, key, frame in ready:
            self._emit(self.times.feed(pts, key, frame, len(frame[0])))

    def _shared_pts(self) -> None:
        times = self.times
        if not self.shared_pts:  # once a session: VLC does it in a file's first GOP only
            _log.info("timestamp_shared", camera=self.ctx.camera_id,
                      action="a frame sent with another's RTP timestamp is dropped if no "
                      "other refers to it, else kept a tick later")
        self.shared_pts = times.shared_dropped + times.shared_moved

    def _stepped(self) -> None:
        """The camera's RTP clock stepped (a relay re-syncing): repaired; counted and told."""
        times = self.times
        self.ctx.stats.timestamp_steps += times.steps - self.steps
        self.steps = times.steps
        _log.info("timestamp_step", camera=self.ctx.camera_id,
                  step_ms=round(times.last_step * 1000 / self.track.clock_rate),
                  action="the timeline after it follows on from the one before")

    def _no_keyframe_yet(self) -> None:
        now = time.monotonic()
        if self.first_unit is None:
            self.first_unit = now
        elif now - self.first_unit > NO_KEYFRAME_S:
            raise _Stop(SessionEnd(
                "no_video", f"no keyframe in {NO_KEYFRAME_S:g} s of video (intra refresh "
                "without IDR frames?)", permanent=True, own_reader_cannot=True))

    def end_of_error(self, e: BaseException) -> SessionEnd | None:
        return end_of_error(e, self.ctx.io_timeout_s)

    def starved(self, now: float) -> SessionEnd | None:
        return starved(self, now)

    def pace(self) -> float:
        """How long this camera's bytes may gather in its socket before the next read: the
        socket is drained, so one wake-up and one recv() take several frames, not one RTP
        packet as it lands (docs/design.md, "Ingest hot path"). While somebody watches live, a
        shorter wait keeps the picture prompt. Until the first frame is written, no wait (the
        recorder is recording from then on). At a high bit rate the wait shrinks, so
        that one wait never gathers more than PACE_BYTES."""
        if self.got >= RECV_BYTES or not self.started:
            return 0.0
        watched = self.ctx.watched is not None and self.ctx.watched()
        pace = LIVE_PACE_S if watched else READ_PACE_S
        if self.udp:
            pace = min(pace, UDP_PACE_S)
            return min(pace, pace * UDP_PACE_BYTES / max(self.got, 1))
        return min(pace, pace * PACE_BYTES / max(self.got, 1))

    def flush(self) -> None:
        """The frames still held for reordering, decode-time derivation and repair, into the
        writer."""
        held: list[bytes] = []
        self.rtsp.reorder.flush(held)
        for pkt in held:
            self.depack.push_at(pkt, 0, len(pkt))
        units, self.depack.ready = self.depack.ready, []
        self._count_lost()
        if self.video is not None:
            self._units(units, self.ctx.clock.mono_us())
            self._ordered(self.order.flush())
            self._emit(self.times.flush())
            for last in self.repair.flush():
                self._handle(last)
        if self.depack.lost:
            _log.warning("rtp_packets_lost", camera=self.ctx.camera_id, packets=self.depack.lost)
        if self.shared_pts:
            _log.info("timestamp_shared_total", camera=self.ctx.camera_id,
                      dropped=self.times.shared_dropped, moved=self.times.shared_moved)

    def _handle(self, op: OutPacket[bytes]) -> None:
        ctx, video = self.ctx, self.video
        assert video is not None
        if not self.started or op.discontinuity:
            start = ctx.writer.start_session(video, self.wall0 + (op.arrival_mono_us - self.mono0),
                                             length_prefixed=True)
            if not self.started:
                self.started = True
                ctx.on_started(start)
        ctx.writer.write(op)
        if ctx.on_packet is not None and (ctx.watched is None or ctx.watched()):
            # The live view takes start codes; only made while somebody watches.
            data = b"".join(op.payloads)
            ctx.on_packet(OutPacket(op.pts, op.dts, op.duration, op.key, [annexb(data)],
                                    op.arrival_mono_us, op.discontinuity), video)
        ctx.stats.add(op.arrival_mono_us, sum(len(p) for p in op.payloads),
                      int(op.dts * self.us_per_tick))

    def _emit(self, ready: list[tuple[int, int | None, bool, tuple[bytes, int]]]) -> None:
        repair = self.repair
        for pts, dts, key, (data, arrival) in ready:
            for op in repair.feed(InPacket(pts, dts, key, data, arrival)):
                self._handle(op)
        for what, detail in repair.drain_notes():
            _log.info("timestamps_repaired", camera=self.ctx.camera_id, action=what, **detail)
