"""SegmentWriter on real H.264 packets (encoded here with PyAV's libx264), real files."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.container
import pytest

from nvr.ingest.timestamps import InPacket, OutPacket, TimestampRepair
from nvr.media.param_sets import in_access_unit
from nvr.storage import segment_writer
from nvr.storage.index import NewSegment
from nvr.storage.segment_writer import SegmentWriter
from tests.ingest.recording_helpers import ffprobe

HOUR_US = 3600 * 10**6
T0 = 1_790_000_000_000_000


def _encode(width: int, height: int, frames: int) -> bytes:
    """An MPEG-TS of `frames` frames at 15 fps, a keyframe every 15 (Annex-B, like RTSP)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        s = out.add_stream("libx264", rate=15, options={"g": "15", "bf": "0", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:  # a flat grey that changes every frame
                plane.update(bytes([(i * 8) % 256]) * plane.buffer_size)
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return buf.getvalue()


def _packets(
    container: av.container.InputContainer, dts_offset: int = 0
) -> Iterator[OutPacket[av.Packet]]:
    v = container.streams.video[0]
    tb = Fraction(v.time_base)
    repair: TimestampRepair[av.Packet] = TimestampRepair(tb, int(1 / (tb * 15)))
    for p in container.demux(v):
        if p.size == 0:
            continue
        # Arriving in real time, as from a camera (the writer's anchor: docs/time.md).
        arrival = int((p.dts + dts_offset) * tb * 1_000_000)
        yield from repair.feed(InPacket(p.pts + dts_offset, p.dts + dts_offset, p.is_keyframe, p,
                                        arrival))
    yield from repair.flush()


def _writer(root: Path, closed: list[NewSegment]) -> SegmentWriter:
    return SegmentWriter("desk", root, 2.0, closed.append, first_segment_fraction=1.0)


def test_rotation_chains_exactly_and_parameter_change_cuts_at_once(tmp_path: Path) -> None:
    closed: list[NewSegment] = []
    w = _writer(tmp_path, closed)
    with av.open(io.BytesIO(_encode(64, 48, 45))) as small, \
            av.open(io.BytesIO(_encode(96, 64, 20))) as large:
        w.start_session(small.streams.video[0], T0)  # the session's stream is the template
        for op in _packets(small):
            w.write(op)
        # Same session, new in-band SPS (the camera's resolution was changed): cut at once.
        for op in _packets(large, dts_offset=45 * 6000):
            w.write(op)
        w.end_session()
    assert [s.frames for s in closed] == [30, 15, 20]  # 2 s, the 1 s left, the new size
    for a, b in zip(closed, closed[1:], strict=False):
        assert a.end_us == b.start_us
    assert closed[0].start_us == T0 and closed[-1].end_us == T0 + 65 * 10**6 // 15
    widths = [ffprobe(Path(s.path))["streams"][0]["width"] for s in closed]
    assert widths == [64, 64, 96]  # the moov of the new segment describes the new SPS
    assert all(len(ffprobe(Path(s.path))["packets"]) == s.frames for s in closed)


def test_wall_clock_stepping_back_cannot_overlap_segments(tmp_path: Path) -> None:
    closed: list[NewSegment] = []
    w = _writer(tmp_path, closed)
    clip = _encode(64, 48, 30)
    for anchor in (T0, T0 - HOUR_US):  # second session: the box's clock jumped back an hour
        with av.open(io.BytesIO(clip)) as c:
            w.start_session(c.streams.video[0], anchor)
            for op in _packets(c):
                w.write(op)
            w.end_session()
    assert len(closed) == 2
    assert closed[1].start_us == closed[0].end_us  # clamped, not an hour earlier
    assert sorted(p.name for p in (tmp_path / "segments" / "desk").iterdir()) == [
        Path(s.path).name for s in closed]


def test_param_sets_finds_sps_pps_once() -> None:
    data = b"\x00\x00\x00\x01\x09\x10" + b"\x00\x00\x00\x01\x67\xaa\xbb" + b"\x00\x00\x01\x68\xcc" \
        + b"\x00\x00\x01\x67\xaa\xbb" + b"\x00\x00\x01\x65\x01\x02"
    assert in_access_unit(data, "h264") == (b"\x67\xaa\xbb", b"\x68\xcc")
    assert in_access_unit(data, "vp8") == ()


def test_a_burst_of_buffered_video_is_stamped_in_the_past_not_the_future(
        tmp_path: Path) -> None:
    # A relay sends 8 s of buffered video within 0.5 s when the reader connects, then real
    # time (50 ms late). Rows must never end after the moment they are written, and the
    # footage is stamped when it was captured.
    from nvr.timeutil import segment_name

    closed: list[NewSegment] = []
    written_at: list[int] = []
    now = [0]

    def on_closed(seg: NewSegment) -> None:
        closed.append(seg)
        written_at.append(now[0])

    # (the writer's clock, for the end of the last segment: the moment the last frame arrived)
    w = SegmentWriter("desk", tmp_path, 2.0, on_closed, first_segment_fraction=1.0,
                      mono_us=lambda: now[0] - T0)
    frame_us, buffered = 10**6 // 15, 120
    connect = T0 + buffered * frame_us + 50_000
    with av.open(io.BytesIO(_encode(64, 48, 180))) as c:
        v = c.streams.video[0]
        tb = Fraction(v.time_base)
        repair: TimestampRepair[av.Packet] = TimestampRepair(tb, int(1 / (tb * 15)))
        ops = []
        for i, p in enumerate(x for x in c.demux(v) if x.size):
            arrival = (connect + i * 500_000 // buffered if i < buffered
                       else T0 + i * frame_us + 50_000)
            ops += repair.feed(InPacket(p.pts, p.dts, p.is_keyframe, p, arrival - T0))
        ops += repair.flush()
        w.start_session(v, ops[0].arrival_mono_us + T0)
        for op in ops:
            now[0] = op.arrival_mono_us + T0
            w.write(op)
        w.end_session()
    # The next session (a reconnect 1 s later, no burst) starts when its first frame arrived:
    # nothing of the last session's anchor carries over, nor a future end to clamp to.
    assert closed[-1].end_us <= now[0]
    session1 = len(closed)
    again = T0 + 180 * frame_us + 1_000_000
    with av.open(io.BytesIO(_encode(64, 48, 30))) as c:
        w.start_session(c.streams.video[0], again)
        for op in _packets(c):
            now[0] = again + op.arrival_mono_us
            w.write(op)
        w.end_session()
    assert closed[session1].start_us == again
    closed, written_at = closed[:session1], written_at[:session1]
    assert sum(s.frames for s in closed) == 180
    first_frame = 0
    for seg, at in zip(closed, written_at, strict=True):
        assert seg.end_us <= at, f"a row ends {(seg.end_us - at) / 1e6:.3f} s after it was written"
        capture = T0 + first_frame * frame_us
        assert abs(seg.start_us - capture) <= 100_000, (first_frame, seg.start_us - capture)
        assert Path(seg.path).name == segment_name(seg.start_us) and Path(seg.path).exists()
        first_frame += seg.frames
    for a, b in zip(closed, closed[1:], strict=False):
        assert a.end_us == b.start_us
    assert closed[0].frames >= buffered, "the burst is not cut while the anchor still falls"


def _record_then_resend(root: Path) -> tuple[SegmentWriter, list[NewSegment]]:
    """A relay re-sends its buffer at every connection: the second session starts with the 3 s
    already recorded (and 0.5 s more), all arriving at once 3.5 s in, then live video."""
    closed: list[NewSegment] = []
    w = _writer(root, closed)
    clip = _encode(64, 48, 75)  # 5 s, a keyframe a second
    with av.open(io.BytesIO(clip)) as c:
        w.start_session(c.streams.video[0], T0)
        for op in list(_packets(c))[:45]:
            w.write(op)
        w.end_session()
    assert closed[-1].end_us == T0 + 3 * 10**6
    with av.open(io.BytesIO(clip)) as c:
        w.start_session(c.streams.video[0], T0 + 3_500_000)
        for op in _packets(c):
            w.write(dataclasses.replace(op, arrival_mono_us=max(op.arrival_mono_us, 3_500_000)))
        w.end_session()
    return w, closed


def test_video_sent_again_at_a_reconnection_is_not_written_twice(tmp_path: Path) -> None:
    w, closed = _record_then_resend(tmp_path)
    assert w.resent_frames_dropped == 45  # frames 0-44, stamped before the first session's end
    again = closed[2:]
    assert again[0].start_us == T0 + 3 * 10**6 and again[-1].end_us == T0 + 5 * 10**6
    assert sum(s.frames for s in again) == 30
    for a, b in zip(closed, closed[1:], strict=False):
        assert a.end_us == b.start_us
    assert all(len(ffprobe(Path(s.path))["packets"]) == s.frames for s in closed)


def test_holding_for_the_anchor_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Beyond the bound the frames are written as they come: judged by the anchor of the
    # moment, which has not seen the burst's end, nothing is dropped; the clamp keeps order.
    monkeypatch.setattr(segment_writer, "HOLD_MAX_BYTES", 1)
    w, closed = _record_then_resend(tmp_path)
    assert w.resent_frames_dropped == 0 and sum(s.frames for s in closed[2:]) == 75
    for a, b in zip(closed, closed[1:], strict=False):
        assert a.end_us == b.start_us
