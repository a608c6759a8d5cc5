"""Issue 28: a camera's error as `nvr status` shows it is words, never FFmpeg's errno number
("[Errno 1094995529] Invalid data found when processing input") nor the camera's address."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from nvr.ingest.session import error_words


def ffmpeg_error(target: str) -> BaseException:
    try:
        av.open(target, options={"rtsp_transport": "tcp", "timeout": "2000000"})
    except Exception as exc:  # noqa: BLE001 - the error is what this returns
        return exc
    raise AssertionError(f"{target} opened")


def test_invalid_data_is_said_in_words(tmp_path: Path) -> None:
    junk = tmp_path / "not-video.bin"
    junk.write_bytes(b"this is no stream at all\n" * 40)
    exc = ffmpeg_error(str(junk))
    assert "1094995529" in str(exc)  # what a person used to see
    words = error_words(exc, str(junk))
    assert "Errno" not in words and "1094995529" not in words
    assert words.startswith("the camera sent a stream FFmpeg cannot read (invalid data)")


def test_refused_connection_names_the_host_not_the_password() -> None:
    url = "rtsp://admin:hunter2@127.0.0.1:9/stream"
    exc = ffmpeg_error(url)
    words = error_words(exc, url)
    assert words == "connection refused (127.0.0.1)", words
    assert "hunter2" not in words


@pytest.mark.parametrize("text", ["plain words"])
def test_other_errors_keep_their_words(text: str) -> None:
    assert error_words(RuntimeError(text), "rtsp://h/x") == text
