"""Issue 27: a camera that asks only for Basic authentication (the password in clear) is refused
where the camera map says `auth: digest`, by either reader, and `nvr status` names the setting
that allows it; a Digest camera with the same setting records. The cameras are on 127.0.0.1,
where Basic is allowed by default (tests/ingest/test_rtsp_auth.py tests that decision)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.e2e.test_status_for_people import wait_status
from tests.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")


@pytest.fixture(scope="module")
def rec() -> Iterator[Recorder]:
    basic = TestCamera("--require-auth", "--auth-method", "basic").start()
    digest = TestCamera("--require-auth", "--auth-method", "digest").start()
    cams = [{"id": "door", "name": "Door", "area": "entrance", "auth": "digest",
             "rtsp": basic.url("h264", "camuser", "campass")},
            {"id": "dock", "name": "Dock", "area": "delivery", "auth": "digest",
             "reader": "ffmpeg", "rtsp": basic.url("h264", "camuser", "campass")},
            {"id": "desk", "name": "Desk", "area": "service_desk", "auth": "digest",
             "rtsp": digest.url("h264", "camuser", "campass")},
            {"id": "hall", "name": "Hall", "area": "hallway",  # loopback: Basic allowed
             "rtsp": basic.url("h264", "camuser", "campass")}]
    r = Recorder(cams).start()
    yield r
    r.cleanup()
    basic.stop()
    digest.stop()


@pytest.mark.parametrize("camera", ["door", "dock"])
def test_basic_only_camera_is_refused_naming_the_setting(rec: Recorder, camera: str) -> None:
    status = wait_status(rec, f"{camera} failed", lambda s: any(
        c["id"] == camera and c["state"] == "failed" for c in s["cameras"]))
    alert = next(a for a in status["alerts"] if a.get("camera") == camera)
    assert alert["message"] == (
        f"camera {camera} is not recording (failed): camera asks for Basic authentication, which "
        f"sends the password in clear, and auth: digest is set for camera {camera} in "
        f"{rec.config}; set auth: any there if this network is trusted, then `nvr reload`")


def test_digest_and_allowed_basic_still_record(rec: Recorder) -> None:
    rec.wait_for_state("recording", ["desk", "hall"])
