"""The session's wall-clock anchor (nvr/storage/anchor.py), fed as cameras and relays send:
no frame is stamped later than it arrived; after a burst of buffered video the stamps are
those of capture; a drifting camera clock is followed."""

from __future__ import annotations

import random

from nvr.storage.anchor import RISE_PPM, WallAnchor

FRAME_US = 1_000_000 // 15
C0 = 1_790_000_000_000_000  # capture of the first frame (wall µs)
MONO = 5_000_000_000  # the monotonic clock's reading at C0 (any value: only differences count)


def _feed(a: WallAnchor, media_us: int, arrival_wall_us: int) -> int:
    """Feed one frame; its stamp as the anchor gives it now."""
    a.frame(media_us, arrival_wall_us - C0 + MONO)
    return a.wall_us(media_us)


def test_a_burst_of_buffered_video_is_stamped_when_it_was_captured() -> None:
    # A relay kept 137 frames (9.1 s) and sends them within 0.5 s when the reader connects,
    # then real time (50 ms of latency, up to 30 ms of jitter).
    rng = random.Random(7)
    connect = C0 + 137 * FRAME_US + 50_000
    a = WallAnchor(C0 - MONO)
    arrivals = []
    for i in range(137 + 150):
        capture = C0 + i * FRAME_US
        if i < 137:
            arrival = connect + i * 500_000 // 137
        else:
            arrival = capture + 50_000 + rng.randrange(30_000)
        arrivals.append(arrival)
        stamp = _feed(a, i * FRAME_US, arrival)
        assert stamp <= arrival, f"frame {i} stamped {stamp - arrival} µs after it arrived"
        if i >= 137:  # after the burst: the time it was captured, within a second
            assert abs(stamp - capture) <= 1_000_000, (i, stamp - capture)
        if i == 137 + 20:
            assert a.settled(), "a second after the burst, the anchor has settled"
        if 10 <= i < 137:
            assert not a.settled(), "while the burst arrives, it has not"
    # The buffered frames too, by the anchor as it is at the end: in the past, where they were
    # captured; no later than they arrived but for what the anchor may rise since (drift).
    last = len(arrivals) - 1
    for i, arrival in enumerate(arrivals):
        stamp = a.wall_us(i * FRAME_US)
        assert abs(stamp - (C0 + i * FRAME_US)) <= 100_000
        assert stamp <= arrival + (last - i) * FRAME_US * RISE_PPM // 1_000_000
    assert 0 <= a.delay_us <= 100_000


def test_a_frame_delayed_by_the_network_moves_nothing() -> None:
    a = WallAnchor(C0 - MONO)
    for i in range(30):
        _feed(a, i * FRAME_US, C0 + i * FRAME_US + 40_000)
    before = a.anchor_us
    stamp = _feed(a, 30 * FRAME_US, C0 + 30 * FRAME_US + 2_000_000)  # 2 s late
    assert before is not None and a.anchor_us is not None
    assert 0 <= a.anchor_us - before <= FRAME_US * RISE_PPM // 1_000_000  # (drift allowance)
    assert abs(stamp - (C0 + 30 * FRAME_US + 40_000)) < 1000
    assert abs(a.delay_us - (2_000_000 - 40_000)) < 1000


def test_a_drifting_camera_clock_is_followed_not_accumulated() -> None:
    # An hour at 15 fps; the camera's media clock 300 ppm slow, then another 300 ppm fast:
    # 1.08 s apart from the box's clock after the hour if the anchor were fixed at the start.
    for ppm in (-300, 300):
        rng = random.Random(ppm)
        a = WallAnchor(C0 - MONO)
        worst = 0
        for i in range(15 * 3600):
            capture = C0 + i * FRAME_US
            media = i * FRAME_US * (1_000_000 + ppm) // 1_000_000
            arrival = capture + 50_000 + rng.randrange(30_000)
            stamp = _feed(a, media, arrival)
            assert stamp <= arrival
            if i > 15 * 60:
                worst = max(worst, abs(stamp - capture - 50_000))
        assert worst <= 100_000, (ppm, worst)


def test_a_new_anchor_knows_nothing_of_the_last() -> None:
    a = WallAnchor(C0 - MONO)
    _feed(a, 0, C0 + 6_000_000)  # whatever the last session saw
    b = WallAnchor(C0 - MONO)
    assert _feed(b, 0, C0 + 50_000) == C0 + 50_000
