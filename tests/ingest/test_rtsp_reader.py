"""The recorder's own RTSP reader (nvr/ingest/rtsp.py + rtp.py) against the real GStreamer RTSP
server: what it reads decodes without errors, for H.264 and H.265, with and without B-frames,
with Basic and Digest credentials; refusals are classified as the FFmpeg path classifies them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import av
import pytest

from nvr.media.access_unit import annexb
from nvr.media.rtp import AccessUnit, Depacketizer
from nvr.media.rtsp import RtspError, RtspSession
from tests.camserver import TestCamera


@pytest.fixture(scope="module", params=["basic", "digest"])
def cam(request: pytest.FixtureRequest) -> Iterator[TestCamera]:
    c = TestCamera("--gop", "15", "--require-auth", "--auth-method", request.param).start()
    yield c
    c.stop()


def read_units(url: str, wanted: int = 40, deadline_s: float = 30.0
               ) -> tuple[RtspSession, list[AccessUnit], Depacketizer]:
    """Read until `wanted` access units from the first keyframe on (or fail at the deadline)."""
    s = RtspSession(url, timeout_s=5)
    track = s.open()
    d = Depacketizer(track.codec)
    units: list[AccessUnit] = []
    deadline = time.monotonic() + deadline_s
    try:
        while sum(1 for _ in _from_key(units)) < wanted:
            assert time.monotonic() < deadline, (
                f"{len(units)} access units in {deadline_s:g} s, {wanted} wanted after a keyframe")
            s.read_some(d.push_at)
            units.extend(d.ready)
            d.ready.clear()
    finally:
        s.close()
    return s, units, d


def _from_key(units: list[AccessUnit]) -> list[AccessUnit]:
    first = next((i for i, u in enumerate(units) if u.key), None)
    return [] if first is None else units[first:]


@pytest.mark.parametrize("mount", ["h264", "h264-bframes", "h265", "h265-bframes"])
def test_what_it_reads_decodes_without_errors(cam: TestCamera, mount: str) -> None:
    s, units, d = read_units(cam.url(mount, "camuser", "campass"))
    assert s.track is not None
    codec = s.track.codec
    assert codec == ("h264" if mount.startswith("h264") else "hevc")
    kept = _from_key(units)
    assert d.lost == 0 and not any(u.damaged for u in kept)
    assert sum(u.key for u in kept) >= 2, "a 1 s GOP shows a keyframe every 15 pictures"
    # Each access unit is one packet for the decoder, as the muxer will store it; the SDP's
    # parameter sets are its extradata. Every unit must come out as one picture, no errors.
    ctx = av.CodecContext.create(codec, "r")
    ctx.extradata = b"".join(b"\x00\x00\x00\x01" + p for p in s.track.params)
    frames = 0
    for u in [*kept, None]:
        for frame in ctx.decode(None if u is None else av.Packet(annexb(u.data))):
            assert frame.width > 0 and not frame.is_corrupt
            frames += 1
    assert frames == len(kept), f"{frames} pictures decoded from {len(kept)} access units"
    if "bframes" in mount:  # presentation order differs from arrival order
        ts = [u.rtp_ts for u in kept]
        assert any(b < a for a, b in zip(ts, ts[1:], strict=False)), "no B-frame reordering seen"


def test_wrong_password_is_a_credentials_refusal(cam: TestCamera) -> None:
    with pytest.raises(RtspError) as e:
        RtspSession(cam.url("h264", "camuser", "wrong"), 5).open()
    assert e.value.kind == "credentials" and "wrong" not in str(e.value)


def test_no_video_and_no_such_stream_are_named(cam: TestCamera) -> None:
    with pytest.raises(RtspError) as e:
        RtspSession(cam.url("audio-only", "camuser", "campass"), 5).open()
    assert e.value.kind == "no_video", e.value
    with pytest.raises(RtspError) as e:
        RtspSession(cam.url("nothing-here", "camuser", "campass"), 5).open()
    assert e.value.kind == "no_video" and "404" in str(e.value)


def test_a_camera_that_goes_silent_times_out_and_one_that_is_gone_is_offline() -> None:
    c = TestCamera("--gop", "15").start()
    try:
        s = RtspSession(c.url("h264-noaudio"), timeout_s=1.0)
        s.open()
        s.read_some(lambda data, start, stop: None)
        c.stop()  # the server dies: the connection closes
        with pytest.raises(RtspError) as e:
            for _ in range(1000):
                s.read_some(lambda data, start, stop: None)
        assert e.value.kind == "offline"
        s.close()
    finally:
        c.stop()
    with pytest.raises(RtspError) as e:
        RtspSession(f"rtsp://127.0.0.1:{c.port}/h264", 1.0).open()
    assert e.value.kind == "offline" and "cannot connect" in str(e.value)


def _hostile_camera(reply: bytes) -> int:
    """A real TCP server that answers the first request with `reply` and then keeps the
    connection open: a broken or hostile camera."""
    import socket
    import threading

    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(reply)
            conn.settimeout(5)
            try:
                conn.recv(4096)
            except OSError:
                pass
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(srv.getsockname()[1])


@pytest.mark.parametrize(("reply", "says"), [
    (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 99999999999\r\n\r\n", "RTSP body"),
    (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: -5\r\n\r\n", "RTSP body"),
    (b"RTSP/1.0 200 OK\r\nX: " + b"A" * 70_000, "header over 64 KB"),
    (b"HTTP/1.1 200 OK\r\n\r\n", "not RTSP"),
])
def test_a_hostile_camera_cannot_grow_memory_or_confuse_the_reader(reply: bytes,
                                                                   says: str) -> None:
    port = _hostile_camera(reply)
    with pytest.raises(RtspError) as e:
        RtspSession(f"rtsp://127.0.0.1:{port}/x", 3.0).open()
    assert e.value.kind == "protocol" and says in str(e.value), e.value


def test_urls_it_cannot_read_are_refused_without_their_secrets() -> None:
    with pytest.raises(RtspError) as e:
        RtspSession("rtsp://admin:zq/xk@127.0.0.1:554/x", 1.0)
    assert "zq" not in str(e.value) and "percent-encode" in str(e.value)
    with pytest.raises(RtspError) as e:
        RtspSession("rtsps://u:secret@127.0.0.1/x", 1.0)
    assert "reader: ffmpeg" in str(e.value) and "secret" not in str(e.value)
    assert RtspSession("rtsp://[fe80::1]:8554/x", 1.0).url == "rtsp://[fe80::1]:8554/x"


def test_digest_challenges_with_commas_and_qop_lists_are_answered() -> None:
    from nvr.media.rtsp import challenge_params, digest_header

    ch = 'Digest realm="IP Camera, Inc", nonce="abc", qop="auth-int,auth", algorithm=MD5'
    assert challenge_params(ch)["realm"] == "IP Camera, Inc"
    header = digest_header("u", "p", ch, "DESCRIBE", "rtsp://h/x", "cn", 2)
    assert 'realm="IP Camera, Inc"' in header and "qop=auth, nc=00000002" in header


def _camera_answering(status_line: bytes, headers: bytes = b"") -> int:
    """A real TCP server answering every RTSP request with the same status (CSeq echoed)."""
    import re
    import socket
    import threading

    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(5)
            try:
                while data := conn.recv(4096):
                    cseq = re.search(rb"CSeq: *(\d+)", data)
                    conn.sendall(status_line + b"\r\nCSeq: " + (cseq.group(1) if cseq else b"1")
                                 + b"\r\n" + headers + b"Content-Length: 0\r\n\r\n")
            except OSError:
                pass
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(srv.getsockname()[1])


@pytest.mark.parametrize(("status", "headers", "kind"), [
    # busy or booting: retried like an offline camera (`reader: auto` keeps the own reader)
    (b"RTSP/1.0 503 Service Unavailable", b"", "offline"),
    (b"RTSP/1.0 453 Not Enough Bandwidth", b"", "offline"),
    # a dialect the reader does not speak: `reader: auto` hands the camera to FFmpeg's
    (b"RTSP/1.0 461 Unsupported Transport", b"", "protocol"),
    (b"RTSP/1.0 401 Unauthorized",
     b'WWW-Authenticate: Digest realm="cam", nonce="n1", algorithm=MD5-sess\r\n', "protocol"),
    # a challenge it answers, refused: the password is wrong
    (b"RTSP/1.0 401 Unauthorized", b'WWW-Authenticate: Basic realm="cam"\r\n', "credentials"),
])
def test_refusals_are_told_apart(status: bytes, headers: bytes, kind: str) -> None:
    port = _camera_answering(status, headers)
    with pytest.raises(RtspError) as e:
        RtspSession(f"rtsp://u:p@127.0.0.1:{port}/x", 3.0).open()
    assert e.value.kind == kind, e.value


@pytest.mark.parametrize(("content_base", "content_location", "want"), [
    ("rtsp://10.0.0.5/stream0/", "", "rtsp://10.0.0.5/stream0/"),
    # no scheme (seen from real cameras): still an absolute rtsp:// URL
    ("192.168.1.10:554/stream0/", "", "rtsp://192.168.1.10:554/stream0/"),
    ("", "rtsp://10.0.0.5/loc/", "rtsp://10.0.0.5/loc/"),  # Content-Location next
    ("", "", "rtsp://cam.example/live"),  # then the request URL
])
def test_the_base_is_content_base_then_content_location_then_the_request_url(
        content_base: str, content_location: str, want: str) -> None:
    from nvr.media.rtsp import request_base

    assert request_base(content_base, content_location, "rtsp://cam.example/live") == want


@pytest.mark.parametrize(("base", "control", "want"), [
    ("rtsp://h:554/stream0/", "trackID=1", "rtsp://h:554/stream0/trackID=1"),
    ("rtsp://h:554/stream0", "trackID=1", "rtsp://h:554/stream0/trackID=1"),
    ("rtsp://h/stream0/", "*", "rtsp://h/stream0/"),
    ("rtsp://h/stream0/", "", "rtsp://h/stream0/"),
    ("rtsp://h/stream0/", "rtsp://other:8554/x?ch=1&track=2", "rtsp://other:8554/x?ch=1&track=2"),
    ("rtsp://h:554/stream0/", "/media/video1", "rtsp://h:554/media/video1"),
])
def test_control_urls_resolve_to_absolute_urls(base: str, control: str, want: str) -> None:
    from nvr.media.rtsp import resolve_control

    assert resolve_control(base, control) == want


def test_every_request_uri_is_absolute_with_a_content_base_without_scheme() -> None:
    # A real TCP server (tests/ingest/rtsp_relay.py) answering as such a camera does.
    from nvr.media.rtsp import VideoTrack
    from tests.ingest.rtsp_relay import Relay

    track = VideoTrack("h264", 90000, 96, "", (b"\x67\x42\xc0\x1e\xd9", b"\x68\xce\x3c\x80"))
    with Relay(content_base="127.0.0.1:{port}/stream0/", track=track) as relay:
        s = RtspSession(relay.url(), 3.0)
        s.open()
        s.close()
        assert relay.closed.wait(5)
        base = f"rtsp://127.0.0.1:{relay.port}/stream0/"
        assert relay.requests == [
            f"OPTIONS {relay.url()}", f"DESCRIBE {relay.url()}", f"SETUP {base}trackID=1",
            f"PLAY {base}", f"TEARDOWN {base}",  # the aggregate control URL, not the URL given
        ]
