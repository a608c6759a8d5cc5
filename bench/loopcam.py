#!/usr/bin/python3
"""A benchmark camera that does not encode: pre-encoded streams served looped over RTSP.

Runs under Debian's /usr/bin/python3 (python3-gi does not import in a venv). bench/camsource.py
prepares the streams once (ffmpeg, then an Annex-B file and a frame index per stream in a cache
folder); this server reads each into memory and, per mount, one thread pushes the access units
into an appsrc at their decode time, looping with timestamps that keep increasing (loop k adds
k x the loop's length), so a client sees one endless stream with B-frames reordered exactly as
encoded. No decoding, no encoding: the server's own CPU stays small and is the same for any
number of clients (every mount is a shared media: one pipeline, many clients).

    /usr/bin/python3 bench/loopcam.py --cache ~/.cache/nvr-bench [--port 0]

Mounts: one per `<name>.es` + `<name>.json` in the cache (e.g. /h264, /h264-bframes, /h265).
Prints `READY <port>` once it accepts connections.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

NONE = Gst.CLOCK_TIME_NONE


class Stream:
    def __init__(self, es: Path, index: Path) -> None:
        meta: dict[str, Any] = json.loads(index.read_text())
        self.codec: str = meta["codec"]
        self.data = es.read_bytes()
        # [offset, size, pts_ns, dts_ns, key], decode order; times relative to the first dts.
        self.frames: list[list[int]] = meta["frames"]
        self.loop_ns: int = meta["loop_ns"]

    def launch(self) -> str:
        caps = f"video/x-{self.codec},stream-format=byte-stream,alignment=au"
        parse, pay = ("h264parse", "rtph264pay") if self.codec == "h264" else ("h265parse", "rtph265pay")
        return (f"( appsrc name=src is-live=true format=time do-timestamp=false caps={caps} ! "
                f"{parse} ! {pay} name=pay0 pt=96 config-interval=-1 )")


def feed(stream: Stream, src: Gst.Element, stop: threading.Event) -> None:
    """Push access units at their decode time (paced on the pipeline's running time)."""
    base = NONE
    k = i = 0
    n = len(stream.frames)
    while not stop.is_set():
        now = src.get_current_running_time()
        if now == NONE:  # not playing yet (or any more)
            base = NONE
            time.sleep(0.02)
            continue
        if base == NONE:
            base, k, i = now, 0, 0  # a fresh start: from the first keyframe
        off, size, pts, dts, key = stream.frames[i]
        shift = base + k * stream.loop_ns
        due = shift + dts
        if due > now:
            time.sleep(min((due - now) / 1e9, 0.1))
            continue
        buf = Gst.Buffer.new_wrapped(stream.data[off:off + size])
        buf.pts, buf.dts = shift + pts, due
        if not key:
            buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
            base = NONE
            time.sleep(0.05)
            continue
        i += 1
        if i == n:
            i, k = 0, k + 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--address", default="127.0.0.1")
    a = p.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(a.address)
    server.set_service(str(a.port))
    mounts = server.get_mount_points()
    stop = threading.Event()
    for index in sorted(a.cache.glob("*.json")):
        stream = Stream(index.with_suffix(".es"), index)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(stream.launch())
        factory.set_shared(True)

        def configured(_f: Any, media: Any, stream: Stream = stream) -> None:
            src = media.get_element().get_by_name("src")
            done = threading.Event()
            media.connect("unprepared", lambda *_: done.set())
            t = threading.Thread(target=feed, args=(stream, src, done), daemon=True)
            t.start()

        factory.connect("media-configure", configured)
        mounts.add_factory("/" + index.stem, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {a.address}:{a.port}", file=sys.stderr)
        return 1
    print(f"READY {server.get_bound_port()}", flush=True)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
