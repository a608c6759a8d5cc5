"""Display order from the pictures themselves: the POC reader (nvr.media.poc) on what x264 and
x265 write, and the stage that gives a stream stamped in decode order its presentation times
(nvr.ingest.display_order), fed as aio-rtsp-toolkit's server stamps (test_aio_rtsp_server.py
records that server end to end)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvr.ingest.decode_times import reorder_depth
from nvr.ingest.display_order import DisplayOrder
from nvr.media.access_unit import length_prefixed, picture_kind
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
    # Four slices a picture: a camera that marks each slice's end sends them one unit each.
    "h264-slices": ("h264", ["libx264", "-bf", "3", "-x264-params", "slices=4"]),
    # IDRs with leading pictures: shown before the IDR, after the GOP before it.
    "hevc-radl": ("hevc", ["libx265", "-x265-params",
                           "log-level=error:bframes=3:open-gop=0:radl=2"]),
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


def encode(name: str, folder: Path) -> tuple[str, list[tuple[int, bool, bytes]]]:
    codec, args = ENCODERS[name]
    path = folder / f"{name}.ts"  # MPEG-TS: parameter sets in band
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=25", "-t", "5", "-g", "50", "-c:v", *args,
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    return codec, frames_of(path)


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def clip(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[str, list[tuple[int, bool, bytes]]]:
    return encode(request.param, tmp_path_factory.mktemp("poc"))


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


def perturbed(frames: list[tuple[int, bool, bytes]], how: str
              ) -> tuple[list[tuple[int, bool, bytes]], list[int]]:
    """The frames a server sends, and its rising stamps: as aio-rtsp-toolkit's, or stamped by
    a jittery clock, with two frames lost, with the frame rate halved halfway, or with a loop
    of the file from its second keyframe (a CRA for x265's open GOPs) sent twice."""
    stamps = server_stamps(frames)
    step = min(b - a for a, b in zip(stamps, stamps[1:], strict=False) if b > a)
    if how == "jitter":
        rnd = random.Random(7)
        out, last = [], -step
        for i in range(len(frames)):
            last = max(last + 1, i * step + rnd.randint(-step // 4, step // 4))
            out.append(last)
        return frames, out
    if how == "lost":
        keep = [i for i, (_, key, _) in enumerate(frames) if not (30 <= i <= 31 and not key)]
        return [frames[i] for i in keep], [stamps[i] for i in keep]
    if how == "rate-halved":
        half = len(stamps) // 2
        return frames, stamps[:half] + [stamps[half] + 2 * step * i
                                         for i in range(len(stamps) - half)]
    if how == "loop-from-cra":
        second = next(i for i, (_, key, _) in enumerate(frames) if key and i)
        looped = frames[second:] * 2
        return looped, [i * step for i in range(len(looped))]
    return frames, stamps


def shown_as_meant(frames: list[tuple[int, bool, bytes]], got: list[int], how: str) -> None:
    """Every frame shows in the order the encoder meant, each at its own time."""
    true_pts = [p for p, _, _ in frames]
    if how == "loop-from-cra":  # the second pass shows after the first
        half = len(frames) // 2
        span = max(true_pts) - min(true_pts) + 1
        true_pts = true_pts[:half] + [p + span for p in true_pts[half:]]
    meant = sorted(range(len(got)), key=lambda i: true_pts[i])
    shown = sorted(range(len(got)), key=lambda i: got[i])
    assert shown == meant
    assert len(set(got)) == len(got)


@pytest.mark.parametrize("how", ["server", "jitter", "lost", "rate-halved", "loop-from-cra"])
def test_decode_order_stamps_get_the_display_order_back(
        clip: tuple[str, list[tuple[int, bool, bytes]]], how: str) -> None:
    codec, frames = clip
    frames, stamps = perturbed(frames, how)
    stage, got = run_stage(codec, frames, stamps)
    assert len(got) == len(frames)
    true_pts = [p for p, _, _ in frames]
    if reorder_depth(true_pts[:len(true_pts) // 2]) == 0:  # no B-frames: nothing changed
        assert stage.mode == "presentation" and got == stamps
        return
    assert stamps == sorted(stamps), "the server's stamps rise"
    assert stage.mode == "decode"
    shown_as_meant(frames, got, how)
    assert sorted(got) == sorted(stamps), "the times handed out are the ones that came"


def test_slices_sent_one_unit_each_keep_their_picture_s_time(tmp_path: Path) -> None:
    """Each slice its own unit (the later ones "pieces"), all with their picture's stamp: the
    pieces say nothing of the order, and each takes its picture's time."""
    codec, frames = encode("h264-slices", tmp_path)
    stamps = server_stamps(frames)
    units, stamp_of, picture_of = [], [], []
    for n, ((_, key, data), ts) in enumerate(zip(frames, stamps, strict=True)):
        nals, i = [], 0
        while i < len(data):
            size = int.from_bytes(data[i:i + 4], "big")
            nals.append(data[i:i + 4 + size])
            i += 4 + size
        first = next(j for j, nal in enumerate(nals) if 1 <= nal[4] & 0x1F <= 5)
        for j, chunk in enumerate([b"".join(nals[:first + 1]), *nals[first + 1:]]):
            units.append((key and j == 0, chunk))
            stamp_of.append(ts)
            picture_of.append(n)
    order = PictureOrder(codec)
    stage: DisplayOrder[bytes] = DisplayOrder(
        order.picture, lambda u: picture_kind(u, codec, True) == "piece")
    got: list[int] = []
    for (key, unit), ts in zip(units, stamp_of, strict=True):
        got += [p for p, _, _ in stage.feed(ts, key, unit, len(unit))]
    got += [p for p, _, _ in stage.flush()]
    assert stage.mode == "decode" and len(got) == len(units)
    per_picture: dict[int, set[int]] = {}
    for n, pts in zip(picture_of, got, strict=True):
        per_picture.setdefault(n, set()).add(pts)
    assert all(len(times) == 1 for times in per_picture.values())
    shown_as_meant(frames, [next(iter(per_picture[n])) for n in range(len(frames))], "server")


def test_a_jump_of_the_clock_in_decode_order_is_one_jump() -> None:
    """Stamps in decode order that jump back a minute: every frame before the jump keeps a
    time from before it, every one after gets one from after (mixed, a segment would go back
    and forth across the minute)."""
    pocs = [0] + [2 * p for k in range(60) for p in (3 * k + 3, 3 * k + 1, 3 * k + 2)]
    stage: DisplayOrder[int] = DisplayOrder(
        lambda i: Picture(pocs[i], i == 0), max_jump=900_000)
    stamps = [i * 3600 - (5_400_000 if i >= 100 else 0) for i in range(len(pocs))]
    got: list[int] = []
    for i, ts in enumerate(stamps):
        got += [p for p, _, _ in stage.feed(ts, i == 0, i, 100)]
    got += [p for p, _, _ in stage.flush()]
    assert stage.mode == "decode" and len(got) == len(pocs)
    assert all(g >= 0 for g in got[:100]) and all(g < 0 for g in got[100:])
    assert sorted(got) == sorted(stamps)


def test_a_poc_far_ahead_holds_at_most_the_hold_and_raises_nothing() -> None:
    """One picture whose POC reads far ahead of its place (misread, or a reset not seen) would
    hold every frame after it back: at most `hold_frames` wait, then pictures are placed."""
    pocs = [0] + [2 * p for k in range(100) for p in (3 * k + 3, 3 * k + 1, 3 * k + 2)]
    pocs[100] = 100_000
    stage: DisplayOrder[int] = DisplayOrder(lambda i: Picture(pocs[i], i == 0))
    out: list[tuple[int, bool, int]] = []
    for i in range(len(pocs)):
        out += stage.feed(i * 3600, i == 0, i, 100)
        assert stage._units <= stage.hold_frames
    out += stage.flush()
    assert stage.mode == "decode"
    assert [i for _, _, i in out] == list(range(len(pocs)))
    assert sorted(p for p, _, _ in out) == [i * 3600 for i in range(len(pocs))]


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


class Bits:
    """A bit writer for hand-made parameter sets and slice headers."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> Bits:
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, v: int) -> Bits:
        n = (v + 1).bit_length()
        return self.u(n - 1, 0).u(n, v + 1)

    def nal(self, head: bytes) -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)
        return head + bytes(int("".join(map(str, bits[i:i + 8])), 2)
                            for i in range(0, len(bits), 8))


def units(*nals: bytes) -> bytes:
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals)


def test_an_sps_with_no_such_poc_type_says_unknown() -> None:
    """pic_order_cnt_type 3 does not exist; a slice naming that SPS has no POC (it raised
    out of the reader before)."""
    sps = Bits().u(8, 66).u(16, 0).ue(0).ue(0).ue(3).nal(b"\x67")
    pps = Bits().ue(0).ue(0).nal(b"\x68")
    idr = Bits().ue(0).ue(7).ue(0).u(4, 0).ue(0).u(8, 0xFF).nal(b"\x65")
    order = PictureOrder("h264")
    assert order.picture(units(sps, pps, idr)) is None
    stage: DisplayOrder[bytes] = DisplayOrder(order.picture)
    assert stage.feed(0, True, units(sps, pps, idr)) == [] and stage.flush() != []


def test_a_poc_misread_after_losses_is_no_evidence() -> None:
    """A P-only stream (POC type 0, 4 low bits, 2 a frame) that loses 5 frames three times:
    the POC read after each loss is 16 too low (its high bits guessed wrong), 4 below the
    frame before, as a B-frame's would be. The frame after a loss comes marked damaged (the
    depacketizer saw the sequence gap): no evidence, and the stamps are left as they came."""
    sps = Bits().u(8, 77).u(16, 0).ue(0).ue(0).ue(0).ue(0).ue(1).u(1, 0).ue(19).ue(10).u(
        1, 1).nal(b"\x67")  # frame_num and POC low bits: 4 bits each
    pps = Bits().ue(0).ue(0).nal(b"\x68")
    for marked in (True, False):
        order = PictureOrder("h264")
        stage: DisplayOrder[bytes] = DisplayOrder(order.picture)
        sent, got, lost = [], [], False
        for i in range(60):
            if any(a <= i < a + 5 for a in (10, 25, 40)):
                lost = True
                continue
            kind = b"\x65" if i == 0 else b"\x41"
            head = Bits().ue(0).ue(5 if i else 7).ue(0).u(4, i % 16)
            if i == 0:
                head.ue(0)
            frame = units(sps, pps, head.u(4, (2 * i) % 16).nal(kind))
            sent.append(i * 3600)
            got += [p for p, _, _ in stage.feed(i * 3600, i == 0, frame, len(frame),
                                                 lost and marked)]
            lost = False
        got += [p for p, _, _ in stage.flush()]
        # Unmarked, the misreads would pass for three frames shown out of order.
        assert (stage.mode == "presentation" and got == sent) == marked, (marked, stage.mode)


@FUZZ
@given(st.sampled_from(["h264", "hevc"]), st.lists(st.tuples(
    st.sampled_from(["sps", "pps", "key", "slice"]), st.binary(max_size=24)),
    min_size=1, max_size=40), st.lists(st.integers(-5000, 5000), min_size=40, max_size=40))
def test_the_stage_takes_any_pictures(codec: str, nals: list[tuple[str, bytes]],
                                      jitter: list[int]) -> None:
    """Parameter sets and slices with real NAL headers and any bodies, at any times: nothing
    raises, every frame comes out once, and the hold stays bounded."""
    heads = {"h264": {"sps": b"\x67\x64", "pps": b"\x68", "key": b"\x65", "slice": b"\x41"},
             "hevc": {"sps": b"\x42\x01", "pps": b"\x44\x01", "key": b"\x26\x01",
                      "slice": b"\x02\x01"}}[codec]
    order = PictureOrder(codec)
    stage: DisplayOrder[int] = DisplayOrder(lambda i: order.picture(frames[i]), hold_frames=16)
    frames = [units(heads[kind] + body) for kind, body in nals]
    out = []
    for i, frame in enumerate(frames):
        out += stage.feed(i * 3000 + jitter[i], i == 0, i, len(frame))
        assert len(stage._held) + len(stage._pending) <= 17
    out += stage.flush()
    assert sorted(i for _, _, i in out) == list(range(len(frames)))


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["h264", "hevc"]),
       st.lists(st.binary(max_size=64), max_size=4))
def test_the_poc_reader_takes_any_bytes(data: bytes, codec: str, params: list[bytes]) -> None:
    order = PictureOrder(codec, tuple(p for p in params if p))
    for _ in range(2):
        pic = order.picture(data)
        assert pic is None or isinstance(pic.poc, int)
