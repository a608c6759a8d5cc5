"""The own RTSP reader's parsers against garbage and against the right bytes cut anywhere
(hypothesis): the RTSP reply parser, the SDP parser, the interleaved-frame reader and the
H.264/H.265 depacketizers. Nothing escapes them but RtspError (rtp.py's depacketizer raises
nothing at all: it drops what it cannot read and counts it), memory stays bounded, and every
read makes progress (a deadline fails a loop that does not).

The socket under the reply and frame readers is a list of chunks: the property is about how
the bytes are cut, which a real socket pair would re-join at will. A small budget runs in the
suite; NVR_LONG_TESTS=1 runs the long one (NVR_FUZZ_EXAMPLES overrides its count).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvr.media.access_unit import picture_kind
from nvr.media.rtcp import says_bye, sender_reports
from nvr.media.rtp import MAX_UNIT_BYTES, Depacketizer, Reorder
from nvr.media.rtsp import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    RtspError,
    RtspSession,
    _aggregate,
    parse_sdp,
    request_base,
)

LONG = bool(os.environ.get("NVR_LONG_TESTS"))
EXAMPLES = int(os.environ.get("NVR_FUZZ_EXAMPLES", "20000" if LONG else "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DEADLINE_S = 10.0  # one example's reads; far more than any needs


class Chunks:
    """The socket's side the reader sees: recv() hands out the next chunk, then end of
    stream (which the reader reports as an offline camera)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks: Iterator[bytes] = iter([c for c in chunks if c])
        self.sent: list[bytes] = []

    def recv(self, n: int) -> bytes:
        chunk = next(self.chunks, b"")
        assert len(chunk) <= n
        return chunk

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def settimeout(self, t: float | None) -> None:
        pass

    def close(self) -> None:
        pass


def session_on(chunks: list[bytes]) -> RtspSession:
    s = RtspSession("rtsp://127.0.0.1:554/stream", 1.0)
    s.sock = Chunks(chunks)  # type: ignore[assignment]
    s.keepalive_s = 1e9  # no keep-alive in the middle of a property
    s._last_sent = time.monotonic()
    return s


@st.composite
def cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut into chunks: byte at a time, at random places, or whole."""
    how = draw(st.sampled_from(["bytes", "random", "whole"]))
    if how == "bytes" and len(data) <= 4096:
        return [data[i:i + 1] for i in range(len(data))]
    if how == "whole" or not data:
        return [data]
    at = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=40))))
    return [data[a:b] for a, b in zip([0, *at], [*at, len(data)], strict=True)]


# -- RTSP replies ------------------------------------------------------------------------------
header_names = st.sampled_from(["CSeq", "Content-Length", "Content-Base", "Session",
                                "Transport", "WWW-Authenticate", "Public", "X-Junk", ""])
header_values = st.one_of(
    st.sampled_from(["1", "0", "-1", "99999999999", "²", "١٢", " 12 ", "abc", "",
                     "RTP/AVP/TCP;unicast;interleaved=0-1", "12345678;timeout=60",
                     'Digest realm="x", nonce="y"', "rtsp://[::1", "rtsp://h:99999/"]),
    st.text(max_size=30))


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    """An RTSP reply, sometimes well formed, sometimes bent (bad status, odd lengths, a body
    longer or shorter than it says), or an interleaved frame before it."""
    status = draw(st.sampled_from([b"RTSP/1.0 200 OK", b"RTSP/1.0 401 Unauthorized",
                                   b"RTSP/1.0 \xb2\xc2 x", b"RTSP/1.0 \xc2\xb2 OK",
                                   b"RTSP/1.0", b"HTTP/1.1 200 OK", b"", b"RTSP/1.0 99999 x"]))
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=8))
    body = draw(st.binary(max_size=300))
    head = status + b"".join(b"\r\n" + k.encode() + b": " + v.encode("utf-8", "replace")
                             for k, v in headers)
    if draw(st.booleans()):
        head += b"\r\nContent-Length: " + str(len(body) + draw(st.integers(-5, 5))).encode()
    out = head + b"\r\n\r\n" + body
    if draw(st.booleans()):
        n = draw(st.integers(0, 40))
        out = b"$" + bytes([draw(st.integers(0, 255))]) + struct.pack(">H", n) + b"\0" * n + out
    return out


def read_replies(s: RtspSession) -> int:
    """Replies until the reader raises; only RtspError may end it. Returns how many."""
    n, deadline = 0, time.monotonic() + DEADLINE_S
    try:
        while True:
            assert time.monotonic() < deadline, "the reply parser stopped making progress"
            before = len(s.buf)
            reply = s._read_reply()
            if reply is not None:
                n += 1
                assert 0 <= len(reply.body) <= MAX_BODY_BYTES
            assert len(s.buf) <= MAX_HEADER_BYTES + MAX_BODY_BYTES + 8 or len(s.buf) < before
    except RtspError:
        return n


@FUZZ
@given(st.data())
def test_the_reply_parser_takes_any_bytes_cut_anywhere(data: st.DataObject) -> None:
    raw = b"".join(data.draw(st.lists(st.one_of(replies(), st.binary(max_size=200)),
                                      min_size=1, max_size=4)))
    read_replies(session_on(data.draw(cuts(raw))))


@FUZZ
@given(st.data())
def test_a_reply_reads_the_same_however_it_is_cut(data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=200))
    raw = (b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Base: rtsp://h/s/\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body)
    s = session_on(data.draw(cuts(raw)))
    reply = s._read_reply()
    assert reply is not None and reply.status == 200 and reply.body == body
    assert reply.header("cseq") == "3" and not s.buf


def test_a_track_that_cannot_be_timed_is_refused_by_name() -> None:
    for rtpmap in ("96 H264/0", "96 H264/99999999999999", "200 H264/90000"):
        pt = rtpmap.split()[0]
        try:
            parse_sdp(f"m=video 0 RTP/AVP {pt}\r\na=rtpmap:{rtpmap}\r\n", "rtsp://h/")
            raise AssertionError(f"{rtpmap} was taken")
        except RtspError as e:
            assert e.kind == "protocol" and "cannot be read" in str(e)


def test_header_and_body_caps_refuse_rather_than_buffer() -> None:
    big = b"RTSP/1.0 200 OK\r\nX: " + b"A" * (MAX_HEADER_BYTES + 10)
    s = session_on([big[i:i + 1000] for i in range(0, len(big), 1000)])
    try:
        s._read_reply()
        raise AssertionError("a header over the cap was read")
    except RtspError as e:
        assert "over 64 KB" in str(e)
    assert len(s.buf) <= MAX_HEADER_BYTES + 1000
    for length in (str(MAX_BODY_BYTES + 1), "²", "1e3", "-1"):
        s = session_on([f"RTSP/1.0 200 OK\r\nContent-Length: {length}\r\n\r\n".encode()])
        try:
            s._read_reply()
            raise AssertionError(f"Content-Length {length} was taken")
        except RtspError as e:
            assert e.kind == "protocol" and "RTSP body" in str(e)


# -- SDP ---------------------------------------------------------------------------------------
sdp_lines = st.one_of(
    st.sampled_from([
        "v=0", "m=video 0 RTP/AVP 96", "m=video 0 RTP/AVP 96 97", "m=audio 0 RTP/AVP 0",
        "m=video", "m=video 0 RTP/AVP", "a=rtpmap:96 H264/90000", "a=rtpmap:96 H265/90000",
        "a=rtpmap:96 H264/0", "a=rtpmap:96 H264/٣", "a=rtpmap:96 H264/99999999999999999", "a=rtpmap:97 HEVC/90000",
        "a=rtpmap:99999999999999999999 H264/90000", "a=control:trackID=1", "a=control:*",
        "a=control:rtsp://[::1", "a=control:/abs/path", "a=control:rtsp://h:70000/x",
        "a=control:", "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAH5Y1,aM4xsg==",
        "a=fmtp:96 sprop-parameter-sets=!!!,@@@,é", "a=fmtp:96 sprop-vps=QAEM;sprop-sps=QgEB;"
        "sprop-pps=RAHA", "a=fmtp:96 sprop-sps=====", "a=fmtp:96 sprop-parameter-sets=,,,"]),
    st.text(max_size=60))


@FUZZ
@given(st.lists(sdp_lines, max_size=14),
       st.sampled_from(["\r\n", "\n", "\r", "\x85", "\u2028"]),
       st.sampled_from(["rtsp://h/s/", "rtsp://h:554/s", "rtsp://[::1", "", "h/s",
                        "rtsp://[zz]/"]),
       st.text(max_size=30))
def test_the_sdp_parser_takes_any_text(lines: list[str], eol: str, base: str,
                                       content_base: str) -> None:
    # Half the time a video section first, so that the track lines below it are looked at.
    sdp = eol.join((["m=video 0 RTP/AVP 96"] if len(lines) % 2 else []) + lines)
    for b in (base, request_base(content_base, "", base or "rtsp://h/")):
        try:
            track = parse_sdp(sdp, b)
            _aggregate(sdp, b)
        except RtspError as e:
            assert e.kind == "protocol", e
            continue
        if track is not None:
            assert track.clock_rate > 0 and 0 <= track.payload_type <= 127
            assert all(p for p in track.params)


# -- interleaved frames ------------------------------------------------------------------------
@st.composite
def stream(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Interleaved frames of several channels, with keep-alive replies between them; the
    bytes, and the video channel's (0) packets in order."""
    raw, want = b"", []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["video", "other", "reply"]))
        if kind == "reply":
            body = draw(st.binary(max_size=30))
            raw += (b"RTSP/1.0 200 OK\r\nCSeq: 9\r\nContent-Length: " + str(len(body)).encode()
                    + b"\r\n\r\n" + body)
            continue
        payload = draw(st.binary(max_size=300))
        channel = 0 if kind == "video" else draw(st.integers(1, 255))
        raw += b"$" + bytes([channel]) + struct.pack(">H", len(payload)) + payload
        if channel == 0:
            want.append(payload)
    return raw, want


def read_frames(s: RtspSession) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + DEADLINE_S

    def on_packet(data: bytes, start: int, stop: int) -> None:
        assert 0 <= start <= stop <= len(data)
        got.append(data[start:stop])

    try:
        while True:
            assert time.monotonic() < deadline, "the frame reader stopped making progress"
            s.read_some(on_packet)
            # What stays buffered is at most one unfinished frame or reply (and one chunk).
            assert len(s.buf) <= MAX_HEADER_BYTES + MAX_BODY_BYTES + 65536 + 8
    except RtspError as e:
        assert e.kind in ("offline", "protocol"), e
    return got


@FUZZ
@given(st.data())
def test_frames_read_the_same_however_they_are_cut(data: st.DataObject) -> None:
    raw, want = data.draw(stream())
    assert read_frames(session_on(data.draw(cuts(raw)))) == want


@FUZZ
@given(st.data())
def test_the_frame_reader_takes_any_bytes(data: st.DataObject) -> None:
    raw, _ = data.draw(stream())
    noise = data.draw(st.binary(max_size=400))
    at = data.draw(st.integers(0, len(raw)))
    read_frames(session_on(data.draw(cuts(raw[:at] + noise + raw[at:]))))


# -- depacketizers -----------------------------------------------------------------------------
@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    """An RTP packet: mostly a plausible header (version 2, CSRCs, extension, padding, marker)
    over a payload that is a NAL unit, an aggregate or a fragment of either codec, or noise."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=40))
    b0 = 0x80 | draw(st.integers(0, 0x3F))  # padding, extension, CSRC count at random
    b1 = draw(st.integers(0, 255))
    seq = draw(st.integers(0, 8)) if draw(st.booleans()) else draw(st.integers(0, 0xFFFF))
    ts = draw(st.sampled_from([0, 3000, 6000, 0xFFFFFFFF, 123456789]))
    head = struct.pack(">BBHII", b0, b1, seq, ts, 0x1234)
    extra = draw(st.binary(max_size=24))
    first = draw(st.sampled_from([1, 5, 24, 28, 29, 30, 0x26 << 1, 0x13 << 1, 48 << 1,
                                  49 << 1, 50 << 1, 0]))
    payload = bytes([first]) + draw(st.binary(max_size=60))
    return head + extra + payload


@FUZZ
@given(st.sampled_from(["h264", "hevc"]), st.lists(rtp_packets(), max_size=60))
def test_the_depacketizers_take_any_packets(codec: str, packets: list[bytes]) -> None:
    d = Depacketizer(codec)  # type: ignore[arg-type]
    units = []
    for p in packets:
        units += d.push(p)
        data = b"x" + p + b"y"  # the hot path, by offset into a larger buffer
        d.push_at(data, 1, len(data) - 1)
        units += d.ready
        d.ready.clear()
    for u in units:
        assert 0 < len(u.data) <= MAX_UNIT_BYTES
        i = 0
        while i < len(u.data):  # every NAL unit behind its own length, and nothing else
            n = struct.unpack_from(">I", u.data, i)[0]
            assert n > 0 and i + 4 + n <= len(u.data)
            i += 4 + n
        assert i == len(u.data)


@FUZZ
@given(st.binary(max_size=2048))
def test_rtcp_reports_are_read_from_anything_without_raising(data: bytes) -> None:
    for sr in sender_reports(data):
        assert 0 <= sr.rtp_ts < 2**32
    assert len(sender_reports(data)) <= len(data) // 28
    assert says_bye(data) in (True, False)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from(["h264", "hevc"]))
def test_whether_a_picture_is_a_reference_is_told_of_anything_without_raising(
        data: bytes, codec: str) -> None:
    assert picture_kind(data, codec, True) in ("piece", "unreferenced", "reference")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 400_000)), max_size=300))
def test_the_reorder_buffer_stays_bounded_and_never_gives_a_packet_twice(
        arrivals: list[tuple[int, int]]) -> None:
    """Any sequence numbers at any times: the buffer holds at most `depth` packets, and each
    packet is given out once, or counted late (a duplicate, or after its turn)."""
    reorder, out = Reorder(depth=16, wait_us=200_000), []
    now = 0
    for n, (seq, dt) in enumerate(arrivals):
        now += dt
        reorder.push(seq, n.to_bytes(2) + seq.to_bytes(2), now, out)
        assert len(reorder._held) <= 16
    reorder.flush(out)
    ids = [p[:2] for p in out]
    assert len(ids) == len(set(ids)) and len(out) + reorder.late == len(arrivals)
