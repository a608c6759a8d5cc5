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
    out += r.flush()
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
    assert r.counts["derived_dts"] == 1


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


def _valid_decode_order(out: list[OutPacket[str]]) -> None:
    dts = [o.dts for o in out]
    assert dts == sorted(set(dts)), f"dts not strictly increasing: {dts}"
    assert all(o.pts >= o.dts for o in out), [(o.pts, o.dts) for o in out]
    pts = [o.pts for o in out]
    assert len(set(pts)) == len(pts), f"two frames show at once: {pts}"
    assert all(o.duration > 0 for o in out)


def test_h264_b_pyramid_session_start_keeps_every_frame_in_decode_order() -> None:
    # What FFmpeg's RTSP demuxer gave for tools/testcam /h264-bframes (x264 bframes=2,
    # B-pyramid): decode order I P b B, the first packets without a dts.
    seq = [(None, None, True, "I0"), (3 * F, None, False, "P3"), (F, None, False, "b1"),
           (2 * F, F, False, "B2"), (6 * F, 2 * F, False, "P6"), (4 * F, 3 * F, False, "b4"),
           (5 * F, 4 * F, False, "B5"), (9 * F, 5 * F, False, "P9")]
    out, r = run(seq)
    assert [o.payloads for o in out] == [[n] for *_, n in seq], "every frame kept, none merged"
    assert [(o.pts, o.dts) for o in out] == [
        (0, -2 * F), (3 * F, -F), (F, 0), (2 * F, F), (6 * F, 2 * F), (4 * F, 3 * F),
        (5 * F, 4 * F), (9 * F, 5 * F)]
    _valid_decode_order(out)
    assert "dropped_backwards" not in r.counts and "merged_same_dts" not in r.counts
    assert r.counts["derived_dts"] == 1


def test_h265_b_frames_session_start_keeps_every_frame() -> None:
    # tools/testcam /h265-bframes: I P B b, dts known from the fourth packet.
    seq = [(None, None, True, "I0"), (3 * F, None, False, "P3"), (2 * F, None, False, "B2"),
           (F, F, False, "b1"), (6 * F, 2 * F, False, "P6"), (5 * F, 3 * F, False, "B5")]
    out, _ = run(seq)
    assert [o.payloads[0] for o in out] == [n for *_, n in seq]
    assert [o.pts for o in out] == [0, 3 * F, 2 * F, F, 6 * F, 5 * F]
    _valid_decode_order(out)


def test_sliced_keyframe_then_missing_dts_is_derived_from_pts() -> None:
    # tools/testcam /h264-noaudio: the IDR in two pieces, then three frames with no dts.
    seq = [(None, None, True, "i-a"), (0, None, True, "i-b"), (F, None, False, "p1"),
           (2 * F, None, False, "p2"), (3 * F, 3 * F, False, "p3")]
    out, _ = run(seq)
    assert [(o.pts, o.dts, o.payloads) for o in out] == [
        (0, 0, ["i-a", "i-b"]), (F, F, ["p1"]), (2 * F, 2 * F, ["p2"]), (3 * F, 3 * F, ["p3"])]


def test_session_that_ends_before_any_dts_keeps_its_frames() -> None:
    out, r = run([(None, None, True, "I0"), (3 * F, None, False, "P3"), (F, None, False, "b1")])
    assert [o.payloads[0] for o in out] == ["I0", "P3", "b1"]
    _valid_decode_order(out)
    assert r.counts["derived_at_end"] == 1


def test_b_frames_after_a_discontinuity_are_derived_again() -> None:
    far = 100 * 90000
    seq = [(0, 0, True, "i"), (F, F, False, "p"), (far, None, True, "I0"),
           (far + 3 * F, None, False, "P3"), (far + F, None, False, "b1"),
           (far + 2 * F, far + F, False, "B2")]
    out, r = run(seq)
    # the new keyframe's predicted dts is a jump: a new head starts there
    assert [o.payloads[0] for o in out] == ["i", "p", "I0", "P3", "b1", "B2"]
    assert [o.discontinuity for o in out] == [False, False, True, False, False, False]
    _valid_decode_order(out[2:])


def test_missing_dts_mid_stream_follows_the_last() -> None:
    out, r = run([(0, 0, True, "i"), (F, F, False, "p"), (3 * F, None, False, "P"),
                  (2 * F, 3 * F, False, "b")])
    assert [(o.pts, o.dts) for o in out] == [(0, 0), (F, F), (3 * F, 2 * F), (3 * F, 3 * F)]
    assert r.counts["filled_missing_dts"] == 1
