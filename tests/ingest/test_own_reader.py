"""The recorder with its own RTSP reader (`reader: nvr`) against the real GStreamer camera:
the same segments as with FFmpeg's reader — continuous, every frame, decodable — for H.264 and
H.265, with and without B-frames (B-pyramid), and the camera's audio never kept."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from pathlib import Path

import av
import pytest

from nvr.storage.index import Index, Segment
from tests.camserver import TestCamera
from tests.ingest.recording_helpers import (
    IndexSink,
    ffprobe,
    make_recorder,
    wait_for,
)
from tests.ingest.test_recorder import FPS, _check_segment_file


def _decode_all(path: Path) -> int:
    """Decode every picture of a segment; a broken reference raises (err_detect)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.options = {"err_detect": "explode"}
        n = 0
        for frame in c.decode(s):
            assert not frame.is_corrupt, f"{path.name}: picture {n} is corrupt"
            n += 1
        return n


def _check_b_frame_segment(seg: Segment, codec: str) -> None:
    probe = ffprobe(Path(seg.path))
    assert [s["codec_type"] for s in probe["streams"]] == ["video"]
    assert probe["streams"][0]["codec_name"] == codec
    packets = probe["packets"]
    assert len(packets) == seg.frames
    dts = [int(p["dts"]) for p in packets]
    pts = [int(p["pts"]) for p in packets]
    assert dts == sorted(dts) and len(set(dts)) == len(dts), "dts rise"
    assert all(p >= d for p, d in zip(pts, dts, strict=True)), "no picture shows before it decodes"
    if len(pts) > 4:  # (the last segment may end just after its keyframe)
        assert pts != sorted(pts), "the B-frames are still reordered"
    assert int(packets[0]["dts"]) == 0 and packets[0]["flags"].startswith("K")


@pytest.mark.slow
async def test_own_reader_records_h264_h265_and_b_frames_frame_for_frame(
        testcam: TestCamera, tmp_path: Path, index: Index) -> None:
    sink = IndexSink(index)
    mounts = {"with-audio": ("h264", "h264"), "bframes": ("h264-bframes", "h264"),
              "hevc": ("h265", "hevc"), "hevc-bframes": ("h265-bframes", "hevc")}
    recs = {cid: make_recorder(cid, testcam.url(m), tmp_path, sink, reader="nvr")
            for cid, (m, _) in mounts.items()}
    for r in recs.values():
        r.start()
    try:
        await wait_for(lambda: all(sink.indexed.get(cid, 0) >= 1 for cid in recs))
        t0 = asyncio.get_running_loop().time()
        t0_wall_us = time.time_ns() // 1000
        await asyncio.sleep(7.0)
        status = {cid: r.status() for cid, r in recs.items()}
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
    wall_s = asyncio.get_running_loop().time() - t0
    for cid, (_, codec) in mounts.items():
        st = status[cid]
        assert st["state"] == "recording" and 12 <= st["fps"] <= 18, (cid, st)
        segs = await index.segments(cid)
        steady = [s for s in segs if s.start_us > t0_wall_us]
        assert len(steady) >= 3, (cid, len(steady))
        for a, b in zip(steady, steady[1:], strict=False):
            assert a.end_us == b.start_us, f"{cid}: consecutive segments chain exactly"
        for s in segs:
            if "bframes" in cid:  # the first picture shows after its decode time
                _check_b_frame_segment(s, codec)
            else:
                _check_segment_file(s, codec)
            assert _decode_all(Path(s.path)) == s.frames, f"{cid}: {s.path}"
        frames = sum(s.frames for s in steady)
        assert (wall_s - 2) * FPS - FPS <= frames <= (wall_s + 2.5) * FPS, (cid, frames)
        assert not await index.gaps(cid) or all(
            g.end_us <= t0_wall_us for g in await index.gaps(cid))


@pytest.mark.slow
async def test_auto_reader_keeps_its_own_for_h264_and_hands_mjpeg_to_ffmpegs(
        testcam: TestCamera, tmp_path: Path, index: Index) -> None:
    # `reader: auto` (the default): the own reader for what it reads; a camera sending a codec
    # it does not (MJPEG) is recorded through FFmpeg's reader instead, at once, and says so.
    sink = IndexSink(index)
    recs = {cid: make_recorder(cid, testcam.url(m), tmp_path, sink, reader="auto")
            for cid, m in {"desk": "h264-noaudio", "lobby": "mjpeg"}.items()}
    for r in recs.values():
        r.start()
    try:
        await wait_for(lambda: all(sink.indexed.get(cid, 0) >= 2 for cid in recs))
        status = {cid: r.status() for cid, r in recs.items()}
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
    assert status["desk"]["reader"] == "nvr" and status["desk"]["errors"] == 0, status["desk"]
    lobby = status["lobby"]
    assert lobby["reader"] == "ffmpeg" and lobby["state"] == "recording", lobby
    assert "neither H.264 nor H.265" in lobby["last_error"] and "FFmpeg" in lobby["last_error"]
    segs = await index.segments("lobby")
    assert len(segs) >= 2
    for s in segs:
        data = Path(s.path).read_bytes()
        assert len(data) == s.bytes and hashlib.sha256(data).hexdigest() == s.sha256
        probe = ffprobe(Path(s.path))
        assert [(x["codec_type"], x["codec_name"]) for x in probe["streams"]] == [
            ("video", "mjpeg")]
        assert len(probe["packets"]) == s.frames == _decode_all(Path(s.path))
    assert not await index.gaps("lobby")  # the hand-over happened before anything was recorded


@pytest.mark.parametrize(("raised", "switches"), [
    (KeyError("a bug of ours meeting this stream"), True),
    (OSError(28, "No space left on device"), False),  # the disk, not the camera
    ("loop", False),  # the read loop failing fails every camera: not this camera's stream
])
async def test_auto_reader_hands_over_on_its_own_failures_only(
        tmp_path: Path, index: Index,
        raised: BaseException | str, switches: bool) -> None:
    from nvr.ingest import session
    from nvr.ingest.read_loop import ReadLoopFailed

    error = ReadLoopFailed("the read loop failed: KeyError") if raised == "loop" else raised
    calls: list[str] = []

    def own(ctx: session.SessionContext) -> session.SessionEnd:
        calls.append("nvr")
        assert isinstance(error, BaseException)
        raise error

    def ffmpeg(ctx: session.SessionContext) -> session.SessionEnd:
        calls.append("ffmpeg")
        return session.SessionEnd("offline", "camera unreachable: test")

    rec = make_recorder("desk", "rtsp://127.0.0.1:9/x", tmp_path, IndexSink(index),
                        reader="auto", reader_for={"nvr": own, "ffmpeg": ffmpeg}.__getitem__)
    rec.start()
    try:
        await wait_for(lambda: len(calls) >= 2)
    finally:
        await rec.stop()
    assert calls[:2] == (["nvr", "ffmpeg"] if switches else ["nvr", "nvr"])
    assert rec.status()["reader"] == ("ffmpeg" if switches else "nvr")


@pytest.mark.parametrize(("reader", "reads"), [("auto", "nvr"), ("ffmpeg", "ffmpeg")])
async def test_a_camera_that_refuses_rtp_over_tcp_is_recorded_over_udp(
        tmp_path: Path, index: Index, reader: str, reads: str) -> None:
    """`transport: auto`: the SETUP over TCP is refused (461), and the same reader records the
    camera over UDP (on loopback); status says so, and every segment decodes clean."""
    cam = TestCamera("--protocols", "udp").start()
    sink = IndexSink(index)
    rec = make_recorder("udp-only", cam.url("h264"), tmp_path, sink, reader=reader)
    rec.start()
    try:
        await wait_for(lambda: sink.indexed.get("udp-only", 0) >= 2)
        st = rec.status()
    finally:
        await rec.stop()
        cam.stop()
    assert st["state"] == "recording" and st["reader"] == reads, st
    assert st["transport"] == "udp", st
    assert st["last_error"] == "the camera refuses RTP over TCP; recording over UDP", st
    assert st["packets_lost"] == 0, st
    # The test camera's clock is the box's (GStreamer sends sender reports only now and
    # then: tests/ingest/test_udp.py checks them against a camera that always does).
    assert st["clock_offset_s"] is None or abs(st["clock_offset_s"]) < 1.0, st
    segs = await index.segments("udp-only")
    for seg in segs:
        assert _decode_all(Path(seg.path)) == seg.frames
        _xerror_clean(Path(seg.path))


def _xerror_clean(path: Path) -> None:
    out = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and not out.stderr.strip(), f"{path.name}: {out.stderr}"

