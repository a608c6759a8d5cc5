"""The recorder against an RTSP server we did not write: VLC's (Debian's vlc-bin, tools/setup.sh
installs it). VLC serves RTP over UDP only (a SETUP for interleaved TCP gets 461), and when the
file it serves in a loop ends, it sends an RTCP BYE and nothing more on that session: a new
session gets the next loop. So it checks, with someone else's RTSP, SDP, RTP packetizers (H.264
with B-frames, H.265) and RTCP: the fall-back to UDP and the reason in status, a session ended by
BYE reconnected at once, every segment decoding silently, and none ending after it was written.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nvr.ingest.recorder import CameraRecorder
from nvr.storage.index import Index, NewSegment
from tests.ingest.recording_helpers import IndexSink, make_recorder, wait_for
from tests.ingest.servers import b_frame_clips, free_port, stop_process, wait_listening
from tests.ingest.test_own_reader import _xerror_clean
from tests.support import is_root, remove_tree, shared_tmpdir

LOOP_S = 6  # the served file's length: one BYE every LOOP_S seconds of a session

@pytest.fixture(scope="module")
def clips() -> Iterator[dict[str, Path]]:
    """Two short files VLC can read as any account: H.264 with B-frames, and H.265."""
    folder = shared_tmpdir("nvrtest-vlc-")
    yield b_frame_clips(folder, LOOP_S)
    remove_tree(folder)


class VlcServer:
    """`cvlc` serving one file in a loop at rtsp://127.0.0.1:PORT/cam. VLC refuses to run as
    root, so as root it runs as nobody."""

    def __init__(self, clip: Path) -> None:
        self.port = free_port()
        # Its messages go to a file: a pipe nobody reads would fill and stop it.
        self.log = tempfile.TemporaryFile()
        drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                "--reset-env"] if is_root() else []
        self.proc = subprocess.Popen(
            [*drop, "cvlc", "-q", "--no-audio", str(clip), "--loop", "--sout-keep",
             "--sout", f"#rtp{{sdp=rtsp://127.0.0.1:{self.port}/cam}}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        wait_listening(self.proc, self.port, self.log, "VLC")

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class WrittenSink(IndexSink):
    """The index sink, also keeping when each segment was handed over (written and synced)."""

    def __init__(self, index: Index) -> None:
        super().__init__(index)
        self.written: list[tuple[NewSegment, float]] = []

    async def segment_closed(self, seg: NewSegment) -> None:
        self.written.append((seg, time.time()))
        await super().segment_closed(seg)


async def test_vlc_rtsp_server_records_over_udp_and_reconnects_at_its_bye(
        tmp_path: Path, index: Index, clips: dict[str, Path]) -> None:
    servers = {codec: await asyncio.to_thread(VlcServer, clip) for codec, clip in clips.items()}
    sink = WrittenSink(index)
    recs: dict[str, CameraRecorder] = {
        codec: make_recorder(f"vlc-{codec}", srv.url, tmp_path, sink, segment_seconds=1.0,
                             reader="auto")
        for codec, srv in servers.items()}
    for rec in recs.values():
        rec.start()
    try:
        # Through one BYE each (a loop's end), and two segments recorded after it.
        def through_a_bye(cam: str) -> bool:
            bye = [g for g in sink.gaps if g.camera == cam and "RTCP BYE" in g.detail]
            return bool(bye) and sum(s.camera == cam and s.start_us >= bye[0].end_us
                                     for s, _ in sink.written) >= 2
        await wait_for(lambda: all(through_a_bye(f"vlc-{c}") for c in servers),
                       within_s=LOOP_S + 30)
        status = {c: r.status() for c, r in recs.items()}
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
        for srv in servers.values():
            await asyncio.to_thread(srv.stop)
    for st in status.values():
        assert st["reader"] == "nvr" and st["transport"] == "udp", st
        # The reason stays in sight after the BYE's (the last error now).
        assert st["transport_reason"] == "the camera refuses RTP over TCP", st
        # The BYE, or what VLC answers a request between two loops (404, 500): said in words.
        assert st["last_error"] and "Errno" not in st["last_error"], st
        # VLC's clock is the box's; its reports for SSRC 0 at RTP time 0 are not believed
        # (they said 4 hours behind). A session may be over before its first report.
        assert st["clock_offset_s"] is None or abs(st["clock_offset_s"]) < 1.0, st
    for gap in sink.gaps:
        # Every session ended by a BYE, none by the read timeout; each back within seconds
        # (the back-off, perhaps a 404 between loops, VLC's start, a keyframe).
        assert gap.detail == "the camera ended the stream (RTCP BYE)", gap
        assert (gap.end_us - gap.start_us) / 1e6 < 6.0, gap
    for seg, written in sink.written:
        assert seg.end_us / 1e6 <= written, f"{seg.path} ends after it was written"
    for codec in servers:
        segs = await index.segments(f"vlc-{codec}")
        assert len(segs) >= 4, segs
        for seg in segs:
            _xerror_clean(Path(seg.path))
