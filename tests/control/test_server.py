"""The control socket end to end: a real unix socket, the real client, a toy dispatch."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from nvr.config.model import Role
from nvr.control import client
from nvr.control.protocol import Args, Caller, Reply
from nvr.control.server import ControlServer, Progress
from nvr.errors import NvrError, PermissionDenied, Unavailable, UsageError
from tests.support import raw_exchange

CLIP = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 64
# Ops the toy dispatch has begun, so a test can wait for "the request is in the handler".
STARTED: list[str] = []


async def until(cond: Any, what: str, within_s: float = 10) -> None:
    """Poll an async or plain condition until true, or fail naming what it waited for."""
    deadline = time.monotonic() + within_s
    while True:
        ok = cond()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return
        assert time.monotonic() < deadline, f"waited {within_s}s for {what}"
        await asyncio.sleep(0.02)


async def toy_dispatch(caller: Caller, op: str, args: Args, progress: Progress) -> Reply:
    STARTED.append(op)
    if op == "status":
        return Reply(
            {
                "uid": caller.uid,
                "gid": caller.gid,
                "pid": caller.pid,
                "user": caller.user,
                "role": str(caller.role),
            }
        )
    if op == "recordings":
        for i in range(3):
            await progress({"done": i + 1, "total": 3, "message": f"step {i + 1}"})
        return Reply({"camera": args.camera, "segments": [], "gaps": []})  # type: ignore[attr-defined]
    if op == "export":
        with tempfile.TemporaryFile() as f:
            f.write(CLIP)
            f.flush()
            return Reply({"sha256": "x", "camera": args.camera}, fd=os.dup(f.fileno()))  # type: ignore[attr-defined]
    if op == "audit_verify":
        await asyncio.sleep(0.3)
        return Reply({"ok": True})
    if op == "reload":
        raise PermissionDenied("only the director may reload (rule: reload)")
    if op == "key_show":
        raise RuntimeError("a bug in a handler")
    raise UsageError(f"toy dispatch has no {op}")


@asynccontextmanager
async def running(path: Path, **kw: Any) -> AsyncIterator[ControlServer]:
    server = ControlServer(
        path, toy_dispatch, role_of=lambda u: Role.director if u == "root" else Role.public, **kw
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close(timeout_s=2)


async def call(path: Path, op: str, args: dict[str, Any], **kw: Any) -> Reply:
    return await asyncio.to_thread(client.call, path, op, args, **kw)




async def test_socket_is_0666_and_removed_on_close(sock_dir: Path) -> None:
    path = sock_dir / "sub" / "control.sock"
    async with running(path):
        assert (path.stat().st_mode & 0o777) == 0o666
        reply = await call(path, "status", {})
        assert reply.result["uid"] == os.getuid()
        assert reply.result["user"] == "root"
        assert reply.result["role"] == "director"
        assert reply.result["pid"] == os.getpid()
        assert reply.fd is None
    assert not path.exists()


async def test_many_clients_at_once(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    loop = asyncio.get_running_loop()
    async with running(path):
        started = time.monotonic()
        with ThreadPoolExecutor(40) as pool:
            replies = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, client.call, path, "audit_verify", {})
                    for _ in range(40)
                )
            )
        elapsed = time.monotonic() - started
    assert all(r.result == {"ok": True} for r in replies)
    # 40 requests of 0.3 s each, one after another, would take 12 s.
    assert elapsed < 6, elapsed


async def test_too_many_connections_is_refused_then_recovers(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path, max_connections=2, request_timeout_s=1):
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
        try:
            for s in idle:
                s.connect(str(path))

            async def refused() -> bool:  # once the server has accepted both idle ones
                try:
                    await call(path, "status", {})
                except Unavailable as exc:
                    assert "too many connections" in str(exc)
                    return True
                return False

            await until(refused, "a third connection to be refused as too many")
        finally:
            for s in idle:
                s.close()

        async def served() -> bool:  # once the server has noticed the idle ones closed
            try:
                return bool((await call(path, "status", {})).result["user"] == "root")
            except Unavailable:
                return False

        await until(served, "the server to serve again after the idle connections closed")


async def test_oversized_request_is_refused_and_server_keeps_serving(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path, max_request_bytes=4096):
        big = (
            json.dumps({"op": "breach_report", "args": {"details": "x" * 10_000}}).encode() + b"\n"
        )
        lines = await asyncio.to_thread(raw_exchange, path, big)
        assert lines[-1]["ok"] is False
        assert lines[-1]["code"] == 64
        assert "4096" in lines[-1]["error"]
        with pytest.raises(UsageError, match="longer than 4096"):
            await call(path, "breach_report", {"details": "y" * 10_000})
        assert (await call(path, "status", {})).result["uid"] == os.getuid()


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b"{not json\n", "not JSON"),
        (b"[1, 2]\n", "JSON object"),
        (b'{"op": "format_disk", "args": {}}\n', "unknown operation"),
        (b'{"op": "status", "args": {"user": "director"}}\n', "args.user: unknown field"),
        (b'{"op": "status", "args": {}, "uid": 0}\n', "uid: unknown field"),
        (b'{"op": "recordings", "args": {"camera": "../etc"}}\n', "args.camera"),
        (b'{"op": "export", "args": {"camera": "a", "start": "x", "end": "y"}}\n', "args.reason"),
        (
            b'{"op": "hold_create", "args": {"cameras": [], "start": "a", "end": "b", "reason": "r"}}\n',
            "args.cameras",
        ),
        (
            b'{"op": "request_create", "args": {"kind": "rumour", "requester": "a", "details": "b"}}\n',
            "args.kind",
        ),
    ],
)
async def test_bad_requests_are_usage_errors(sock_dir: Path, line: bytes, needle: str) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        lines = await asyncio.to_thread(raw_exchange, path, line)
        assert len(lines) == 1
        assert lines[0]["ok"] is False and lines[0]["code"] == 64
        assert needle in lines[0]["error"]
        assert "\n" not in lines[0]["error"]


async def test_identity_fields_in_args_cannot_change_who_asks(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        for field in ("user", "uid", "role"):
            with pytest.raises(UsageError, match=f"args.{field}: unknown field"):
                await call(path, "status", {field: "director"})


async def test_slow_client_is_dropped(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path, request_timeout_s=0.3):
        started = time.monotonic()
        lines = await asyncio.to_thread(raw_exchange, path, b'{"op": "sta', 5)
        assert lines == []  # closed without a reply
        assert time.monotonic() - started < 3
        assert (await call(path, "status", {})).result["uid"] == os.getuid()


async def test_progress_lines_arrive_before_the_final_line(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        lines = await asyncio.to_thread(
            raw_exchange, path, b'{"op": "recordings", "args": {"camera": "front"}}\n'
        )
        assert [ln["progress"]["done"] for ln in lines[:-1]] == [1, 2, 3]
        assert lines[-1] == {"ok": True, "result": {"camera": "front", "segments": [], "gaps": []}}
        seen: list[tuple[int, int, str]] = []
        reply = await call(
            path,
            "recordings",
            {"camera": "front"},
            on_progress=lambda d, t, m: seen.append((d, t, m)),
        )
        assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
        assert reply.result["camera"] == "front"


async def test_fd_in_a_reply_arrives_and_reads_the_clip(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        before = set(os.listdir("/proc/self/fd"))
        for _ in range(3):
            reply = await call(
                path,
                "export",
                {"camera": "front", "start": "a", "end": "b", "reason": "incident 7"},
            )
            assert reply.fd is not None
            assert "fd" not in reply.result
            with os.fdopen(reply.fd, "rb") as f:
                f.seek(0)
                assert f.read() == CLIP
        # The server closes its copies: no descriptor leaks per export.
        await until(lambda: len(set(os.listdir("/proc/self/fd")) - before) <= 1,
                    "the server to close its copies of the exported descriptors")


async def test_errors_map_to_exit_codes_and_server_survives_a_bug(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    async with running(path):
        with pytest.raises(PermissionDenied, match="rule: reload") as denied:
            await call(path, "reload", {})
        assert denied.value.exit_code == 77
        with pytest.raises(NvrError, match="internal error") as bug:
            await call(path, "key_show", {})
        assert bug.value.exit_code == 70
        assert (await call(path, "status", {})).result["uid"] == os.getuid()


async def test_unreachable_socket_is_unavailable(sock_dir: Path) -> None:
    with pytest.raises(Unavailable, match="not reachable at .*is it running") as exc:
        await call(sock_dir / "nobody.sock", "status", {})
    assert exc.value.exit_code == 69


async def test_stale_socket_is_replaced_but_a_live_daemon_is_not(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves behind
    async with running(path):
        assert (await call(path, "status", {})).result["uid"] == os.getuid()
        second = ControlServer(path, toy_dispatch)
        with pytest.raises(Unavailable, match="another nvr daemon answers"):
            await second.start()
        assert (await call(path, "status", {})).result["uid"] == os.getuid()
    (sock_dir / "plain").write_text("not a socket")
    with pytest.raises(Unavailable, match="is not a socket"):
        await ControlServer(sock_dir / "plain", toy_dispatch).start()


async def test_close_lets_a_request_in_flight_finish(sock_dir: Path) -> None:
    path = sock_dir / "c.sock"
    server = ControlServer(path, toy_dispatch)
    await server.start()
    STARTED.clear()
    pending = asyncio.ensure_future(call(path, "audit_verify", {}))
    await until(lambda: "audit_verify" in STARTED, "the request to reach the handler")
    await server.close(timeout_s=5)
    assert (await pending).result == {"ok": True}
    with pytest.raises(Unavailable):
        await call(path, "status", {})


def test_an_uid_without_an_account_has_no_name() -> None:
    from nvr.control.peercred import user_name

    assert user_name(0) == "root"
    assert user_name(2**31 - 7) is None
