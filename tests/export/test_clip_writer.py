"""The clip writer on what real cameras send and on what goes wrong: B-frames with B-pyramid
(H.264 and H.265), segments whose clocks overlap, a gap longer than 32-bit MP4 times hold at
1/90000 s, a segment that changes between the plan and the copy."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from nvr.errors import IntegrityError
from nvr.export import remux
from nvr.export.remux import export_clip
from nvr.media.mp4 import movie as mp4write
from nvr.media.mp4.samples import read_layout
from nvr.storage.index import Gap, Segment
from nvr.timeutil import US
from tests.export.helpers import decoded_frames, ffprobe, packet_hashes, top_level_boxes

T0 = 1_790_000_000_000_000
FPS = 15
FRAG = "frag_keyframe+empty_moov+default_base_moof"


def _bframe_segment(path: Path, codec: str, frames: int = 90, gop: int = 30) -> None:
    """A segment as the recorder writes one from a B-frame camera: first dts 0, pts ahead of
    dts (3 B-frames, B-pyramid), 2 s GOPs, written through a pipe (fragmented, not seekable)."""
    enc = av.CodecContext.create(codec, "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 90000), Fraction(FPS)
    if codec == "libx264":
        enc.options = {"preset": "fast", "bf": "3", "g": str(gop),
                       "x264-params": f"b-pyramid=normal:scenecut=0:keyint={gop}"}
    else:
        enc.options = {"preset": "fast", "x265-params":
                       f"bframes=3:b-pyramid=1:keyint={gop}:min-keyint={gop}:open-gop=0:"
                       "log-level=error"}  # closed GOPs, as cameras send
    packets = []
    for i in range(frames):
        frame = av.VideoFrame(320, 240, "yuv420p")
        frame.planes[0].update(bytes((i * 7 + j) & 0xFF for j in range(320 * 240)))
        frame.pts, frame.time_base = i * 90000 // FPS, Fraction(1, 90000)
        packets += enc.encode(frame)
    packets += enc.encode(None)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with av.open(f"pipe:{fd}", "w", format="mp4",
                     options={"movflags": FRAG, "flush_packets": "1"}) as out:
            st = out.add_stream("h264" if codec == "libx264" else "hevc")
            st.width, st.height = 320, 240
            st.codec_context.extradata = enc.extradata
            st.time_base = Fraction(1, 90000)
            if codec == "libx265":
                st.codec_tag = "hvc1"
            first = packets[0].dts
            for p in packets:
                assert p.pts is not None and p.dts is not None and first is not None
                p.pts, p.dts = p.pts - first, p.dts - first
                p.stream, p.time_base = st, Fraction(1, 90000)
                out.mux(p)
    finally:
        os.close(fd)


def _segment(path: Path, start_us: int, codec: str, seconds: float = 6) -> Segment:
    data = path.read_bytes()
    return Segment("cam", start_us, start_us + int(seconds * US), str(path), len(data),
                   int(seconds * FPS), 3, codec, 320, 240, hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def bframes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bframes")
    out = {}
    for codec, name in (("libx264", "h264"), ("libx265", "hevc")):
        out[name] = folder / f"{name}.mp4"
        _bframe_segment(out[name], codec)
    return out


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_sample_table_from_boxes_is_what_ffmpeg_demuxes(bframes: dict[str, Path],
                                                        codec: str) -> None:
    """pts, dts, duration, keyframe flag and bytes of every frame, as FFmpeg sees them."""
    path = bframes[codec]
    fd = os.open(path, os.O_RDONLY)
    try:
        lay = read_layout(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    data = path.read_bytes()
    mine = [(lay.dts[i] + lay.cto[i], lay.dts[i], lay.duration[i], bool(lay.key[i]),
             data[lay.offset[i]:lay.offset[i] + lay.size[i]]) for i in range(len(lay.dts))]
    with av.open(str(path)) as c:
        theirs = [(p.pts, p.dts, p.duration, p.is_keyframe, bytes(p))
                  for p in c.demux(c.streams.video[0]) if p.size]
    assert len(mine) == 90
    assert any(p != d for p, d, *_ in mine), "the test needs B-frames: pts ahead of dts"
    assert mine == theirs
    assert (lay.width, lay.height, lay.timescale) == (320, 240, 90000)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_bframe_export_mid_gop_plays_every_frame(bframes: dict[str, Path], codec: str,
                                                 tmp_path: Path) -> None:
    """Two segments of one B-frame session, a range starting and ending mid-GOP: the clip
    starts at the keyframe before, holds the source frames byte for byte, decodes without
    error, and its presentation starts at 0 (the edit list skips the decode delay)."""
    second = tmp_path / "second.mp4"
    shutil.copy(bframes[codec], second)
    segs = [_segment(bframes[codec], T0, codec), _segment(second, T0 + 6 * US, codec)]
    out = tmp_path / "clip.mp4"
    clip = export_clip(segs, [], T0 + 2_300_000, T0 + 9_100_000, out)
    assert clip.actual_start_us == T0 + 2 * US  # the keyframe at or before 2.3 s
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")
    info = ffprobe(out)
    (video,) = info["streams"]
    assert float(video["start_time"]) == pytest.approx(0, abs=1e-6)
    assert video["codec_tag_string"] == ("avc1" if codec == "h264" else "hvc1")
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"],
                             capture_output=True, text=True, check=True)
    assert decoded.stderr == ""
    assert len(decoded_frames(out)) == clip.frames == len(packet_hashes(out))
    # Exactly the source frames from the keyframe at 2 s, in decode order, byte for byte.
    with av.open(str(bframes[codec])) as c:
        source = [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(c.streams.video[0])
                  if p.size]
    assert packet_hashes(out)[:60] == source[30:]
    assert packet_hashes(out)[60:] == source[:clip.frames - 60]


def test_overlapping_segment_clocks_keep_every_frame(bframes: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """The second segment's clock starts 40 ms before the first one ends (a clock step between
    two sessions): its frames are moved after the last one rather than dropped."""
    second = tmp_path / "second.mp4"
    shutil.copy(bframes["h264"], second)
    segs = [_segment(bframes["h264"], T0, "h264"),
            _segment(second, T0 + 6 * US - 40_000, "h264")]
    out = tmp_path / "clip.mp4"
    clip = export_clip(segs, [], T0, T0 + 20 * US, out)
    assert clip.frames == 180
    dts = [float(p["dts_time"]) for p in ffprobe(out)["packets"]]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
    assert len(decoded_frames(out)) == 180


def test_a_gap_over_13_hours_is_timed_in_ms(tmp_path: Path) -> None:
    """At 1/90000 s a 32-bit duration holds 13.2 h: a night-long outage inside the range must
    still give a clip whose clock jumps by the outage, not one that wraps around."""
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    _bframe_segment(first, "libx264", frames=30)
    shutil.copy(first, second)
    outage = 14 * 3600 * US
    segs = [_segment(first, T0, "h264", 2), _segment(second, T0 + 2 * US + outage, "h264", 2)]
    gap = Gap("cam", T0 + 2 * US, T0 + 2 * US + outage, "offline")
    out = tmp_path / "clip.mp4"
    clip = export_clip(segs, [gap], T0, T0 + 4 * US + outage, out)
    assert clip.frames == 60
    info = ffprobe(out)
    assert info["streams"][0]["time_base"] == "1/1000"
    times = [float(p["pts_time"]) for p in info["packets"] if p["codec_type"] == "video"]
    jump = max(b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False))
    assert jump == pytest.approx(14 * 3600, abs=0.1)
    assert float(info["format"]["duration"]) == pytest.approx(4 + 14 * 3600, abs=0.1)
    assert [c["tags"]["title"].split(":")[0] for c in info["chapters"]] == [
        "recording from 2026-09-21T14", "GAP offline", "recording from 2026-09-22T04"]
    assert len(decoded_frames(out)) == 60


def test_segment_changed_after_the_plan_is_refused(bframes: dict[str, Path],
                                                   tmp_path: Path) -> None:
    """The plan comes from the boxes read first; the copy comes from the bytes hashed later.
    If a box differs between the two reads, the frames would not be where the plan says."""
    path = tmp_path / "seg.mp4"
    shutil.copy(bframes["h264"], path)
    seg = _segment(path, T0, "h264")
    fd = os.open(path, os.O_RDONLY)
    try:
        layout = read_layout(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    data = bytearray(path.read_bytes())
    remux._check_layout(seg, layout, memoryview(data))  # unchanged: accepted
    at, box = layout.boxes[2]  # the second moof
    data[at + len(box) - 1] ^= 0x01
    with pytest.raises(IntegrityError, match="changed while it was being exported"):
        remux._check_layout(seg, layout, memoryview(data))


def test_a_clip_past_4_gib_gets_64_bit_offsets_and_mdat_size(bframes: dict[str, Path]) -> None:
    """Checked on the boxes alone (writing 4 GiB is not a unit test): a two-hour 8 Mb/s clip
    passes 4 GiB, so chunk offsets go co64 and the mdat size 64-bit, with every offset
    pointing where the frames will be."""
    fd = os.open(bframes["h264"], os.O_RDONLY)
    try:
        lay = read_layout(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    chunk = 2_000_000_000  # two chunks of 2 GB each, then a third: past 4 GiB
    video = mp4write.VideoTable(
        sample_entry=lay.sample_entry, width=320, height=240, timescale=90000,
        dts=[0, 6000, 12000], cto=[0, 0, 0], last_duration=6000, sizes=[chunk] * 3,
        keys=[1, 1, 1], chunk_samples=[1, 1, 1], chunk_offsets=[0, chunk, 2 * chunk],
        media_time=0, shown=18000)
    head = remux._head(video, None, "h264", 3 * chunk)
    size, kind, large = struct.unpack(">I4sQ", head[-16:])
    assert (size, kind, large) == (1, b"mdat", 3 * chunk + 16)
    co64 = head.index(b"co64")
    count = struct.unpack_from(">I", head, co64 + 8)[0]
    offsets = struct.unpack_from(f">{count}Q", head, co64 + 12)
    assert offsets == (len(head), len(head) + chunk, len(head) + 2 * chunk)
    assert b"stco" not in head
    # A small clip keeps 32-bit offsets and a 32-bit mdat size.
    small = mp4write.VideoTable(**{**{f: getattr(video, f) for f in video.__slots__},
                                   "sizes": [1000] * 3, "chunk_offsets": [0, 1000, 2000]})
    head = remux._head(small, None, "h264", 3000)
    assert struct.unpack(">I4s", head[-8:]) == (3008, b"mdat") and b"co64" not in head
    stco = head.index(b"stco")
    assert struct.unpack_from(">I3I", head, stco + 8) == (3, len(head), len(head) + 1000,
                                                          len(head) + 2000)


def _boxes(data: bytes | bytearray, start: int = 0, end: int | None = None) -> list[tuple[str, int]]:
    """(type, offset) of every box, depth first, through the containers a segment has."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos + 8 <= end:
        n, kind = struct.unpack_from(">I4s", data, pos)
        n = end - pos if n == 0 else n
        out.append((kind.decode("latin1"), pos))
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"):
            out += _boxes(data, pos + 8, pos + n)
        pos += n
    return out


def _copies(source: Path, folder: Path, n: int) -> list[Segment]:
    segs = []
    for i in range(n):
        path = folder / f"{i}.mp4"
        shutil.copy(source, path)
        segs.append(_segment(path, T0 + i * 6 * US, "h264"))
    return segs


def test_a_segment_swapped_during_the_plan_is_named_as_altered(bframes: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """An insider swaps segment 1 for its first boxes alone while the export plans, and puts
    the genuine file back before it is hashed: the plan would leave out its frames while every
    hash matches. The copy walks the hashed bytes again and refuses."""
    segs = _copies(bframes["h264"], tmp_path, 3)
    genuine = Path(segs[1].path).read_bytes()
    first_moof = next(at for kind, at in _boxes(genuine) if kind == "moof")
    (tmp_path / "prefix").write_bytes(genuine[:first_moof])
    os.rename(tmp_path / "prefix", segs[1].path)
    restored: list[int] = []

    def put_back(done: int, total: int) -> None:  # the first progress step comes after the plan
        if not restored:
            (tmp_path / "genuine").write_bytes(genuine)
            os.rename(tmp_path / "genuine", segs[1].path)
            restored.append(done)

    out = tmp_path / "clip.mp4"
    with pytest.raises(remux.SegmentChanged, match="changed while it was being exported"):
        export_clip(segs, [], T0, T0 + 18 * US, out, progress=put_back)
    assert restored and not out.exists()
    assert isinstance(remux.SegmentChanged(segs[1].path, ""), remux.SegmentTampered)  # audited


@pytest.mark.parametrize("edit", ["track_id", "non_sync", "trun_count"])
def test_an_edit_that_breaks_the_plan_is_named_as_tampering(bframes: dict[str, Path],
                                                            tmp_path: Path, edit: str) -> None:
    """Edits of a few bytes that would make the footage vanish from the plan ("no footage"),
    or make it build a table of 3 million frames, are reported as what they are."""
    (seg,) = _copies(bframes["h264"], tmp_path, 1)
    data = bytearray(Path(seg.path).read_bytes())
    for kind, at in _boxes(data):
        if edit == "track_id" and kind == "tfhd":
            data[at + 15] ^= 0x02
        if edit == "non_sync" and kind == "trun":
            assert int.from_bytes(data[at + 9:at + 12], "big") & 0x4  # first_sample_flags
            data[at + 21] |= 0x01
        if edit == "trun_count" and kind == "trun":
            struct.pack_into(">II", data, at + 8, 0x000001, 3_000_000)
    Path(seg.path).write_bytes(bytes(data))
    out = tmp_path / "clip.mp4"
    with pytest.raises(remux.SegmentTampered, match="does not match its recorded sha256"):
        export_clip([seg], [], T0, T0 + 6 * US, out)
    assert not out.exists()


def test_more_than_255_chapters(bframes: dict[str, Path], tmp_path: Path) -> None:
    """A flaky camera over a day: 130 outages make 261 chapters. Nero chapters hold 255 (one
    byte of count, as FFmpeg writes them); the clip is written and every frame plays."""
    segs, gaps = [], []
    for i in range(130):
        path = tmp_path / f"{i}.mp4"
        shutil.copy(bframes["h264"], path)
        segs.append(_segment(path, T0 + i * 8 * US, "h264"))
        gaps.append(Gap("cam", T0 + i * 8 * US + 6 * US, T0 + (i + 1) * 8 * US, "offline"))
    out = tmp_path / "clip.mp4"
    clip = export_clip(segs, gaps, T0, T0 + 130 * 8 * US, out)
    assert clip.frames == 130 * 90
    chapters = ffprobe(out)["chapters"]
    assert len(chapters) >= 255 and chapters[1]["tags"]["title"].startswith("GAP offline")


def test_a_segment_cut_inside_its_last_fragment_exports_what_it_holds(
        bframes: dict[str, Path], tmp_path: Path) -> None:
    (seg,) = _copies(bframes["h264"], tmp_path, 1)
    data = Path(seg.path).read_bytes()
    Path(seg.path).write_bytes(data[:-1000])  # the last fragment's frames lose their tail
    seg = _segment(Path(seg.path), T0, "h264")  # indexed as it is (crash recovery cuts such)
    out = tmp_path / "clip.mp4"
    clip = export_clip([seg], [], T0, T0 + 6 * US, out)
    assert 60 <= clip.frames < 90
    assert len(decoded_frames(out)) == clip.frames
