"""The daemon's lifecycle: SIGTERM finalizes every open segment; SIGHUP and `nvr reload`
re-read the camera map, and a bad map changes nothing."""

from __future__ import annotations

import json
import signal
import sqlite3
import time

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder


def test_sigterm_finalizes_and_indexes_every_open_segment(testcam: TestCamera) -> None:
    rec = Recorder([{"id": "a", "name": "A", "area": "entrance", "rtsp": testcam.url("h264")},
                    {"id": "b", "name": "B", "area": "stacks", "rtsp": testcam.url("h265")}],
                   segment_seconds=30).start()
    try:
        rec.wait_for_state("recording")  # both cameras have a segment open
        time.sleep(6)  # then well into it (segments are 30 s), so a stop lands mid-segment
        t0 = time.monotonic()
        assert rec.daemon.stop(signal.SIGTERM) == 0
        assert time.monotonic() - t0 < 8, "stopping took too long"
        with sqlite3.connect(rec.root / "index.db") as db:
            rows = {r[0] for r in db.execute("SELECT path FROM segments")}
            running = db.execute("SELECT value FROM meta WHERE key = 'running'").fetchone()[0]
        files = {str(p) for p in (rec.root / "segments").glob("*/*.mp4")}
        assert files and files == rows, "a segment was left unindexed by a clean stop"
        assert running == "0"  # so the next start records "recorder_stopped", not "crash"
    finally:
        rec.cleanup()


def test_reload_adds_a_camera_and_a_bad_map_changes_nothing(testcam: TestCamera) -> None:
    cam_a = {"id": "a", "name": "A", "area": "entrance", "rtsp": testcam.url("h264-noaudio")}
    rec = Recorder([cam_a], segment_seconds=2).start()
    try:
        rec.wait_for_segments("a", 1)
        good = rec.config.read_text().replace(
            "  - " + json.dumps(cam_a),
            "  - " + json.dumps(cam_a) + "\n  - " + json.dumps(
                {"id": "b", "name": "B", "area": "stacks", "rtsp": testcam.url("h264-noaudio")}),
        )
        rec.config.write_text(good)
        assert rec.daemon.proc is not None
        rec.daemon.proc.send_signal(signal.SIGHUP)
        rec.wait_for_segments("b", 1)

        rec.config.write_text(good.replace("area: entrance", "area: restroom").replace(
            '"area": "entrance"', '"area": "restroom"'))
        res = rec.cli("director", "reload")
        assert res.code == 65, (res.code, res.err)
        assert "restroom" in res.err and "privacy" in res.err
        status = rec.cli("root", "status", "--json").json()
        assert {c["id"]: c["state"] for c in status["cameras"]} == {"a": "recording",
                                                                   "b": "recording"}
    finally:
        rec.cleanup()
