"""Display order from the pictures themselves: the POC reader (nvr.media.poc) on what x264 and
x265 write, and the stage that gives a stream stamped in decode order its presentation times
(nvr.ingest.display_order), fed as aio-rtsp-toolkit's server stamps (test_aio_rtsp_server.py
records that server end to end)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvr.ingest.display_order import DisplayOrder
from nvr.media.access_unit import length_prefixed
from nvr.media.poc import Picture, PictureOrder
from tests.ingest.test_reader_fuzz import FUZZ

ENCODERS = {
    "h264-bpyramid": ("h264", ["libx264", "-bf", "3", "-x264-params", "b-pyramid=normal"]),
    "h264-baseline": ("h264", ["libx264", "-profile:v", "baseline"]),
    "h264-high-scaling": ("h264", ["libx264", "-bf", "2", "-x264-params", "cqm=jvt"]),
    "hevc-bpyramid": ("hevc", ["libx265", "-x265-params",
                               "log-level=error:bframes=3:b-pyramid=1"]),
    "hevc-idr": ("hevc", ["libx265", "-x265-params",
                          "log-level=error:bframes=2:open-gop=0"]),
}


def frames_of(path: Path) -> list[tuple[int, bool, bytes]]:
    """(pts, key, length-prefixed access unit) in decode order, parameter sets in band."""
    out = []
    with av.open(str(path)) as c:
        for p in c.demux(c.streams.video[0]):
            if p.size and p.pts is not None:
                out.append((int(p.pts), bool(p.is_keyframe), bytes(length_prefixed(
                    bytearray(bytes(p))))))
    return out


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def clip(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[str, list[tuple[int, bool, bytes]]]:
    codec, args = ENCODERS[request.param]
    path = tmp_path_factory.mktemp("poc") / f"{request.param}.ts"  # MPEG-TS: sets in band
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=25", "-t", "5", "-g", "50", "-c:v", *args,
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    return codec, frames_of(path)


def test_the_poc_orders_every_picture_as_the_encoder_stamped_it(
        clip: tuple[str, list[tuple[int, bool, bytes]]]) -> None:
    codec, frames = clip
    order = PictureOrder(codec)
    pictures = [order.picture(data) for _, _, data in frames]
    assert all(p is not None for p in pictures), "a picture's POC was not read"
    runs: list[list[tuple[int, int]]] = []
    for (pts, _, _), pic in zip(frames, pictures, strict=True):
        assert pic is not None
        if pic.new_sequence or not runs:
            runs.append([])
        runs[-1].append((pts, pic.poc))
    for run in runs:
        assert sorted(run) == sorted(run, key=lambda r: r[1])  # the same order
        assert len({poc for _, poc in run}) == len(run)


def server_stamps(frames: list[tuple[int, bool, bytes]]) -> list[int]:
    """What aio-rtsp-toolkit's server sends as RTP times: each frame's time held above a
    cursor that moves one frame on per frame sent (server_streaming.py: max(cursor, pts))."""
    step = min(b - a for a, b in zip(sorted(p for p, _, _ in frames),
                                      sorted(p for p, _, _ in frames)[1:], strict=False))
    out, cursor = [], None
    for pts, _, _ in frames:
        t = pts if cursor is None else max(cursor, pts)
        out.append(t)
        cursor = t + step
    return out


def run_stage(codec: str, frames: list[tuple[int, bool, bytes]], stamps: list[int]
              ) -> tuple[DisplayOrder[bytes], list[int]]:
    order = PictureOrder(codec)
    stage: DisplayOrder[bytes] = DisplayOrder(order.picture)
    got: list[int] = []
    for (_, key, data), ts in zip(frames, stamps, strict=True):
        got += [p for p, _, _ in stage.feed(ts, key, data, len(data))]
    got += [p for p, _, _ in stage.flush()]
    return stage, got


def test_decode_order_stamps_get_the_display_order_back(
        clip: tuple[str, list[tuple[int, bool, bytes]]]) -> None:
    codec, frames = clip
    stamps = server_stamps(frames)
    stage, got = run_stage(codec, frames, stamps)
    assert len(got) == len(frames)
    true_pts = [p for p, _, _ in frames]
    if true_pts == sorted(true_pts):  # no B-frames: nothing to tell, nothing changed
        assert stage.mode == "presentation" and got == stamps
        return
    assert stamps == sorted(stamps), "the server's stamps rise"
    assert stage.mode == "decode"
    # Every frame shows in the order the encoder meant, one frame apart, none below its stamp.
    rank = {p: r for r, p in enumerate(sorted(true_pts))}
    assert sorted(range(len(got)), key=lambda i: got[i]) == sorted(
        range(len(got)), key=lambda i: rank[true_pts[i]])
    assert len(set(got)) == len(got)
    assert all(g >= s for g, s in zip(got, stamps, strict=True))


def test_presentation_stamps_pass_unchanged(
        clip: tuple[str, list[tuple[int, bool, bytes]]]) -> None:
    codec, frames = clip
    stamps = [p for p, _, _ in frames]
    stage, got = run_stage(codec, frames, stamps)
    assert got == stamps and stage.mode == "presentation"


def test_the_hold_is_bounded_by_frames_and_bytes() -> None:
    """A stream whose POC never says anything (unreadable pictures) is held for at most the
    hold (frames, or bytes), then passes as it comes."""
    for frames, size in ((10, 10**6), (100, 950)):
        stage: DisplayOrder[int] = DisplayOrder(lambda _: None, hold_frames=frames,
                                                hold_bytes=size)
        out: list[tuple[int, bool, int]] = []
        i = 0
        while not out:
            out = stage.feed(i * 3600, False, i, 100)
            assert len(stage._held) <= 10 and stage._held_bytes <= size
            i += 1
        assert i == 11 if frames == 10 else i == 10
        assert [p for p, _, _ in out] == [n * 3600 for n in range(i)]
        assert stage.mode == "presentation"


def test_one_falling_stamp_means_presentation_times() -> None:
    """RTP times that go down where the POC does (as RFC 6184 says) are believed at once."""
    pocs = iter([Picture(0, True), Picture(6, False), Picture(2, False)])
    stage: DisplayOrder[int] = DisplayOrder(lambda _: next(pocs))
    assert stage.feed(0, True, 0) == [] and stage.feed(9000, False, 1) == []
    assert [p for p, _, _ in stage.feed(3000, False, 2)] == [0, 9000, 3000]
    assert stage.mode == "presentation"


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["h264", "hevc"]),
       st.lists(st.binary(max_size=64), max_size=4))
def test_the_poc_reader_takes_any_bytes(data: bytes, codec: str, params: list[bytes]) -> None:
    order = PictureOrder(codec, tuple(p for p in params if p))
    for _ in range(2):
        pic = order.picture(data)
        assert pic is None or isinstance(pic.poc, int)
