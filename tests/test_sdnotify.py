"""The notify protocol's addressing: a path, or `@name` in the abstract namespace."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from nvr.runtime.sdnotify import Notifier


def test_abstract_namespace_socket_receives_the_datagram() -> None:
    name = f"nvr-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0" + name.encode())
        s.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.notify("READY=1", "STATUS=ok")
        assert s.recv(4096) == b"READY=1\nSTATUS=ok"
        n.close()


def test_no_socket_is_a_no_op_and_watchdog_for_another_pid_is_ignored(tmp_path: Path) -> None:
    assert not Notifier({}).notify("READY=1")
    assert Notifier({"WATCHDOG_USEC": "4000000"}).watchdog_interval_s() == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval_s() is None
    # systemd gone: a send fails quietly, the recorder goes on.
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "absent")})
    assert not gone.notify("WATCHDOG=1")
    gone.close()
