"""GET /metrics on metrics.listen: valid Prometheus text, one series per camera — for a caller
with the metrics token only; without it, no camera (issue 27)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.support import run_as


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_of(rec: Recorder) -> str:
    """What the IT person (root here) reads to configure the scraper."""
    return (rec.root / "keys" / "metrics.token").read_text().strip()


def scrape(url: str, token: str | None = None) -> str:
    if shutil.which("curl"):  # as the IT person's monitoring check would
        auth = ["-H", f"Authorization: Bearer {token}"] if token else []
        return subprocess.run(["curl", "-fsS", *auth, url], check=True, capture_output=True,
                              text=True, timeout=10).stdout
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def status_of(url: str, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


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
            text = scrape(f"http://127.0.0.1:{port}/metrics", token_of(rec))
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


def test_metrics_on_a_loopback_live_listen(testcam: TestCamera) -> None:
    """No metrics.listen: the viewing pages' server on loopback answers GET /metrics too."""
    port = free_port()
    cams = [{"id": "lobby", "name": "Lobby", "area": "public_seating",
             "rtsp": testcam.url("h264-noaudio")}]
    rec = Recorder(cams, extra=f"live:\n  listen: 127.0.0.1:{port}\n").start()
    try:
        rec.wait_for_segments("lobby", 1)
        text = scrape(f"http://127.0.0.1:{port}/metrics", token_of(rec))
        families = {f.name: f for f in text_string_to_metric_families(text)}
        frames = [s for s in families["nvr_camera_frames"].samples
                  if s.name == "nvr_camera_frames_total"]
        assert [s.labels["camera"] for s in frames] == ["lobby"] and frames[0].value > 0
        code, text = status_of(f"http://127.0.0.1:{port}/metrics", {})
        assert code == 200 and "lobby" not in text and "nvr_up 1.0" in text, (code, text)
    finally:
        rec.cleanup()


def test_metrics_without_the_token_name_no_camera_and_refuse_other_hosts(
        testcam: TestCamera) -> None:
    port = free_port()
    cams = [{"id": "lobby", "name": "Lobby", "area": "public_seating",
             "rtsp": testcam.url("h264-noaudio")}]
    rec = Recorder(cams, extra=f"metrics:\n  listen: 127.0.0.1:{port}\n").start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        rec.wait_for_segments("lobby", 1)
        token = token_of(rec)
        # An account nobody listed cannot read the token (nor could it run `nvr status`).
        path = rec.root / "keys" / "metrics.token"

        def read_token() -> str:
            try:
                return Path(path).read_text()
            except PermissionError:
                return "refused"

        assert run_as("nvrtest-public", read_token) == "refused"
        # No token: that the recorder is up, nothing about any camera, audit or alert.
        code, text = status_of(url, {})
        assert code == 200, text
        names = {f.name for f in text_string_to_metric_families(text)}
        assert names == {"nvr_up"}, names
        assert "lobby" not in text and "camera" not in text.replace("Camera figures", "")
        # A wrong token is refused, not served the public figures.
        code, text = status_of(url, {"Authorization": "Bearer not-the-token-at-all"})
        assert code == 401 and "wrong metrics token" in text, (code, text)
        # DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own Host.
        code, text = status_of(url, {"Host": f"evil.example:{port}",
                                     "Authorization": f"Bearer {token}"})
        assert code == 403 and "Host" in text and "lobby" not in text, (code, text)
        # The token: everything, as before.
        full = scrape(url, token)
        assert 'nvr_camera_state{camera="lobby",state="recording"}' in full
    finally:
        rec.cleanup()


def test_metrics_on_a_non_loopback_address_need_the_token() -> None:
    """The gate of a listener on a LAN address, decided on requests built in the test (a TEST
    DOUBLE for a scraper on another host: tests send traffic to loopback only, never to this
    machine's network addresses)."""
    import pytest
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from nvr.runtime.metrics import Gate

    token = "t0ken-for-the-test-0123456789"
    gate = Gate("192.0.2.10:9100", token)  # TEST-NET-1: documentation only, never bound here
    host = {"Host": "192.0.2.10:9100"}
    with pytest.raises(web.HTTPUnauthorized) as refused:
        gate.full(make_mocked_request("GET", "/metrics", headers=host))
    assert "Bearer" in refused.value.text  # says what to send, and where the token is
    with pytest.raises(web.HTTPUnauthorized):
        gate.full(make_mocked_request("GET", "/metrics", headers={
            **host, "Authorization": "Bearer wrong"}))
    assert gate.full(make_mocked_request("GET", "/metrics", headers={
        **host, "Authorization": f"Bearer {token}"})) is True
    with pytest.raises(web.HTTPForbidden):  # DNS rebinding: another name for this listener
        gate.full(make_mocked_request("GET", "/metrics", headers={
            "Host": "evil.example:9100", "Authorization": f"Bearer {token}"}))

