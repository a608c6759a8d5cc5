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


def test_steps_of_a_relays_clock_mid_gop_keep_every_frame_and_rising_dts() -> None:
    # A relay re-syncing its RTP clock steps it by +0.5 s, later by -0.8 s, each in the middle
    # of a GOP of a B-pyramid stream (I0 P4 B2 b1 b3 …, GOP 16 at 15 fps). Through the timestamp
    # repairer as the own reader sends them: every frame kept, in decode order, dts rising,
    # no pts shared, none shown before it decodes; the timeline barely moves at each step.
    from fractions import Fraction

    from nvr.ingest.timestamps import InPacket, TimestampRepair

    pts = []
    for g in range(12):
        base = g * 16 * STEP
        pts.append(base)
        for m in range(3):
            pts += [base + (4 * m + k) * STEP for k in (4, 2, 1, 3)]
        pts += [base + 13 * STEP, base + 14 * STEP, base + 15 * STEP]
    stepped = [p + (45000 if i >= 40 else 0) - (72000 if i >= 120 else 0)
               for i, p in enumerate(pts)]
    dt: DecodeTimes[int] = DecodeTimes(max_jump=900000)
    repair: TimestampRepair[int] = TimestampRepair(Fraction(1, 90000), STEP)
    out = []
    for i, p in enumerate(stepped):
        for q, d, key, item in dt.feed(p, i % 16 == 0, i):
            out += repair.feed(InPacket(q, d, key, item))
    for q, d, key, item in dt.flush():
        out += repair.feed(InPacket(q, d, key, item))
    out += repair.flush()
    assert dt.steps == 2 and dt.last_step < 0
    assert [o.payloads for o in out] == [[i] for i in range(len(pts))], "every frame, once"
    ds = [o.dts for o in out]
    assert ds == sorted(ds) and len(set(ds)) == len(ds)
    assert all(o.pts >= o.dts for o in out) and len({o.pts for o in out}) == len(out)
    assert not repair.counts.get("dropped_backwards")
    # Each step costs at most a few frames of display time, not the 0.5 s or 0.8 s.
    span = max(o.pts for o in out) - min(o.pts for o in out)
    assert abs(span - (len(pts) - 1) * STEP) <= 2 * 6 * STEP
