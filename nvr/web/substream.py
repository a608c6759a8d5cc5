"""Live view from a camera's `live_rtsp:` H.264 substream, for a main stream WebRTC cannot
carry (H.265, B-frames). A second RTSP session, opened only while someone watches: its own
thread (`live-<id>`) reads packets and hands them to the camera's LiveFeed, exactly as the
recorder's thread does with the main stream. Recording never depends on it.
"""

from __future__ import annotations

import threading

import av

from nvr import log
from nvr.ingest.redact import redact_text
from nvr.timeutil import sleep_unless
from nvr.web.fanout import LiveFeed

_log = log.get("nvr.web.substream")
RETRY_S = 2.0


class SubstreamReader:
    def __init__(self, feed: LiveFeed, url: str, io_timeout_s: float = 5.0) -> None:
        self.feed = feed
        self.url = url
        self.io_timeout_s = io_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._stop.clear()
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                        name=f"live-{self.feed.camera_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        # The thread notices at its next packet (or its read timeout) and closes the session.
        self._stop.set()

    def _run(self, stop: threading.Event) -> None:
        cam = self.feed.camera_id
        while not stop.is_set():
            try:
                options = {"rtsp_transport": "tcp",
                           "timeout": str(int(self.io_timeout_s * 1_000_000)),
                           "allowed_media_types": "video", "analyzeduration": "200000"}
                with av.open(self.url, options=options) as container:
                    video = container.streams.video[0]
                    cc = video.codec_context
                    _log.info("live_substream_open", camera=cam, codec=cc.name)
                    for pkt in container.demux(video):
                        if stop.is_set():
                            break
                        if pkt.size == 0:
                            continue
                        # A packet shows B-frames only when both times are known and
                        # differ: joining a camera's stream mid-GOP, FFmpeg's first packets
                        # have a pts and no dts yet, which is not a reordered picture.
                        reordered = (pkt.pts is not None and pkt.dts is not None
                                     and pkt.pts != pkt.dts)
                        self.feed.from_thread(bytes(pkt), pkt.is_keyframe, cc.extradata,
                                              cc.name, reordered)
            except Exception as exc:  # noqa: BLE001 - retried while someone watches
                _log.info("live_substream_failed", camera=cam,
                          error=redact_text(str(exc), self.url))
            sleep_unless(stop, RETRY_S)
        _log.info("live_substream_closed", camera=cam)
