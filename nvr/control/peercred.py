"""Who is on the other end of a unix socket, from the kernel (SO_PEERCRED)."""

from __future__ import annotations

import pwd
import socket
import struct
from typing import Protocol

# struct ucred {pid_t pid; uid_t uid; gid_t gid;}: pid_t is signed, uid_t and gid_t unsigned
# (a uid above 2**31, as in some user namespaces, must not come out negative).
_UCRED = struct.Struct("iII")


class _HasSockopt(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


def peer_credentials(sock: _HasSockopt) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected. The kernel records them at connect();
    the peer cannot forge them. Works on a plain socket, asyncio's TransportSocket and
    uvloop's PseudoSocket (all three pass getsockopt through to the file descriptor)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def user_name(uid: int) -> str | None:
    """The account name of `uid`, or None if no account has that uid (for example a uid
    from another user namespace, or a deleted account): such a caller is the public."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
