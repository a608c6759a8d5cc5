"""The live fan-out: bounded, keyframe-aligned, and never blocking the camera thread."""

from __future__ import annotations

import asyncio
import threading
import time

from nvr.web.fanout import VIEWER_QUEUE, LiveFeed, unsupported_reason

SPS = b"\x00\x00\x00\x01\x67\x42\x00\x1f"
PPS = b"\x00\x00\x00\x01\x68\xce\x38\x80"
IDR = b"\x00\x00\x00\x01\x65\x88\x84"
P = b"\x00\x00\x00\x01\x41\x9a"


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_unwatched_camera_costs_nothing_and_new_viewer_starts_at_a_keyframe() -> None:
    feed = LiveFeed("lobby", asyncio.get_running_loop())
    feed.from_thread(IDR, True, SPS + PPS, "h264", False)  # nobody watching: dropped at once
    await _settle()
    assert feed.packets_in == 0
    first = feed.join()
    for data, key in ((P, False), (IDR, True), (P, False), (P, False)):
        feed.from_thread(data, key, SPS + PPS, "h264", False)
    await _settle()
    got = [await first.get() for _ in range(3)]
    # Waited for the keyframe; SPS/PPS were put in front of the IDR that lacked them.
    assert got[0].key and got[0].data == SPS + PPS + IDR
    # A second viewer gets the current GOP from its keyframe, at once.
    second = feed.join()
    assert [p.key for p in second.queue] == [True, False, False]
    first.close()
    second.close()
    assert not feed.active


async def test_slow_viewer_drops_to_the_next_keyframe_and_others_are_unaffected() -> None:
    feed = LiveFeed("lobby", asyncio.get_running_loop())
    slow, fast = feed.join(), feed.join()
    feed.from_thread(SPS + PPS + IDR, True, None, "h264", False)
    for _ in range(VIEWER_QUEUE + 5):
        feed.from_thread(P, False, None, "h264", False)
        await _settle()
        await fast.get()
    await fast.get()
    assert len(slow.queue) == 0 and slow.waiting_key and slow.dropped == VIEWER_QUEUE
    feed.from_thread(P, False, None, "h264", False)  # still not a keyframe: skipped
    feed.from_thread(SPS + PPS + IDR, True, None, "h264", False)
    await _settle()
    assert [p.key for p in slow.queue] == [True]


async def test_camera_thread_never_waits_for_viewers() -> None:
    feed = LiveFeed("lobby", asyncio.get_running_loop())
    feed.join()  # a viewer that never reads
    took: list[float] = []

    def camera() -> None:
        t0 = time.perf_counter()
        for i in range(2000):
            feed.from_thread(SPS + PPS + IDR if i % 15 == 0 else P, i % 15 == 0, None, "h264",
                             False)
        took.append(time.perf_counter() - t0)

    th = threading.Thread(target=camera)
    th.start()
    await asyncio.to_thread(th.join)
    await _settle()
    assert took[0] < 1.0
    assert all(len(v.queue) <= VIEWER_QUEUE for v in feed.viewers)


def test_streams_webrtc_cannot_carry_are_named() -> None:
    assert unsupported_reason("h264", False) is None
    assert "HEVC" in (unsupported_reason("hevc", False) or "")
    assert "B-frames" in (unsupported_reason("h264", True) or "")


async def test_b_frames_seen_once_stay_known_for_the_next_viewer() -> None:
    """Only some packets of a stream with B-frames show it (pts != dts; a B-frame itself has
    pts == dts). The packets still on their way when the first viewer is let go must not make
    the feed forget it: the next viewer's page is offered the fMP4 fallback, not nothing."""
    feed = LiveFeed("annex", asyncio.get_running_loop())
    first = feed.join()
    # I and P reordered (pts != dts), then two B-frames (pts == dts), in flight together.
    for data, key, reordered in ((IDR, True, True), (P, False, True), (P + b"\x01", False, False),
                                 (P + b"\x02", False, False)):
        feed.from_thread(data, key, SPS + PPS, "h264", reordered)
    await _settle()
    assert first.closed and not feed.active
    assert feed.b_frames and "B-frames" in (feed.unsupported or "")
    second = feed.join()  # the next viewer: still told why, and that fMP4 can show it
    second.close()
    assert feed.b_frames and "B-frames" in (feed.unsupported or "")
    feed.new_stream()  # a new recorder for the camera: its stream is judged afresh
    assert not feed.b_frames and feed.unsupported is None


async def test_webrtc_track_hands_aiortc_the_cameras_bytes_unchanged() -> None:
    """The track returns av.Packets (aiortc then only packetizes): the bytes are the camera's,
    with SPS/PPS in front of the IDR, pts increasing in a 90 kHz time base."""
    from fractions import Fraction

    from nvr.web.rtc import PassthroughTrack

    feed = LiveFeed("lobby", asyncio.get_running_loop())
    track = PassthroughTrack(feed.join())
    sent = [(IDR, True), (P + b"\x01", False), (P + b"\x02", False)]
    for data, key in sent:
        feed.from_thread(data, key, SPS + PPS, "h264", False)
    await _settle()
    got = [await track.recv() for _ in sent]
    assert [bytes(p) for p in got] == [SPS + PPS + IDR, P + b"\x01", P + b"\x02"]
    assert all(p.time_base == Fraction(1, 90000) for p in got)
    assert got[0].pts < got[1].pts < got[2].pts
    track.stop()
