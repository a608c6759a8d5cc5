"""Issue 9: one start path for start-up and reload. A reload that adds a camera and restarts a
changed one leaves the others without a gap and gives the changed one a gap `reload`; a reload
during a disk-full pause does not resume anything; a changed storage.root waits for a restart."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from nvr.config.loader import load_camera_map
from nvr.runtime.service import Service
from tests.camserver import TestCamera
from tests.e2e.harness import Recorder, camera_map


def test_reload_adds_one_restarts_a_changed_one_with_a_reload_gap(
    testcam_factory: type[TestCamera],
) -> None:
    # One test camera each: a client joining a shared test stream can disturb the others'
    # timestamps (a property of the test server), which would show as gaps unrelated to reload.
    url_a, url_b, url_c = (testcam_factory().start().url("h264-noaudio") for _ in range(3))
    a = {"id": "a", "name": "A", "area": "entrance", "rtsp": url_a}
    b = {"id": "b", "name": "B", "area": "stacks", "rtsp": url_b}
    rec = Recorder([a, b], segment_seconds=2).start()
    try:
        rec.wait_for_segments("a", 2)
        rec.wait_for_segments("b", 2)
        text = rec.config.read_text()
        b2 = dict(b, name="B (moved)")
        c = {"id": "c", "name": "C", "area": "stacks", "rtsp": url_c}
        rec.config.write_text(text.replace("  - " + json.dumps(b),
                                           "  - " + json.dumps(b2) + "\n  - " + json.dumps(c)))
        res = rec.cli("root", "reload", "--json")
        assert res.code == 0, res.err
        assert res.json() == {"added": ["c"], "removed": [], "changed": ["b"]}
        before_a = len(rec.wait_for_segments("a", 1))
        rec.wait_for_segments("c", 2)
        rec.wait_for_segments("a", before_a + 2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gaps_b = rec.cli("root", "recordings", "--camera", "b", "--json").json()["gaps"]
            if gaps_b:
                break
            time.sleep(0.5)
        assert [g["reason"] for g in gaps_b] == ["reload"], gaps_b
        for cam in ("a", "c"):
            gaps = rec.cli("root", "recordings", "--camera", cam, "--json").json()["gaps"]
            assert gaps == [], (cam, gaps)

        # A new storage.root is not followed until a restart, and the answer says so.
        other = rec.dir / "elsewhere"
        rec.config.write_text(rec.config.read_text().replace(f"root: {rec.root}",
                                                             f"root: {other}"))
        res = rec.cli("root", "reload", "--json")
        assert res.code == 0, res.err
        assert res.json()["restart_needed"] == ["storage.root"]
        assert res.json()["changed"] == []
        status = rec.cli("root", "status", "--json").json()
        assert status["disk"]["root"] == str(rec.root) and not other.exists()
        assert rec.daemon.stop(signal.SIGTERM) == 0
    finally:
        rec.cleanup()


def test_reload_during_a_disk_full_pause_does_not_resume(tmp_path: Path,
                                                         testcam: TestCamera) -> None:
    url = testcam.url("h264-noaudio")
    a = {"id": "a", "name": "A", "area": "entrance", "rtsp": url}
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(camera_map(tmp_path / "storage", tmp_path / "s.sock", [a]))

    async def run() -> None:
        svc = Service(cfg, load_camera_map(cfg))
        await svc.start()
        try:
            # What the retention executor calls when only held footage is left on a full disk.
            svc.on_retention_pause({"a"}, "disk full: test")
            assert svc.recorders["a"].status()["state"] in ("paused", "connecting", "recording")
            cfg.write_text(camera_map(tmp_path / "storage", tmp_path / "s.sock", [
                dict(a, name="A (moved)"),
                {"id": "b", "name": "B", "area": "stacks", "rtsp": url}]))
            answer = await svc.reload("test")
            assert answer["changed"] == ["a"] and answer["added"] == ["b"]
            assert svc.paused == {"a", "b"}
            for cam in ("a", "b"):
                assert svc.recorders[cam]._paused == "disk full: test", cam
            await asyncio.sleep(4)  # two segment lengths: a paused camera writes nothing
            assert await svc.index.segments("b") == []
        finally:
            await svc.stop()

    asyncio.run(run())
