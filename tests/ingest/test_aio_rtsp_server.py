"""The recorder against another RTSP server we did not write: aio-rtsp-toolkit's file server
(PyPI, Apache-2.0; a test dependency). It serves RTP over interleaved TCP, with RTCP sender
reports, a file in a loop; and it stamps each frame with the time it sends it at, rising, not
with the frame's presentation time (RFC 6184 5.1): a B-frame comes stamped after the P-frame it
shows before. Taken as they came, every segment of a stream with B-frames showed frames out of
order (`ffmpeg -xerror`: "non monotonically increasing dts"; FFmpeg's own RTSP reader records it
so too). The recorder now takes the display order from the pictures' POC
(nvr.ingest.display_order); this records an H.264 B-pyramid with an audio track beside it, and
an H.265 stream, through the file's loop, and checks every segment as a user would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from structlog.testing import capture_logs

from nvr.ingest.recorder import CameraRecorder
from nvr.storage.index import Index
from tests.ingest.recording_helpers import make_recorder, wait_for
from tests.ingest.servers import free_port, stop_process, wait_listening
from tests.ingest.test_own_reader import _xerror_clean
from tests.ingest.test_vlc_server import WrittenSink
from tests.support import remove_tree, shared_tmpdir

LOOP_S = 4  # the served files' length: the loop is crossed within the test


@pytest.fixture(scope="module")
def media() -> Iterator[Path]:
    """H.264 with a B-pyramid and an AAC track beside it; H.265 with B-frames."""
    folder = shared_tmpdir("nvrtest-aiortsp-")
    lavfi = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *lavfi, "-f", "lavfi", "-i",
                    "sine=f=440", "-t", str(LOOP_S), "-c:v", "libx264", "-bf", "3", "-x264-params",
                    "b-pyramid=normal", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(folder / "h264.mp4")], check=True, timeout=60)
    subprocess.run(["ffmpeg", "-v", "error", "-y", *lavfi, "-t", str(LOOP_S), "-c:v", "libx265",
                    "-x265-params", "log-level=error:keyint=25:bframes=3:b-pyramid=1",
                    "-pix_fmt", "yuv420p", str(folder / "hevc.mp4")], check=True, timeout=60)
    yield folder
    remove_tree(folder)


class AioRtspServer:
    """`rtsp-server` (from the venv) publishing `folder`; its messages go to a file."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        server = Path(sys.executable).parent / "rtsp-server"
        self.proc = subprocess.Popen(
            [str(server), "--dir", str(folder), "--host", "127.0.0.1", "--port", str(self.port),
             "--control-port", str(free_port())],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        wait_listening(self.proc, self.port, self.log, "rtsp-server")

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}?play_count=0"

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def shows_in_order(path: Path) -> tuple[int, bool]:
    """(frames, whether the file has B-frames): every packet decodes to a frame, the frames
    come out with rising times, and none has an audio stream beside it. Leading pictures of an
    open GOP (x265's CRA: shown before the keyframe, they refer to the GOP before it, in the
    segment before) do not decode on their own; any such decoder skips them."""
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["video"], f"{path.name}: {c.streams}"
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        reordered = any(a.pts is not None and b.pts is not None and b.pts < a.pts
                        for a, b in zip(packets, packets[1:], strict=False))
        shown = [f.pts for p in packets for f in p.decode()]
        shown += [f.pts for f in c.streams.video[0].codec_context.decode(None)]
    leading = sum(p.pts is not None and p.pts < packets[0].pts for p in packets)
    assert len(shown) == len(packets) - leading, f"{path.name}: {len(shown)} of {len(packets)}"
    assert all(b is not None and a is not None and b > a
               for a, b in zip(shown, shown[1:], strict=False)), f"{path.name}: {shown}"
    return len(shown), reordered


async def test_a_server_that_stamps_in_decode_order_records_in_display_order(
        tmp_path: Path, index: Index, media: Path) -> None:
    server = await asyncio.to_thread(AioRtspServer, media)
    sink = WrittenSink(index)
    recs: dict[str, CameraRecorder] = {
        name: make_recorder(f"aio-{name}", server.url(f"{name}.mp4"), tmp_path, sink,
                            segment_seconds=1.0, reader="auto")
        for name in ("h264", "hevc")}
    try:
        with capture_logs() as logs:
            for rec in recs.values():
                rec.start()
            # Through the file's end into its next loop, twice over.
            await wait_for(lambda: all(
                sum(s.camera == f"aio-{n}" for s, _ in sink.written) >= 2 * LOOP_S + 2
                for n in recs), within_s=4 * LOOP_S + 30)
            status = {n: r.status() for n, r in recs.items()}
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
        await asyncio.to_thread(server.stop)
    for st in status.values():
        assert st["reader"] == "nvr" and st["transport"] == "tcp", st
        assert st["timestamp_steps"] == 0, st
        # Its sender reports give its clock (the box's) against the frames' RTP times.
        assert st["clock_offset_s"] is None or abs(st["clock_offset_s"]) < 1.0, st
    assert not sink.gaps, sink.gaps  # one session each, the loop crossed without a break
    for seg, written in sink.written:
        assert seg.end_us / 1e6 <= written, f"{seg.path} ends after it was written"
    for name in recs:
        segs = await index.segments(f"aio-{name}")
        for n, seg in enumerate(segs):
            _xerror_clean(Path(seg.path))
            frames, has_b = shows_in_order(Path(seg.path))
            if n < len(segs) - 1:  # the last was cut short by the stop
                assert frames >= 20 and has_b, (seg.path, frames, "B-frames kept, in order")
    told = {e.get("camera") for e in logs if e["event"] == "timestamps_in_decode_order"}
    assert told == {"aio-h264", "aio-hevc"}, told
