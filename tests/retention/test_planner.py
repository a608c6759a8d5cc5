"""The retention planner's rules as properties (hypothesis) and a few worked examples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nvr.retention.planner import (
    DAY_US,
    DiskState,
    HoldInfo,
    Plan,
    SegmentInfo,
    plan,
    plan_to_dict,
)
from nvr.timeutil import US, parse_time

CAMS = ("a", "b", "c")
HOUR = 3600 * US
NOW = parse_time("2026-03-01T00:00:00Z")


@st.composite
def segments(draw: st.DrawFn) -> list[SegmentInfo]:
    n = draw(st.integers(0, 40))
    out = []
    for i in range(n):
        start = NOW - draw(st.integers(-2, 24 * 60)) * HOUR  # up to 60 days old, a few future
        length = draw(st.integers(1, 120)) * 60 * US
        out.append(
            SegmentInfo(i + 1, draw(st.sampled_from(CAMS)), start, start + length,
                        f"/r/segments/{i}.mp4", draw(st.integers(1, 1000)))
        )
    return out


@st.composite
def holds(draw: st.DrawFn) -> list[HoldInfo]:
    out = []
    for i in range(draw(st.integers(0, 3))):
        start = NOW - draw(st.integers(0, 24 * 60)) * HOUR
        maybe_time = st.none() | st.integers(-48, 48).map(lambda h: NOW + h * HOUR)
        out.append(
            HoldInfo(
                id=f"H-{i:08x}", cameras=frozenset(draw(st.sets(st.sampled_from(CAMS), min_size=1))),
                start_us=start, end_us=start + draw(st.integers(1, 24 * 70)) * HOUR,
                until_us=draw(maybe_time), released_us=draw(maybe_time), reason="incident",
                incident=None,
            )
        )
    return out


retention = st.fixed_dictionaries({c: st.sampled_from([1.0, 7.0, 30.0]) for c in CAMS})
disks = st.integers(1000, 50_000).flatmap(
    lambda total: st.builds(DiskState, st.just(total), st.integers(0, total))
)
min_free = st.sampled_from([0.0, 10.0, 50.0, 90.0])


def _held(seg: SegmentInfo, hs: list[HoldInfo]) -> bool:
    return any(h.active(NOW) and h.covers(seg) for h in hs)


def _run(segs: list[SegmentInfo], hs: list[HoldInfo], days: dict[str, float],
         disk: DiskState, pct: float) -> Plan:
    return plan(segs, hs, days, 30.0, disk, NOW, min_free_percent=pct)


@settings(max_examples=300, deadline=None)
@given(segments(), holds(), retention, disks, min_free)
def test_rules_hold_for_any_input(
    segs: list[SegmentInfo], hs: list[HoldInfo], days: dict[str, float], disk: DiskState,
    pct: float,
) -> None:
    p = _run(segs, hs, days, disk, pct)
    planned = {d.segment.id for d in p.delete}
    assert len(planned) == len(p.delete), "a segment planned twice"
    # Never: a held segment, a segment still being written.
    for d in p.delete:
        assert not _held(d.segment, hs), d
        assert d.segment.end_us <= NOW
    # Every unheld segment past its camera's retention goes, for age.
    unheld = [s for s in segs if s.end_us <= NOW and not _held(s, hs)]
    for s in unheld:
        if NOW - s.end_us >= days[s.camera] * DAY_US:
            assert any(d.segment.id == s.id and d.kind == "age" for d in p.delete), s
    # Disk pressure takes the oldest unheld first, across cameras: a prefix, and no more
    # than needed.
    age = {d.segment.id for d in p.delete if d.kind == "age"}
    candidates = sorted((s for s in unheld if s.id not in age),
                        key=lambda s: (s.start_us, s.end_us, s.camera, s.id))
    by_disk = [d.segment.id for d in p.delete if d.kind == "disk"]
    assert by_disk == [s.id for s in candidates[: len(by_disk)]]
    threshold = disk.total_bytes * pct / 100
    if by_disk:
        last = next(s for s in segs if s.id == by_disk[-1])
        assert p.free_after_bytes - last.bytes < threshold
    assert p.free_after_bytes == disk.free_bytes + sum(d.segment.bytes for d in p.delete)
    # Paused exactly when every unheld segment is planned and the disk is still short.
    everything_planned = {s.id for s in unheld} <= planned
    assert bool(p.paused_cameras) == (everything_planned and p.free_after_bytes < threshold)
    assert (p.alert is not None) == bool(p.paused_cameras)
    if p.paused_cameras:
        assert p.paused_cameras >= set(CAMS)
    # keep lists only held segments.
    for k in p.keep:
        assert _held(k.segment, hs)
        assert k.segment.id not in planned


def _seg(i: int, cam: str, days_ago: float, nbytes: int = 100) -> SegmentInfo:
    end = NOW - int(days_ago * DAY_US)
    return SegmentInfo(i, cam, end - 60 * US, end, f"/r/segments/{cam}/{i}.mp4", nbytes)


def _hold(cams: set[str], start: int, end: int, **kw: object) -> HoldInfo:
    args: dict[str, object] = dict(id="H-0000beef", cameras=frozenset(cams), start_us=start,
                                   end_us=end, until_us=None, released_us=None,
                                   reason="theft at the front desk", incident="INC-7")
    args.update(kw)
    return HoldInfo(**args)  # type: ignore[arg-type]


def test_age_deletes_and_hold_keeps_with_reasons() -> None:
    old, held, fresh = _seg(1, "a", 31), _seg(2, "b", 31), _seg(3, "a", 2)
    hold = _hold({"b"}, held.start_us - 1, held.end_us + 1)
    p = plan([old, held, fresh], [hold], {"a": 30, "b": 30}, 30, DiskState(1000, 900), NOW,
             min_free_percent=10)
    assert [d.segment.id for d in p.delete] == [1]
    assert p.delete[0].why == "age: older than 30 days (ended 2026-01-29T00:00:00.000000Z)"
    assert [(k.segment.id, k.why) for k in p.keep] == [
        (2, "held by H-0000beef (theft at the front desk; incident INC-7)")
    ]
    out = plan_to_dict(p, NOW)
    assert out["at"] == "2026-03-01T00:00:00.000000Z"
    assert out["delete"] == [{"camera": "a", "path": old.path, "why": p.delete[0].why}]
    assert out["keep"][0]["camera"] == "b" and out["paused"] == [] and out["alert"] is None


def test_released_or_expired_hold_stops_protecting_at_once() -> None:
    seg = _seg(1, "a", 40)
    rng = (seg.start_us - 1, seg.end_us + 1)
    for hold in (_hold({"a"}, *rng, released_us=NOW), _hold({"a"}, *rng, until_us=NOW - 1)):
        p = plan([seg], [hold], {"a": 30}, 30, DiskState(1000, 900), NOW, min_free_percent=10)
        assert [d.segment.id for d in p.delete] == [1]
    later = _hold({"a"}, *rng, released_us=NOW + 1, until_us=NOW + DAY_US)
    assert plan([seg], [later], {"a": 30}, 30, DiskState(1000, 900), NOW,
                min_free_percent=10).delete == []


def test_hold_reaching_into_the_future_covers_later_footage() -> None:
    hold = _hold({"a"}, NOW - 100 * DAY_US, NOW + 365 * DAY_US)
    recorded_later = _seg(5, "a", 45)  # older than retention, recorded after the hold began
    p = plan([recorded_later], [hold], {"a": 30}, 30, DiskState(1000, 10), NOW,
             min_free_percent=10)
    assert p.delete == [] and [k.segment.id for k in p.keep] == [5]
    assert p.paused_cameras == {"a"}
    assert p.alert is not None and "min_free_percent 10%" in p.alert and "H-0000beef" in p.alert


def test_disk_pressure_frees_oldest_across_cameras_and_says_why() -> None:
    segs = [_seg(1, "b", 3), _seg(2, "a", 5), _seg(3, "a", 1), _seg(4, "b", 4)]
    p = plan(segs, [], {"a": 30, "b": 30}, 30, DiskState(10_000, 850), NOW, min_free_percent=10)
    assert [d.segment.id for d in p.delete] == [2, 4]  # 5 and 4 days old: 1 050 ≥ 1 000 free
    assert p.delete[0].why == "disk: free space 8.5% below min_free_percent 10%"
    assert p.paused_cameras == frozenset() and p.keep == []


def test_camera_retention_overrides_default() -> None:
    segs = [_seg(1, "a", 8), _seg(2, "b", 8), _seg(3, "c", 8)]
    p = plan(segs, [], {"a": 7, "b": 30}, 5, DiskState(1000, 900), NOW, min_free_percent=10)
    assert sorted(d.segment.id for d in p.delete) == [1, 3]
