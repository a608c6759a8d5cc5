"""Issue 27: a camera that trickles bytes (one every 0.25 s, well inside the per-recv()
timeout) costs no thread and no socket per stall. The set-up has an overall deadline, a stream
must complete a frame every two io timeouts, and the watchdog's abandon() shuts the socket of a
thread wedged on it, so that thread ends.

The real recorder with the own reader, against a hostile camera (tests/ingest/trickle_camera.py)
in a child process, on loopback; time scaled down by a 0.5-s io timeout.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nvr.storage.index import Index
from tests.ingest.recording_helpers import IndexSink, make_recorder, wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def trickle_camera(mode: str, interval_s: float = 0.25,
                   lifetime_s: float = 60) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.ingest.trickle_camera", mode,
                             str(interval_s), str(lifetime_s)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"rtsp://127.0.0.1:{port}/trickle", proc
    finally:
        proc.kill()
        if proc.stderr is not None and not proc.stderr.closed:
            proc.communicate(timeout=5)  # reaps it and closes its pipes


def counts() -> tuple[int, int]:
    """(this process's camera threads, its open descriptors)."""
    cams = sum(1 for t in threading.enumerate() if t.name.startswith("cam-") and t.is_alive())
    return cams, len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(("mode", "why"), [
    ("setup", "while setting up the stream (set-up not done in 1.5 s)"),
    ("stream", "camera sends no whole frame: none in 1 s"),
])
async def test_a_trickling_camera_costs_no_thread_or_socket_per_stall(
        mode: str, why: str, tmp_path: Path, index: Index) -> None:
    with trickle_camera(mode) as (url, _):
        rec = make_recorder("trickle", url, tmp_path, IndexSink(index), reader="nvr",
                            io_timeout_s=0.5)
        rec.start()
        try:
            await wait_for(lambda: rec.errors >= 2 and rec.state == "backoff", within_s=20)
            assert why in rec.reason, rec.reason
            first = counts()
            await wait_for(lambda: rec.errors >= 4 and rec.state == "backoff", within_s=20)
            later = counts()
        finally:
            await rec.stop()
    assert first == later, f"after 2 stalls {first}, after 4 {later} (camera threads, fds)"
    assert later[0] == 1, "one thread for the camera"


async def test_abandon_shuts_the_socket_of_a_wedged_thread_and_it_ends(
        tmp_path: Path, index: Index) -> None:
    with trickle_camera("setup") as (url, cam):
        # A long io timeout: its set-up deadline (30 s) is far away; only abandon() helps.
        rec = make_recorder("wedged", url, tmp_path, IndexSink(index), reader="nvr",
                            io_timeout_s=10.0)
        rec.start()
        thread = rec._thread
        assert thread is not None
        try:
            await wait_for(lambda: rec._sock is not None, within_s=10)
            await asyncio.sleep(0.6)  # a few bytes trickle in: the thread is in recv()
            rec.abandon()  # what the watchdog does to a thread that stopped beating
            await asyncio.to_thread(thread.join, 3.0)
            assert not thread.is_alive(), "the abandoned thread is still blocked on its socket"
        finally:
            await rec.stop()
        cam.kill()
        _, err = cam.communicate(timeout=5)
    assert "open 0" in err, f"the camera saw its connection stay open: {err!r}"
