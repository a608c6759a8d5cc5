"""Issue 11: per-account connection limits with slots kept for the Director, and a write
timeout on every reply. Real socket, real accounts (SO_PEERCRED), a toy dispatch."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import pytest

from nvr.config.model import Role
from nvr.control import client
from nvr.control.admission import Admission
from nvr.control.protocol import Args, Caller, Reply, request_line
from nvr.control.server import ControlServer, Progress
from tests.support import is_root, run_as

BIG = 8 << 20  # an answer far larger than any socket buffer


async def dispatch(caller: Caller, op: str, args: Args, progress: Progress) -> Reply:
    if op == "recordings":
        return Reply({"segments": ["x" * 1000] * (BIG // 1000)})
    return Reply({"user": caller.user, "role": caller.role.value})


def test_admission_rules() -> None:
    a = Admission(max_connections=64)
    assert all(a.admit(1000, Role.public) is None for _ in range(4))
    assert "at most 4" in (a.admit(1000, Role.public) or "")
    for uid in range(1001, 1004):
        for _ in range(4):
            assert a.admit(uid, Role.public) is None
    assert "unlisted accounts" in (a.admit(2000, Role.public) or "")  # the pool of 16 is full
    for _ in range(16):
        assert a.admit(3000, Role.staff) is None
    assert "at most 16" in (a.admit(3000, Role.staff) or "")
    for uid in range(3001, 3003):
        for _ in range(16):
            a.admit(uid, Role.elder_affairs_director)
    assert a.total == 64 - 8 and a.admit(4000, Role.facilities) is not None
    assert all(a.admit(0, Role.director) is None for _ in range(8))  # the reserved slots
    assert a.admit(0, Role.director) is not None
    a.release(0, Role.director)
    assert a.admit(0, Role.it) is None


def hold_connections(path: Path, n: int, hold_s: float) -> int:
    """As some account: open n connections, send nothing, hold them; how many were refused."""
    socks, refused = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        socks.append(s)
    # A refused connection gets its line at once; the admitted ones send nothing until the
    # public request allowance (3 s) ends, so wait for answers until 2.5 s from now.
    deadline = time.monotonic() + 2.5
    for s in socks:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            refused += b"too many connections" in s.recv(4096)
        except TimeoutError:
            pass
    time.sleep(hold_s)
    for s in socks:
        s.close()
    return refused


@pytest.mark.skipif(not is_root(), reason="connects as a real unlisted account: needs root")
async def test_a_public_account_with_64_idle_connections_cannot_lock_out_the_director(
    sock_dir: Path,
) -> None:
    path = sock_dir / "c.sock"
    server = ControlServer(path, dispatch,
                           role_of=lambda u: Role.director if u == "root" else Role.public)
    await server.start()
    result: list[int] = []
    hog = threading.Thread(target=lambda: result.append(
        run_as("nvrtest-public", lambda: hold_connections(path, 64, 4.0))))
    try:
        hog.start()
        await asyncio.sleep(1.0)  # the 64 are connected: 4 idle, 60 being refused
        for _ in range(5):
            t0 = time.monotonic()
            reply = await asyncio.to_thread(client.call, path, "status", {})
            assert reply.result["role"] == "director"
            assert time.monotonic() - t0 < 1.0
        await asyncio.to_thread(hog.join, 20)
        assert result == [60], result  # 4 kept (until the idle allowance), 60 refused at once
    finally:
        await server.close(timeout_s=2)


async def test_a_client_that_never_reads_a_large_answer_frees_its_slot(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    admission = Admission(max_connections=4)
    server = ControlServer(path, dispatch, role_of=lambda u: Role.director,
                           write_timeout_s=0.5, admission=admission)
    await server.start()
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(str(path))
        s.sendall(request_line("recordings", {"camera": "lobby"}))  # ... and never reads
        deadline = time.monotonic() + 5
        await asyncio.sleep(0.2)
        while admission.total and time.monotonic() < deadline:  # noqa: ASYNC110 - no event for "the server gave up"
            await asyncio.sleep(0.05)
        assert admission.total == 0, "the slot is still pinned by a client that does not read"
        assert not server._tasks
        s.close()
        assert (await asyncio.to_thread(client.call, path, "status", {})).result["role"]
    finally:
        await server.close(timeout_s=2)


