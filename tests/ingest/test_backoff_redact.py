from __future__ import annotations

import random

from nvr.ingest.backoff import Backoff
from nvr.ingest.redact import host_of, redact_text, redact_url


def test_backoff_grows_caps_and_resets_after_uptime() -> None:
    b = Backoff(initial_s=1, cap_s=30, jitter=0.0, reset_after_s=60, rng=random.Random(1))
    assert [b.delay(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.delay(120) == 1  # a long healthy session: start over
    assert b.delay(0, permanent=True) == 60


def test_default_backoff_retries_every_few_seconds_however_long_the_outage() -> None:
    # Issue 11: after a network failure, at least every 2-4 s, even after an hour away;
    # credentials refused / no video (permanent) are retried slowly.
    b = Backoff(rng=random.Random(3))
    delays = [b.delay(0.1) for _ in range(1200)]  # an hour of failed attempts
    assert max(delays) <= 2.4 and min(delays[2:]) >= 1.6, (min(delays[2:]), max(delays))
    assert b.delay(0.1, permanent=True) >= 30


def test_backoff_jitter_stays_within_bounds() -> None:
    b = Backoff(initial_s=10, cap_s=10, jitter=0.2, rng=random.Random(7))
    assert all(8 <= b.delay(0) <= 12 for _ in range(100))


def test_redact_never_shows_the_password() -> None:
    url = "rtsp://admin:p%40ss:w0rd@cam1.local:554/stream1"
    assert redact_url(url) == "rtsp://***@cam1.local:554/stream1"
    assert redact_url("rtsp://cam1.local/x") == "rtsp://cam1.local/x"
    msg = redact_text(f"Connection refused: '{url}'", url)
    assert "w0rd" not in msg and "admin" not in msg
    assert host_of(url) == "cam1.local"
    assert host_of("rtsp://[fe80::1]:554/x") == "fe80::1"
