"""systemd's notify protocol (sd_notify(3)), in the few lines it takes.

A message is one datagram of `KEY=VALUE` lines sent to the AF_UNIX socket named by
$NOTIFY_SOCKET; a name starting with `@` is in the abstract namespace (a leading NUL byte).
Without $NOTIFY_SOCKET (run by hand, or by a test) every call is a no-op. A failed send is
logged once and never raised: a recorder must not stop recording because systemd went away.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from nvr import log

logger = log.get("nvr.sdnotify")


def socket_address(value: str) -> str | bytes:
    """$NOTIFY_SOCKET as an address for sendto: `@name` is abstract (`\\0name`)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = socket_address(raw) if raw else None
        self.watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half of WatchdogSec, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def notify(self, *lines: str) -> bool:
        if self.address is None or not lines:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full receive queue must never stall the loop
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("sd_notify_failed", error=str(exc))
            return False

    def ready(self, status: str) -> None:
        self.notify("READY=1", status_line(status))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match READY to this reload.
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                    status_line("reloading the camera map"))

    def stopping(self) -> None:
        self.notify("STOPPING=1", status_line("stopping: finishing open segments"))

    def watchdog(self, status: str) -> None:
        self.notify("WATCHDOG=1", status_line(status))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_line(text: str) -> str:
    """STATUS= is one line: systemctl shows it as the unit's Status."""
    return "STATUS=" + " ".join(text.split())


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (sd_watchdog_enabled(3))
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
