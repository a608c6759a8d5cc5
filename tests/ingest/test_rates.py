"""Issue 28: `nvr status` showed 16.5–16.9 fps for a 15 fps camera. Frames reach the recorder
in bursts; the rate is measured on the camera's own timestamps over the last 5 s."""

from __future__ import annotations

from nvr.ingest.session import RATE_WINDOW_US, Stats

FRAME_US = 1_000_000 // 15


def bursty(stats: Stats, seconds: float, burst: int) -> int:
    """15 fps on the camera's clock, delivered `burst` frames at a time, each burst arriving
    when its last frame was taken; returns the arrival time of the last frame."""
    arrival = 0
    for n in range(int(seconds * 15)):
        arrival = ((n // burst) + 1) * burst * FRAME_US
        stats.add(arrival, 1000, n * FRAME_US)
    return arrival


def test_fps_of_a_bursty_15_fps_camera_is_15() -> None:
    stats = Stats()
    now = bursty(stats, 20, burst=8)
    fps, bps = stats.rates(now + 1000)
    assert fps == 15.0, fps
    assert abs(bps - 15 * 1000 * 8) < 1000, bps  # 15 frames of 1000 bytes a second


def test_the_old_measure_on_arrival_times_was_off() -> None:
    """The same frames without their timestamps (what rates() used before): not 15."""
    timed = Stats()
    now = bursty(timed, 20, burst=8)
    untimed = Stats()
    for arrival, size, _media in list(timed._window):
        untimed.add(arrival, size)
    fps, _ = untimed.rates(now + 1000)
    assert fps > 15.5, fps


def test_a_camera_that_stopped_reads_zero() -> None:
    stats = Stats()
    now = bursty(stats, 10, burst=1)
    assert stats.rates(now + RATE_WINDOW_US + 1) == (0.0, 0)


def test_a_timestamp_jump_falls_back_to_arrival_times() -> None:
    stats = Stats()
    for n in range(75):
        stats.add(n * FRAME_US, 1000, n * FRAME_US + (10**12 if n > 40 else 0))
    fps, _ = stats.rates(75 * FRAME_US)
    assert 14.5 <= fps <= 15.5, fps
