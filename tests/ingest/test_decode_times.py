"""dts from pts alone (RTP): never above a frame's pts, always rising, exact when no B-frames."""

from __future__ import annotations

import pytest
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


# x264's B-pyramid orders, by size of the run between reference frames: the P first, then the
# B-frames (bframes=2: P3 B1 B2; bframes=3 with b-pyramid: P4 B2 b1 b3).
MINI = {1: [1], 2: [2, 1], 3: [3, 1, 2], 4: [4, 2, 1, 3]}


def gops(runs: list[list[int]]) -> list[tuple[int, bool]]:
    """(display index, keyframe) in decode order: one GOP per item of `runs`, each the
    keyframe then runs of the given sizes (MINI's orders)."""
    out: list[tuple[int, bool]] = []
    base = 0
    for sizes in runs:
        out.append((base, True))
        at = base
        for m in sizes:
            out += [(at + k, False) for k in MINI[m]]
            at += m
        base = at + 1
    return out


PATTERNS = {
    "bframes=2 pyramid": [3, 3, 3, 3, 1, 1],  # I0 P3 B1 B2 … P12 B10 B11 P13 P14: 15 frames
    "bframes=3 b-pyramid": [4, 4, 4, 1, 1, 1],  # I0 P4 B2 b1 b3 … P13 P14 P15: 16 frames
    "no B-frames": [1] * 14,
}


def run_stepped(frames: list[tuple[int, bool]], steps: dict[int, int], min_depth: int = 0
                ) -> tuple[DecodeTimes[int], list[tuple[int, int, int | None]]]:
    """(display index, pts, dts) as DecodeTimes gives them, the clock stepping by
    steps[i] ticks from the i-th frame in decode order on."""
    dt: DecodeTimes[int] = DecodeTimes(min_depth=min_depth, max_jump=10 * 90000)
    got: list[tuple[int, int, int | None]] = []
    shift = 0
    for i, (display, key) in enumerate(frames):
        shift += steps.get(i, 0)
        got += [(d, p, q) for p, q, _, d in dt.feed(display * STEP + shift, key, display)]
    got += [(d, p, q) for p, q, _, d in dt.flush()]
    return dt, got


def assert_valid(frames: list[tuple[int, bool]], got: list[tuple[int, int, int | None]]
                 ) -> None:
    """Every frame once, in decode order; dts strictly rise and none above its pts."""
    assert [d for d, _, _ in got] == [d for d, _ in frames], "every frame, once, in decode order"
    assert all(q is not None for _, _, q in got)
    ds = [q for _, _, q in got if q is not None]
    assert all(a < b for a, b in zip(ds, ds[1:], strict=False)), "dts strictly rise"
    assert all(q is not None and q <= p for _, p, q in got), "none shows before it decodes"


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("step", [45000, -72000])  # +0.5 s, -0.8 s at 15 fps
def test_a_step_at_every_position_of_a_gop_continues_the_timeline_in_display_order(
        pattern: str, step: int) -> None:
    frames = gops([PATTERNS[pattern]] * 5)
    n = sum(PATTERNS[pattern]) + 1
    for at in range(n, 3 * n):  # the second and third GOPs' keyframes and every frame after
        dt, got = run_stepped(frames, {at: step})
        assert_valid(frames, got)
        assert dt.steps == 1 and dt.last_step == step, at
        # Display order as the bitstream gives it, and the old timeline continued as if the
        # clock had not stepped: no display time lost or added.
        assert [p for _, p, _ in sorted(got)] == [d * STEP for d, _ in sorted(frames)], at


@given(st.lists(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=1, max_size=6),
                min_size=2, max_size=6),
       st.dictionaries(st.integers(min_value=0, max_value=120),
                       st.one_of(st.integers(min_value=-9 * 90000, max_value=-12 * STEP),
                                 st.integers(min_value=11 * STEP, max_value=9 * 90000)),
                       max_size=3))
def test_steps_in_gops_that_change_their_structure_still_give_rising_dts(
        runs: list[list[int]], steps: dict[int, int]) -> None:
    # Where the GOP's pattern cannot tell (the encoder chose other runs of B-frames), or
    # misleads (it changed them at the step), dts still strictly rise and never pass pts.
    # (Steps as large as 0.8 s back or 0.73 s forward at 15 fps: smaller ones are told only
    # where the pattern tells, docs/time.md.)
    frames = gops([[4, *runs[0]], *runs[1:]])  # the first GOP shows the deepest reordering
    # Steps once the first GOP is measured (at least 8 frames: DecodeTimes.min_probe).
    first = next((i for i, (_, k) in enumerate(frames) if k and i >= 8), len(frames))
    steps = {first + i: s for i, s in steps.items()}
    depth = reorder_depth([d for d, _ in frames])
    _, got = run_stepped(frames, steps, min_depth=depth)
    assert_valid(frames, got)


def test_a_frame_the_pattern_misplaces_onto_a_pts_handed_on_goes_above_every_frame() -> None:
    # The pattern says a P-frame 3 frames on comes next (I30 P33 B31 B32); the encoder sends
    # a run of 4 instead (I30 P34 B32 b31 b33) and the clock steps back 0.8 s at its P34. The
    # pattern puts P34 on 33, B32 on 31, and b31 on 30, the keyframe's pts: b31 goes above
    # every frame so far instead (out of its place, but no pts shared, every dts rising).
    frames = gops([[3, 3, 3]] * 3 + [[4, 4, 1]] + [[3, 3, 3]])
    at = 3 * 10 + 1
    assert frames[at - 1:at + 3] == [(30, True), (34, False), (32, False), (31, False)]
    dt, got = run_stepped(frames, {at: -72000})
    assert_valid(frames, got)
    assert dt.steps == 1
    pts = [p for _, p, _ in got]
    assert pts[at:at + 2] == [33 * STEP, 31 * STEP]
    assert pts[at + 2] > max(pts[:at + 2]) and len(set(pts)) == len(pts)
