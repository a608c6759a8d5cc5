"""GET /metrics on metrics.listen: valid Prometheus text, one series per camera."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> str:
    if shutil.which("curl"):  # as the IT person's monitoring check would
        return subprocess.run(["curl", "-fsS", url], check=True, capture_output=True,
                              text=True, timeout=10).stdout
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_metrics_endpoint_gives_prometheus_text_per_camera(testcam: TestCamera) -> None:
    port = free_port()
    cams = [{"id": "lobby", "name": "Lobby", "area": "public_seating",
             "rtsp": testcam.url("h264-noaudio")},
            {"id": "dock", "name": "Dock", "area": "delivery", "rtsp": testcam.url("h265")},
            {"id": "gone", "name": "Unplugged", "area": "stacks",
             "rtsp": "rtsp://127.0.0.1:9/none"}]
    rec = Recorder(cams, extra=f"metrics:\n  listen: 127.0.0.1:{port}\n").start()
    try:
        rec.wait_for_segments("lobby", 1)
        rec.wait_for_segments("dock", 1)
        rec.cli("director", "status")  # one audited action, so audit rows > 0
        deadline = time.monotonic() + 30
        while True:
            text = scrape(f"http://127.0.0.1:{port}/metrics")
            families = {f.name: f for f in text_string_to_metric_families(text)}
            states = {(s.labels["camera"], s.labels["state"]): s.value
                      for s in families["nvr_camera_state"].samples}
            if states.get(("gone", "recording")) == 0 and states.get(("gone", "connecting")) == 0:
                break
            assert time.monotonic() < deadline, f"camera 'gone' never left connecting: {states}"
            time.sleep(0.5)

        def per_camera(name: str, suffix: str = "") -> dict[str, float]:
            samples = [s for s in families[name].samples if s.name == name + suffix]
            cams_seen = [s.labels["camera"] for s in samples]
            assert len(cams_seen) == len(set(cams_seen)), f"{name}: two series for one camera"
            return {s.labels["camera"]: s.value for s in samples}

        frames = per_camera("nvr_camera_frames", "_total")
        assert set(frames) == {"lobby", "dock", "gone"}
        assert frames["lobby"] > 0 and frames["dock"] > 0 and frames["gone"] == 0
        assert per_camera("nvr_camera_bytes", "_total")["dock"] > 0
        assert per_camera("nvr_camera_reconnects", "_total")["gone"] >= 1
        assert states[("lobby", "recording")] == 1 and states[("dock", "recording")] == 1
        assert sum(v for (c, _), v in states.items() if c == "gone") == 1
        ages = per_camera("nvr_camera_last_segment_age_seconds")
        assert set(ages) == {"lobby", "dock"} and all(0 <= a < 60 for a in ages.values())
        assert set(per_camera("nvr_camera_retention_horizon_seconds")) == {"lobby", "dock"}
        assert per_camera("nvr_camera_retention_target_seconds")["lobby"] == 30 * 86400
        assert families["nvr_disk_free_bytes"].samples[0].value > 0
        assert families["nvr_event_loop_lag_seconds"].samples[0].value >= 0
        assert families["nvr_audit_rows"].samples[0].value >= 1
        alerts = {s.labels["alert"]: s.value for s in families["nvr_alerts"].samples}
        # 'gone' is retrying after errors: the same alert `nvr status` lists first.
        assert alerts == {"storage_paused": 0, "camera_failed": 1}
        assert "# TYPE nvr_camera_frames_total counter" in text
    finally:
        rec.cleanup()


def test_metrics_on_a_loopback_live_listen_without_a_token(testcam: TestCamera) -> None:
    """No metrics.listen: the viewing pages' server on loopback answers GET /metrics too."""
    port = free_port()
    cams = [{"id": "lobby", "name": "Lobby", "area": "public_seating",
             "rtsp": testcam.url("h264-noaudio")}]
    rec = Recorder(cams, extra=f"live:\n  listen: 127.0.0.1:{port}\n").start()
    try:
        rec.wait_for_segments("lobby", 1)
        text = scrape(f"http://127.0.0.1:{port}/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        frames = [s for s in families["nvr_camera_frames"].samples
                  if s.name == "nvr_camera_frames_total"]
        assert [s.labels["camera"] for s in frames] == ["lobby"] and frames[0].value > 0
    finally:
        rec.cleanup()
