"""Issue 28: every failure shows its cause where people look, with the fix — against the real
daemon, socket and test camera: the viewing pages' port taken (an ALERT in `nvr status`, and
`nvr live`'s refusal says the port and `live.listen`), a wrong camera password (the setting
to fix and `nvr reload`), and a camera's error in words, never an FFmpeg errno number."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.e2e.test_status_for_people import wait_status
from tests.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")


@pytest.fixture(scope="module")
def taken() -> Iterator[int]:
    """A port something else listens on, as another program would hold 8443."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def rec(testcam: TestCamera, taken: int) -> Iterator[Recorder]:
    locked = TestCamera("--require-auth", "--user", "u", "--password", "s3cret-pw").start()
    cams = [{"id": "lobby", "name": "Lobby", "area": "public_seating",
             "rtsp": testcam.url("h264")},
            {"id": "door", "name": "Door", "area": "entrance",
             "rtsp": locked.url("h264", "u", "wrong-pw")},
            # Not RTSP video at all: FFmpeg's reader opens it and finds nothing it can read.
            {"id": "junk", "name": "Junk", "area": "stacks", "reader": "ffmpeg",
             "rtsp": "rtsp://127.0.0.1:9/none"}]
    r = Recorder(cams, extra=f"live:\n  listen: 127.0.0.1:{taken}\n").start()
    yield r
    r.cleanup()
    locked.stop()


def test_a_taken_web_port_is_an_alert_and_live_says_why(rec: Recorder, taken: int) -> None:
    status = wait_status(rec, "the web alert", lambda s: any(
        a["kind"] == "web_unavailable" for a in s.get("alerts", [])))
    alert = next(a for a in status["alerts"] if a["kind"] == "web_unavailable")
    assert f"127.0.0.1:{taken}" in alert["message"] and "address already in use" in alert["message"]
    assert f"live.listen to another address in {rec.config}" in alert["message"]
    shown = rec.cli("director", "status")
    assert shown.code == 0 and "web_unavailable" in shown.out, shown.out  # piped: its kind
    res = rec.cli("director", "live", "--camera", "lobby", "--reason", "check the lobby")
    assert res.code == 69, res.err
    assert res.err.count("\n") == 1 and f"127.0.0.1:{taken}" in res.err
    assert "address already in use" in res.err and "live.listen" in res.err, res.err


def test_a_wrong_password_names_the_setting_and_reload(rec: Recorder) -> None:
    status = wait_status(rec, "door failed", lambda s: any(
        c["id"] == "door" and c["state"] == "failed" for c in s["cameras"]))
    alert = next(a for a in status["alerts"] if a.get("camera") == "door")
    assert alert["message"] == (
        "camera door is not recording (failed): credentials refused by camera: check the user "
        f"and password in cameras[1].rtsp of {rec.config}, then `nvr reload`")
    # As shown to the person who reached the daemon with --socket: the fix works as printed.
    shown = rec.cli("director", "status")
    assert f"then `nvr reload --socket {rec.socket}`" in shown.out, shown.out


def test_a_camera_error_is_words_not_an_errno(rec: Recorder) -> None:
    status = wait_status(rec, "junk's error", lambda s: any(
        c["id"] == "junk" and c["last_error"] for c in s["cameras"]))
    junk = next(c for c in status["cameras"] if c["id"] == "junk")
    assert "Errno" not in junk["last_error"], junk["last_error"]
    assert junk["last_error"] == "camera unreachable: connection refused (127.0.0.1)"


def test_each_camera_state_is_logged_once(rec: Recorder) -> None:
    wait_status(rec, "door failed", lambda s: any(
        c["id"] == "door" and c["state"] == "failed" for c in s["cameras"]))
    lines = [json.loads(line) for line in rec.daemon.logs().splitlines()
             if '"camera_state"' in line]
    door = [(x["state"], x["reason"]) for x in lines if x.get("camera") == "door"]
    assert door.count(("connecting", "")) == 1, door
