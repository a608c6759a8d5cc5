"""RTP over UDP in the own reader: the reorder buffer, RTCP, and a scripted camera that speaks
RTSP over TCP and sends its RTP over UDP out of order, with a packet lost and a sender report."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nvr.ingest.decode_times import RECENT_PTS, DecodeTimes
from nvr.media.access_unit import hevc_single_layer, picture_kind
from nvr.media.rtcp import (
    NTP_UNIX_OFFSET_S,
    ReceptionStats,
    receiver_report,
    says_bye,
    sender_reports,
)
from nvr.media.rtp import Depacketizer, Reorder
from nvr.media.rtsp import RtspError, RtspSession
from nvr.runtime import alerts
from nvr.runtime.alerts import CameraView
from nvr.storage.index import Index
from tests.ingest.recording_helpers import IndexSink, make_recorder, wait_for
from tests.ingest.replay_camera import DIALECTS, ReplayCamera
from tests.ingest.test_own_reader import _xerror_clean


def _in_order(seqs: list[int], depth: int = 64, wait_us: int = 200_000,
              at: list[int] | None = None) -> tuple[list[int], Reorder]:
    r, out = Reorder(depth, wait_us), []
    for i, seq in enumerate(seqs):
        r.push(seq, seq.to_bytes(2), (at or [0] * len(seqs))[i], out)
    return [int.from_bytes(p) for p in out], r


def test_reorder_puts_swapped_packets_back_and_passes_order_through() -> None:
    assert _in_order([1, 2, 3, 4])[0] == [1, 2, 3, 4]
    got, r = _in_order([1, 3, 2, 4])
    assert got == [1, 2, 3, 4] and r.reordered == 1 and r.late == 0
    assert _in_order([65534, 0, 65535, 1])[0] == [65534, 65535, 0, 1]  # across the wrap


def test_reorder_drops_duplicates_and_gives_a_lost_packet_up_within_its_bounds() -> None:
    got, r = _in_order([1, 2, 2, 3])
    assert got == [1, 2, 3] and r.late == 1
    # 2 never comes: after `depth` packets wait, the ones after it go on without it...
    got, _ = _in_order([1] + list(range(3, 8)), depth=4)
    assert got == [1, 3, 4, 5, 6, 7]
    # ... or after the wait, on the next read.
    r, out = Reorder(64, 200_000), []
    for seq, t in ((1, 0), (3, 10_000), (4, 20_000)):
        r.push(seq, seq.to_bytes(2), t, out)
    assert [int.from_bytes(p) for p in out] == [1]
    r.expire(150_000, out)
    assert len(out) == 1
    r.expire(250_000, out)
    assert [int.from_bytes(p) for p in out] == [1, 3, 4]
    r.push(2, b"\0\2", 260_000, out)  # too late now: dropped, not sent out of order
    assert len(out) == 3 and r.late == 1


def test_reorder_follows_a_camera_that_restarts_its_sequence() -> None:
    assert _in_order([100, 101, 30_000, 30_001])[0] == [100, 101, 30_000, 30_001]


def _sr(ssrc: int, unix_s: float, rtp_ts: int) -> bytes:
    sec = int(unix_s) + NTP_UNIX_OFFSET_S
    frac = int((unix_s % 1) * 2**32)
    return struct.pack(">BBHIIIIII", 0x80, 200, 6, ssrc, sec, frac, rtp_ts, 10, 1000)


def test_sender_report_is_read_from_a_compound_packet() -> None:
    rr = receiver_report(7, None)
    [sr] = sender_reports(rr + _sr(42, 1_790_000_000.25, 123456) + rr)
    assert sr.ssrc == 42 and sr.rtp_ts == 123456
    assert abs(sr.ntp_us - 1_790_000_000_250_000) <= 1
    assert sender_reports(b"\x80\xc8\xff\xff" + b"\0" * 20) == []  # length overruns: nothing


def _bye(*ssrcs: int) -> bytes:
    return struct.pack(f">BBH{len(ssrcs)}I", 0x80 | len(ssrcs), 203, len(ssrcs), *ssrcs)


def test_bye_is_read_from_a_compound_packet() -> None:
    rr = receiver_report(7, None)
    assert says_bye(_sr(42, 1_790_000_000.0, 0) + rr + _bye(42, 43))
    assert says_bye(rr + _bye())  # a BYE naming no source is one all the same
    assert not says_bye(_sr(42, 1_790_000_000.0, 0) + rr)
    assert not says_bye(b"\x80\xc8\x00\x09" + b"\0" * 4 + _bye(1))  # overrun: the walk ends


def test_receiver_report_counts_what_never_came() -> None:
    stats = ReceptionStats()
    for seq in (65534, 65535, 1, 2):  # 0 lost, across the wrap
        stats.packet(99, seq)
    block = stats.report_block(None, 0.0)
    ssrc, lost, highest = struct.unpack_from(">III", block)
    assert ssrc == 99 and lost & 0xFFFFFF == 1 and lost >> 24 == 256 // 5  # 1 of 5
    assert highest == 0x10000 + 2
    packet = receiver_report(5, block)
    assert len(packet) % 4 == 0 and packet[1] == 201
    assert 4 * (struct.unpack_from(">H", packet, 2)[0] + 1) == 8 + len(block)


SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=udp\r\nt=0 0\r\n"
       "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
       "a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n")


def _rtp(seq: int, ts: int, nal: bytes) -> bytes:
    return struct.pack(">BBHII", 0x80, 0x80 | 96, seq, ts, 0xC0FFEE) + nal


class UdpCamera:
    """RTSP over TCP that refuses interleaved RTP (461) and sends RTP over UDP: packets in the
    order given, then a sender report; it keeps what arrives on its RTCP port."""

    def __init__(self, order: list[int], bye: int | None = None,
                 sr_ssrc: int = 0xC0FFEE) -> None:
        self.order = order
        self.sr_ssrc = sr_ssrc
        self.bye = bye  # after the sender report, a BYE for this SSRC
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind(("127.0.0.1", 0))
        self.rtcp.settimeout(5)
        self.setups: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        buf = b""
        client: tuple[str, int] | None = None
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                cseq = next(x.split(":", 1)[1].strip() for x in lines if x.lower().startswith("cseq"))
                transport = next((x.split(":", 1)[1].strip() for x in lines
                                  if x.lower().startswith("transport")), "")
                status, extra, body = "200 OK", "", ""
                if lines[0].startswith("DESCRIBE"):
                    body, extra = SDP, "Content-Type: application/sdp\r\n"
                elif lines[0].startswith("SETUP"):
                    self.setups.append(transport)
                    ports = re.search(r"client_port=(\d+)-(\d+)", transport)
                    if ports is None:
                        status = "461 Unsupported Transport"
                    else:
                        client = ("127.0.0.1", int(ports.group(1)))
                        extra = (f"Transport: {transport};server_port={self.rtp.getsockname()[1]}"
                                 f"-{self.rtcp.getsockname()[1]}\r\nSession: 77;timeout=60\r\n")
                conn.sendall((f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}"
                              f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
                if lines[0].startswith("PLAY") and client is not None:
                    self._send(client)
                if lines[0].startswith("TEARDOWN"):
                    return

    def _send(self, client: tuple[str, int]) -> None:
        idr = bytes([0x65]) + b"\x88" * 50
        for i in self.order:
            self.rtp.sendto(_rtp(1000 + i, 3000 * i, idr if i == 0 else bytes([0x41]) + b"\1" * 50),
                            client)
        sr = _sr(self.sr_ssrc, time.time() + 120.0, 3000 * max(self.order))
        self.rtcp.sendto(sr + (_bye(self.bye) if self.bye is not None else b""),
                         (client[0], client[1] + 1))


@contextmanager
def udp_camera(order: list[int], bye: int | None = None,
               sr_ssrc: int = 0xC0FFEE) -> Iterator[UdpCamera]:
    cam = UdpCamera(order, bye, sr_ssrc)
    cam.thread.start()
    try:
        yield cam
    finally:
        cam.listener.close()
        cam.rtp.close()
        cam.rtcp.close()


def test_own_reader_reads_rtp_over_udp_in_order_and_counts_the_lost() -> None:
    """Frames 0-9 sent as 0 1 3 2 4 6 7 8 9 (2 and 3 swapped, 5 lost): the depacketizer gets
    them in order, one packet is counted lost, the camera's clock comes from its sender report,
    and the camera receives a receiver report that says one packet was lost."""
    with udp_camera([0, 1, 3, 2, 4, 6, 7, 8, 9]) as cam:
        s = RtspSession(f"rtsp://127.0.0.1:{cam.port}/x", 5.0, transport="udp")
        depack = Depacketizer("h264")
        try:
            s.open()
            assert len(s.sockets()) == 3
            deadline = time.monotonic() + 5
            while (len(depack.ready) < 9 or not s.sender_reports) and time.monotonic() < deadline:
                s.read_some(depack.push_at)
                time.sleep(0.01)
            s.read_some(depack.push_at)
            s.reorder.expire(10**18, [])  # (nothing is left waiting)
            s._send_rr(time.monotonic())
            reports = [cam.rtcp.recv(1500), cam.rtcp.recv(1500)]  # after PLAY, and now
        finally:
            s.close()
    assert cam.setups and "client_port=" in cam.setups[0]
    assert [u.rtp_ts // 3000 for u in depack.ready] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert depack.lost == 1 and s.reorder.reordered == 5  # 3 waited for 2; 6-9 for 5
    assert depack.ready[5].damaged  # the frame after the hole
    [sr] = s.sender_reports
    assert abs(sr.ntp_us / 1e6 - time.time() - 120) < 5
    # Before any packet, an RR without a block; now one that counts 1 packet lost of 10.
    assert [(r[1], r[0] & 0x1F) for r in reports] == [(201, 0), (201, 1)]
    assert struct.unpack_from(">I", reports[1], 8)[0] == 0xC0FFEE
    assert struct.unpack_from(">I", reports[1], 12)[0] & 0xFFFFFF == 1


def _read_until_bye(order: list[int], bye: int) -> tuple[RtspError | None, Depacketizer]:
    """A session with a camera that sends `order`, then a sender report and a BYE for `bye`:
    the error that ended it (None: none within 5 s) and what the depacketizer took."""
    depack = Depacketizer("h264")
    with udp_camera(order, bye=bye) as cam:
        s = RtspSession(f"rtsp://127.0.0.1:{cam.port}/x", 5.0, transport="udp")
        try:
            s.open()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    s.read_some(depack.push_at)
                except RtspError as e:
                    return e, depack
                time.sleep(0.01)
        finally:
            s.close()
    return None, depack


def test_a_bye_for_the_stream_ends_the_session_after_every_frame_before_it() -> None:
    """VLC's RTSP server, for one, sends an RTCP BYE when its file ends and then nothing: the
    session ends at once (the recorder reconnects now, not after its read timeout), every frame
    sent before the BYE delivered, those behind a lost packet without waiting for it."""
    err, depack = _read_until_bye([0, 1, 2, 3, 4, 6, 7], 0xC0FFEE)
    assert err is not None and err.kind == "offline", err
    assert str(err) == "the camera ended the stream (RTCP BYE)"
    assert [u.rtp_ts // 3000 for u in depack.ready] == [0, 1, 2, 3, 4, 6, 7]


def test_a_bye_naming_ssrc_0_ends_the_session_too() -> None:
    """VLC's BYE names SSRC 0 about as often as its stream's: it ends the session all the same
    (otherwise the recorder waits out its read timeout, and loses those seconds)."""
    err, depack = _read_until_bye([0, 1, 2, 3], 0)
    assert err is not None and "RTCP BYE" in str(err), err
    assert [u.rtp_ts // 3000 for u in depack.ready] == [0, 1, 2, 3]


def test_a_sender_report_for_another_ssrc_is_not_believed() -> None:
    """VLC sends, besides its stream's, reports for SSRC 0 at RTP time 0: read as the stream's,
    they put its clock hours behind."""
    with udp_camera([0, 1, 2, 3], sr_ssrc=0) as cam:
        s = RtspSession(f"rtsp://127.0.0.1:{cam.port}/x", 5.0, transport="udp")
        depack = Depacketizer("h264")
        try:
            s.open()
            deadline = time.monotonic() + 5
            while len(depack.ready) < 4 and time.monotonic() < deadline:
                s.read_some(depack.push_at)
                time.sleep(0.01)
            cam.rtcp.sendto(_sr(0xC0FFEE, 1_790_000_000.0, 0), s.rtcp_sock.getsockname()
                            if s.rtcp_sock else ("127.0.0.1", 9))  # the stream's: taken
            deadline = time.monotonic() + 5
            while not s.sender_reports and time.monotonic() < deadline:
                s.read_some(depack.push_at)
                time.sleep(0.01)
        finally:
            s.close()
    assert [sr.ssrc for sr in s.sender_reports] == [0xC0FFEE]


async def test_a_udp_only_camera_with_a_wrong_clock_is_recorded_and_its_clock_alerts(
        tmp_path: Path, index: Index) -> None:
    """A camera (a real dialect, real video) that refuses interleaved TCP and whose own clock
    is an hour ahead: `transport: auto` records it over UDP with the own reader, every segment
    decodes with `ffmpeg -xerror`, and status says why UDP and how far off its clock is; the
    alert names the camera and the fix. Another, over TCP, is two minutes behind."""
    sink = IndexSink(index)
    udp = ReplayCamera(DIALECTS[0], udp_only=True, clock_offset_s=3600.0).start()
    tcp = ReplayCamera(DIALECTS[0], clock_offset_s=-120.0).start()
    recs = {"yard": make_recorder("yard", udp.url(), tmp_path, sink, segment_seconds=1.0,
                                  reader="auto"),
            "gate": make_recorder("gate", tcp.url(), tmp_path, sink, segment_seconds=1.0,
                                  reader="auto")}
    for rec in recs.values():
        rec.start()
    try:
        await wait_for(lambda: all(sink.indexed.get(n, 0) >= 2
                                   and r.status()["clock_offset_s"] is not None
                                   for n, r in recs.items()))
        st = {n: r.status() for n, r in recs.items()}
        views = [CameraView(n, s["state"], clock_offset_s=r.clock_offset_s)
                 for (n, s), r in zip(st.items(), recs.values(), strict=True)]
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
        for cam in (udp, tcp):
            await asyncio.to_thread(cam.stop)
    yard, gate = st["yard"], st["gate"]
    assert yard["state"] == "recording" and yard["reader"] == "nvr", yard
    assert yard["transport"] == "udp" and yard["packets_lost"] == 0, yard
    assert yard["last_error"] == "the camera refuses RTP over TCP; recording over UDP", yard
    assert gate["transport"] == "tcp" and gate["last_error"] == "", gate
    assert abs(yard["clock_offset_s"] - 3600) < 1.0, yard
    assert abs(gate["clock_offset_s"] + 120) < 1.0, gate
    assert [a.message for a in alerts.alerts(views, set(), None)] == [
        "camera yard's own clock is 60 min ahead of the recorder's; set its NTP server (the "
        "time it shows in its picture is wrong)",
        "camera gate's own clock is 2 min behind the recorder's; set its NTP server (the "
        "time it shows in its picture is wrong)"]
    for seg in await index.segments("yard"):
        _xerror_clean(Path(seg.path))


def _au(*nal_headers: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(h) + 4) + h + b"\x88" * 4 for h in nal_headers)


def test_what_a_unit_holds_is_told_by_its_first_slice() -> None:
    assert picture_kind(_au(b"\x01\x80"), "h264", True) == "unreferenced"  # ref_idc 0
    assert picture_kind(_au(b"\x06", b"\x41\x80"), "h264", True) == "reference"  # SEI, ref 2
    assert picture_kind(_au(b"\x65\x80"), "h264", True) == "reference"  # IDR
    assert picture_kind(_au(b"\x41\x40"), "h264", True) == "piece"  # first_mb_in_slice 1
    assert picture_kind(_au(b"\x67", b"\x68"), "h264", True) == "piece"  # SPS, PPS only
    hevc = lambda kind, first=0x80: bytes((kind << 1, 1, first))  # noqa: E731
    assert picture_kind(_au(hevc(35), hevc(0)), "hevc", True) == "unreferenced"  # AUD, TRAIL_N
    assert picture_kind(_au(hevc(8)), "hevc", True) == "unreferenced"  # RASL_N
    assert picture_kind(_au(hevc(0)), "hevc", False) == "reference"  # a higher layer may use it
    assert picture_kind(_au(hevc(1)), "hevc", True) == "reference"
    assert picture_kind(_au(hevc(21)), "hevc", True) == "reference"
    assert picture_kind(_au(hevc(1, 0x00)), "hevc", True) == "piece"  # not the first segment
    assert picture_kind(b"\x00\x00\x00\x09\x01", "h264", True) == "reference"  # cut short
    vps, sps1, sps3 = bytes((64, 1, 0x0C)), bytes((66, 1, 0x01)), bytes((66, 1, 0x05))
    assert hevc_single_layer((vps, sps1)) and not hevc_single_layer((vps, sps3))
    assert not hevc_single_layer(())


def _kinds(data: bytes) -> str:
    return picture_kind(data, "h264", True)


def test_frames_sharing_a_timestamp_keep_distinct_times_and_lose_no_reference() -> None:
    """VLC's first GOP: a B (no picture refers to it) and a P sent with the time of a P before
    them. Merged with it, they would be one sample; the B is dropped, the P kept a tick later,
    and every frame has its own dts, rising."""
    p, b, idr = _au(b"\x41\x80"), _au(b"\x01\x80"), _au(b"\x65\x80")
    times: DecodeTimes[bytes] = DecodeTimes(kind=_kinds)
    sent = [(0, idr), (3600, p), (-3600, b), (7200, p), (3600, b), (3600, p), (14400, p),
            (10800, b)]
    out = [o for pts, data in sent for o in times.feed(pts, data == idr, data)]
    out += times.flush()
    assert [o[0] for o in out] == [0, 3600, -3600, 7200, 3601, 14400, 10800]
    dts = [o[1] for o in out]
    assert all(d is not None for d in dts) and dts == sorted(set(dts)), dts  # type: ignore[type-var]
    assert (times.shared_dropped, times.shared_moved) == (1, 1)
    for i in range(200):  # the memory is bounded: RECENT_PTS frames back
        times.feed(20_000 + 3600 * i, False, p)
    assert len(times._recent) == RECENT_PTS


def test_pieces_of_one_picture_keep_its_time_and_a_clock_jump_forgets_the_old_times() -> None:
    """A camera that marks the end of each slice sends a picture in pieces with one time: they
    are not moved apart (the timestamp repairer joins them). After a jump of the clock, times
    of the old timeline are free again."""
    first, second = _au(b"\x41\x80"), _au(b"\x41\x40")  # slices 0 and 1 of a P
    times: DecodeTimes[bytes] = DecodeTimes(kind=_kinds, max_jump=90_000)
    out = [o for i in range(20) for data in (first, second)
           for o in times.feed(3600 * i, i == 0, data)]
    out += times.flush()
    assert sorted({o[0] for o in out}) == [3600 * i for i in range(20)]
    assert times.shared_moved == times.shared_dropped == 0
    times.feed(10_000_000, True, _au(b"\x65\x80"))  # the clock jumps ...
    times.feed(0, True, _au(b"\x65\x80"))  # ... and back onto old times
    assert times.shared_moved == times.shared_dropped == 0


def test_rtp_and_rtcp_ports_are_an_even_odd_pair_whichever_port_the_system_picks() -> None:
    """The system picks odd ports as often as even ones: either way the pair is an even RTP
    port and the odd one above it (RFC 3550 §11), and a taken port is tried around."""
    server = socket.create_server(("127.0.0.1", 0))
    taken = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
    try:
        for t in taken:  # odd and even ports in use
            t.bind(("127.0.0.1", 0))
        picked = set()
        for _ in range(64):
            s = RtspSession(f"rtsp://127.0.0.1:{server.getsockname()[1]}/x", 1.0)
            s.sock = socket.create_connection(server.getsockname())
            try:
                port = s._bind_udp()
                assert s.rtp_sock is not None and s.rtcp_sock is not None
                assert port % 2 == 0 and s.rtp_sock.getsockname()[1] == port
                assert s.rtcp_sock.getsockname()[1] == port + 1
                picked.add(port)
            finally:
                s.close()
        assert len(picked) > 1
    finally:
        for t in taken:
            t.close()
        server.close()
