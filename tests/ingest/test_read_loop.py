"""The own reader's read loop (nvr.ingest.read_loop) with real cameras: one thread reads every
`reader: nvr` camera, and what goes wrong with one camera stays that camera's — a camera that
goes silent times out alone, a disk error while writing one camera's frames reaches that
camera's thread (which retries), and the others record on without a hole."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from nvr.ingest import read_loop
from nvr.storage.index import Index
from tests.camserver import TestCamera
from tests.ingest.recording_helpers import IndexSink, make_recorder, wait_for


def _read_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nvr-read" and t.is_alive()]


async def _no_hole_since(index: Index, camera: str, since_us: int) -> None:
    segs = [s for s in await index.segments(camera) if s.end_us > since_us]
    assert len(segs) >= 2, (camera, len(segs))
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.end_us == b.start_us, f"{camera}: a hole between {a.path} and {b.path}"
    assert not [g for g in await index.gaps(camera) if g.end_us > since_us], camera


@pytest.mark.slow
async def test_one_thread_reads_every_camera_and_a_silent_one_times_out_alone(
    testcam: TestCamera, testcam_factory: type[TestCamera], tmp_path: Path, index: Index
) -> None:
    quiet = testcam_factory().start()  # a camera of its own, to freeze
    sink = IndexSink(index)
    recs = {f"cam{i}": make_recorder(f"cam{i}", testcam.url(m), tmp_path, sink, reader="nvr")
            for i, m in enumerate(["h264-noaudio", "h265", "h264-bframes"])}
    recs["frozen"] = make_recorder("frozen", quiet.url("h264-noaudio"), tmp_path, sink,
                                   reader="nvr", io_timeout_s=2.0)
    for r in recs.values():
        r.start()
    try:
        await wait_for(lambda: all(sink.indexed.get(c, 0) >= 1 for c in recs))
        assert len(_read_threads()) == 1, "one read loop for all cameras"
        t0_us = time.time_ns() // 1000
        assert quiet.proc is not None
        os.killpg(quiet.proc.pid, signal.SIGSTOP)  # connected, but nothing comes any more
        try:
            await wait_for(lambda: recs["frozen"].status()["state"] == "backoff", within_s=15)
            # The loop's silence check, not a set-up failure ("...while setting up the stream").
            assert "stopped answering: no data for 2 s" in recs["frozen"].status()["reason"]
            await asyncio.sleep(2.5)  # the others keep recording meanwhile
        finally:
            os.killpg(quiet.proc.pid, signal.SIGCONT)
        await wait_for(lambda: recs["frozen"].status()["state"] == "recording")
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
    for cam in ("cam0", "cam1", "cam2"):
        await _no_hole_since(index, cam, t0_us)
    (gap,) = [g for g in await index.gaps("frozen") if g.end_us > t0_us]
    assert gap.reason == "timeout"
    # Every camera stopped: the loop's thread ended with its last session.
    await wait_for(lambda: not _read_threads(), within_s=5)


@pytest.mark.slow
async def test_a_disk_error_while_writing_one_camera_reaches_its_thread_only(
    testcam: TestCamera, tmp_path: Path, index: Index
) -> None:
    sink = IndexSink(index)
    good = make_recorder("good", testcam.url("h264-noaudio"), tmp_path, sink, reader="nvr")
    bad = make_recorder("bad", testcam.url("h265"), tmp_path, sink, reader="nvr")
    real_write = bad.writer.write
    failures: list[OSError] = []

    def write_failing_once_double(op: object) -> None:  # a disk error this machine cannot cause
        if failures:
            raise failures.pop()
        real_write(op)  # type: ignore[arg-type]

    bad.writer.write = write_failing_once_double  # type: ignore[method-assign]
    good.start()
    bad.start()
    try:
        await wait_for(lambda: all(sink.indexed.get(c, 0) >= 1 for c in ("good", "bad")))
        t0_us = time.time_ns() // 1000
        failures.append(OSError(28, "No space left on device"))  # armed after t0
        await wait_for(lambda: bad.status()["errors"] >= 1)
        assert "No space left on device" in bad.status()["last_error"]
        n = sink.indexed.get("bad", 0)
        await wait_for(lambda: sink.indexed.get("bad", 0) > n)  # it records again
        await asyncio.sleep(2.5)
        assert bad._thread is not None and bad._thread.is_alive()
        assert good.status()["errors"] == 0 and good.status()["state"] == "recording"
    finally:
        await asyncio.gather(good.stop(), bad.stop())
    await _no_hole_since(index, "good", t0_us)


def test_a_stuck_read_loop_takes_no_new_session() -> None:
    """Invariant 4: a loop that has not finished a round for LOOP_STALL_S is replaced for new
    sessions (its cameras are restarted by the watchdog onto the new one)."""
    stuck = read_loop.ReadLoop()
    stuck._thread = threading.Thread()  # stands for a loop thread stuck in a step
    stuck.round_at = time.monotonic() - read_loop.LOOP_STALL_S - 1
    read_loop._shared = stuck
    try:
        fresh = read_loop.shared_read_loop()
        assert fresh is not stuck and not fresh.stalled(time.monotonic())
        assert read_loop.shared_read_loop() is fresh
    finally:
        read_loop._shared = None
