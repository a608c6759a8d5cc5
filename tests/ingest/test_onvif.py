"""ONVIF stream-URI resolution against the ONVIF test double, ending at the real RTSP camera."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import av
import pytest

from nvr.config.model import OnvifConfig
from nvr.ingest.onvif import OnvifError, OnvifUriCache, resolve_stream_uri, with_credentials
from tests.camserver import TestCamera
from tests.onvif_double import OnvifDouble, Profile

USER, PASSWORD = "nvr", "s3cret"
AV_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}


@pytest.fixture
def authcam(testcam_factory: type[TestCamera]) -> TestCamera:
    return testcam_factory("--require-auth", "--user", USER, "--password", PASSWORD).start()


@pytest.fixture
async def double(authcam: TestCamera) -> AsyncIterator[OnvifDouble]:
    profiles = [Profile("main", "MainStream", authcam.url("h264")),
                Profile("sub", "SubStream", authcam.url("h264-noaudio"))]
    async with OnvifDouble(USER, PASSWORD, profiles) as d:
        yield d


@pytest.fixture
async def offline_double() -> AsyncIterator[OnvifDouble]:
    """For tests that never open the stream: no RTSP server needed."""
    profiles = [Profile("main", "MainStream", "rtsp://127.0.0.1:9/h264"),
                Profile("sub", "SubStream", "rtsp://127.0.0.1:9/sub")]
    async with OnvifDouble(USER, PASSWORD, profiles) as d:
        yield d


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers, like a hung camera."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def config(d: OnvifDouble, **over: object) -> OnvifConfig:
    fields: dict[str, object] = {"host": d.host, "port": d.port, "username": USER,
                                 "password": PASSWORD}
    return OnvifConfig.model_validate(fields | over)


def first_keyframe(url: str) -> tuple[str, int]:
    with av.open(url, options=AV_OPTIONS) as c:
        video = c.streams.video[0]
        for n, pkt in enumerate(c.demux(video)):
            if pkt.size and pkt.is_keyframe:
                return video.codec_context.name, video.codec_context.width
            assert n < 60, "no keyframe in 60 packets (GOP is 15)"
    raise AssertionError("stream ended without a keyframe")


async def test_resolved_uri_plays_from_the_real_camera(
    double: OnvifDouble, authcam: TestCamera
) -> None:
    uri = await resolve_stream_uri(config(double))
    assert uri == authcam.url("h264", USER, PASSWORD)
    assert double.calls[-2:] == ["GetProfiles", "GetStreamUri"]
    assert double.stream_setups == [("RTP-Unicast", "RTSP")]
    # The credentials really matter: the camera refuses the bare URI.
    with pytest.raises(av.error.HTTPUnauthorizedError):
        await asyncio.to_thread(av.open, authcam.url("h264"), options=AV_OPTIONS)
    assert await asyncio.to_thread(first_keyframe, uri) == ("h264", 640)


async def test_profile_index_chooses_the_stream(double: OnvifDouble, authcam: TestCamera) -> None:
    uri = await resolve_stream_uri(config(double, profile=1))
    assert uri == authcam.url("h264-noaudio", USER, PASSWORD)


async def test_password_with_reserved_characters_is_percent_encoded(
    testcam_factory: type[TestCamera],
) -> None:
    password = "p@ss:w/rd#1 %"
    cam = testcam_factory("--require-auth", "--user", USER, "--password", password).start()
    async with OnvifDouble(USER, password, [Profile("m", "Main", cam.url("h264"))]) as d:
        uri = await resolve_stream_uri(config(d, password=password))
    assert "p%40ss%3Aw%2Frd%231%20%25@" in uri
    assert await asyncio.to_thread(first_keyframe, uri) == ("h264", 640)


async def test_wrong_password_is_refused_without_leaking_it(offline_double: OnvifDouble) -> None:
    wrong = "hunter2-wrong"
    with pytest.raises(OnvifError) as err:
        await resolve_stream_uri(config(offline_double, password=wrong))
    message = str(err.value)
    assert f"{offline_double.host}:{offline_double.port}" in message
    assert "refused" in message and "NotAuthorized" in message
    assert wrong not in message and PASSWORD not in message
    assert "\n" not in message
    assert "GetStreamUri" not in offline_double.calls


async def test_wrong_password_with_http_401(offline_double: OnvifDouble) -> None:
    offline_double.auth_status = 401  # what many devices answer instead of ONVIF's 400
    with pytest.raises(OnvifError, match="refused"):
        await resolve_stream_uri(config(offline_double, password="nope"))


async def test_profile_index_out_of_range(offline_double: OnvifDouble) -> None:
    with pytest.raises(OnvifError, match=r"no profile index 5: camera has 2 profiles"):
        await resolve_stream_uri(config(offline_double, profile=5))


async def test_camera_clock_far_off_still_authenticates(offline_double: OnvifDouble) -> None:
    # The double refuses a Created time 5 min from its clock; the client must sync first.
    offline_double.clock_offset = timedelta(hours=-3)
    assert await resolve_stream_uri(config(offline_double)) == "rtsp://nvr:s3cret@127.0.0.1:9/h264"
    assert offline_double.calls[0] == "GetSystemDateAndTime"


async def test_older_device_without_get_services(offline_double: OnvifDouble) -> None:
    offline_double.get_services = False
    assert await resolve_stream_uri(config(offline_double)) == "rtsp://nvr:s3cret@127.0.0.1:9/h264"
    assert "GetCapabilities" in offline_double.calls


async def test_device_without_media_service(offline_double: OnvifDouble) -> None:
    offline_double.media = False
    with pytest.raises(OnvifError, match=r"127\.0\.0\.1:\d+ has no media service"):
        await resolve_stream_uri(config(offline_double))


async def test_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = OnvifConfig(host="127.0.0.1", port=port, username=USER, password=PASSWORD)
    with pytest.raises(OnvifError, match=rf"127\.0\.0\.1:{port} unreachable: Connection refused"):
        await resolve_stream_uri(cfg, timeout=5)


async def test_hung_camera_fails_within_the_timeout(silent_port: int) -> None:
    cfg = OnvifConfig(host="127.0.0.1", port=silent_port, username=USER, password=PASSWORD)
    started = time.monotonic()
    with pytest.raises(OnvifError, match=r"unreachable: no answer within 1\.5 s"):
        await resolve_stream_uri(cfg, timeout=1.5)
    assert time.monotonic() - started < 3.0


async def test_cache_picks_up_a_new_uri_only_when_forced(offline_double: OnvifDouble) -> None:
    cache = OnvifUriCache(config(offline_double))
    first = await cache.get()
    assert first == "rtsp://nvr:s3cret@127.0.0.1:9/h264"
    offline_double.set_uri("main", "rtsp://127.0.0.1:9/after-reboot")  # camera rebooted
    asked = len(offline_double.calls)
    assert await cache.get() == first
    assert len(offline_double.calls) == asked  # an unforced get does not ask the camera
    assert await cache.get(force_refresh=True) == "rtsp://nvr:s3cret@127.0.0.1:9/after-reboot"


async def test_failed_refresh_keeps_the_old_uri(offline_double: OnvifDouble) -> None:
    cache = OnvifUriCache(config(offline_double))
    first = await cache.get()
    offline_double.password = "changed-on-camera"
    with pytest.raises(OnvifError, match="refused"):
        await cache.get(force_refresh=True)
    assert await cache.get() == first


async def test_no_unclosed_sessions(offline_double: OnvifDouble) -> None:
    # Collect what earlier tests left behind first, so only this test's leaks are counted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await resolve_stream_uri(config(offline_double))
        with pytest.raises(OnvifError):
            await resolve_stream_uri(config(offline_double, password="bad"))
        with pytest.raises(OnvifError):
            await resolve_stream_uri(config(offline_double, profile=9))
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_missing_password_is_a_clear_error() -> None:
    cfg = OnvifConfig(host="cam1.local", username=USER)
    with pytest.raises(OnvifError, match=r"cam1\.local:80: no password configured for user 'nvr'"):
        await resolve_stream_uri(cfg)


def test_with_credentials_keeps_existing_userinfo() -> None:
    assert with_credentials("rtsp://cam:pw@h/x", "nvr", "s") == "rtsp://cam:pw@h/x"
    assert with_credentials("rtsp://h:554/x?a=1", "n v", None) == "rtsp://n%20v@h:554/x?a=1"
    assert with_credentials("rtsp://[fe80::1]/x", "u", "p") == "rtsp://u:p@[fe80::1]/x"


async def test_credentials_only_go_to_the_configured_host(offline_double: OnvifDouble) -> None:
    """Issue 10: the GetStreamUri answer is unauthenticated; a URI naming another host must not
    receive the camera's password."""
    offline_double.set_uri("main", "rtsp://203.0.113.9:554/steal")
    with pytest.raises(OnvifError, match=r"named a stream on another host \(203\.0\.113\.9\)") as e:
        await resolve_stream_uri(config(offline_double))
    assert PASSWORD not in str(e.value)
    # An address the configured host name resolves to is the same host.
    offline_double.set_uri("main", "rtsp://127.0.0.1:9/h264")
    uri = await resolve_stream_uri(config(offline_double, host="localhost"))
    assert uri.startswith("rtsp://nvr:") and "@127.0.0.1:9/" in uri
