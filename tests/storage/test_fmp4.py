"""The segment writer's own fragments against FFmpeg's mov muxer: the same frames, muxed both
ways, must give the same file, byte for byte (H.264 with and without B-frames, H.265 with
B-frames, a parameter change, odd Annex-B), and a long GOP is cut into fragments that still
decode frame for frame."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.stream
import pytest

from nvr.ingest.timestamps import InPacket, OutPacket, TimestampRepair
from nvr.media import access_unit
from nvr.media.mp4 import fragment as fmp4
from nvr.media.mp4.boxes import top_level as top_level_boxes
from nvr.media.mp4.fragment import complete_length
from nvr.media.mp4.init_segment import MOVFLAGS
from nvr.media.param_sets import in_access_unit
from nvr.storage.index import NewSegment
from nvr.storage.recovery import probe_segment
from nvr.storage.segment_writer import FRAGMENT_MAX_S, SegmentWriter
from tests.ingest.recording_helpers import ffprobe

T0 = 1_790_000_000_000_000


def _encode(codec: str, frames: int, *, bframes: int = 0, gop: int = 15,
            size: tuple[int, int] = (160, 96), seed: int = 1) -> bytes:
    """An MPEG-TS (Annex-B, as RTSP gives it) of noise, so frames are of real, varied sizes
    (MJPEG: in NUT, which carries it)."""
    rng = random.Random(seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="nut" if codec == "mjpeg" else "mpegts") as out:
        if codec == "mjpeg":
            opts = {"qscale": "8"}
        elif codec == "libx265":
            opts = {"preset": "ultrafast",
                    "x265-params": f"keyint={gop}:bframes={bframes}:log-level=error"}
        else:
            opts = {"g": str(gop), "bf": str(bframes), "preset": "ultrafast"}
            if bframes:
                opts["x264-params"] = "b-pyramid=normal"
        s = out.add_stream(codec, rate=15, options=opts)
        s.width, s.height = size
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame(size[0], size[1], s.pix_fmt)
            for plane in frame.planes:
                tile = rng.randbytes(64)
                plane.update(tile * (plane.buffer_size // 64) + bytes(plane.buffer_size % 64))
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return buf.getvalue()


def _packets(container: av.container.InputContainer,
             offset: int = 0) -> Iterator[OutPacket[av.Packet]]:
    v = container.streams.video[0]
    tb = Fraction(v.time_base)
    repair: TimestampRepair[av.Packet] = TimestampRepair(tb, int(1 / (tb * 15)))
    for p in container.demux(v):
        if p.size:
            # Arriving in real time, as from a camera (the writer's anchor: docs/time.md).
            arrival = int((p.dts + offset) * tb * 1_000_000)
            yield from repair.feed(InPacket(p.pts + offset, p.dts + offset, p.is_keyframe, p,
                                            arrival))
    yield from repair.flush()


def _ours(tmp: Path, clips: list[bytes], seconds: float = 2.0,
          length_prefixed: bool = False) -> list[NewSegment]:
    """Our writer's segments; `length_prefixed`: the frames handed over as the own RTSP reader
    hands them (each NAL unit behind its length), not in Annex-B."""
    closed: list[NewSegment] = []
    w = SegmentWriter("cam", tmp, seconds, closed.append, first_segment_fraction=1.0)
    offset = 0
    with av.open(io.BytesIO(clips[0])) as first:
        w.start_session(first.streams.video[0], T0, length_prefixed=length_prefixed)
        for clip in clips:
            with av.open(io.BytesIO(clip)) as c:
                last = 0
                for op in _packets(c, offset):
                    if length_prefixed:
                        lp = bytes(access_unit.length_prefixed(bytearray(b"".join(
                            bytes(p) for p in op.payloads))))
                        w.write(OutPacket(op.pts, op.dts, op.duration, op.key, [lp],
                                          op.arrival_mono_us, op.discontinuity))
                    else:
                        w.write(op)
                    last = op.dts + op.duration
                offset = last
        w.end_session()
    return closed


def _ffmpeg(template: av.stream.Stream, ops: list[OutPacket[av.Packet]],
            extradata: bytes | None) -> bytes:
    """What FFmpeg's muxer writes for these frames through a file descriptor, as the recorder
    used to (`pipe:<fd>`: not seekable; movflags as ours)."""
    with tempfile.TemporaryFile() as f:
        out = av.open(f"pipe:{f.fileno()}", "w", format="mp4",
                      options={"movflags": MOVFLAGS, "flush_packets": "1"})
        stream = out.add_stream_from_template(template)
        if template.codec_context.name == "hevc":
            stream.codec_tag = "hvc1"
        if extradata is not None:
            stream.codec_context.extradata = extradata
        first = ops[0].dts
        for op in ops:
            pkt = av.Packet(b"".join(bytes(p) for p in op.payloads))
            pkt.time_base = Fraction(template.time_base)
            pkt.pts, pkt.dts, pkt.duration = op.pts - first, op.dts - first, op.duration
            pkt.is_keyframe = op.key
            pkt.stream = stream
            out.mux(pkt)
        out.close()
        f.seek(0)
        return f.read()


def _reference(clips: list[bytes], segments: list[NewSegment]) -> list[bytes]:
    """FFmpeg's file for each of our segments: the same frames (by dts range), the same moov
    description (a later clip's in-band SPS/PPS as extradata, as the writer does)."""
    ops: list[tuple[OutPacket[av.Packet], bytes | None]] = []
    keep: list[av.container.InputContainer] = []
    offset = 0
    with av.open(io.BytesIO(clips[0])) as first:
        template = first.streams.video[0]
        for n, clip in enumerate(clips):
            c = av.open(io.BytesIO(clip))
            keep.append(c)
            extradata = None if n == 0 else c.streams.video[0].codec_context.extradata
            last = 0
            for op in _packets(c, offset):
                ops.append((op, extradata))
                last = op.dts + op.duration
            offset = last
        files: list[bytes] = []
        i = 0
        for seg in segments:
            part = ops[i:i + seg.frames]
            i += seg.frames
            files.append(_ffmpeg(template, [op for op, _ in part], part[0][1]))
    for c in keep:
        c.close()
    return files


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


@pytest.mark.parametrize(("codec", "bframes", "length_prefixed"), [
    ("libx264", 0, False), ("libx264", 3, False), ("libx265", 3, False), ("mjpeg", 0, False),
    ("libx264", 3, True), ("libx265", 3, True)])
def test_same_bytes_as_ffmpegs_muxer(tmp_path: Path, codec: str, bframes: int,
                                     length_prefixed: bool) -> None:
    clips = [_encode(codec, 50, bframes=bframes)]
    ours = _ours(tmp_path, clips, length_prefixed=length_prefixed)
    assert len(ours) == 2 and sum(s.frames for s in ours) == 50  # a cut at a keyframe after 2 s
    for seg, theirs in zip(ours, _reference(clips, ours), strict=True):
        data = Path(seg.path).read_bytes()
        assert data == theirs, f"{Path(seg.path).name} differs from FFmpeg's at byte " \
            f"{_first_difference(data, theirs)}"
        assert seg.bytes == len(data)
        assert seg.sha256 == hashlib.sha256(data).hexdigest()
        assert seg.width == 160 and seg.height == 96
        assert len(ffprobe(Path(seg.path))["packets"]) == seg.frames


@pytest.mark.parametrize("length_prefixed", [False, True])
def test_parameter_change_gets_its_own_moov_as_ffmpeg_wrote_it(tmp_path: Path,
                                                               length_prefixed: bool) -> None:
    clips = [_encode("libx264", 40, bframes=2), _encode("libx264", 40, bframes=2, size=(192, 96))]
    ours = _ours(tmp_path, clips, length_prefixed=length_prefixed)
    assert [s.frames for s in ours] == [30, 10, 30, 10]
    widths = [ffprobe(Path(s.path))["streams"][0]["width"] for s in ours]
    assert widths == [160, 160, 192, 192]  # the new segment's avcC holds the new SPS
    for seg, theirs in zip(ours, _reference(clips, ours), strict=True):
        assert Path(seg.path).read_bytes() == theirs


def _decodes(path: Path) -> int:
    """Frames decoded with FFmpeg's error detection on, failing on any error."""
    r = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-err_detect", "explode", "-i",
                        str(path), "-f", "null", "-"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    return len(ffprobe(path)["packets"])


def test_a_long_gop_is_cut_into_fragments_that_decode(tmp_path: Path) -> None:
    # One keyframe in 250 frames (16.7 s at 15 fps), one segment: FFmpeg held it all in one
    # fragment; ours cuts at FRAGMENT_MAX_S, mid-GOP.
    clips = [_encode("libx264", 200, bframes=2, gop=250)]
    [seg] = _ours(tmp_path, clips, seconds=60.0)
    path = Path(seg.path)
    data = path.read_bytes()
    boxes = top_level_boxes(len(data), lambda off, n: data[off:off + n])
    kinds = [k for k, _, _ in boxes]
    assert kinds == [b"ftyp", b"moov", b"moof", b"mdat", b"moof", b"mdat", b"mfra"]
    # the first fragment holds FRAGMENT_MAX_S of video: its trun's sample count
    moof_at = boxes[2][1]
    count = struct.unpack_from(">I", data, data.index(b"trun", moof_at) + 8)[0]
    assert count == int(FRAGMENT_MAX_S * 15)
    assert _decodes(path) == seg.frames == 200
    probe = probe_segment(path)
    assert probe is not None and probe.frames == 200 and probe.keyframes == 1


@pytest.mark.parametrize("annexb", [
    b"\x00\x00\x00\x01\x65\x88\x84",  # one NAL, 4-byte code
    b"\x00\x00\x00\x01\x09\x10\x00\x00\x00\x01\x65\x88\x84\x00",  # AUD, a trailing zero kept
    b"\x00\x00\x01\x65\x88\x00\x00\x01\x41\x9a",  # 3-byte codes
    b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88",  # mixed
    b"\x00\x00\x00\x00\x01\x65\x88\x84",  # a leading zero before the first code
    b"\x00\x00\x00\x01\x00\x00\x00\x01\x65\x88",  # an empty NAL unit
    b"\x65\x88\x84\x00\x00\x01\x41\x9a",  # bytes before the first start code
])
def test_length_prefixing_matches_ffmpeg(annexb: bytes) -> None:
    # FFmpeg's conversion, read back from what its muxer put in the mdat
    with av.open(io.BytesIO(_encode("libx264", 1))) as c:
        template = c.streams.video[0]
        op = OutPacket(0, 0, 6000, True, [av.Packet(annexb)], 0)
        theirs = _ffmpeg(template, [op], None)
    boxes = top_level_boxes(len(theirs), lambda off, n: theirs[off:off + n])
    [(_, at, size)] = [b for b in boxes if b[0] == b"mdat"]
    assert bytes(access_unit.length_prefixed(bytearray(annexb))) == theirs[at + 8:at + size]


def test_annexb_and_length_prefixed_forms_round_trip() -> None:
    units = [b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65" + bytes(range(200))]
    annex = b"".join(b"\x00\x00\x00\x01" + u for u in units)
    lp = b"".join(len(u).to_bytes(4, "big") + u for u in units)
    assert bytes(access_unit.length_prefixed(bytearray(annex))) == lp
    assert access_unit.annexb(lp) == annex
    assert in_access_unit(lp, "h264", length_prefixed=True) == in_access_unit(annex, "h264") \
        == (units[0], units[1])


def test_hevc_parameter_sets_leave_the_sample() -> None:
    vps, sps, pps = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc1"
    sei, idr = b"\x4e\x01\x05", b"\x26\x01\xaf"
    sample = b"".join(struct.pack(">I", len(n)) + n for n in (vps, sps, pps, sei, idr))
    kept = access_unit.without_parameter_sets(sample)
    assert kept == b"".join(struct.pack(">I", len(n)) + n for n in (sei, idr))
    plain = struct.pack(">I", 3) + idr
    assert access_unit.without_parameter_sets(plain) is plain  # nothing to drop: not copied


def test_a_failed_fragment_write_leaves_file_and_row_in_agreement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The disk refuses one fragment (ENOSPC), then has room again by the time the segment
    # closes: the fragment is written then, and the row's hash, size and frames are the file's.
    import errno

    from nvr.storage import segment_writer

    real_writev = os.writev
    calls = {"n": 0}

    def flaky(fd: int, buffers: list[bytes]) -> int:
        calls["n"] += 1
        if calls["n"] == 3:  # the init, the first fragment, then this one
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, buffers)

    monkeypatch.setattr(segment_writer.os, "writev", flaky)
    clip = _encode("libx264", 45, bframes=2)
    closed: list[NewSegment] = []
    w = SegmentWriter("cam", tmp_path, 60.0, closed.append, first_segment_fraction=1.0)
    with av.open(io.BytesIO(clip)) as c:
        w.start_session(c.streams.video[0], T0)
        with pytest.raises(OSError, match="No space"):
            for op in _packets(c):
                w.write(op)
        w.end_session()  # the session ends; the fragment left over is written at close
    [seg] = closed
    data = Path(seg.path).read_bytes()
    assert seg.bytes == len(data) and seg.sha256 == hashlib.sha256(data).hexdigest()
    assert seg.frames == len(ffprobe(Path(seg.path))["packets"]) == 30
    assert _decodes(Path(seg.path)) == 30


def test_a_write_that_keeps_failing_leaves_no_row_and_a_file_recovery_can_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from nvr.storage import segment_writer

    real_writev = os.writev

    def partial_then_full(fd: int, buffers: list[bytes]) -> int:
        if sum(len(b) for b in buffers) > 100_000 and os.fstat(fd).st_size > 0:
            os.write(fd, bytes(buffers[0][:100]))  # a piece of the fragment lands, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, buffers)

    clip = _encode("libx264", 45, bframes=2)
    closed: list[NewSegment] = []
    w = SegmentWriter("cam", tmp_path, 60.0, closed.append, first_segment_fraction=1.0)
    with av.open(io.BytesIO(clip)) as c:
        w.start_session(c.streams.video[0], T0)
        ops = list(_packets(c))
        for op in ops[:16]:  # the first fragment is written at the second keyframe
            w.write(op)
        monkeypatch.setattr(segment_writer.os, "writev", partial_then_full)
        with pytest.raises(OSError, match="No space"):
            for op in ops[16:]:
                w.write(op)
        with pytest.raises(OSError, match="No space"):
            w.end_session()
    assert not closed  # no row for a segment whose last fragment could not be written
    [path] = (tmp_path / "segments" / "cam").iterdir()
    data = path.read_bytes()
    boxes = top_level_boxes(len(data), lambda off, n: data[off:off + n])
    assert [k for k, _, _ in boxes] == [b"ftyp", b"moov", b"moof", b"mdat"]
    assert complete_length(boxes) == len(data)  # cut back: nothing half-written
    probe = probe_segment(path)
    assert probe is not None and probe.frames == 15


async def test_live_tail_starts_at_a_fragment_that_begins_with_a_keyframe(tmp_path: Path) -> None:
    # A 250-frame GOP: the newest complete fragment is cut mid-GOP. A viewer must get the one
    # before it (which starts on the keyframe) and everything after, and all of it decodes.
    from types import SimpleNamespace

    from nvr.web import tail

    [seg] = _ours(tmp_path, [_encode("libx264", 200, bframes=2, gop=250)], seconds=60.0)
    data = Path(seg.path).read_bytes()
    moofs = [data[o:o + s] for k, o, s in top_level_boxes(len(data), lambda o, n: data[o:o + n])
             if k == b"moof"]
    assert [fmp4.starts_with_sync(m) for m in moofs] == [True, False]
    recorder = SimpleNamespace(writer=SimpleNamespace(_open=SimpleNamespace(path=Path(seg.path))))
    sent: list[bytes] = []
    mimes: list[str] = []

    async def send(b: bytes) -> None:
        sent.append(b)

    async def send_mime(m: str) -> None:
        mimes.append(m)

    await tail.follow(recorder, send, send_mime, closed=lambda: len(sent) >= 3)
    assert mimes and mimes[0].startswith('video/mp4; codecs="avc1.')
    assert fmp4.starts_with_sync(sent[1][:len(moofs[0])])
    played = tmp_path / "played.mp4"
    played.write_bytes(b"".join(sent))
    assert _decodes(played) == 200
