"""The factory of RTSP readers: the camera map's name for one (`reader:`) → the reader.

A reader runs one session (nvr.ingest.session.SessionContext) to its end and says why it ended,
as nvr.ingest.recorder.Reader describes: the recorder's own (`nvr`: nvr.media.rtsp through the
shared read loop, nvr.ingest.own_session) and FFmpeg's (`ffmpeg`: PyAV's demuxer,
nvr.ingest.session).
"""

from __future__ import annotations

from collections.abc import Callable

from nvr.ingest.own_session import run_own_session
from nvr.ingest.session import SessionContext, SessionEnd, run_session


def by_name(name: str) -> Callable[[SessionContext], SessionEnd]:
    """The reader called `name`: `nvr` (the own) or `ffmpeg`."""
    if name == "nvr":
        return run_own_session
    if name == "ffmpeg":
        return run_session
    raise ValueError(f"no RTSP reader is called {name!r}; use nvr or ffmpeg")
