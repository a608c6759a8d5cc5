"""SO_PEERCRED as a real other account: the server sees the kernel's uid, not a claim."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nvr.config.model import Role
from nvr.control import client
from nvr.control.protocol import Args, Caller, Reply
from nvr.control.server import ControlServer, Progress

ACCOUNT = "nvrtest-clerk"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create and become another account"),
]


def _account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "--system", "--no-create-home", ACCOUNT], check=True)
        return pwd.getpwnam(ACCOUNT)


async def echo(caller: Caller, op: str, args: Args, progress: Progress) -> Reply:
    return Reply(
        {"uid": caller.uid, "gid": caller.gid, "user": caller.user, "role": str(caller.role)}
    )


def _call_as(account: pwd.struct_passwd, path: Path, args: dict[str, Any]) -> dict[str, Any]:
    """Fork; the child drops to `account` and calls the socket with the client library.
    No exec: the venv's interpreter may live where other accounts cannot execute it."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(rd)
            os.setgroups([])
            os.setresgid(account.pw_gid, account.pw_gid, account.pw_gid)
            os.setresuid(account.pw_uid, account.pw_uid, account.pw_uid)
            try:
                out: dict[str, Any] = {
                    "result": client.call(path, "status", args, timeout=10).result
                }
            except Exception as exc:  # reported to the parent, which asserts on it
                out = {"error": type(exc).__name__, "message": str(exc)}
            os.write(wr, json.dumps({"euid": os.geteuid(), **out}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wr)
    try:
        data = b""
        while chunk := os.read(rd, 65536):
            data += chunk
    finally:
        os.close(rd)
        os.waitpid(pid, 0)
    return json.loads(data)  # type: ignore[no-any-return]


async def test_server_sees_the_real_uid_and_name_of_another_account(sock_dir: Path) -> None:
    account = await asyncio.to_thread(_account)
    path = sock_dir / "c.sock"
    roles = {ACCOUNT: Role.staff}
    server = ControlServer(path, echo, role_of=lambda u: roles.get(u or "", Role.public))
    await server.start()
    try:
        got = await asyncio.to_thread(_call_as, account, path, {})
        assert got["euid"] == account.pw_uid != 0
        assert got["result"] == {
            "uid": account.pw_uid,
            "gid": account.pw_gid,
            "user": ACCOUNT,
            "role": "staff",
        }
        # Claiming to be someone else in the request is refused, not believed.
        claim = await asyncio.to_thread(_call_as, account, path, {"user": "root", "uid": 0})
        assert claim["error"] == "UsageError"
        assert "unknown field" in claim["message"]
    finally:
        await server.close()


async def test_uid_above_2_31_is_unsigned(sock_dir: Path) -> None:
    """Issue 10: uid_t is unsigned. A caller whose uid is above 2**31 (user namespaces, some
    directory services) must be seen as that uid, not a negative number."""
    import types
    from typing import cast

    big = cast(pwd.struct_passwd, types.SimpleNamespace(pw_uid=3_000_000_000,
                                                        pw_gid=3_000_000_001))
    path = sock_dir / "big.sock"
    server = ControlServer(path, echo)
    await server.start()
    try:
        got = await asyncio.to_thread(_call_as, big, path, {})
        assert got["euid"] == 3_000_000_000
        assert got["result"] == {"uid": 3_000_000_000, "gid": 3_000_000_001, "user": None,
                                 "role": "public"}
    finally:
        await server.close()
