"""Export of a time range into one MP4: what a viewer, ffprobe and an investigator would see."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from nvr.export.remux import NoFootage, SegmentTampered, clip_gaps, export_clip, missing_us
from nvr.storage.index import Gap
from nvr.timeutil import US
from tests.export.conftest import T0, Footage
from tests.export.footage import FPS
from tests.export.helpers import (
    decoded_frames,
    expected_gray,
    ffprobe,
    packet_hashes,
    source_packet_hashes,
    top_level_boxes,
)

S = US


def test_export_25s_over_three_segments(footage: Footage, tmp_path: Path) -> None:
    start, end = T0 + 2_500_000, T0 + 27_500_000
    out = tmp_path / "clip.mp4"
    steps: list[tuple[int, int]] = []
    clip = export_clip(footage.h264, footage.gaps, start, end, out,
                       progress=lambda d, t: steps.append((d, t)))

    # Starts at the keyframe at or before the start (GOP 1 s → 2.0 s), ends at the end.
    assert clip.actual_start_us == T0 + 2 * S
    assert end <= clip.actual_end_us <= end + S // FPS
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert steps[-1] == (6, 6) and len(steps) == 6

    info = ffprobe(out)
    kinds = [s["codec_type"] for s in info["streams"]]
    assert kinds == ["video"], "video only: no audio, no chapter track when there is no gap"
    assert info["streams"][0]["codec_name"] == "h264"
    duration = float(info["format"]["duration"])
    assert abs(duration - (end - start) / S) <= 1.0  # within one keyframe interval
    assert not info.get("chapters")

    # moov before mdat: a player can start before the whole file has arrived.
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")

    # Exactly the source frames of the range: same packets, byte for byte, same order.
    expected = source_packet_hashes(footage.h264, clip.actual_start_us, clip.actual_end_us)
    assert len(expected) == clip.frames == 25 * FPS + FPS // 2 + 1  # 2.0 s .. 27.533 s
    assert packet_hashes(out) == expected

    # And PyAV decodes them all, each the frame recorded at that time.
    frames = decoded_frames(out)
    assert len(frames) == clip.frames
    for t, gray in frames[:: FPS // 3]:
        n = round(t * FPS) + 2 * FPS  # clip time 0 is wall time T0 + 2 s, frame 30
        assert abs(gray - expected_gray(n)) <= 3, (t, gray)
    assert [s["path"] for s in clip.sources] == [s.path for s in footage.h264[:3]]
    assert clip.gaps == []


def test_gap_keeps_wall_clock_time_line_and_gets_a_chapter(footage: Footage, tmp_path: Path) -> None:
    out = tmp_path / "gap.mp4"
    clip = export_clip(footage.h264, footage.gaps, T0 + 25 * S, T0 + 40 * S, out)
    assert [(g.start_us, g.end_us, g.reason) for g in clip.gaps] == [
        (T0 + 30 * S, T0 + 35 * S, "offline")
    ]
    info = ffprobe(out)
    times = [float(p["pts_time"]) for p in info["packets"] if p["codec_type"] == "video"]
    # 5 s before the gap, then the clock jumps by the 5 s nothing was recorded.
    assert len(times) == clip.frames == 10 * FPS
    jumps = [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a > 1]
    assert jumps == [(pytest.approx(5 - 1 / FPS, abs=1e-3), pytest.approx(10.0, abs=1e-3))]
    assert float(info["format"]["duration"]) == pytest.approx(15.0, abs=0.1)
    titles = [(float(c["start_time"]), c["tags"]["title"]) for c in info["chapters"]]
    assert [t for t, _ in titles] == pytest.approx([0.0, 5.0, 10.0])
    assert titles[1][1].startswith("GAP offline")
    # The frame shown right after the gap is the first one recorded after it.
    frames = decoded_frames(out)
    after = next(g for t, g in frames if t >= 10.0)
    assert abs(after - expected_gray(450)) <= 3
    assert not [s for s in info["streams"] if s["codec_type"] == "audio"]


def test_hole_without_gap_row_is_still_a_gap(footage: Footage) -> None:
    found = clip_gaps(footage.h264, [], T0, T0 + 45 * S)
    assert [(g.start_us, g.end_us, g.reason) for g in found] == [
        (T0 + 30 * S, T0 + 35 * S, "unrecorded")
    ]
    known = Gap("cam", T0 + 30 * S, T0 + 35 * S, "offline")
    assert clip_gaps(footage.h264, [known], T0, T0 + 45 * S) == [known]


def test_tampered_source_stops_export(footage: Footage, tmp_path: Path) -> None:
    seg = footage.h264[0]
    copy = tmp_path / Path(seg.path).name
    shutil.copy(seg.path, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    tampered = type(seg)(**{**{f: getattr(seg, f) for f in seg.__dataclass_fields__},
                            "path": str(copy)})
    out = tmp_path / "never.mp4"
    with pytest.raises(SegmentTampered, match=str(copy)):
        export_clip([tampered, *footage.h264[1:]], [], T0, T0 + 15 * S, out)
    assert not out.exists()


def test_hevc_export_keeps_hvc1(footage: Footage, tmp_path: Path) -> None:
    out = tmp_path / "hevc.mp4"
    clip = export_clip(footage.hevc, [], T0 + S // 2, T0 + 3 * S, out)
    info = ffprobe(out)
    (video,) = info["streams"]
    assert (video["codec_name"], video["codec_tag_string"]) == ("hevc", "hvc1")
    assert clip.codec == "hevc" and clip.frames == 3 * FPS
    assert packet_hashes(out) == source_packet_hashes(footage.hevc, T0, clip.actual_end_us)
    assert len(decoded_frames(out)) == clip.frames


def test_nothing_recorded(footage: Footage, tmp_path: Path) -> None:
    with pytest.raises(NoFootage):
        export_clip(footage.h264, footage.gaps, T0 - 100 * S, T0 - 50 * S, tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_start_inside_a_gap_starts_at_the_next_footage(footage: Footage, tmp_path: Path) -> None:
    clip = export_clip(footage.h264, footage.gaps, T0 + 32 * S, T0 + 37 * S, tmp_path / "g.mp4")
    assert clip.actual_start_us == T0 + 35 * S  # first frame recorded after the gap
    assert clip.frames == 2 * FPS
    assert [g.reason for g in clip.gaps] == ["offline"]  # still told why 32-35 s is missing
    frames = decoded_frames(clip.path)
    assert abs(frames[0][1] - expected_gray(450)) <= 3


def test_every_stretch_of_the_range_without_footage_is_a_gap(footage: Footage) -> None:
    """Issue 10: before the first segment, between two, after the last."""
    first, last = footage.h264[0], footage.h264[-1]
    start, end = first.start_us - 30 * S, last.end_us + 7 * S
    found = clip_gaps(footage.h264, footage.gaps, start, end)
    spans = [(g.start_us, g.end_us, g.reason) for g in found]
    assert spans[0] == (start, first.start_us, "unrecorded")
    assert spans[-1] == (last.end_us, end, "unrecorded")
    assert (T0 + 30 * S, T0 + 35 * S, "offline") in spans
    assert missing_us(found, start, end) == 30 * S + 5 * S + 7 * S
    # A range inside the footage has only the recorded gap.
    inside = clip_gaps(footage.h264, footage.gaps, first.start_us, last.end_us)
    assert [(g.reason) for g in inside] == ["offline"]
