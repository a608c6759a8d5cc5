"""Issue 11, acceptance: the recorder's clock set 40 days ahead (an injected test clock: the
machine's clock is not ours to change) deletes nothing, `nvr status` shows the alert, recording
goes on, and only the IT person's `nvr retention confirm-clock` lets deletion resume."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.support import is_root

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")]


def poll(what: str, fn: Any, within_s: float = 30) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {within_s}s waiting for {what}")


def deletions(rec: Recorder) -> list[dict[str, Any]]:
    rows = rec.cli("director", "audit", "list", "--json").json()
    rows = rows["rows"] if isinstance(rows, dict) else rows
    return [r for r in rows if r["action"] == "retention_delete"]


def test_clock_40_days_ahead_deletes_nothing_and_alerts(
    testcam: TestCamera, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = Recorder([{"id": "stacks", "name": "Stacks", "area": "stacks",
                     "rtsp": testcam.url("h264-noaudio")}], segment_seconds=2)
    text = rec.config.read_text().replace("  days: 30", "  days: 30\n  interval_seconds: 1")
    rec.config.write_text(text)
    rec.start()
    try:
        before = rec.wait_for_segments("stacks", 2)
        rec.daemon.stop()
        monkeypatch.setenv("NVR_TEST_CLOCK_OFFSET_S", str(40 * 86400))
        rec.daemon.start()
        status = poll("the clock alert in nvr status",
                      lambda: (s := rec.cli("root", "status", "--json").json())["clock_alert"]
                      and s)
        assert "clock jump" in status["clock_alert"] and "confirm-clock" in status["clock_alert"]
        assert status["alert"] == status["clock_alert"]
        text_status = rec.cli("root", "status")
        assert "confirm-clock" in text_status.out
        poll("recording after the restart", lambda: rec.cli("root", "status", "--json").json()
             ["cameras"][0]["state"] == "recording")
        time.sleep(3)  # three retention passes at least
        assert not deletions(rec)
        assert all(Path(s["path"]).exists() for s in before)
        assert '"event": "retention_paused_clock"' in rec.daemon.logs()

        refused = rec.cli("staff", "retention", "confirm-clock")
        assert refused.code == 77, refused.err
        ok = rec.cli("it", "retention", "confirm-clock", "--json")
        assert ok.code == 0, ok.err
        assert "clock jump" in ok.json()["alert_cleared"]
        # Confirmed: by this clock the footage is 40 days old, and retention now says so.
        poll("deletion after the confirmation", lambda: deletions(rec))
        assert rec.cli("root", "status", "--json").json()["clock_alert"] is None
    finally:
        rec.cleanup()
