"""The timestamp repairer on fake packet sequences (pure logic; no camera needed)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from nvr.ingest.timestamps import InPacket, OutPacket, TimestampError, TimestampRepair

TB = Fraction(1, 90000)
F = 6000  # one frame at 15 fps


def run(seq: list[tuple[int | None, int | None, bool, str]]) -> tuple[list[OutPacket[str]], TimestampRepair[str]]:
    r: TimestampRepair[str] = TimestampRepair(TB, F, max_jump_s=10.0, max_dropped=5)
    out: list[OutPacket[str]] = []
    for pts, dts, key, name in seq:
        out += r.feed(InPacket(pts, dts, key, name))
    last = r.flush()
    if last is not None:
        out.append(last)
    return out, r


def test_first_keyframe_without_timestamps_is_kept_and_merged() -> None:
    # What GStreamer's RTSP server + FFmpeg deliver: the first IDR split in two, the first
    # piece with no pts/dts at all.
    out, r = run([(None, None, True, "idr-a"), (0, 0, True, "idr-b"), (F, F, False, "p1")])
    assert [(o.dts, o.payloads, o.key) for o in out] == [(0, ["idr-a", "idr-b"], True), (F, ["p1"], False)]
    assert r.counts["filled_first_keyframe"] == 1


def test_lone_timestampless_keyframe_is_filled_one_frame_back() -> None:
    out, r = run([(None, None, True, "idr"), (F, F, False, "p1")])
    assert [(o.pts, o.dts) for o in out] == [(0, 0), (F, F)]
    assert r.counts["filled_missing"] == 1


def test_equal_dts_pieces_are_merged_into_one_frame() -> None:
    out, r = run([(0, 0, True, "i"), (F, F, False, "p"), (2 * F, 2 * F, True, "k1"),
                  (2 * F, 2 * F, True, "k2"), (3 * F, 3 * F, False, "p")])
    assert [o.payloads for o in out] == [["i"], ["p"], ["k1", "k2"], ["p"]]
    assert [o.duration for o in out] == [F, F, F, F]  # the last reuses the last interval
    assert r.counts["merged_same_dts"] == 1


def test_packets_before_the_first_keyframe_are_dropped() -> None:
    out, r = run([(0, 0, False, "p"), (F, F, True, "i"), (2 * F, 2 * F, False, "p")])
    assert [o.payloads[0] for o in out] == ["i", "p"]
    assert r.counts["dropped_before_keyframe"] == 1


def test_backwards_dts_is_dropped_and_too_many_raise() -> None:
    out, r = run([(0, 0, True, "i"), (F, F, False, "p"), (F // 2, F // 2, False, "late"),
                  (2 * F, 2 * F, False, "p2")])
    assert [o.payloads[0] for o in out] == ["i", "p", "p2"]
    assert r.counts["dropped_backwards"] == 1
    with pytest.raises(TimestampError, match="last dts = 6000, dts = 10"):
        run([(0, 0, True, "i"), (F, F, False, "p")] + [(10, 10, False, "x")] * 7)


def test_b_frames_keep_pts_and_bad_pts_is_nudged() -> None:
    # Decode order I P B B with pts I=1F, P=4F, B=2F, B=3F (dts is monotonic).
    seq = [(F, 0, True, "I"), (4 * F, F, False, "P"), (2 * F, 2 * F, False, "B"),
           (3 * F, 3 * F, False, "B"), (F, 4 * F, False, "bad")]
    out, r = run(seq)
    assert [(o.pts, o.dts) for o in out] == [(F, 0), (4 * F, F), (2 * F, 2 * F), (3 * F, 3 * F),
                                             (4 * F, 4 * F)]
    assert r.counts["nudged_pts"] == 1


def test_jump_is_a_discontinuity_that_waits_for_a_keyframe() -> None:
    far = 100 * 90000
    out, r = run([(0, 0, True, "i"), (F, F, False, "p"), (far, far, False, "lost-p"),
                  (far + F, far + F, True, "i2"), (far + 2 * F, far + 2 * F, False, "p2")])
    assert [(o.payloads[0], o.discontinuity) for o in out] == [
        ("i", False), ("p", False), ("i2", True), ("p2", False)]
    assert out[1].duration == F  # the frame before the jump keeps a sane duration
    assert r.counts["discontinuity"] == 1
