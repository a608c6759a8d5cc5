"""The daemon's end of the control socket: read one request, ask `dispatch`, write the replies.

This module knows nothing of policy. It establishes who is asking (SO_PEERCRED + `role_of`),
validates the request's shape (protocol.py), and hands both to `dispatch`, which decides,
audits and acts. Anything a dispatch raises becomes one error line; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from nvr import log
from nvr.config.model import Role
from nvr.control import peercred
from nvr.control.admission import Admission
from nvr.control.protocol import (
    MAX_REQUEST_BYTES,
    Args,
    BadRequest,
    Caller,
    Reply,
    error_line,
    ok_line,
    parse_request,
    progress_line,
)
from nvr.errors import EX_SOFTWARE, EX_UNAVAILABLE, NvrError, Unavailable

__all__ = ["Caller", "ControlServer", "Dispatch", "Progress", "Reply"]

# progress({"done": n, "total": n, "message": "..."}) sends one progress line to the client
# (progress(done, total, message) works too).
Progress = Callable[[dict[str, Any]], Awaitable[None]]
Dispatch = Callable[[Caller, str, Args, Progress], Awaitable[Reply[Mapping[str, object]]]]
# Called for a request line that never became a request (bad JSON, too long, wrong fields):
# audits it and returns the error to answer (the policy's refusal may replace the input's).
OnBadRequest = Callable[[Caller, "bytes | None", NvrError], Awaitable[NvrError]]

_log = log.get("nvr.control")

# Every reply write (and the drain behind it) gives up after this long: a client that never
# reads cannot pin its slot and the memory of its answer.
WRITE_TIMEOUT_S = 10.0
# Unlisted accounts get less time to send their request line than listed ones.
PUBLIC_REQUEST_TIMEOUT_S = 3.0
# Connections not yet identified (accepted, SO_PEERCRED not read): a hard bound on tasks.
MAX_PENDING = 256
_NAME_TTL_S = 60.0
# Per account, at most this many per-connection log lines every LOG_WINDOW_S; the rest are
# counted into one `control_log_suppressed` line. A connect flood would otherwise write tens
# of MB of journal a minute — on a recorder whose disk is for footage.
LOG_BUDGET = 30
LOG_WINDOW_S = 10.0


class ControlServer:
    def __init__(
        self,
        path: Path,
        dispatch: Dispatch,
        *,
        role_of: Callable[[str | None], Role] = lambda _user: Role.public,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        request_timeout_s: float = 10,
        max_connections: int = 64,
        fd_send_timeout_s: float = 30,
        on_bad_request: OnBadRequest | None = None,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        admission: Admission | None = None,
    ) -> None:
        self._on_bad_request = on_bad_request
        self.path = Path(path)
        self._dispatch = dispatch
        # A callable, not a table: after `nvr reload` the daemon's current `people:` applies.
        self._role_of = role_of
        self._max_request_bytes = max_request_bytes
        self._request_timeout_s = request_timeout_s
        self._max_connections = max_connections
        self._fd_send_timeout_s = fd_send_timeout_s
        self._write_timeout_s = write_timeout_s
        self._admission = admission or Admission(max_connections=max_connections)
        self._names: dict[int, tuple[str | None, float]] = {}  # uid → (name, looked up at)
        self._log_budget: dict[int, list[float]] = {}  # uid → [window start, lines, suppressed]
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare_path)
        self._server = await asyncio.start_unix_server(
            self._on_connect, path=str(self.path), limit=self._max_request_bytes + 1
        )
        # 0666: every local account may connect; each request is then authorised by policy
        # on the uid the kernel reports (SO_PEERCRED), so reaching the socket grants nothing.
        await asyncio.to_thread(os.chmod, self.path, 0o666)
        self._inode = (await asyncio.to_thread(os.stat, self.path)).st_ino
        _log.info("control_listening", socket=str(self.path))

    def _prepare_path(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise Unavailable(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            # Left behind by a daemon that died: nobody listens, so it is safe to remove.
            self.path.unlink(missing_ok=True)
            _log.info("control_stale_socket_removed", socket=str(self.path))
            return
        except OSError as exc:
            raise Unavailable(f"cannot probe {self.path}: {exc}") from None
        finally:
            probe.close()
        raise Unavailable(f"another nvr daemon answers on {self.path}; stop it first")

    async def close(self, timeout_s: float = 10) -> None:
        """Stop accepting, let requests in flight finish (up to `timeout_s`), cancel the rest."""
        if self._server is None:
            return
        self._server.close()
        self._server = None
        await asyncio.to_thread(self._unlink_own_socket)
        pending = set(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
                _log.warning("control_requests_cancelled", count=len(late))
        _log.info("control_closed", socket=str(self.path))

    def _unlink_own_socket(self) -> None:
        # Only our own socket: a second daemon may already have replaced the file.
        with contextlib.suppress(FileNotFoundError):
            if self.path.lstat().st_ino == self._inode:
                self.path.unlink()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        caller: Caller | None = None
        try:
            if len(self._tasks) > MAX_PENDING + self._max_connections:
                return  # a connect flood: no reply, the slot is freed at once
            caller = await self._identify(writer)
            why = self._admission.admit(caller.uid, caller.role)
            if why is not None:
                if self._loud(caller.uid):
                    _log.warning("control_busy", uid=caller.uid, role=caller.role.value,
                                 connections=self._admission.total, why=why)
                caller = None
                await _send(writer, error_line(EX_UNAVAILABLE, why), self._write_timeout_s)
                return
            await self._serve(reader, writer, caller)
        except ConnectionError:
            pass  # the client went away; nothing to tell it
        except TimeoutError:
            # A reply the client did not read in time: drop it, never wait for it.
            if caller is None or self._loud(caller.uid):
                _log.info("control_write_timeout", timeout_s=self._write_timeout_s)
            writer.transport.abort()
        except Exception:
            _log.exception("control_connection_failed")
        finally:
            if caller is not None:
                self._admission.release(caller.uid, caller.role)
            self._tasks.discard(task)
            if writer.transport.get_write_buffer_size() > 0:
                writer.transport.abort()  # unsent bytes nobody reads: do not wait for them
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._write_timeout_s):
                    await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, caller: Caller
    ) -> None:
        timeout = self._request_timeout_s
        if caller.role is Role.public:
            timeout = min(timeout, PUBLIC_REQUEST_TIMEOUT_S)
        line = await self._read_request(reader, writer, timeout, caller)
        if line is None:
            return
        try:
            op, args = parse_request(line)
        except BadRequest as exc:
            if self._loud(caller.uid):
                _log.info("control_bad_request", uid=caller.uid, error=str(exc)[:300])
            err = await self._refuse_bad(caller, line, exc)
            await _send(writer, error_line(err.exit_code, str(err)), self._write_timeout_s)
            return

        async def progress(info: dict[str, Any] | int, total: int = 0, message: str = "") -> None:
            if isinstance(info, dict):
                line = progress_line(
                    int(info.get("done", 0)),
                    int(info.get("total", 0)),
                    str(info.get("message", "")),
                )
            else:
                line = progress_line(info, total, message)
            await _send(writer, line, self._write_timeout_s)

        started = time.monotonic()
        try:
            reply = await self._dispatch(caller, op, args, progress)
        except NvrError as exc:
            if self._loud(caller.uid):
                _log.info("control_refused", op=op, uid=caller.uid, code=exc.exit_code,
                          error=str(exc)[:300])
            await _send(writer, error_line(exc.exit_code, str(exc)), self._write_timeout_s)
            return
        except Exception:
            _log.exception("control_dispatch_failed", op=op, uid=caller.uid)
            await _send(writer, error_line(EX_SOFTWARE, "internal error (see the daemon log)"),
                        self._write_timeout_s)
            return
        try:
            await self._reply(writer, reply)
        finally:
            if reply.fd is not None:
                os.close(reply.fd)
        if not self._loud(caller.uid):
            return
        _log.info(
            "control_served",
            op=op,
            uid=caller.uid,
            user=caller.user,
            ms=round((time.monotonic() - started) * 1000),
        )

    def _loud(self, uid: int) -> bool:
        """May this account's connection write one more log line now?"""
        now = time.monotonic()
        b = self._log_budget.get(uid)
        if b is None or now - b[0] >= LOG_WINDOW_S:
            if b is not None and b[2]:
                _log.warning("control_log_suppressed", uid=uid, lines=int(b[2]),
                             window_s=LOG_WINDOW_S)
            if len(self._log_budget) > 4096:
                self._log_budget.clear()
            b = self._log_budget[uid] = [now, 0.0, 0.0]
        if b[1] < LOG_BUDGET:
            b[1] += 1
            return True
        b[2] += 1
        return False

    async def _identify(self, writer: asyncio.StreamWriter) -> Caller:
        pid, uid, gid = peercred.peer_credentials(writer.get_extra_info("socket"))
        now = time.monotonic()
        cached = self._names.get(uid)
        if cached is not None and now - cached[1] < _NAME_TTL_S:
            user = cached[0]  # a connection flood costs no thread hop per connection
        else:
            # getpwuid may ask NSS (LDAP, sssd): keep it off the event loop.
            user = await asyncio.to_thread(peercred.user_name, uid)
            if len(self._names) > 4096:
                self._names.clear()
            self._names[uid] = (user, now)
        return Caller(uid=uid, gid=gid, pid=pid, user=user, role=self._role_of(user))

    async def _refuse_bad(self, caller: Caller, line: bytes | None, exc: NvrError) -> NvrError:
        if self._on_bad_request is None:
            return exc
        try:
            return await self._on_bad_request(caller, line, exc)
        except Exception:
            _log.exception("control_bad_request_audit_failed", uid=caller.uid)
            return exc

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, allowance_s: float,
        caller: Caller,
    ) -> bytes | None:
        try:
            async with asyncio.timeout(allowance_s):
                return await reader.readuntil(b"\n")
        except TimeoutError:
            if self._loud(caller.uid):
                _log.info("control_slow_client_dropped", uid=caller.uid, timeout_s=allowance_s)
            return None
        except asyncio.LimitOverrunError:
            err = await self._refuse_bad(caller, None, BadRequest(
                f"request line is longer than {self._max_request_bytes} bytes"))
            await _send(writer, error_line(err.exit_code, str(err)), self._write_timeout_s)
            return None
        except asyncio.IncompleteReadError as exc:
            # The client shut down its side without a newline: take what it sent, if anything.
            return exc.partial or None

    async def _reply(self, writer: asyncio.StreamWriter,
                     reply: Reply[Mapping[str, object]]) -> None:
        if reply.fd is None:
            await _send(writer, ok_line(reply.result), self._write_timeout_s)
            return
        # The fd must travel with the final line's bytes, which we send ourselves with
        # sendmsg(); everything the transport still buffers has to reach the socket first.
        writer.transport.set_write_buffer_limits(0)
        async with asyncio.timeout(self._write_timeout_s):
            await writer.drain()
        # With a high-water mark of 0, drain() returns once the buffer is empty; the loop is a
        # guard for transports that resume early. There is no event to wait on for this.
        async with asyncio.timeout(self._write_timeout_s):
            while writer.transport.get_write_buffer_size() > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        transport_sock = writer.get_extra_info("socket")
        # uvloop's PseudoSocket cannot send; a dup of the descriptor is a real socket.
        with socket.socket(fileno=os.dup(transport_sock.fileno())) as sock:
            async with asyncio.timeout(self._fd_send_timeout_s):
                await _sendmsg_with_fd(sock, ok_line(reply.result, fd=True), reply.fd)


async def _send(
    writer: asyncio.StreamWriter, data: bytes, timeout_s: float = WRITE_TIMEOUT_S
) -> None:
    """Write and drain, giving up (TimeoutError) if the client does not read in time."""
    writer.write(data)
    async with asyncio.timeout(timeout_s):
        await writer.drain()


async def _sendmsg_with_fd(sock: socket.socket, data: bytes, fd: int) -> None:
    # The dup shares O_NONBLOCK with the transport's descriptor, so a full socket buffer
    # raises BlockingIOError; the line is short, so a brief wait-and-retry is enough.
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
    sent = 0
    while sent < len(data):
        try:
            if sent == 0:
                sent = sock.sendmsg([data], rights)
            else:
                sent += sock.send(data[sent:])
        except BlockingIOError:
            await asyncio.sleep(0.01)
