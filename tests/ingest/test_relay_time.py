"""The own reader behind a relay that sends seconds of buffered video at once when it connects
(tests/ingest/rtsp_relay.py, in front of the real GStreamer camera): footage is stamped when it
was captured, never in the future (docs/time.md, "The anchor")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nvr.storage.index import Index, NewSegment
from tests.camserver import TestCamera
from tests.ingest.recording_helpers import (
    IndexSink,
    ffprobe,
    make_recorder,
    record_through_stepping_relay,
    wait_for,
)
from tests.ingest.rtsp_relay import Relay

BUFFERED_S = 5.0


class _WhenWritten(IndexSink):
    """The index as the sink, and the box's clock when each row was handed over."""

    def __init__(self, index: Index) -> None:
        super().__init__(index)
        self.written_at: list[tuple[NewSegment, int]] = []

    async def segment_closed(self, seg: NewSegment) -> None:
        self.written_at.append((seg, time.time_ns() // 1000))
        await super().segment_closed(seg)


@pytest.mark.slow
async def test_buffered_video_from_a_relay_is_stamped_when_captured_not_in_the_future(
        testcam: TestCamera, tmp_path: Path, index: Index) -> None:
    with Relay(testcam.url("h264-noaudio")) as relay:
        relay.wait_buffered(BUFFERED_S)
        first_at_relay_us = time.time_ns() // 1000 - round(relay.buffered_s() * 1e6)
        sink = _WhenWritten(index)
        rec = make_recorder("door", relay.url(), tmp_path, sink, reader="nvr")
        rec.start()
        try:
            await wait_for(lambda: len(sink.written_at) >= 3, within_s=40)
            status = rec.status()
        finally:
            await rec.stop()
    assert relay.burst_packets > 0
    assert status["state"] == "recording" and status["anchor_delay_s"] is not None
    assert 0 <= status["anchor_delay_s"] < 1.0, status
    rows = sink.written_at
    for seg, at in rows:
        assert seg.end_us <= at, f"{Path(seg.path).name} ends {(seg.end_us - at) / 1e6:.2f} s " \
                                 "after it was written"
        assert len(ffprobe(Path(seg.path))["packets"]) == seg.frames
    # The first frame recorded is the first keyframe the relay had kept: captured at most a GOP
    # (1 s) after its first packet, and BUFFERED_S before the reader connected.
    first = rows[0][0]
    assert -0.3 <= (first.start_us - first_at_relay_us) / 1e6 <= 1.3, \
        (first.start_us - first_at_relay_us) / 1e6
    segs = await index.segments("door")
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.end_us == b.start_us


@pytest.mark.slow
async def test_steps_of_a_relays_rtp_clock_mid_gop_lose_no_frame(
        testcam: TestCamera, tmp_path: Path, index: Index) -> None:
    # The relay steps its RTP clock by +0.5 s after 3 s and by -0.8 s after 6 s, mid-GOP, on a
    # B-pyramid stream: every segment keeps decode order (dts rising) and every picture decodes.
    # Both steps are told from the GOP's pattern of pts changes (docs/time.md).
    from tests.ingest.test_own_reader import _decode_all

    status = await record_through_stepping_relay(testcam.url("h264-bframes"), tmp_path, index,
                                                 [(3.0, 45000), (6.0, -72000)])
    assert status["timestamp_steps"] == 2 and status["errors"] == 0, status
    segs = await index.segments("stacks")
    assert len(segs) >= 4
    for s in segs:
        packets = ffprobe(Path(s.path))["packets"]
        assert len(packets) == s.frames and packets[0]["flags"].startswith("K")
        dts = [int(p["dts"]) for p in packets]
        assert dts == sorted(dts) and len(set(dts)) == len(dts), f"{s.path}: dts rise"
        assert all(int(p["pts"]) >= int(p["dts"]) for p in packets), "none shows before it decodes"
        assert _decode_all(Path(s.path)) == s.frames, s.path
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.end_us == b.start_us
    # Every frame is there: as many as the wall clock's span holds (none of the 12 frames the
    # backward step would drop unrepaired, no 0.5 s freeze at the forward one).
    wall_s = (segs[-1].end_us - segs[0].start_us) / 1e6
    assert abs(sum(s.frames for s in segs) / 15 - wall_s) <= 1.0, wall_s
