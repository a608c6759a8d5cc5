"""A minimal RTSP client for one camera's video (RFC 2326), RTP interleaved over TCP or over UDP.

Plain blocking code for the camera's own thread: DESCRIBE (Basic or Digest authentication, from
the URL's user:password), SETUP of the first video track only (audio is never set up:
docs/policy.md), PLAY, then `read_some()` hands over the video's RTP packets. Over TCP it takes
as many as one recv() brings (tens at 2 Mb/s) instead of FFmpeg's poll+recv for each packet's
header and again for its payload; over UDP (`transport="udp"`: a client_port pair, even and
odd) it drains the RTP socket and puts the packets back in order (nvr.media.rtp.Reorder). A
GET_PARAMETER (or OPTIONS) keep-alive goes out every half of the session's timeout, over UDP an
RTCP receiver report every RR_INTERVAL_S; replies that arrive between RTP packets are skipped, and
the camera's RTCP sender reports are kept (`sender_reports`: its own wall clock). A BYE for the
session ends it at once (RtspError "offline"), after the packets that came before it, so that
the recorder reconnects now rather than after the read timeout.

Errors are RtspError, whose kinds match a recorder's session ends:
credentials, no_video, offline, protocol; a read that waits longer than the timeout raises TimeoutError.
The URL's credentials never appear in a message.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import secrets
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from nvr.media.rtcp import (
    ReceptionStats,
    SenderReport,
    receiver_report,
    says_bye,
    sender_reports,
)
from nvr.media.rtp import Codec, Reorder

RECV_BYTES = 256 * 1024
BYE_DRAIN_READS = 8  # at a BYE over UDP, reads (of MAX_DATAGRAMS each) of what is still queued
MAX_HEADER_BYTES = 64 * 1024  # an RTSP reply's header
MAX_BODY_BYTES = 1024 * 1024  # an RTSP reply's body (an SDP is a few hundred bytes)
USER_AGENT = "nvr"
# The whole set-up (OPTIONS … PLAY) must finish within this many io timeouts: the socket's
# timeout is per recv(), and a camera that trickles a byte now and then never hits it.
SETUP_TIMEOUTS = 3
RR_INTERVAL_S = 5.0  # RTCP receiver reports (RFC 3550 §6.2: 5 s is the usual minimum)
# Over UDP: datagrams taken in one read at most (the rest wait for the next), and the socket
# buffer asked for (the kernel caps it at net.core.rmem_max), which must hold a read's pace.
MAX_DATAGRAMS = 512
UDP_RCVBUF = 2 * 1024 * 1024
# Pairs tried for RTP and RTCP (an even port and the odd one above it). Each try takes the port
# the system picks, odd or even, and the other port of its pair; it fails only if that one is
# taken. 16 tries that used even picks only failed once in a CI run of the suite (why, it did
# not say: the message now names the last error).
UDP_PAIR_TRIES = 64
Transport = Literal["tcp", "udp"]
Kind = Literal["credentials", "no_video", "offline", "protocol"]


class RtspError(Exception):
    def __init__(self, kind: Kind, message: str, *, codec_unsupported: bool = False,
                 basic_refused: bool = False, tcp_refused: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.tcp_refused = tcp_refused  # SETUP of RTP over TCP refused: the camera wants UDP
        self.codec_unsupported = codec_unsupported  # video, but neither H.264 nor H.265
        self.basic_refused = basic_refused  # only Basic offered, and Basic is not allowed


BASIC_REFUSED = "camera asks for Basic authentication, which sends the password in clear"


def is_loopback_host(host: str) -> bool:
    """A host whose traffic never leaves this machine (a name only if it is `localhost`)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def basic_auth_allowed(url: str, auth: str | None, allow_basic_auth: bool) -> bool:
    """Whether the password may be sent with Basic authentication, i.e. in clear (camera map
    keys `auth` and `allow_basic_auth`, docs/design.md "Camera passwords on the wire")."""
    if auth is not None:
        return auth == "any"
    if allow_basic_auth:
        return True
    try:
        u = urlsplit(url)
        host = u.hostname or ""
    except ValueError:
        return False
    return u.scheme.lower() == "rtsps" or is_loopback_host(host)


@dataclass(frozen=True)
class VideoTrack:
    codec: Codec
    clock_rate: int
    payload_type: int
    control: str
    params: tuple[bytes, ...]  # parameter-set NAL units from the SDP (sprop-*), no start codes


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default


def parse_sdp(sdp: str, base: str) -> VideoTrack | None:
    """The first H.264 or H.265 video track of an SDP, or None."""
    session_control = ""
    media: list[list[str]] = []
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        elif line.startswith("a=control:"):
            session_control = line[10:]
    for lines in media:
        m = lines[0][2:].split()
        if len(m) < 4 or m[0] != "video":
            continue
        pts = set(m[3:])
        for line in lines:
            rtpmap = re.match(r"a=rtpmap:([0-9]+)\s+([\w.-]+)/([0-9]+)", line)
            if not rtpmap or rtpmap.group(1) not in pts:
                continue
            name = rtpmap.group(2).upper()
            codec: Codec | None = "h264" if name == "H264" else "hevc" if name in (
                "H265", "HEVC") else None
            if codec is None:
                continue
            pt, clock_rate = int(rtpmap.group(1)), int(rtpmap.group(3)[:12])
            if pt > 127 or not 0 < clock_rate <= 10_000_000:
                raise RtspError("protocol", f"camera's SDP maps {name} to payload type {pt} "
                                            f"at {clock_rate} Hz, which cannot be read")
            control = next((x[10:] for x in lines if x.startswith("a=control:")), "")
            fmtp = next((x for x in lines if x.startswith(f"a=fmtp:{pt} ")), "")
            return VideoTrack(codec, clock_rate, pt,
                              _resolve(base, session_control, control), _sprop(fmtp, codec))
    return None


def request_base(content_base: str, content_location: str, request_url: str) -> str:
    """The base that an SDP's relative control URLs resolve against (RFC 2326 C.1.1):
    Content-Base, else Content-Location, else the request URL. A base without a scheme (seen
    from real cameras: `Content-Base: 192.168.1.10:554/stream0/`) is taken as rtsp://, so that
    every request goes out with an absolute URI (RFC 2326 §6.1)."""
    for base in (content_base.strip(), content_location.strip(), request_url):
        if base:
            return base if _ABSOLUTE.match(base) else "rtsp://" + base.lstrip("/")
    return request_url


_ABSOLUTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_DIGITS = re.compile(r"[0-9]{1,20}\Z")


def resolve_control(base: str, control: str) -> str:
    """A control attribute's URL, absolute: `*` or nothing is the base itself; an absolute
    URL is taken as it is; a path from the root (`/x`) replaces the base's path; anything else
    is appended to the base as one more path segment, as cameras mean it and FFmpeg's and
    retina's readers do (a strict RFC 1808 join would drop the base's last segment when the
    base lacks a trailing slash: `rtsp://h/stream0` + `trackID=1`, which cameras answer 404)."""
    control = control.strip()
    if not control or control == "*":
        return base
    if _ABSOLUTE.match(control):
        return control
    if control.startswith("/"):
        try:
            u = urlsplit(base)
        except ValueError:  # e.g. `rtsp://[::1` as Content-Base
            raise RtspError("protocol", f"camera sent a base URL that cannot be read: "
                                        f"{_printable(base)!r}") from None
        return urlunsplit((u.scheme, u.netloc, control, "", ""))
    return base.rstrip("/") + "/" + control


def _printable(s: str) -> str:
    return "".join(c for c in s[:60] if c.isprintable())


def _resolve(base: str, session_control: str, control: str) -> str:
    """A media's control URL: its own, else the session's, resolved against the base."""
    if not control.strip() or control.strip() == "*":
        return resolve_control(base, session_control)
    # A relative media control is relative to the base, not to the session's control.
    return resolve_control(base, control)


def _aggregate(sdp: str, base: str) -> str:
    """The aggregate control URL, which PLAY, keep-alives and TEARDOWN address: the SDP's
    session-level control resolved against the base, or the base itself."""
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            break
        if line.startswith("a=control:"):
            return resolve_control(base, line[10:])
    return base.rstrip("/") if base else base


def _sprop(fmtp: str, codec: Codec) -> tuple[bytes, ...]:
    keys = ("sprop-parameter-sets",) if codec == "h264" else ("sprop-vps", "sprop-sps",
                                                                "sprop-pps")
    params: list[bytes] = []
    for key in keys:
        found = re.search(key + r"=([^;\s]+)", fmtp)
        if not found:
            continue
        for b64 in found.group(1).split(","):
            try:
                nal = base64.b64decode(b64 + "=" * (-len(b64) % 4))
            except ValueError:
                continue
            if nal:
                params.append(nal)
    return tuple(params)


def challenge_params(challenge: str) -> dict[str, str]:
    """The parameters of a WWW-Authenticate challenge; quoted values may hold commas."""
    return {k.lower(): (q if q else v) for k, q, v in
            re.findall(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))', challenge)}


def digest_header(user: str, password: str, challenge: str, method: str, uri: str,
                  cnonce: str = "0a4f113b", nc: int = 1) -> str:
    """RFC 2617 Digest (MD5, with or without qop=auth), as RTSP cameras ask for it."""
    params = challenge_params(challenge)
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(s: str) -> str:
        return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    out = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        ncs = f"{nc:08x}"
        out += f', qop=auth, nc={ncs}, cnonce="{cnonce}"'
        out += f', response="{md5(f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")}"'
    else:
        out += f', response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
    if "opaque" in params:
        out += f', opaque="{params["opaque"]}"'
    return out + ", algorithm=MD5"


class RtspSession:
    def __init__(self, url: str, timeout_s: float = 5.0,
                 on_socket: Callable[[socket.socket | None], object] | None = None,
                 *, allow_basic: bool = True, transport: Transport = "tcp") -> None:
        try:
            u = urlsplit(url)
            port = u.port
        except ValueError:  # e.g. a raw '/' in the password: say nothing of the URL's parts
            raise RtspError("protocol", "the camera URL cannot be read; percent-encode "
                                        "'/', '?', '#' and '@' in the user and password") from None
        if u.scheme.lower() != "rtsp":
            raise RtspError("protocol", f"reader: nvr reads rtsp:// only, not {u.scheme}:// "
                                        "(use reader: ffmpeg for this camera)")
        self.host, self.port = u.hostname or "", port or 554
        self.user, self.password = unquote(u.username or ""), unquote(u.password or "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if port is None else f"{host}:{port}"
        self.url = urlunsplit((u.scheme, netloc, u.path, u.query, ""))  # no credentials
        self.timeout_s = timeout_s
        self.on_socket = on_socket  # told the socket (None once closed): a watchdog may shut it
        self.deadline: float | None = None  # while setting up: when it must be done
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.cseq = 0
        self.channel = 0  # the interleaved channel of the video's RTP
        self.session = ""
        self.keepalive_s = 30.0
        self.keepalive_method = "OPTIONS"
        self.allow_basic = allow_basic  # False: a Basic-only challenge is refused, unanswered
        self._auth: str | None = None  # the challenge, once the camera sent one
        self._nc = 0  # Digest nonce count
        self._cnonce = secrets.token_hex(8)
        self._last_sent = 0.0
        self.track: VideoTrack | None = None
        self.play_url = self.url
        self.transport: Transport = transport
        self.rtp_sock: socket.socket | None = None  # over UDP: the client_port pair
        self.rtcp_sock: socket.socket | None = None
        self._peer = ""  # the camera's address (UDP packets from elsewhere are dropped)
        self._server_rtcp: tuple[str, int] | None = None  # where receiver reports go over UDP
        self.reorder = Reorder()
        self.reception = ReceptionStats()
        self._ordered: list[bytes] = []
        self._control = select.poll()  # over UDP: whether the RTSP connection has bytes
        self._own_ssrc = secrets.randbits(32)
        self._last_rr = 0.0
        self.last_sr: tuple[SenderReport, float] | None = None  # and when it came (monotonic)
        self.sender_reports: list[SenderReport] = []  # new since the caller last took them
        self.bye = False  # the camera said (RTCP BYE) that the stream has ended

    # -- set-up ---------------------------------------------------------------------------------
    def open(self) -> VideoTrack:
        """Connect, describe, set up the video track and play; the socket is closed again if
        any step fails."""
        self.deadline = time.monotonic() + SETUP_TIMEOUTS * self.timeout_s
        try:
            track = self._open()
        except BaseException:
            self.close()
            raise
        finally:
            self.deadline = None
        assert self.sock is not None
        self.sock.settimeout(self.timeout_s)  # _fill may have shortened it to the deadline
        return track

    def _connect(self) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), self.timeout_s)
        except OSError as e:
            raise RtspError("offline", f"cannot connect to {self.host}:{self.port}: "
                                       f"{e.strerror or e}") from None
        if self.on_socket is not None:
            self.on_socket(self.sock)
        self.sock.settimeout(self.timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _open(self) -> VideoTrack:
        self._connect()
        options = self.request("OPTIONS", self.url)
        if "GET_PARAMETER" in options.header("public"):
            self.keepalive_method = "GET_PARAMETER"
        reply = self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        self._check(reply, "DESCRIBE")
        base = request_base(reply.header("content-base"), reply.header("content-location"),
                            self.url)
        self.play_url = _aggregate(reply.body.decode("utf-8", "replace"), base)
        sdp = reply.body.decode("utf-8", "replace")
        track = parse_sdp(sdp, base)
        if track is None:
            if "m=video" in sdp:
                raise RtspError("no_video", "stream's video is neither H.264 nor H.265",
                                codec_unsupported=True)
            raise RtspError("no_video", "stream has no video")
        if self.transport == "udp":
            port = self._bind_udp()
            reply = self.request("SETUP", track.control,
                                 {"Transport": f"RTP/AVP;unicast;client_port={port}-{port + 1}"})
            self._check(reply, "SETUP")
            self._udp_peer(reply.header("transport"))
        else:
            reply = self.request("SETUP", track.control,
                                 {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
            self._check(reply, "SETUP")
            # The camera may pick other channels than the 0-1 asked for: take what it answered.
            chosen = re.search(r"interleaved=(\d+)", reply.header("transport"))
            self.channel = int(chosen.group(1)) if chosen else 0
        session = reply.header("session")
        self.session = session.split(";")[0].strip()
        timeout = re.search(r"timeout=(\d+)", session)
        if timeout:
            self.keepalive_s = max(1.0, int(timeout.group(1)) / 2)
        # PLAY goes to the presentation (the session-level control, else Content-Base).
        self._check(self.request("PLAY", self.play_url, {"Range": "npt=0.000-"}), "PLAY")
        self.track = track
        if self.transport == "udp":
            self._send_rr(time.monotonic())  # also opens the way back through a NAT
        return track

    def _bind_udp(self) -> int:
        """Bind the RTP and RTCP sockets to an even port and the odd one above it (RFC 3550
        §11), on the address the RTSP connection goes out from; the RTP port."""
        assert self.sock is not None
        family, local = self.sock.family, self.sock.getsockname()[0]
        why = "every pair tried was taken"
        for _ in range(UDP_PAIR_TRIES):
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((local, 0))  # a free port the system picks
                port = rtp.getsockname()[1]
                if port % 2:  # odd: the RTCP port of the pair below it
                    rtp, rtcp = rtcp, rtp
                    port -= 1
                    rtp.bind((local, port))
                else:
                    rtcp.bind((local, port + 1))
                rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
                rtp.setblocking(False)
                rtcp.setblocking(False)
                self.rtp_sock, self.rtcp_sock = rtp, rtcp
                self._control.register(self.sock.fileno(), select.POLLIN)
                return int(port)
            except OSError as e:  # the other port of the pair is taken: another pair
                why = e.strerror or why
            rtp.close()
            rtcp.close()
        raise RtspError("offline", "no free pair of UDP ports (even and odd) for RTP and "
                        f"RTCP ({why.lower()})")

    def _udp_peer(self, transport: str) -> None:
        assert self.sock is not None
        self._peer = self.sock.getpeername()[0]
        source = re.search(r"source=([^;\s]+)", transport)
        if source:
            self._peer = source.group(1)
        ports = re.search(r"server_port=(\d+)(?:-(\d+))?", transport)
        if ports:
            rtcp = int(ports.group(2)) if ports.group(2) else int(ports.group(1)) + 1
            if 0 < rtcp < 65536:
                self._server_rtcp = (self._peer, rtcp)

    def sockets(self) -> tuple[socket.socket, ...]:
        """What to wait on for read_some(): the RTSP connection, and over UDP the RTP and
        RTCP sockets too (RTP first)."""
        assert self.sock is not None
        if self.rtp_sock is not None and self.rtcp_sock is not None:
            return (self.rtp_sock, self.rtcp_sock, self.sock)
        return (self.sock,)

    def _check(self, reply: Reply, what: str) -> None:
        if reply.status == 401:
            if self.user and self._auth is None and reply.headers.get("www-authenticate"):
                # Challenged in a way this reader cannot answer (e.g. Digest MD5-sess,
                # SHA-256): not the password's fault; FFmpeg's reader may answer it.
                raise RtspError("protocol", f"{what}: the camera asks for an authentication "
                                            "this reader does not speak")
            raise RtspError("credentials", "credentials refused by camera")
        if reply.status == 404:
            if what != "DESCRIBE":  # it described the stream a moment ago: gone for now
                # (VLC's server, between two loops of the file it serves).
                raise RtspError("offline", f"the camera's stream went away ({what}: 404 Not "
                                           "Found)")
            raise RtspError("no_video", f"camera has no such stream ({what}: 404 Not Found)")
        if reply.status != 200:
            reason = "".join(c for c in reply.reason[:60] if c.isprintable())
            if what == "SETUP" and (reply.status == 461 or reply.status == 400
                                    and "transport" in reason.lower()):
                raise RtspError("protocol", f"the camera refuses RTP over TCP ({what}: "
                                            f"{reply.status} {reason})", tcp_refused=True)
            # A server error or a full session table (453, 454) is the camera being busy or
            # booting: retried, as for an offline camera. Anything else is a dialect of RTSP
            # this reader does not speak.
            busy = reply.status >= 500 and reply.status not in (501, 505) \
                or reply.status in (453, 454)
            raise RtspError("offline" if busy else "protocol",
                            f"{what} refused: {reply.status} {reason}")

    def request(self, method: str, uri: str, headers: dict[str, str] | None = None) -> Reply:
        reply = self._send_and_wait(method, uri, headers or {})
        if reply.status == 401 and self.user:
            # A first challenge, or a new nonce (stale, rotated): answer it once.
            challenges = reply.headers.get("www-authenticate", [])
            digest = next((c for c in challenges if c.lower().startswith("digest")
                           and challenge_params(c).get("algorithm", "MD5").upper()
                           in ("MD5", "")), None)
            auth = digest or next((c for c in challenges if c.lower().startswith("basic")), "")
            if auth and not digest and not self.allow_basic:
                # Never answered: the answer itself would carry the password in clear.
                raise RtspError("credentials", BASIC_REFUSED, basic_refused=True)
            if auth and auth != self._auth:
                self._auth, self._nc = auth, 0
                reply = self._send_and_wait(method, uri, headers or {})
        return reply

    def _authorization(self, method: str, uri: str) -> str | None:
        if not self._auth or not self.user:
            return None
        if self._auth.lower().startswith("digest"):
            self._nc += 1
            return digest_header(self.user, self.password, self._auth, method, uri,
                                 self._cnonce, self._nc)
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def _send(self, method: str, uri: str, headers: dict[str, str]) -> int:
        assert self.sock is not None
        self.cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self.cseq}", f"User-Agent: {USER_AGENT}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        auth = self._authorization(method, uri)
        if auth:
            lines.append(f"Authorization: {auth}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._last_sent = time.monotonic()
        return self.cseq

    def _send_raw(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise
        except OSError as e:
            raise RtspError("offline", f"camera connection failed: {e.strerror or e}") from None

    def _send_and_wait(self, method: str, uri: str, headers: dict[str, str]) -> Reply:
        cseq = self._send(method, uri, headers)
        while True:
            reply = self._read_reply()
            if reply is None:
                continue  # an interleaved packet before the reply: not ours yet
            if reply.header("cseq", str(cseq)) == str(cseq):
                return reply

    def _fill(self) -> int:
        assert self.sock is not None
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"set-up not done in {SETUP_TIMEOUTS * self.timeout_s:g} s")
            self.sock.settimeout(min(self.timeout_s, left))
        try:
            chunk = self.sock.recv(RECV_BYTES)
        except TimeoutError:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise TimeoutError(f"set-up not done in {SETUP_TIMEOUTS * self.timeout_s:g} s"
                                   ) from None
            raise
        except OSError as e:
            raise RtspError("offline", f"camera connection failed: {e.strerror or e}") from None
        if not chunk:
            raise RtspError("offline", "camera closed the stream")
        self.buf += chunk
        return len(chunk)

    def _read_reply(self) -> Reply | None:
        """One RTSP reply from the buffer (reading more as needed); None if the buffer starts
        with an interleaved packet, which is dropped (only during set-up and keep-alives)."""
        while len(self.buf) < 4:
            self._fill()
        if self.buf[0] == 0x24:
            n = 4 + ((self.buf[2] << 8) | self.buf[3])
            while len(self.buf) < n:
                self._fill()
            del self.buf[:n]
            return None
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > MAX_HEADER_BYTES:
                raise RtspError("protocol", "camera sent an RTSP header over 64 KB")
            self._fill()
        head = bytes(self.buf[:end]).decode("utf-8", "replace").split("\r\n")
        status = head[0].split(" ", 2)
        # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
        if len(status) < 2 or not status[0].startswith("RTSP/") or not _DIGITS.match(status[1]):
            raise RtspError("protocol", f"camera sent something that is not RTSP: {head[0][:60]!r}")
        reply = Reply(int(status[1]), status[2] if len(status) > 2 else "")
        for line in head[1:]:
            k, _, v = line.partition(":")
            reply.headers.setdefault(k.strip().lower(), []).append(v.strip())
        length = reply.header("content-length", "0") or "0"
        n = int(length) if _DIGITS.match(length) else -1
        if not 0 <= n <= MAX_BODY_BYTES:
            raise RtspError("protocol", f"camera sent an RTSP body of {length[:20]!r} bytes")
        while len(self.buf) < end + 4 + n:
            self._fill()
        reply.body = bytes(self.buf[end + 4:end + 4 + n])
        del self.buf[:end + 4 + n]
        return reply

    # -- streaming ------------------------------------------------------------------------------
    def read_some(self, on_packet: Callable[[bytes, int, int], object]) -> int:
        """Every video RTP packet now readable (it does not block: one of sockets() is
        readable) goes to `on_packet(data, start, stop)`, the packet being data[start:stop]
        (offsets, so that a packet costs no slice of its own). Returns the RTP bytes taken;
        RECV_BYTES or more means that there may be more waiting."""
        now = time.monotonic()
        if now - self._last_sent >= self.keepalive_s:
            self._send(self.keepalive_method, self.play_url, {})
        if self.rtp_sock is None:
            got = self._fill()
            self._take(on_packet)
        else:
            if now - self._last_rr >= RR_INTERVAL_S:
                self._send_rr(now)
            got = self._read_udp(on_packet, now)
        if self.bye:
            if self.rtp_sock is not None:
                for _ in range(BYE_DRAIN_READS):  # what came before the BYE, still queued
                    if self._read_udp(on_packet, now) < RECV_BYTES:
                        break
                # What waited for a lost packet is all there will be.
                self.reorder.flush(self._ordered)
                for data in self._ordered:
                    on_packet(data, 0, len(data))
                self._ordered.clear()
            raise RtspError("offline", "the camera ended the stream (RTCP BYE)")
        return got

    def _take(self, on_packet: Callable[[bytes, int, int], object] | None) -> None:
        """The complete interleaved packets and replies in the buffer: the video channel's
        RTP to on_packet, its RTCP read, replies skipped."""
        buf = bytes(self.buf)  # one copy a recv(): packets are read from it by offset
        pos, end, channel = 0, len(buf), self.channel
        while end - pos >= 4:
            if buf[pos] != 0x24:  # a reply to a keep-alive: skip it whole
                stop = buf.find(b"\r\n\r\n", pos)
                if stop < 0:
                    if end - pos > MAX_HEADER_BYTES:
                        raise RtspError("protocol", "camera sent 64 KB that are neither "
                                                    "RTP nor an RTSP reply")
                    break
                length = re.search(rb"(?i)content-length:\s*(\d+)", buf[pos:stop])
                body = int(length.group(1)) if length else 0
                if body > MAX_BODY_BYTES:
                    raise RtspError("protocol", f"camera sent an RTSP body of {body} bytes")
                skip = stop + 4 + body
                if skip > end:
                    break
                pos = skip
                continue
            n = (buf[pos + 2] << 8) | buf[pos + 3]
            if end - pos - 4 < n:
                break
            if buf[pos + 1] == channel and on_packet is not None:
                on_packet(buf, pos + 4, pos + 4 + n)
            elif buf[pos + 1] == channel + 1:
                self._rtcp(buf, pos + 4, pos + 4 + n)
            pos += 4 + n
        del self.buf[:pos]

    def _read_udp(self, on_packet: Callable[[bytes, int, int], object], now: float) -> int:
        assert self.rtp_sock is not None and self.rtcp_sock is not None and self.sock is not None
        if self._control.poll(0):  # the RTSP connection: keep-alive replies, or its end
            self._fill()  # (readable: does not wait)
            self._take(None)
        got, peer, reorder, ordered = 0, self._peer, self.reorder, self._ordered
        packet, now_us = self.reception.packet, int(now * 1_000_000)
        recvfrom = self.rtp_sock.recvfrom
        for _ in range(MAX_DATAGRAMS):
            try:
                data, addr = recvfrom(65536)
            except BlockingIOError:
                break
            if addr[0] != peer or len(data) < 12 or data[0] >> 6 != 2:
                continue  # not the camera's, or not RTP
            got += len(data)
            seq = (data[2] << 8) | data[3]
            packet(int.from_bytes(data[8:12]), seq)
            reorder.push(seq, data, now_us, ordered)
        else:
            got = max(got, RECV_BYTES)  # more may be waiting
        reorder.expire(now_us, ordered)
        for data in ordered:
            on_packet(data, 0, len(data))
        ordered.clear()
        for _ in range(16):
            try:
                data, addr = self.rtcp_sock.recvfrom(65536)
            except BlockingIOError:
                break
            if addr[0] == peer:
                self._rtcp(data, 0, len(data))
        return got

    def _rtcp(self, data: bytes, start: int, end: int) -> None:
        # Any BYE on the session's RTCP ends it, whatever SSRC it names: VLC's name SSRC 0
        # about as often as the stream's. (A source that changes its SSRC, RFC 3550 §8.2, also
        # says BYE: that costs a reconnection, about a second.)
        if says_bye(data, start, end):
            self.bye = True
        for sr in sender_reports(data, start, end):
            if self.reception.received and sr.ssrc != self.reception.ssrc:
                continue  # not the stream's (VLC sends some for SSRC 0, RTP time 0)
            self.last_sr = (sr, time.monotonic())
            if len(self.sender_reports) < 16:
                self.sender_reports.append(sr)

    def _send_rr(self, now: float) -> None:
        """An RTCP receiver report to the camera's RTCP port, over UDP only (over TCP the
        connection shows that the receiver is there, and servers of the kind put between
        cameras and recorders have been seen to take interleaved RTCP for a request)."""
        self._last_rr = now
        sr, at = self.last_sr if self.last_sr is not None else (None, now)
        block = self.reception.report_block(sr, now - at) \
            if self.reception.base_seq is not None else None
        rr = receiver_report(self._own_ssrc, block)
        if self.rtcp_sock is None or self._server_rtcp is None:
            return
        try:
            self.rtcp_sock.sendto(rr, self._server_rtcp)
        except OSError:
            pass  # a report is not worth waiting for, nor ending the session over (ICMP)

    def close(self) -> None:
        for udp in (self.rtp_sock, self.rtcp_sock):
            if udp is not None:
                udp.close()
        self.rtp_sock = self.rtcp_sock = None
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            if self.session:
                sock.settimeout(0.5)
                self.sock = sock
                self._send("TEARDOWN", self.play_url, {})  # the aggregate control URL
                self.sock = None
        except OSError:
            pass
        finally:
            if self.on_socket is not None:
                self.on_socket(None)
            sock.close()


def only_basic_offered(url: str, timeout_s: float) -> bool:
    """Whether the camera's challenge to a DESCRIBE without credentials offers Basic and no
    Digest it could be answered with. For FFmpeg's reader, which cannot be told to refuse
    Basic: it is asked first, and nothing secret is sent to find out."""
    s = RtspSession(url, timeout_s, allow_basic=False)
    s.user = ""  # ask without credentials: only the challenge is wanted
    s.deadline = time.monotonic() + SETUP_TIMEOUTS * timeout_s
    try:
        s._connect()
        reply = s.request("DESCRIBE", s.url, {"Accept": "application/sdp"})
    finally:
        s.close()
    challenges = [c.lower() for c in reply.headers.get("www-authenticate", [])]
    return (reply.status == 401 and any(c.startswith("basic") for c in challenges)
            and not any(c.startswith("digest") for c in challenges))
