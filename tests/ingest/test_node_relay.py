"""The recorder behind a relay we did not write: rtsp-streaming-server (npm, GPL-3.0; tools/setup.sh
installs the version tests/relay-node/package-lock.json pins into .venv/node). Cameras publish
to it (ANNOUNCE/RECORD: here ffmpeg, as a camera pushing its stream), recorders read from it,
RTP over UDP only (a SETUP for interleaved TCP: 461), with the publisher's RTCP sender reports
passed on. Its camera goes away and comes back while the recorder reads: the relay keeps the
session open and sends nothing, so the recorder must tell, reconnect, and record the new stream.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nvr.ingest.recorder import CameraRecorder
from nvr.storage.index import Index
from tests.ingest.recording_helpers import make_recorder, wait_for
from tests.ingest.servers import b_frame_clips, free_port
from tests.ingest.test_own_reader import _xerror_clean
from tests.ingest.test_vlc_server import WrittenSink
from tests.support import remove_tree, shared_tmpdir

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / ".venv" / "node" / "node_modules"


@pytest.fixture(scope="module")
def clips() -> Iterator[dict[str, Path]]:
    folder = shared_tmpdir("nvrtest-relay-")
    yield b_frame_clips(folder, 10)
    remove_tree(folder)


class NodeRelay:
    def __init__(self) -> None:
        assert (MODULES / "rtsp-streaming-server").is_dir(), "run tools/setup.sh"
        self.publish, self.client = free_port(), free_port()
        rtp = random.randrange(20000, 50000, 2)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["node", str(REPO / "tests" / "relay-node" / "server.js"), str(self.publish),
             str(self.client), str(rtp)],
            env={**os.environ, "NVR_NODE_MODULES": str(MODULES)},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"READY":
            self.log.seek(0)
            raise AssertionError(f"relay did not start: {self.log.read()[-500:]!r}")
        self.cameras: dict[str, subprocess.Popen[bytes]] = {}

    def camera(self, name: str, clip: Path) -> None:
        """A camera publishing `clip` in a loop to the relay's `name`."""
        self.cameras[name] = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
             "-f", "rtsp", "-rtsp_transport", "udp",
             f"rtsp://127.0.0.1:{self.publish}/{name}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)

    def camera_gone(self, name: str) -> None:
        """The camera stops its stream (TEARDOWN: killed outright, it leaves the relay holding
        its path, and a camera that comes back is refused until the relay lets go)."""
        proc = self.cameras.pop(name)
        proc.terminate()
        proc.wait(10)

    def published(self, name: str) -> bool:
        """Whether the relay serves `name` now (DESCRIBE answers 200)."""
        try:
            with socket.create_connection(("127.0.0.1", self.client), timeout=2) as s:
                s.sendall(f"DESCRIBE {self.url(name)} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
                return s.recv(64).startswith(b"RTSP/1.0 200")
        except OSError:
            return False

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.client}/{name}"

    def stop(self) -> None:
        for name in list(self.cameras):
            self.camera_gone(name)
        self.proc.kill()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


async def test_a_relay_over_udp_whose_camera_goes_away_and_comes_back(
        tmp_path: Path, index: Index, clips: dict[str, Path]) -> None:
    relay = await asyncio.to_thread(NodeRelay)
    sink = WrittenSink(index)
    recs: dict[str, CameraRecorder] = {}
    try:
        for codec, clip in clips.items():
            relay.camera(codec, clip)
        await wait_for(lambda: all(relay.published(c) for c in clips), within_s=20)
        recs = {codec: make_recorder(f"relay-{codec}", relay.url(codec), tmp_path, sink,
                                     segment_seconds=1.0, reader="auto")
                for codec in clips}
        for rec in recs.values():
            rec.start()

        def segments(cam: str, after_us: int = 0) -> int:
            return sum(s.camera == cam and s.start_us >= after_us for s, _ in sink.written)

        await wait_for(lambda: all(segments(f"relay-{c}") >= 3 for c in clips), within_s=30)
        gone_us = int(time.time() * 1e6)
        relay.camera_gone("h264")
        await asyncio.sleep(2)  # the camera stays away a while (what is tested is the time)
        relay.camera("h264", clips["h264"])
        await wait_for(lambda: segments("relay-h264", gone_us) >= 3, within_s=40)
        status = {c: r.status() for c, r in recs.items()}
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
        await asyncio.to_thread(relay.stop)
    for st in status.values():
        assert st["reader"] == "nvr" and st["transport"] == "udp", st
        assert st["transport_reason"] == "the camera refuses RTP over TCP", st
        assert st["clock_offset_s"] is None or abs(st["clock_offset_s"]) < 1.0, st
    # The relay said nothing when its camera went: the read timeout told it, once.
    assert [(g.camera, g.detail.split(":")[0]) for g in sink.gaps] == [
        ("relay-h264", "camera stopped answering")], sink.gaps
    assert (sink.gaps[0].end_us - sink.gaps[0].start_us) / 1e6 < 15, sink.gaps
    for seg, written in sink.written:
        assert seg.end_us / 1e6 <= written, f"{seg.path} ends after it was written"
    for codec in clips:
        segs = await index.segments(f"relay-{codec}")
        assert len(segs) >= 3
        for seg in segs:
            _xerror_clean(Path(seg.path))
