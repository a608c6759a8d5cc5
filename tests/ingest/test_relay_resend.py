"""The own reader behind a relay that sends its whole buffer again at every connection
(tests/ingest/rtsp_relay.py): after a dropped connection the video re-sent is not recorded a
second time, and what is recorded is stamped when it was captured (docs/time.md, "The anchor",
8). The test camera's `timecode` mount burns each frame's capture time into its picture."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from nvr.storage.index import Index
from tests.camserver import TestCamera, recorder_ahead_of_camera_ms
from tests.ingest.recording_helpers import IndexSink, ffprobe, make_recorder, wait_for
from tests.ingest.rtsp_relay import Relay
from tests.ingest.test_own_reader import _xerror_clean

BIT_W, BIT_H, BITS = 14, 24, 44  # tools/testcam.py's (it imports GStreamer, the venv has none)


def _capture_ms(frame: av.VideoFrame) -> int:
    """The wall-clock ms tools/testcam.py burnt into the frame's top-left blocks."""
    plane = frame.planes[0]
    row = bytes(plane)[(BIT_H // 2) * plane.line_size:][:BITS * BIT_W]
    ms = 0
    for bit in range(BITS):
        ms = ms << 1 | (row[bit * BIT_W + BIT_W // 2] > 128)
    return ms


def _frames(path: Path) -> list[tuple[float, int]]:
    """(seconds from the file's start, capture ms) of every frame of a segment."""
    with av.open(str(path)) as c:
        return [(float(f.time or 0.0), _capture_ms(f)) for f in c.decode(video=0)]


@pytest.mark.slow
async def test_video_a_relay_resends_at_a_reconnection_is_not_recorded_twice(
        testcam: TestCamera, tmp_path: Path, index: Index) -> None:
    with Relay(testcam.url("timecode")) as relay:
        relay.wait_buffered(3.0)
        sink = IndexSink(index)
        rec = make_recorder("door", relay.url(), tmp_path, sink, reader="nvr")
        rec.start()
        try:
            await wait_for(lambda: sink.indexed.get("door", 0) >= 2, within_s=30)
            assert relay.drop_client() == 1
            # The recorder reconnects and gets the relay's whole buffer again (~8 s of video
            # it recorded already), then the live stream.
            await wait_for(lambda: sum(r.startswith("PLAY") for r in relay.requests) >= 2)
            before = sink.indexed["door"]
            await wait_for(lambda: sink.indexed["door"] >= before + 3, within_s=30)
            status = rec.status()
        finally:
            await rec.stop()
    segs = await index.segments("door")
    assert status["resent_frames_dropped"] > 0, status
    seen: dict[int, str] = {}
    late = []
    shift_ms = recorder_ahead_of_camera_ms()  # under faketime the camera keeps the real clock
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.end_us <= b.start_us, f"{Path(a.path).name} overlaps {Path(b.path).name}"
    for s in segs:
        path = Path(s.path)
        _xerror_clean(path)
        packets = ffprobe(path)["packets"]
        media_s = sum(float(p["duration_time"]) for p in packets)
        listed_s = (s.end_us - s.start_us) / 1e6
        assert abs(listed_s - media_s) <= 0.2, f"{path.name}: listed {listed_s:.2f} s, " \
                                               f"its frames {media_s:.2f} s"
        for at_s, ms in _frames(path):
            assert ms not in seen, f"the frame captured at {ms} is in {seen[ms]} and {path.name}"
            seen[ms] = path.name
            late.append(s.start_us / 1e3 + at_s * 1e3 - ms - shift_ms)
    # Stamped when captured: within the network's and the encoder's delay, never seconds off.
    print(f"stamp - capture: min {min(late):.0f} ms, max {max(late):.0f} ms; "
          f"{len(segs)} segments, {len(seen)} frames, {status['resent_frames_dropped']} dropped")
    assert max(abs(d) for d in late) < 1000, (min(late), max(late))
