"""The event loop stays responsive while 8 cameras record; pause/resume for a full disk."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from nvr.storage.index import Index
from nvr.timeutil import to_iso
from tests.camserver import TestCamera
from tests.ingest.recording_helpers import IndexSink, make_recorder, wait_for


async def _lags_ms(seconds: float) -> list[float]:
    """A task that sleeps 10 ms in a loop; each overshoot is the loop's lag at that moment."""
    lags = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        await asyncio.sleep(0.010)
        lags.append((time.monotonic() - t - 0.010) * 1000)
    return lags


@pytest.mark.slow
async def test_event_loop_lag_with_eight_cameras(
    testcam: TestCamera, tmp_path: Path, index: Index
) -> None:
    sink = IndexSink(index)
    # One client of /h264 only: GStreamer refuses a second video-only client of a shared
    # media that also has audio (5XX; see the report). Real cameras do not.
    mounts = ["h264", "h264-noaudio", "h265", "h264-noaudio", "h265", "h264-noaudio", "h265",
              "h264-noaudio"]
    recs = [make_recorder(f"cam{i}", testcam.url(m), tmp_path, sink, segment_seconds=1.0)
            for i, m in enumerate(mounts)]
    for r in recs:
        r.start()
    try:
        await wait_for(lambda: all(r.status()["state"] == "recording" for r in recs))
        lags = await _lags_ms(5.0)
    finally:
        await asyncio.gather(*(r.stop() for r in recs))
    slow = [round(x) for x in lags if x >= 100]
    print(f"max event-loop lag with 8 cameras: {max(lags):.1f} ms; >= 100 ms: {slow}")
    # Work on the loop would lag it at every segment rotation (8 cameras x 5 s = 40 times);
    # a loaded machine's scheduler may pause this process once or twice. Allow the latter.
    assert len(slow) <= 2 and max(lags) < 1000, slow
    for i in range(8):  # and they all recorded, rotating every second or so
        assert len(await index.segments(f"cam{i}")) >= 3


@pytest.mark.slow
async def test_pause_for_full_disk_records_a_disk_full_gap(
    testcam: TestCamera, tmp_path: Path, index: Index
) -> None:
    sink = IndexSink(index)
    rec = make_recorder("hall", testcam.url("h264-noaudio"), tmp_path, sink)
    rec.start()
    try:
        await wait_for(lambda: rec.status()["state"] == "recording")
        await asyncio.sleep(1.5)
        rec.pause("disk full of held footage")
        await wait_for(lambda: rec.status()["state"] == "failed")
        assert rec.status()["reason"] == "disk full of held footage"
        # The segment closed by the pause reaches the index through the loop, after the state
        # changed: wait for its row (the writer's last end) before counting.
        last = rec.status()["last_segment_end"]
        deadline = asyncio.get_running_loop().time() + 30
        while not (segs := await index.segments("hall")) or to_iso(segs[-1].end_us) != last:
            assert asyncio.get_running_loop().time() < deadline, (
                f"waited 30s for the segment ending {last} to be indexed")
            await asyncio.sleep(0.1)
        n = len(segs)
        await asyncio.sleep(1.5)
        assert len(await index.segments("hall")) == n  # nothing written while paused
        rec.resume()
        await wait_for(lambda: rec.status()["state"] == "recording")
        await wait_for(lambda: len(sink.gaps) == 1)
    finally:
        await rec.stop()
    (gap,) = await index.gaps("hall")
    assert gap.reason == "disk_full" and 1.5 <= (gap.end_us - gap.start_us) / 1e6 <= 6
    assert rec.status()["errors"] == 0


async def test_a_disk_error_at_segment_close_does_not_end_the_camera_thread(
    testcam: TestCamera, tmp_path: Path, index: Index
) -> None:
    """ENOSPC while a segment is being closed must not kill the camera's thread: the recorder
    reports it, backs off and records again once writing works."""
    sink = IndexSink(index)
    rec = make_recorder("dock", testcam.url("h264-noaudio"), tmp_path, sink)
    real_end_session = rec.writer.end_session
    failures = [OSError(28, "No space left on device")]

    def end_session_failing_once_double() -> None:  # a disk error this machine cannot cause
        real_end_session()
        if failures:
            raise failures.pop()

    rec.writer.end_session = end_session_failing_once_double  # type: ignore[method-assign]
    rec.start()
    try:
        await wait_for(lambda: rec.status()["state"] == "recording")
        testcam.stop()  # the session ends; closing its segment "fails"
        await wait_for(lambda: rec.status()["errors"] >= 1)
        assert "No space left" in rec.status()["last_error"] or rec.status()["errors"] >= 1
        testcam.start()
        n = len(await index.segments("dock"))
        await wait_for(lambda: rec.status()["state"] == "recording", within_s=30)
        deadline = asyncio.get_running_loop().time() + 30
        while len(await index.segments("dock")) <= n:  # a new segment indexed: still recording
            assert asyncio.get_running_loop().time() < deadline, (
                "waited 30s for a new segment: the camera thread stopped recording")
            await asyncio.sleep(0.2)
        assert rec._thread is not None and rec._thread.is_alive()
    finally:
        await rec.stop()
