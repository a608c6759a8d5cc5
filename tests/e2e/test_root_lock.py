"""Issue 9: one process owns a storage root. A second `nvr run` (or `nvr fsck --repair`) on the
same root exits 75 at once, naming the holder's PID, and changes nothing: the first recorder's
segments still match their index rows and decode."""

from __future__ import annotations

import hashlib
import resource
import subprocess
from pathlib import Path

import av

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.support import NVR


def decode_errors(path: str) -> int:
    """Frames decoded; raises on a decode error (what a viewer would hit)."""
    with av.open(path) as c:
        return sum(1 for _ in c.decode(video=0))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_second_instance_on_one_root_exits_75_naming_the_pid(testcam: TestCamera) -> None:
    rec = Recorder([{"id": "a", "name": "A", "area": "entrance",
                     "rtsp": testcam.url("h264-noaudio")}], segment_seconds=2).start()
    try:
        rec.wait_for_segments("a", 2)
        assert rec.daemon.proc is not None
        first_pid = rec.daemon.proc.pid
        # A leftover in tmp/: a second instance that cleaned tmp/ would remove it.
        marker = rec.root / "tmp" / "marker"
        marker.write_bytes(b"x")
        # Same storage root, a different socket: only the root lock can stop it.
        second = rec.dir / "second.yaml"
        second.write_text(rec.config.read_text().replace(str(rec.socket),
                                                         str(rec.dir / "second.sock")))
        for argv in (["run"], ["fsck", "--repair"]):
            # CPU time, not wall time: on a loaded test machine (xdist, other runs) the wall
            # clock measures the queue for a core; what `nvr run` spends before refusing is
            # its own work, which the issue bounds to a second on an idle box.
            cpu0 = _children_cpu_s()
            res = subprocess.run([NVR, *argv, "--config", str(second)], capture_output=True,
                                 text=True, timeout=30)
            took = _children_cpu_s() - cpu0
            assert res.returncode == 75, (argv, res.returncode, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and f"PID {first_pid}" in lines[0], (argv, res.stderr)
            # `nvr run` refuses before its heavy imports: within the second the issue asks.
            limit = 1.0 if argv == ["run"] else 5.0
            assert took < limit, f"{argv} took {took:.2f} s of CPU to refuse"
        assert marker.exists(), "the second instance cleaned tmp/ of the first"
        assert not (rec.dir / "second.sock").exists()

        before = len(rec.wait_for_segments("a", 2))
        rec.wait_for_segments("a", before + 2)  # the first keeps recording after the attempt
        assert rec.daemon.stop() == 0
        import sqlite3

        with sqlite3.connect(rec.root / "index.db") as db:
            rows = db.execute("SELECT path, bytes, sha256 FROM segments").fetchall()
        assert len(rows) >= 4
        for path, size, digest in rows:
            data = Path(path).read_bytes()
            assert len(data) == size, f"{path}: {len(data)} bytes on disk, {size} indexed"
            assert hashlib.sha256(data).hexdigest() == digest, f"{path}: sha256 changed"
            assert decode_errors(path) > 0
    finally:
        rec.cleanup()


def test_lock_is_released_by_sigkill(testcam: TestCamera) -> None:
    rec = Recorder([{"id": "a", "name": "A", "area": "entrance",
                     "rtsp": testcam.url("h264-noaudio")}], segment_seconds=2).start()
    try:
        rec.wait_for_segments("a", 1)
        import signal

        rec.daemon.stop(signal.SIGKILL)
        rec.daemon.start()  # would exit 75 if the lock outlived its holder
        rec.wait_for_segments("a", 2)
    finally:
        rec.cleanup()
