"""A camera that speaks a real camera's RTSP dialect (tests/ingest/dialects/, recorded by the
retina project): every request is answered with the reply that camera gave (CSeq set to the
request's, Content-Length recomputed), and after PLAY real video follows, interleaved on the
channel the recorded SETUP reply names, with the payload type of the recorded SDP.

The video is encoded at test time (PyAV, libx264/libx265: nothing committed) and packetized
here (RFC 6184 / RFC 7798: single NAL units and FU-A / FU). The recorded SDP keeps its
layout, controls and payload type; only its parameter sets (sprop-*) are replaced by the test
video's own, as the real camera's matched its own video. A real TCP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

DIR = Path(__file__).parent / "dialects"
FPS = 15
MTU_PAYLOAD = 1400


@dataclass(frozen=True)
class Dialect:
    name: str
    describe: str  # a recorded DESCRIBE reply, or a bare SDP (*_sdp.txt)
    setup: str = ""  # recorded replies; "" answers as a plain camera would
    play: str = ""
    options: str = ""
    # The video track's control URL, as the camera knows it ({url}: the URL asked for): a
    # SETUP of any other URI is answered 404, as the real camera would.
    setup_uri: str = "{url}/trackID=1"


@dataclass(frozen=True)
class Clip:
    codec: str  # "h264" or "hevc"
    units: tuple[tuple[bytes, ...], ...]  # access units: NAL units without start codes
    params: tuple[bytes, ...]  # VPS?, SPS, PPS


def _nal_type(codec: str, nal: bytes) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F


@cache
def clip(codec: str, frames: int = 2 * FPS) -> Clip:
    """`frames` pictures of 160x120, one GOP (so the loop restarts at a keyframe), no
    B-frames; parameter sets in band on the keyframe, as cameras send them."""
    name = "libx264" if codec == "h264" else "libx265"
    ctx = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
    ctx.width, ctx.height, ctx.pix_fmt = 160, 120, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = Fraction(FPS)
    ctx.gop_size = frames
    ctx.max_b_frames = 0
    ctx.options = ({"preset": "ultrafast", "tune": "zerolatency"} if codec == "h264" else
                   {"preset": "ultrafast", "x265-params": f"keyint={frames}:bframes=0:log-level=error"})
    units: list[tuple[bytes, ...]] = []
    yy, xx = np.mgrid[0:120, 0:160]
    for i in range(frames):
        img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], -1)
        frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        for pkt in ctx.encode(frame):
            units.append(_split(bytes(pkt)))
    for pkt in ctx.encode(None):
        units.append(_split(bytes(pkt)))
    param_types = (7, 8) if codec == "h264" else (32, 33, 34)
    params = tuple(n for n in units[0] if _nal_type(codec, n) in param_types)
    assert len(params) == len(param_types), "the first unit carries the parameter sets"
    return Clip(codec, tuple(units), params)


def _split(annexb: bytes) -> tuple[bytes, ...]:
    return tuple(n.lstrip(b"\0") for n in re.split(b"\0\0\1", annexb) if n.strip(b"\0"))


def packets(c: Clip, nals: tuple[bytes, ...]) -> list[bytes]:
    """One access unit's RTP payloads (the caller adds headers; the last has the marker)."""
    out: list[bytes] = []
    for nal in nals:
        if len(nal) <= MTU_PAYLOAD:
            out.append(nal)
            continue
        if c.codec == "h264":
            head, body, kind = bytes([(nal[0] & 0xE0) | 28]), nal[1:], nal[0] & 0x1F
        else:
            head = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
            body, kind = nal[2:], (nal[0] >> 1) & 0x3F
        for i in range(0, len(body), MTU_PAYLOAD):
            fu = kind | (0x80 if i == 0 else 0) | (0x40 if i + MTU_PAYLOAD >= len(body) else 0)
            out.append(head + bytes([fu]) + body[i:i + MTU_PAYLOAD])
    return out


def _read(name: str) -> str:
    return (DIR / name).read_text(encoding="utf-8", errors="surrogateescape")


def _with_params(sdp: str, c: Clip) -> str:
    b64 = [base64.b64encode(p).decode() for p in c.params]
    if c.codec == "h264":
        return re.sub(r"sprop-parameter-sets=[^;\s]*", "sprop-parameter-sets=" + ",".join(b64),
                      sdp)
    for key, value in zip(("sprop-vps", "sprop-sps", "sprop-pps"), b64, strict=True):
        sdp = re.sub(key + r"=[^;\s]*", f"{key}={value}", sdp)
    return sdp


def _reply(recorded: str, cseq: str, body: str | None = None) -> bytes:
    """A recorded reply with this request's CSeq and a Content-Length that fits its body."""
    head, _, recorded_body = recorded.replace("\r\n", "\n").partition("\n\n")
    body = recorded_body if body is None else body
    lines = [ln for ln in head.split("\n")
             if not re.match(r"(?i)(cseq|content-length)\s*:", ln)]
    lines.insert(1, f"CSeq: {cseq}")
    data = body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "surrogateescape")
    if data:
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + data


class ReplayCamera:
    """One dialect on 127.0.0.1:port; serves connections until stop()."""

    def __init__(self, d: Dialect, *, udp_only: bool = False,
                 clock_offset_s: float | None = None) -> None:
        """`udp_only`: a SETUP for interleaved TCP is refused (461) and the video goes over UDP
        to the client_port asked for. `clock_offset_s`: RTCP sender reports every second,
        from a wall clock this far ahead of the box's."""
        self.d = d
        self.udp_only, self.clock_offset_s = udp_only, clock_offset_s
        self._udp: socket.socket | None = None
        self._client: tuple[str, int] | None = None  # where RTP goes over UDP
        describe = _read(d.describe)
        if describe.startswith("RTSP/"):
            self.describe_head, _, sdp = describe.replace("\r\n", "\n").partition("\n\n")
            self.describe_head += "\n\n"
        else:  # a bare SDP: the camera's DESCRIBE reply had no Content-Base
            self.describe_head, sdp = "RTSP/1.0 200 OK\nContent-Type: application/sdp\n\n", \
                describe
        found = re.search(r"a=rtpmap:(\d+)\s+(H264|H265)/", sdp, re.I)
        assert found, f"{d.describe}: no H.264/H.265 track"
        self.payload_type = int(found.group(1))
        self.clip = clip("h264" if found.group(2).upper() == "H264" else "hevc")
        self.sdp = _with_params(sdp, self.clip)
        self.requests: list[str] = []  # request lines, in order
        self.played = threading.Event()
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._srv.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def start(self) -> ReplayCamera:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._srv.close()

    def _accept(self) -> None:
        self._srv.settimeout(0.05)  # a close() from another thread would not wake accept()
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _answer(self, request: str) -> tuple[bytes, bool]:
        """The reply to one request, and whether the video starts after it."""
        line = request.split("\r\n", 1)[0]
        self.requests.append(line)
        method = line.split(" ", 1)[0]
        found = re.search(r"(?im)^cseq:\s*(\S+)", request)
        cseq = found.group(1) if found else "0"
        if method == "DESCRIBE":
            return _reply(self.describe_head, cseq, self.sdp), False
        if method == "SETUP":
            if line.split(" ")[1] != self.d.setup_uri.format(url=self.url()):
                return _reply("RTSP/1.0 404 Not Found\n\n", cseq), False
            transport = re.search(r"(?im)^transport:\s*(.*)$", request)
            ports = re.search(r"client_port=(\d+)", transport.group(1) if transport else "")
            if self.udp_only and not ports:
                return _reply("RTSP/1.0 461 Unsupported Transport\n\n", cseq), False
            if ports:
                self._client = ("127.0.0.1", int(ports.group(1)))
                self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._udp.bind(("127.0.0.1", 0))
            elif self.d.setup:
                return _reply(_read(self.d.setup), cseq), False
            return _reply("RTSP/1.0 200 OK\nSession: 12345678;timeout=60\nTransport: "
                          + (transport.group(1).strip() if transport else "") + "\n\n",
                          cseq), False
        if method == "PLAY":
            recorded = _read(self.d.play) if self.d.play else \
                "RTSP/1.0 200 OK\nSession: 12345678\nRange: npt=0.000-\n\n"
            return _reply(recorded, cseq), True
        if method == "OPTIONS" and self.d.options:
            return _reply(_read(self.d.options), cseq), False
        return _reply("RTSP/1.0 200 OK\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, "
                      "GET_PARAMETER\n\n", cseq), False

    def _channel(self) -> int:
        if not self.d.setup:
            return 0
        found = re.search(r"interleaved=(\d+)", _read(self.d.setup))
        return int(found.group(1)) if found else 0

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        playing_since: float | None = None
        seq, frame = 0, 0
        c = self.clip
        next_sr = 0.0
        try:
            conn.settimeout(0.01)
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                except TimeoutError:
                    pass
                while (end := buf.find(b"\r\n\r\n")) >= 0:
                    request, buf = buf[:end + 4].decode("latin-1"), buf[end + 4:]
                    reply, play = self._answer(request)
                    conn.sendall(reply)
                    if play and playing_since is None:
                        playing_since = time.monotonic()
                        self.played.set()
                if playing_since is None:
                    continue
                # Every picture whose time has come, paced at FPS as a camera sends them.
                while frame <= (time.monotonic() - playing_since) * FPS:
                    payloads = packets(c, c.units[frame % len(c.units)])
                    ts = (frame * (90000 // FPS) + 0x12345678) & 0xFFFFFFFF
                    out = bytearray()
                    for i, p in enumerate(payloads):
                        marker = 0x80 if i == len(payloads) - 1 else 0
                        rtp = struct.pack(">BBHII", 0x80, marker | self.payload_type,
                                          seq & 0xFFFF, ts, 0x4CACC3D1) + p
                        if self._udp is not None and self._client is not None:
                            self._udp.sendto(rtp, self._client)
                        else:
                            out += b"$" + bytes([self._channel()]) + struct.pack(">H", len(rtp))
                            out += rtp
                        seq += 1
                    conn.sendall(bytes(out))
                    frame += 1
                now = time.monotonic()
                if self.clock_offset_s is not None and now >= next_sr:
                    next_sr = now + 1.0
                    self._sender_report(conn, now - playing_since)
        except OSError:
            return
        finally:
            conn.close()
            if self._udp is not None:
                self._udp.close()

    def _sender_report(self, conn: socket.socket, since_play_s: float) -> None:
        """An RTCP SR: the (offset) wall clock now, and the RTP timestamp of now."""
        assert self.clock_offset_s is not None
        ntp = time.time() + self.clock_offset_s + 2_208_988_800
        ts = (int(since_play_s * 90000) + 0x12345678) & 0xFFFFFFFF
        sr = struct.pack(">BBHIIIIII", 0x80, 200, 6, 0x4CACC3D1, int(ntp),
                         int((ntp % 1) * 2**32), ts, 0, 0)
        if self._udp is not None and self._client is not None:
            self._udp.sendto(sr, (self._client[0], self._client[1] + 1))
        else:
            conn.sendall(b"$" + bytes([self._channel() + 1]) + struct.pack(">H", len(sr)) + sr)


# Every recorded camera with an H.264/H.265 track: its DESCRIBE (or SDP) and, where retina
# kept them, its SETUP / PLAY / OPTIONS replies. A SETUP reply recorded for UDP
# (h264dvr_setup_video, luckfox_rkipc_setup_udp) is not used: the reader asked for TCP.
DIALECTS = [
    Dialect("anjvision", "anjvision_describe.txt",
            setup_uri="rtsp://192.168.1.10:554/stream0/trackID=1"),
    Dialect("anpviz", "anpviz_sdp.txt"),
    Dialect("wowza-bunny", "bunny_describe.txt", "bunny_setup.txt", "bunny_play.txt",
            setup_uri="rtsp://wowzaec2demo.streamlock.net/vod/mp4:BigBuckBunny_115k.mov/trackID=2"),
    Dialect("wowza-bad-rtptime", "bunny_describe.txt", "bunny_setup.txt", "bad_rtptime.txt",
            setup_uri="rtsp://wowzaec2demo.streamlock.net/vod/mp4:BigBuckBunny_115k.mov/trackID=2"),
    Dialect("dahua-h264", "dahua_describe_h264_aac_onvif.txt", "dahua_setup.txt",
            "dahua_play.txt", "dahua_options.txt", setup_uri="rtsp://192.168.5.111:554/cam/realmonitor?channel=1&subtype=1&unicast=true&proto=Onvif/trackID=0"),
    Dialect("dahua-h265", "dahua_describe_h265_pcma.txt", "dahua_setup.txt", "dahua_play.txt",
            "dahua_options.txt",
            setup_uri="rtsp://cam-driveway/cam/realmonitor?channel=1&subtype=2/trackID=0"),
    Dialect("foscam", "foscam_describe.txt",
            setup_uri="rtsp://192.168.5.107:65534/videoMain/track1"),
    Dialect("geovision", "geovision_sdp.txt",
            setup_uri="rtsp://192.168.5.237/media/video1/video"),
    Dialect("gw-main", "gw_main_describe.txt", "gw_main_setup_video.txt", "gw_main_play.txt",
            setup_uri="rtsp://192.168.1.110:5050/H264?channel=1&subtype=0&unicast=true&proto=Onvif/video"),
    Dialect("gw-sub", "gw_sub_describe.txt", "gw_sub_setup.txt", "gw_sub_play.txt",
            setup_uri="rtsp://192.168.1.110:5049/H264?channel=1&subtype=1&unicast=true&proto=Onvif/video"),
    Dialect("h264dvr", "h264dvr_describe.txt", play="h264dvr_play.txt",
            setup_uri="rtsp://127.0.0.1:554/camera/trackID=3"),
    Dialect("hikvision", "hikvision_describe.txt", "hikvision_setup.txt", "hikvision_play.txt",
            setup_uri="rtsp://192.168.5.106:554/Streaming/Channels/101/trackID=1?transportmode=unicast&profile=Profile_1"),
    Dialect("hikvision-ssrc-space", "hikvision_describe.txt", "hikvision_setup_ssrc_space.txt",
            "hikvision_play.txt", setup_uri="rtsp://192.168.5.106:554/Streaming/Channels/101/trackID=1?transportmode=unicast&profile=Profile_1"),
    Dialect("ipcam", "ipcam_describe.txt"),
    Dialect("laureii", "ipcam_describe.txt", play="laureii_play.txt"),
    Dialect("luckfox-rkipc", "macrovideo_describe.txt", "luckfox_rkipc_setup_tcp.txt",
            setup_uri="{url}/track1"),
    Dialect("macrovideo", "macrovideo_describe.txt", setup_uri="{url}/track1"),
    Dialect("missing-content-type", "missing_content_type_describe.txt",
            setup_uri="{url}/streamid=0"),
    Dialect("reolink", "reolink_describe.txt", "reolink_setup.txt", "reolink_play.txt",
            setup_uri="rtsp://192.168.5.206/h264Preview_01_main/trackID=1"),
    Dialect("reolink-control-first", "reolink_describe_control_first.txt", "reolink_setup.txt",
            "reolink_play.txt", setup_uri="rtsp://192.168.5.206/h264Preview_01_main/trackID=1"),
    Dialect("tplink", "tplink_sdp.txt", setup_uri="{url}/track1"),
    Dialect("ubiquiti", "ubiquiti_sdp.txt", setup_uri="{url}/trackID=2"),
    Dialect("vstarcam", "vstarcam_describe.txt", setup_uri="{url}/track0"),
]
