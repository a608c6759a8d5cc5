"""`nvr status` for people (issue 13, build item 3), against the real daemon and test camera:
alerts first, days of footage left, oldest and held footage, an 80-column terminal, TSV when
piped, and the new `--json` keys in UTC."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from nvr.cli import fmt
from tests.camserver import TestCamera
from tests.cli.test_cli import NVR
from tests.cli.test_people import on_terminal
from tests.e2e.harness import Recorder

NEW_CAMERA_KEYS = {"last_error_at", "oldest_footage", "segments", "recordings_bytes", "daily_bytes", "held_bytes",
                   "held_seconds", "holds"}  # fmt: skip
OLD_CAMERA_KEYS = {"id", "name", "area", "state", "reason", "fps", "bitrate_bps", "frames",
                   "last_segment_end", "errors", "last_error", "dropped"}  # fmt: skip


def wait_status(rec: Recorder, what: str, ok: Any, timeout: float = 60) -> dict[str, Any]:
    """Poll `nvr status --json` until ok(status); the failure names `what` and the last reply."""
    deadline = time.monotonic() + timeout
    while True:
        res = rec.cli("root", "status", "--json")
        assert res.code == 0, res.err
        status: dict[str, Any] = res.json()
        if ok(status):
            return status
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout}s for {what}; last status: {status}\n"
                                 + rec.daemon.logs()[-3000:])
        time.sleep(0.5)


def test_status_lists_alerts_first_days_left_oldest_and_held_footage(testcam: TestCamera) -> None:
    cams = [{"id": "lobby", "name": "Lobby", "area": "public_seating",
             "rtsp": testcam.url("h264-noaudio")},
            # Pointed at a closed port, as a camera unplugged or with a wrong address would be.
            {"id": "gone", "name": "Unplugged", "area": "stacks",
             "rtsp": "rtsp://127.0.0.1:9/none"}]
    rec = Recorder(cams).start()
    try:
        segs = rec.wait_for_segments("lobby", 3)
        res = rec.cli("director", "hold", "create", "--camera", "lobby", "--start",
                      segs[0]["start"], "--end", segs[1]["end"], "--reason", "[red]incident",
                      "--json")
        assert res.code == 0, res.err

        status = wait_status(rec, "camera gone's alert", lambda s: any(
            a.get("camera") == "gone" for a in s.get("alerts", [])))
        # JSON: every old key is kept, the new ones are there, every instant is UTC.
        assert {"site", "cameras", "disk", "retention", "paused", "alert"} <= set(status)
        by_id = {c["id"]: c for c in status["cameras"]}
        for cam in by_id.values():
            assert OLD_CAMERA_KEYS | NEW_CAMERA_KEYS <= set(cam), set(cam)
        lobby, gone = by_id["lobby"], by_id["gone"]
        assert lobby["state"] == "recording"
        assert gone["state"] in ("backoff", "connecting") and gone["errors"] >= 1
        assert gone["oldest_footage"] is None and gone["held_bytes"] == 0
        assert gone["last_error_at"].endswith("Z") and lobby["last_error_at"] is None
        assert lobby["oldest_footage"] == segs[0]["start"]  # ISO UTC, full precision
        assert lobby["oldest_footage"].endswith("Z") and status["at"].endswith("Z")
        # Held: the two whole segments under the hold, their bytes and their length.
        assert lobby["holds"] == 1
        assert lobby["held_bytes"] == segs[0]["bytes"] + segs[1]["bytes"]
        want = sum(fmt.span(s["start"], s["end"]) or 0 for s in segs[:2])
        assert abs(lobby["held_seconds"] - want) < 0.01, (lobby["held_seconds"], want)
        assert status["held"] == {"holds": 1, "bytes": lobby["held_bytes"],
                                  "seconds": lobby["held_seconds"]}
        assert lobby["recordings_bytes"] >= sum(s["bytes"] for s in segs)
        assert lobby["segments"] >= 3 and lobby["daily_bytes"] > 0
        disk = status["disk"]
        floor = disk["total_bytes"] * disk["min_free_percent"] / 100
        assert disk["daily_bytes"] == lobby["daily_bytes"]  # gone recorded nothing
        assert disk["reserve_bytes"] == round(floor)
        assert abs(disk["days_left"] - (disk["free_bytes"] - floor) / disk["daily_bytes"]) < 0.01
        assert [a["kind"] for a in status["alerts"]] == ["camera_failed"]
        assert "gone" in status["alerts"][0]["message"]

        # A person at an 80-column terminal: the alert is the first thing, nothing wider.
        lines = on_terminal(rec.socket, "status", columns=80)
        shown = [line for line in lines if line.strip()]
        assert shown[0].startswith("ALERT") and "camera gone is not recording" in shown[0]
        assert not [line for line in lines if len(line) > 80], "\n".join(lines)
        text = " ".join(" ".join(line.split()) for line in lines)
        assert "days left at today's rate" in text or "less than a day left" in text, text
        assert "held" in text and "under 1 hold in force" in text
        header = next(line for line in lines if line.lstrip().startswith("camera"))
        assert "oldest" in header and "held" in header

        # Piped: the alerts as a TSV table first, then the cameras with every column.
        piped = subprocess.run([str(NVR), "status", "--socket", str(rec.socket)],
                               capture_output=True, text=True, timeout=30,
                               env={**os.environ, "TZ": "America/New_York"})  # fmt: skip
        assert piped.returncode == 0, piped.stderr
        out = piped.stdout.splitlines()
        assert out[0].split("\t") == ["alert", "camera", "message"]
        assert out[1].split("\t")[:2] == ["camera_failed", "gone"]
        head = out.index("") + 1
        columns = out[head].split("\t")
        assert columns[:3] == ["camera", "state", "fps"]
        assert {"oldest", "held", "oldest footage", "held time", "last error at",
                "last error"} <= set(columns)
        rows = {r.split("\t")[0]: dict(zip(columns, r.split("\t"), strict=True))
                for r in out[head + 1:head + 3]}  # fmt: skip
        assert rows["lobby"]["oldest footage"].endswith(("EST", "EDT"))
        assert rows["lobby"]["held"] == fmt.size(lobby["held_bytes"])
        assert rows["gone"]["held"] == "-" and rows["gone"]["last error"] != "-"
        assert rows["gone"]["last error at"].endswith(("EST", "EDT"))
    finally:
        rec.cleanup()
