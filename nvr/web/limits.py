"""Limits that keep the web server from spending the recorder's file descriptors.

The web server (aiohttp, aiortc) lives in the recorder's process: every TCP connection, every
WebRTC peer's UDP sockets and every segment file served is a descriptor out of the same
RLIMIT_NOFILE as the cameras' sockets, the segment files being written and the index. A flood
of idle connections or of WebRTC offers that never connect must therefore be refused before
it reaches the limit, or a camera that reconnects fails with "Too many open files" and
recording stops. So:

- connections are accepted by our own loop (not asyncio's server), counted before TLS or
  aiohttp see them, and closed at once beyond `MAX_CONNECTIONS` in all, `MAX_PER_PEER` from
  one address, or when the process's open descriptors reach its limit minus `reserve()`;
- a connection must complete its request headers within `HEADER_TIMEOUT_S` of connecting or
  of its previous response (aiohttp's keep-alive timer, which closes a connection that has no
  whole request waiting), and a TLS handshake within `TLS_HANDSHAKE_S`;
- refused attempts are audited coalesced (`Coalescer`): the first of each kind (per link, or
  for connections per minute) gets its own row, the rest of the minute one row with the count.
docs/design.md ("Descriptors") has the arithmetic behind the numbers and the unit's LimitNOFILE.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nvr import log

_log = log.get("nvr.web.limits")

MAX_CONNECTIONS = 256  # open web connections in all
MAX_PER_PEER = 64  # from one address (every local account shares 127.0.0.1)
HEADER_TIMEOUT_S = 10.0  # a request's headers, from connect or from the previous response
TLS_HANDSHAKE_S = 10.0
MAX_SESSIONS_PER_LINK = 8  # browser windows open on one link at once
SESSION_IDLE_S = 60.0  # a session with no open stream and no request this long ends
MAX_PEERS = 64  # WebRTC peer connections in all (each holds UDP sockets)
MAX_PEERS_PER_LINK = 16  # one per camera per window: a 4-camera link in 4 windows
RTC_CONNECT_S = 15.0  # ICE and DTLS must complete within this, or the peer is closed
COALESCE_S = 60.0  # refused attempts of one kind: one row, then one count, per minute
RESERVE_MIN = 256  # descriptors the web server leaves to the recorder, at least


def nofile_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def reserve(limit: int | None = None) -> int:
    """Descriptors kept for the recorder: a quarter of the limit, at least RESERVE_MIN."""
    limit = nofile_limit() if limit is None else limit
    return max(RESERVE_MIN, limit // 4)


def open_fds() -> int:
    """Descriptors this process has open now (0 where /proc is not there: no check)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def descriptors_short() -> str | None:
    """Why the web server must not open another descriptor now, or None."""
    limit = nofile_limit()
    if limit == resource.RLIM_INFINITY:
        return None
    used = open_fds()
    if used >= limit - reserve(limit):
        return (f"{used} of {limit} file descriptors open; the last {reserve(limit)} are kept "
                "for recording")
    return None


def raise_nofile() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (a default soft limit of 1024 is too
    low for many cameras and viewers); returns (soft, hard) as they are afterwards. Under the
    systemd unit setrlimit is filtered (@resources) and LimitNOFILE= already set both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            _log.warning("nofile_not_raised", soft=soft, hard=hard, error=str(exc))
    return soft, hard


# -- refused attempts, coalesced in the audit ------------------------------------------------

@dataclass
class _Tally:
    first_us: int
    detail: dict[str, Any]
    written: bool = False
    count: int = 1  # attempts, the first included
    last_us: int = 0
    remotes: set[str] = field(default_factory=set)


Writer = Callable[[int, dict[str, Any], dict[str, Any] | None], Awaitable[None]]


class Coalescer:
    """One audit row for the first refused attempt of a kind, and one for how many more came
    within COALESCE_S, whatever their number. `note` is synchronous (an accept loop or a
    protocol callback calls it); `flush` writes (the web server's watcher calls it)."""

    def __init__(self, write: Writer, window_s: float = COALESCE_S) -> None:
        self.write = write  # (at_us, first attempt's detail, {count…} or None)
        self.window_us = int(window_s * 1_000_000)
        self._tallies: dict[tuple[str, ...], _Tally] = {}

    def note(self, key: tuple[str, ...], at_us: int, detail: dict[str, Any],
             remote: str | None = None) -> None:
        t = self._tallies.get(key)
        if t is None:
            if len(self._tallies) >= 1024:  # bounded: a new kind beyond is counted in the oldest
                t = min(self._tallies.values(), key=lambda x: x.first_us)
            else:
                t = self._tallies[key] = _Tally(at_us, detail, last_us=at_us)
                if remote:
                    t.remotes.add(remote)
                return
        t.count += 1
        t.last_us = at_us
        if remote and len(t.remotes) < 16:
            t.remotes.add(remote)

    async def flush(self, now_us: int, everything: bool = False) -> None:
        for key, t in list(self._tallies.items()):
            if not t.written:
                t.written = True
                await self.write(t.first_us, t.detail, None)
            over = everything or now_us - t.first_us >= self.window_us or now_us < t.first_us
            if over:
                del self._tallies[key]
                if t.count > 1:
                    await self.write(t.last_us, t.detail, {
                        "count": t.count - 1, "remotes": sorted(t.remotes),
                        "window_s": self.window_us / 1e6})


# -- the accept loop ------------------------------------------------------------------------

class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, releasing its place when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.release()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Acceptor:
    """Listens on (host, port) and hands each admitted connection to `factory` (aiohttp's
    server), TLS first if `ssl_context`. `on_refused(peer, why)` is told of each refusal."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], *,
                 ssl_context: ssl.SSLContext | None,
                 on_refused: Callable[[str, str], None],
                 max_connections: int | None = None, max_per_peer: int | None = None,
                 ) -> None:
        self.factory = factory
        self.ssl_context = ssl_context
        self.on_refused = on_refused
        self.max_connections = MAX_CONNECTIONS if max_connections is None else max_connections
        self.max_per_peer = MAX_PER_PEER if max_per_peer is None else max_per_peer
        self.open = 0
        self.per_peer: dict[str, int] = {}
        self.refused = 0
        self.socks: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: set[asyncio.Task[None]] = set()

    def listen(self, host: str, port: int) -> int:
        """Listen on every address `host` resolves to (as asyncio's create_server would: a
        `localhost` both IPv4 and IPv6); returns the port."""
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        seen: set[tuple[int, Any]] = set()
        try:
            for family, kind, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                sock = socket.socket(family, kind, proto)
                self.socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and len(infos) > 1:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(self.socks) > 1:  # the same port on every address
                    addr = (addr[0], self.socks[0].getsockname()[1], *addr[2:])
                sock.bind(addr)
                sock.listen(128)
                sock.setblocking(False)
        except BaseException:
            for sock in self.socks:
                sock.close()
            self.socks.clear()
            raise
        self._tasks = [asyncio.ensure_future(self._accept_loop(sock)) for sock in self.socks]
        return int(self.socks[0].getsockname()[1])

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for sock in self.socks:
            sock.close()
        self.socks.clear()
        for task in list(self._serving):
            task.cancel()

    def _admit(self, peer: str) -> str | None:
        if self.open >= self.max_connections:
            return f"{self.open} web connections open, the most allowed"
        if self.per_peer.get(peer, 0) >= self.max_per_peer:
            return f"{self.max_per_peer} web connections open from {peer}, the most allowed"
        return descriptors_short()

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as exc:
                # Out of descriptors (or memory): the pending connection waits in the backlog;
                # try again shortly rather than spin.
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.on_refused("?", f"cannot accept: {os.strerror(exc.errno or 0)}")
                    await asyncio.sleep(0.5)
                    continue
                _log.warning("web_accept_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            peer = str(addr[0]) if isinstance(addr, tuple) else "?"
            try:
                self._take(conn, peer)
            except Exception:
                # One connection's trouble must not end this loop (the server would stop
                # answering, silently): logged with its traceback, the connection closed.
                _log.exception("web_accept_failed", peer=peer)
                conn.close()

    def _take(self, conn: socket.socket, peer: str) -> None:
        why = self._admit(peer)
        if why is not None:
            conn.close()  # at once: no request read, nothing written
            self.refused += 1
            self.on_refused(peer, why)
            return
        task = asyncio.ensure_future(self._serve(conn, peer))
        self.open += 1
        self.per_peer[peer] = self.per_peer.get(peer, 0) + 1
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, conn: socket.socket, peer: str) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            left = self.per_peer.get(peer, 1) - 1
            if left > 0:
                self.per_peer[peer] = left
            else:
                self.per_peer.pop(peer, None)

        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Guarded(self.factory(), release), conn, ssl=self.ssl_context,
                ssl_handshake_timeout=TLS_HANDSHAKE_S if self.ssl_context else None)
        except asyncio.CancelledError:  # the server stops
            conn.close()
            release()
            raise
        except Exception as exc:  # noqa: BLE001 - a failed TLS handshake is the client's
            conn.close()
            release()
            _log.debug("web_handshake_failed", peer=peer, error=str(exc))
