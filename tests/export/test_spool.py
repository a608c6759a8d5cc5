"""The export spool's bound and release, on real files (nvr/export/spool.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nvr.errors import Unavailable
from nvr.export.spool import ExportSpool, max_spool_bytes


def test_cap_is_five_percent_of_the_disk_at_most_4_gib() -> None:
    assert max_spool_bytes(100 << 20) == 5 << 20
    assert max_spool_bytes(10 << 40) == 4 << 30


def test_reserve_refuses_beyond_the_cap_and_per_account_in_one_line() -> None:
    spool = ExportSpool(lambda: 1000, per_account=2)
    a = spool.reserve("elder", 400)
    spool.reserve("elder", 400)
    with pytest.raises(Unavailable, match="you have 2 exports") as e1:
        spool.reserve("elder", 10)
    with pytest.raises(Unavailable, match="export spool is full") as e2:
        spool.reserve("director", 300)
    with pytest.raises(Unavailable, match="export a shorter span"):
        spool.reserve("director", 5000)
    assert "\n" not in str(e1.value) + str(e2.value)
    spool.cancel(a)
    assert spool.bytes_held() == 400
    spool.reserve("director", 300)
    # The Director is not counted per account, only by the spool's size.
    big = ExportSpool(lambda: 10_000, per_account=1)
    assert [big.reserve("director", 10, counted=False) for _ in range(3)]


def test_a_hoarded_descriptor_is_emptied_after_the_hold(tmp_path: Path) -> None:
    now = [0.0]
    spool = ExportSpool(lambda: 10 << 20, hold_s=120, clock=lambda: now[0])
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 1_000_000)
    client_fd = os.open(clip, os.O_RDONLY)
    keep_fd = os.open(clip, os.O_WRONLY)
    clip.unlink()
    ticket = spool.reserve("elder", 1_200_000)
    spool.delivered(ticket, keep_fd, 1_000_000)
    assert spool.bytes_held() == 1_000_000
    now[0] = 119
    assert spool.release_expired() == 0
    now[0] = 121
    assert spool.release_expired() == 1
    assert spool.bytes_held() == 0
    st = os.fstat(client_fd)  # the client still holds its descriptor ...
    assert st.st_size == 0 and st.st_blocks == 0  # ... but no longer our disk space
    os.close(client_fd)
