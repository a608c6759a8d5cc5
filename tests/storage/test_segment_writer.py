"""SegmentWriter on real H.264 packets (encoded here with PyAV's libx264), real files."""

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.container

from nvr.ingest.timestamps import InPacket, OutPacket, TimestampRepair
from nvr.storage.index import NewSegment
from nvr.storage.segment_writer import SegmentWriter, param_sets
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
        yield from repair.feed(InPacket(p.pts + dts_offset, p.dts + dts_offset, p.is_keyframe, p))
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
    assert param_sets(data, "h264") == (b"\x67\xaa\xbb", b"\x68\xcc")
    assert param_sets(data, "vp8") == ()
