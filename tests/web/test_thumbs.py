"""The thumbnail cache's byte cap (nvr.web.thumbs): the least recently used go first, and what
it holds never exceeds the cap."""

from __future__ import annotations

from nvr.web.thumbs import Thumb, Thumbnails


def test_the_cache_keeps_under_its_byte_cap_dropping_the_least_recently_used() -> None:
    cache = Thumbnails(cache_bytes=25_000)
    for i in range(3):
        cache._put(("cam", i), Thumb(bytes(10_000), i))  # 30 kB offered: the first must go
    assert cache._get(("cam", 0)) is None
    assert cache._get(("cam", 1)) is not None  # now the most recently used
    cache._put(("cam", 3), Thumb(bytes(10_000), 3))
    assert cache._get(("cam", 2)) is None and cache._get(("cam", 1)) is not None
    assert cache._bytes <= 25_000
