"""Start-up recovery on real files: a writer SIGKILLed mid-segment, torn fragments, strays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nvr import timeutil
from nvr.media.mp4.boxes import top_level as top_level_boxes
from nvr.media.mp4.fragment import complete_length
from nvr.storage.index import Index, NewSegment
from nvr.storage.recovery import probe_segment, reconcile
from tests.camserver import TestCamera
from tests.ingest.recording_helpers import ffprobe, open_index

REPO = Path(__file__).resolve().parents[2]


def _boxes(path: Path) -> list[tuple[bytes, int, int]]:
    data = path.read_bytes()
    return top_level_boxes(len(data), lambda off, n: data[off:off + n])


def _kill_writer_mid_segment(url: str, root: Path) -> Path:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_writer", url, str(root), "60"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "RECORDING"
        folder = root / "segments" / "crashcam"
        deadline = time.monotonic() + 30
        while True:  # a few fragments (one a GOP, 1 s) are on disk
            files = list(folder.iterdir()) if folder.exists() else []
            if files and files[0].stat().st_size > 60_000:
                break
            assert time.monotonic() < deadline, (
                f"waited 30s for the writer to put 60 kB of fragments on disk: {files}")
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    (path,) = list((root / "segments" / "crashcam").iterdir())
    return path


@pytest.mark.slow
async def test_segment_of_a_killed_writer_is_recovered_and_plays(
    testcam: TestCamera, tmp_path: Path
) -> None:
    path = _kill_writer_mid_segment(testcam.url("h264"), tmp_path)
    # Tear the last fragment too, as a power cut mid-write would.
    whole = path.stat().st_size
    with path.open("ab") as f:  # noqa: ASYNC230 - a test's setup; nothing else runs
        f.write(b"\x00\x00\x40\x00moof" + b"\x00" * 100)
    index = await open_index(tmp_path)
    try:
        dry = await reconcile(index, tmp_path, ["crashcam"], repair=False)
        assert [r["path"] for r in dry.recovered] == [str(path)]
        assert not await index.all_segments() and path.stat().st_size == whole + 108

        report = await reconcile(index, tmp_path, ["crashcam"])
        (seg,) = await index.all_segments()
        assert seg.recovered and seg.path == str(path)
        assert report.recovered[0]["cut_bytes"] >= 108
        assert seg.bytes == path.stat().st_size <= whole
        probe = ffprobe(path)  # it plays, video only, every counted frame is there
        assert [s["codec_type"] for s in probe["streams"]] == ["video"]
        assert len(probe["packets"]) == seg.frames >= 30
        last = probe["packets"][-1]
        media_us = round((float(last["pts_time"]) + float(last["duration_time"])) * 1e6)
        assert seg.start_us == timeutil.parse_segment_name(path.name)
        assert abs(seg.end_us - seg.start_us - media_us) <= 1000  # its real end
        assert seg.keyframes >= 2
        assert report.last_end_us == {"crashcam": seg.end_us}
        files = list((tmp_path / "segments" / "crashcam").iterdir())
        assert len(files) == len(await index.all_segments())
        assert (await reconcile(index, tmp_path, ["crashcam"])).clean  # idempotent
    finally:
        await index.db.close()


def test_box_walker_cuts_after_last_complete_fragment() -> None:
    def box(kind: bytes, n: int) -> bytes:
        return (8 + n).to_bytes(4, "big") + kind + b"\x00" * n

    head = box(b"ftyp", 16) + box(b"moov", 40)
    frag = box(b"moof", 30) + box(b"mdat", 200)
    data = head + frag + frag + box(b"moof", 30) + box(b"mdat", 200)[:50]
    boxes = top_level_boxes(len(data), lambda off, n: data[off:off + n])
    assert complete_length(boxes) == len(head) + 2 * len(frag)
    whole = head + frag + box(b"mfra", 20)
    assert complete_length(top_level_boxes(len(whole), lambda o, n: whole[o:o + n])) == len(whole)
    assert complete_length(top_level_boxes(len(head), lambda o, n: head[o:o + n])) == 0


async def test_strays_deleting_rows_and_missing_files(tmp_path: Path) -> None:
    index: Index = await open_index(tmp_path)
    folder = tmp_path / "segments" / "lobby"
    folder.mkdir(parents=True)
    t = 1_790_000_000_000_000
    empty = folder / timeutil.segment_name(t)
    empty.write_bytes(b"")
    junk = folder / timeutil.segment_name(t + 10**6)
    junk.write_bytes(b"not an mp4 at all" * 10)
    (folder / "notes.txt").write_text("left by someone")
    doomed = folder / timeutil.segment_name(t + 2 * 10**6)
    doomed.write_bytes(b"x")

    def row(path: Path, start: int) -> NewSegment:
        return NewSegment("lobby", start, start + 10**6, str(path), 1, 1, 1, "h264", 1, 1, "00")

    sid = await index.add_segment(row(doomed, t + 2 * 10**6))
    await index.mark_deleting([sid])
    gone = folder / timeutil.segment_name(t + 3 * 10**6)
    await index.add_segment(row(gone, t + 3 * 10**6))
    try:
        report = await reconcile(index, tmp_path, ["lobby"])
        assert report.finished_deletes == [str(doomed)] and not doomed.exists()
        assert sorted(q["path"] for q in report.quarantined) == [str(empty), str(junk)]
        assert (tmp_path / "quarantine" / "lobby" / junk.name).exists()  # moved, not deleted
        assert not junk.exists() and not empty.exists()
        assert report.foreign == [str(folder / "notes.txt")]
        assert [m["path"] for m in report.missing] == [str(gone)]
        assert await index.all_segments(include_deleting=True) == []
        gaps = await index.gaps("lobby")
        assert [(g.reason, g.start_us) for g in gaps] == [("missing", t + 3 * 10**6)]
        assert report.to_dict()["clean"] is False
    finally:
        await index.db.close()


def test_probe_reads_only_the_prefix(tmp_path: Path) -> None:
    assert probe_segment(tmp_path / "nope.mp4") is None


@pytest.mark.slow
async def test_a_writer_killed_before_its_first_segment_closed_leaves_a_crash_gap(
    testcam: TestCamera, tmp_path: Path
) -> None:
    """Found by the fault soak: a daemon SIGKILLed twice in a row. The second run died before
    it closed a segment, so the gap it would have written then (from the footage before to its
    first file) never was. Recovery writes it, with the segment that ends it."""
    path = _kill_writer_mid_segment(testcam.url("h264"), tmp_path)
    start = timeutil.parse_segment_name(path.name)
    assert start is not None
    index = await open_index(tmp_path)
    try:
        earlier_end = start - 7_000_000  # the footage before: it ended 7 s before the file
        await index.add_segment(NewSegment(
            camera="crashcam", start_us=earlier_end - 2_000_000, end_us=earlier_end,
            path=str(tmp_path / "elsewhere.mp4"), bytes=1, frames=30, keyframes=2,
            codec="h264", width=640, height=360, sha256="0" * 64))
        await reconcile(index, tmp_path, ["crashcam"])
        # (The earlier segment's file is not on disk here: recovery also says so, `missing`.)
        crash = [(g.start_us, g.end_us) for g in await index.gaps("crashcam")
                 if g.reason == "crash"]
        assert crash == [(earlier_end, start)]
        await reconcile(index, tmp_path, ["crashcam"])  # idempotent: no second gap
        assert len([g for g in await index.gaps("crashcam") if g.reason == "crash"]) == 1
    finally:
        await index.db.close()
