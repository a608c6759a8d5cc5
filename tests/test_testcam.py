"""The test camera is a real RTSP server: ffprobe and PyAV both read its mounts."""

from __future__ import annotations

import json
import subprocess

import av
import pytest

from tests.camserver import TestCamera


def ffprobe_streams(url: str) -> list[dict[str, object]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json", url],
        capture_output=True, text=True, timeout=20, check=True,
    )
    return json.loads(out.stdout)["streams"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mount", "codecs"),
    [("h264", {"h264", "aac"}), ("h265", {"hevc"}), ("h264-noaudio", {"h264"}),
     ("audio-only", {"aac"}), ("h264-bframes", {"h264"}), ("h265-bframes", {"hevc"})],
)
def test_ffprobe_reads_mount(testcam: TestCamera, mount: str, codecs: set[str]) -> None:
    streams = ffprobe_streams(testcam.url(mount))
    assert {s["codec_name"] for s in streams} == codecs
    for s in streams:
        if s["codec_type"] == "video":
            assert (s["width"], s["height"]) == (640, 360)


@pytest.mark.parametrize(("mount", "codec"), [("h264", "h264"), ("h265", "hevc")])
def test_pyav_reads_video_packets(testcam: TestCamera, mount: str, codec: str) -> None:
    with av.open(testcam.url(mount), options={"rtsp_transport": "tcp", "timeout": "5000000"}) as c:
        video = c.streams.video[0]
        assert video.codec_context.name == codec
        keyframes = 0
        packets = 0
        for pkt in c.demux(video):
            if pkt.size == 0:
                continue
            packets += 1
            keyframes += pkt.is_keyframe
            if packets >= 20:
                break
        assert keyframes >= 1  # GOP is 15 frames, so 20 packets hold a keyframe


def test_credentials_required(testcam_factory: type[TestCamera]) -> None:
    cam = testcam_factory("--require-auth", "--user", "u", "--password", "p").start()
    with pytest.raises(av.error.HTTPUnauthorizedError):
        av.open(cam.url("h264"), options={"rtsp_transport": "tcp", "timeout": "5000000"})
    with av.open(cam.url("h264", "u", "p"), options={"rtsp_transport": "tcp"}) as c:
        assert c.streams.video[0].codec_context.name == "h264"


@pytest.mark.parametrize("mount", ["h264-bframes", "h265-bframes"])
def test_b_frame_mounts_really_reorder(testcam: TestCamera, mount: str) -> None:
    # Decode order differs from display order: some packet shows before one decoded earlier.
    with av.open(testcam.url(mount), options={"rtsp_transport": "tcp", "timeout": "5000000"}) as c:
        pts = []
        for pkt in c.demux(c.streams.video[0]):
            if pkt.size and pkt.pts is not None:
                pts.append(pkt.pts)
            if len(pts) >= 20:
                break
    assert any(b < a for a, b in zip(pts, pts[1:], strict=False)), pts
