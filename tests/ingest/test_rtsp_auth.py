"""Issue 27: a camera that asks for Basic authentication would get the password in clear. Where
the camera map does not allow it, neither reader sends it: the own reader refuses the
challenge, FFmpeg's reader (which cannot be told to) is preceded by a probe without
credentials. Against the real GStreamer RTSP server, and a bare TCP server that records every
byte it is sent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from nvr.media.rtsp import (
    BASIC_REFUSED,
    RtspError,
    RtspSession,
    basic_auth_allowed,
    is_loopback_host,
    only_basic_offered,
)
from tests.camserver import TestCamera


@pytest.mark.parametrize(("url", "auth", "allow", "expected"), [
    ("rtsp://u:p@10.20.0.7/x", None, False, False),    # the default on a network: refused
    ("rtsp://u:p@cam.branch.lan/x", None, False, False),  # a name is not known to be local
    ("rtsp://u:p@10.20.0.7/x", None, True, True),      # allow_basic_auth: true
    ("rtsp://u:p@127.0.0.1/x", None, False, True),     # never leaves the machine
    ("rtsp://u:p@[::1]:8554/x", None, False, True),
    ("rtsp://u:p@localhost/x", None, False, True),
    ("rtsps://u:p@10.20.0.7/x", None, False, True),    # inside TLS, not in clear
    ("rtsp://u:p@127.0.0.1/x", "digest", False, False),  # auth: digest refuses it anywhere
    ("rtsp://u:p@10.20.0.7/x", "any", False, True),    # auth: any answers it anywhere
    ("rtsp://u:p@127.0.0.2/x", None, False, True),     # all of 127/8 is loopback
])
def test_when_basic_may_be_answered(url: str, auth: str | None, allow: bool,
                                    expected: bool) -> None:
    assert basic_auth_allowed(url, auth, allow) is expected


def test_loopback_is_decided_by_address_not_by_look() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1")
    assert not is_loopback_host("127.0.0.1.example.org")
    assert not is_loopback_host("192.168.1.20") and not is_loopback_host("")


@pytest.fixture(scope="module", params=["basic", "digest"])
def cam(request: pytest.FixtureRequest) -> Iterator[TestCamera]:
    c = TestCamera("--require-auth", "--auth-method", request.param).start()
    c.method = request.param  # type: ignore[attr-defined]
    yield c
    c.stop()


def test_the_own_reader_refuses_basic_and_still_answers_digest(cam: TestCamera) -> None:
    url = cam.url("h264", "camuser", "campass")
    s = RtspSession(url, 5, allow_basic=False)
    if cam.method == "basic":  # type: ignore[attr-defined]
        with pytest.raises(RtspError) as e:
            s.open()
        assert e.value.basic_refused and str(e.value) == BASIC_REFUSED
        assert only_basic_offered(url, 5)
    else:
        try:
            assert s.open().codec == "h264"
        finally:
            s.close()
        assert not only_basic_offered(url, 5)
    # Allowed, Basic is answered as before.
    s = RtspSession(url, 5, allow_basic=True)
    try:
        assert s.open().codec == "h264"
    finally:
        s.close()


def _basic_only_camera() -> tuple[int, list[bytes]]:
    """A TCP server that answers every request with a Basic-only 401 and keeps what it got."""
    srv = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(5)
            cseq = 0
            try:
                while data := conn.recv(4096):
                    got.append(data)
                    cseq += 1
                    conn.sendall(b"RTSP/1.0 401 Unauthorized\r\nCSeq: %d\r\n"
                                 b"WWW-Authenticate: Basic realm=\"cam\"\r\n\r\n" % cseq)
            except OSError:
                pass
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(srv.getsockname()[1]), got


def test_the_password_never_goes_out_when_basic_is_refused() -> None:
    port, got = _basic_only_camera()
    with pytest.raises(RtspError) as e:
        RtspSession(f"rtsp://admin:hunter2-pw@127.0.0.1:{port}/x", 3, allow_basic=False).open()
    assert e.value.basic_refused and e.value.kind == "credentials"
    sent = b"".join(got)
    assert b"DESCRIBE" in sent or b"OPTIONS" in sent
    assert b"Authorization" not in sent and b"hunter2" not in sent
