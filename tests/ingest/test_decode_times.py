"""dts from pts alone (RTP): never above a frame's pts, always rising, exact when no B-frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nvr.ingest.decode_times import DecodeTimes, reorder_depth

STEP = 6000  # one frame at 15 fps, 90 kHz


def decode_order(pattern: list[int], gops: int) -> list[int]:
    """pts in decode order for GOPs whose frames show in `pattern`'s order after the keyframe
    (e.g. [3, 1, 2]: P3 decodes before B1 and B2, as x264's B-pyramid sends them)."""
    out: list[int] = []
    n = len(pattern) + 1
    for g in range(gops):
        base = g * n * STEP
        out.append(base)
        out += [base + k * STEP for k in pattern]
    return out


def run(pts: list[int]) -> list[tuple[int, int | None]]:
    dt: DecodeTimes[int] = DecodeTimes()
    got: list[tuple[int, int | None]] = []
    for i, p in enumerate(pts):
        key = i % 4 == 0 if pts != sorted(pts) else i % 15 == 0
        got += [(q, d) for q, d, _, _ in dt.feed(p, key, i)]
    got += [(q, d) for q, d, _, _ in dt.flush()]
    return got


def test_no_b_frames_gives_dts_equal_to_pts() -> None:
    pts = [i * STEP for i in range(40)]
    assert reorder_depth(pts) == 0
    assert run(pts) == [(p, p) for p in pts]


def test_b_pyramid_depth_and_valid_dts() -> None:
    pts = decode_order([3, 1, 2], 10)  # I0 P3 B1 b2 …
    assert reorder_depth(pts[:4]) == 1
    got = run(pts)
    assert [p for p, _ in got] == pts, "every frame, in decode order"
    assert all(d is not None for _, d in got)
    known = [(p, d) for p, d in got if d is not None]
    assert all(d <= p for p, d in known)
    ds = [d for _, d in known]
    assert ds == sorted(ds) and len(set(ds)) == len(ds)
    assert {b - a for a, b in zip(ds, ds[1:], strict=False)} == {STEP}
    # One frame apart from the start: no hole a player would see (a 3-frame step was one).
    assert {b - a for a, b in zip(ds, ds[1:], strict=False)} == {STEP}


@given(st.permutations(list(range(1, 6))), st.integers(min_value=2, max_value=6))
def test_any_reordering_gets_a_valid_rising_dts(pattern: list[int], gops: int) -> None:
    pts = decode_order(pattern, gops)
    dt: DecodeTimes[int] = DecodeTimes()
    got = []
    for i, p in enumerate(pts):
        got += dt.feed(p, i % (len(pattern) + 1) == 0, i)
    got += dt.flush()
    assert [p for p, _, _, _ in got] == pts
    known = [(p, d) for p, d, _, _ in got if d is not None]
    assert all(d <= p for p, d in known)
    ds = [d for _, d in known]
    assert ds == sorted(ds) and len(set(ds)) == len(ds)
    assert {b - a for a, b in zip(ds, ds[1:], strict=False)} == {STEP}


def test_the_sps_depth_wins_over_a_shallow_first_gop_and_a_clock_jump_starts_afresh() -> None:
    # A first GOP of one frame (an IDR at PLAY, then the scheduled one) measures nothing;
    # the SPS says 2, so no B-frame after it is given a dts that goes backwards.
    pts = [0] + decode_order([3, 1, 2], 6)[0:]
    pts = [p + 24000 * 10 for p in pts[1:]]
    pts = [0, *pts]
    dt: DecodeTimes[int] = DecodeTimes(min_depth=2, max_jump=900000)
    got = []
    for i, p in enumerate(pts):
        got += dt.feed(p, i in (0, 1) or (i - 1) % 4 == 0, i)
    ds = [d for _, d, _, _ in got if d is not None]
    assert dt.depth == 2 and ds == sorted(ds) and len(set(ds)) == len(ds)
    assert all(d <= p for p, d, _, _ in got if d is not None)
    # The camera's clock jumps back an hour: dts follow the new timeline, none from the old.
    jump = [p - 3600 * 90000 for p in decode_order([3, 1, 2], 4)]
    later = []
    for i, p in enumerate(jump):
        later += dt.feed(p, i % 4 == 0, 100 + i)
    later += dt.flush()
    new = [d for _, d, _, _ in later if d is not None]
    assert new and max(new) < 0 and new == sorted(new)
    assert all(d <= p for p, d, _, _ in later if d is not None)
