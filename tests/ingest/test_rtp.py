"""The RTP depacketizer, packet by packet: fragments, aggregates, lost packets, lost markers."""

from __future__ import annotations

from nvr.media.rtp import Depacketizer


def lp(*nals: bytes) -> bytes:
    """NAL units as the depacketizer writes them: each behind its 4-byte length."""
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals)


def rtp(seq: int, ts: int, payload: bytes, marker: bool = False) -> bytes:
    return bytes([0x80, 0x60 | (0x80 if marker else 0)]) + seq.to_bytes(2, "big") + \
        ts.to_bytes(4, "big") + b"\x00\x00\x00\x01" + payload


def fu_a(kind: int, body: bytes, start: bool, end: bool) -> bytes:
    return bytes([0x60 | 28, (0x80 if start else 0) | (0x40 if end else 0) | kind]) + body


def test_h264_stap_a_and_fu_a_make_one_keyframe() -> None:
    sps, pps = b"\x67\x42\x00\x1f", b"\x68\xce\x3c\x80"
    stap = bytes([24]) + len(sps).to_bytes(2, "big") + sps + len(pps).to_bytes(2, "big") + pps
    d = Depacketizer("h264")
    assert d.push(rtp(1, 9000, stap)) == []
    assert d.push(rtp(2, 9000, fu_a(5, b"AAAA", True, False))) == []
    assert d.push(rtp(3, 9000, fu_a(5, b"BBBB", False, False))) == []
    (au,) = d.push(rtp(4, 9000, fu_a(5, b"CCCC", False, True), marker=True))
    assert au.key and not au.damaged and au.rtp_ts == 9000
    assert au.data == lp(sps, pps, bytes([0x65]) + b"AAAABBBBCCCC")


def test_a_lost_fragment_drops_that_nal_and_marks_the_unit_damaged() -> None:
    d = Depacketizer("h264")
    d.push(rtp(1, 0, bytes([0x41]) + b"slice0"))
    d.push(rtp(2, 0, fu_a(1, b"AAAA", True, False)))
    # seq 3 (the middle fragment) is lost
    (au,) = d.push(rtp(4, 0, fu_a(1, b"CCCC", False, True), marker=True))
    assert au.damaged and d.lost == 1 and not au.key
    assert au.data == lp(bytes([0x41]) + b"slice0")  # the broken NAL is not half-kept
    (nxt,) = d.push(rtp(5, 3000, bytes([0x41]) + b"next", marker=True))
    assert not nxt.damaged


def test_a_lost_marker_ends_the_unit_when_the_timestamp_moves() -> None:
    d = Depacketizer("h264")
    assert d.push(rtp(1, 0, bytes([0x65]) + b"idr")) == []  # its marker packet never came
    (first, second) = d.push(rtp(2, 6000, bytes([0x41]) + b"p", marker=True))
    assert (first.rtp_ts, first.key) == (0, True) and (second.rtp_ts, second.key) == (6000, False)


def test_h265_fu_rebuilds_the_nal_header_and_sees_an_irap() -> None:
    d = Depacketizer("hevc")
    hdr = bytes([49 << 1, 1])  # FU, layer 0, tid 1
    d.push(rtp(1, 0, hdr + bytes([0x80 | 19]) + b"xx"))  # IDR_W_RADL, start
    (au,) = d.push(rtp(2, 0, hdr + bytes([0x40 | 19]) + b"yy", marker=True))
    assert au.key and au.data == lp(bytes([19 << 1, 1]) + b"xxyy")


def test_duplicates_and_garbage_are_ignored() -> None:
    d = Depacketizer("h264")
    d.push(rtp(10, 0, bytes([0x41]) + b"a", marker=True))
    assert d.push(rtp(9, 0, bytes([0x41]) + b"a", marker=True)) == []  # late duplicate
    assert d.push(b"\x00" * 5) == [] and d.lost == 0


def test_a_unit_that_never_ends_is_dropped_not_kept_in_memory() -> None:
    from nvr.media import rtp as rtpmod

    d = Depacketizer("h264")
    body = b"x" * 1400
    d.push(rtp(1, 0, fu_a(5, body, True, False)))
    seq = 2
    for _ in range(rtpmod.MAX_UNIT_BYTES // 1400 + 10):  # 16 MB of one fragment, same ts
        assert d.push(rtp(seq & 0xFFFF, 0, fu_a(5, body, False, False))) == []
        seq += 1
    assert d.oversized == 1 and d._fu is None and not d._nals
    assert d.push(rtp(seq & 0xFFFF, 0, fu_a(5, body, False, True), marker=True)) == []
    (nxt,) = d.push(rtp((seq + 1) & 0xFFFF, 6000, bytes([0x41]) + b"p", marker=True))
    assert not nxt.damaged and nxt.data == lp(bytes([0x41]) + b"p")


def test_a_camera_that_restarts_its_sequence_is_followed() -> None:
    d = Depacketizer("h264")
    d.push(rtp(40000, 0, bytes([0x65]) + b"a", marker=True))
    (au,) = d.push(rtp(5, 3000, bytes([0x41]) + b"b", marker=True))  # a new random start
    assert au.data == lp(bytes([0x41]) + b"b") and au.damaged
    (nxt,) = d.push(rtp(6, 6000, bytes([0x41]) + b"c", marker=True))
    assert not nxt.damaged


def test_after_an_oversized_unit_without_markers_the_next_units_come_through() -> None:
    from nvr.media import rtp as rtpmod

    d = Depacketizer("h264")
    body = b"x" * 60000
    seq = 1
    for _ in range(rtpmod.MAX_UNIT_BYTES // 60000 + 2):  # one unit too big, never a marker
        d.push(rtp(seq, 0, bytes([0x41]) + body))
        seq += 1
    assert d.oversized == 1
    out = []
    for ts in (3000, 6000, 9000):  # markerless units, each ended by the next timestamp
        out += d.push(rtp(seq, ts, bytes([0x41]) + b"ok"))
        seq += 1
    assert [u.rtp_ts for u in out] == [3000, 6000]
