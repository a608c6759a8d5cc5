"""The command line's end of the control socket. Blocking sockets: one request per process."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nvr.control.protocol import Reply, request_line
from nvr.errors import (
    EX_DATAERR,
    EX_NOPERM,
    EX_UNAVAILABLE,
    EX_USAGE,
    DataError,
    NvrError,
    PermissionDenied,
    Unavailable,
    UsageError,
)

DEFAULT_SOCKET = Path("/run/nvr/control.sock")
# Seconds without a byte from the daemon before giving up. Long exports send progress lines,
# so this bounds silence, not the length of the whole call.
DEFAULT_IDLE_TIMEOUT_S = 300.0
_MAX_FDS = 4
_MAX_REPLY_BYTES = 512 * 1024 * 1024

ProgressCallback = Callable[[int, int, str], None]

_ERRORS: dict[int, type[NvrError]] = {
    EX_USAGE: UsageError,
    EX_DATAERR: DataError,
    EX_UNAVAILABLE: Unavailable,
    EX_NOPERM: PermissionDenied,
}


def socket_path(
    args_socket: str | os.PathLike[str] | None,
    config_path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """docs/commands.md order: --socket, else $NVR_SOCKET, else --config's control.socket, else
    /run/nvr/control.sock."""
    env = os.environ if env is None else env
    if args_socket:
        return Path(args_socket)
    if env.get("NVR_SOCKET"):
        return Path(env["NVR_SOCKET"])
    if config_path:
        return _socket_from_config(Path(config_path))
    return DEFAULT_SOCKET


def _socket_from_config(path: Path) -> Path:
    try:
        from nvr.config.loader import load_camera_map

        return Path(load_camera_map(path).control.socket)
    except (NvrError, ImportError, OSError, ValueError):
        # A clerk may not be able to read the camera passwords the full loader resolves, and a
        # map with an error elsewhere still names its socket: read just control.socket.
        pass
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, YAMLError) as exc:
        raise UsageError(f"--config {path}: cannot read it: {exc}") from None
    control = data.get("control") if isinstance(data, dict) else None
    sock = control.get("socket") if isinstance(control, dict) else None
    if not sock:
        return DEFAULT_SOCKET
    # Relative paths in a camera map are relative to the map's folder.
    return (path.parent / str(sock)).resolve() if not os.path.isabs(str(sock)) else Path(sock)


def _under_systemd() -> bool:
    """Only suggest systemctl where systemd is the init (sd_booted(3) checks this folder)."""
    return os.path.isdir("/run/systemd/system")


def call(
    path: Path,
    op: str,
    args: dict[str, Any],
    *,
    on_progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_IDLE_TIMEOUT_S,
) -> Reply[dict[str, Any]]:
    """Send one request and return the final reply: its result the JSON object as received
    (nvr.control.replies names each op's). A reply's `fd` is the caller's to close."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = " (systemctl status nvr)" if _under_systemd() else ""
            raise Unavailable(
                f"daemon not reachable at {path}: {reason}; is it running?{hint}"
            ) from None
        try:
            sock.sendall(request_line(op, args))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon refused early (request too long, busy); its reply says why
        return _read_replies(sock, path, on_progress)
    finally:
        sock.close()


def _read_replies(sock: socket.socket, path: Path,
                  on_progress: ProgressCallback | None) -> Reply[dict[str, Any]]:
    buf = b""
    fds: list[int] = []
    try:
        while True:
            try:
                data, got, _flags, _addr = socket.recv_fds(sock, 256 * 1024, _MAX_FDS)
            except ConnectionResetError:
                data, got = b"", []  # the daemon closed with our request unread; EOF for us
            except TimeoutError:
                raise Unavailable(f"the daemon at {path} stopped answering") from None
            fds.extend(got)  # fds may ride on any read: collect them every time
            if not data:
                raise Unavailable(f"the daemon at {path} closed the connection without a reply")
            buf += data
            if len(buf) > _MAX_REPLY_BYTES:
                raise NvrError(f"reply from {path} is larger than {_MAX_REPLY_BYTES} bytes")
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                final = _handle_line(line, on_progress)
                if final is not None:
                    return _finish(final, fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _handle_line(line: bytes, on_progress: ProgressCallback | None) -> dict[str, Any] | None:
    try:
        msg = json.loads(line)
    except ValueError:
        raise NvrError(f"the daemon sent a line that is not JSON: {line[:80]!r}") from None
    if not isinstance(msg, dict):
        raise NvrError("the daemon sent a reply that is not a JSON object")
    if "progress" in msg:
        p = msg["progress"]
        if on_progress is not None and isinstance(p, dict):
            on_progress(int(p.get("done", 0)), int(p.get("total", 0)), str(p.get("message", "")))
        return None
    return msg


def _finish(msg: dict[str, Any], fds: list[int]) -> Reply[dict[str, Any]]:
    if not msg.get("ok"):
        for extra in fds:
            os.close(extra)
        fds.clear()
        code = int(msg.get("code", 70))
        raise _ERRORS.get(code, NvrError)(str(msg.get("error", "the daemon gave no reason")))
    result = msg.get("result")
    if not isinstance(result, dict):
        raise NvrError("the daemon's reply has no result object")
    fd: int | None = None
    if result.pop("fd", False):
        if not fds:
            raise NvrError("the daemon said a file was attached, but none arrived")
        fd = fds.pop(0)
    for extra in fds:
        with contextlib.suppress(OSError):
            os.close(extra)
    fds.clear()
    return Reply(result, fd=fd)
