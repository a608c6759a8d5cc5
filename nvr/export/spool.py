"""The export spool: a bounded, documented amount of space on the footage filesystem.

An export is remuxed into storage.root/tmp, unlinked, and its descriptor handed to the client
(docs/design.md, "How a clip leaves"). The space stays allocated while *anyone* holds a
descriptor, and a client can hold one forever, invisible to `du`. So the spool is accounted:

- `reserve()` before remuxing, with the clip's estimated size (its source segments' bytes):
  refused, in one line, if the account already has `per_account` clips spooled or being made
  (not counted for the Director, the Assistant Director and IT), or if the spool would exceed `max_bytes` (5 % of the footage filesystem, at most 4 GiB).
- `delivered()` keeps the recorder's own write descriptor of each handed-over clip;
  `release_expired()` truncates it to zero `hold_s` (120 s) after delivery, which frees the
  blocks even while the client still holds its descriptor. A client copies at disk speed right
  away; one that holds the descriptor instead is left with an empty file, not with our disk.
- `bytes_held()` is what retention adds back to free space: exports never make retention delete
  footage (nvr/runtime/service.py); the bound above is how far below the floor they can take the
  disk.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from nvr import log
from nvr.errors import Unavailable

_log = log.get("nvr.export.spool")

MAX_PERCENT = 5.0
MAX_BYTES_CAP = 4 << 30
HOLD_S = 120.0
PER_ACCOUNT = 4


def max_spool_bytes(total_bytes: int) -> int:
    return int(min(MAX_BYTES_CAP, total_bytes * MAX_PERCENT / 100))


@dataclass
class _Entry:
    account: str
    bytes: int
    fd: int | None = None  # the recorder's write descriptor, once delivered
    release_at: float = 0.0


class ExportSpool:
    def __init__(
        self, max_bytes: Callable[[], int], *, hold_s: float = HOLD_S,
        per_account: int = PER_ACCOUNT, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self.hold_s = hold_s
        self.per_account = per_account
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        self._ids = itertools.count(1)
        self._held = 0  # read by retention's worker thread: one int, no lock needed

    def bytes_held(self) -> int:
        return self._held

    def reserve(self, account: str, estimate: int, *, counted: bool = True) -> int:
        """A ticket for one export of about `estimate` bytes, or Unavailable saying why not.
        `counted=False` (the Director, the Assistant Director, IT): no per-account count, only
        the spool's size."""
        self.release_expired()
        mine = sum(1 for e in self._entries.values() if e.account == account)
        if counted and mine >= self.per_account:
            raise Unavailable(
                f"you have {mine} exports the recorder still holds space for (at most "
                f"{self.per_account}); each is released {self.hold_s:g} s after delivery: "
                f"try again in {self._wait_s(account):.0f} s"
            )
        cap = self._max_bytes()
        if self._held + estimate > cap:
            if estimate > cap:
                raise Unavailable(
                    f"this clip (about {_mib(estimate)} MiB) is larger than the export spool "
                    f"({_mib(cap)} MiB, 5% of the footage disk): export a shorter span"
                )
            raise Unavailable(
                f"the export spool is full ({_mib(self._held)} of {_mib(cap)} MiB held for "
                f"exports not yet released): try again in {self._wait_s(None):.0f} s"
            )
        ticket = next(self._ids)
        self._entries[ticket] = _Entry(account, estimate)
        self._held += estimate
        return ticket

    def delivered(self, ticket: int, keep_fd: int, size: int) -> None:
        """The clip went out: account its real size, release it `hold_s` from now."""
        e = self._entries.get(ticket)
        if e is None:
            os.close(keep_fd)
            return
        self._held += size - e.bytes
        e.bytes, e.fd, e.release_at = size, keep_fd, self._clock() + self.hold_s

    def cancel(self, ticket: int) -> None:
        e = self._entries.pop(ticket, None)
        if e is not None:
            self._held -= e.bytes
            if e.fd is not None:
                _truncate_and_close(e.fd)

    def release_expired(self) -> int:
        now = self._clock()
        gone = [t for t, e in self._entries.items() if e.fd is not None and e.release_at <= now]
        for t in gone:
            e = self._entries[t]
            _log.info("export_spool_released", account=e.account, bytes=e.bytes)
            self.cancel(t)
        return len(gone)

    def close(self) -> None:
        for t in list(self._entries):
            self.cancel(t)

    def _wait_s(self, account: str | None) -> float:
        now = self._clock()
        times = [e.release_at - now for e in self._entries.values()
                 if e.fd is not None and (account is None or e.account == account)]
        return max(1.0, min(times)) if times else self.hold_s


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def _truncate_and_close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # frees the blocks even though the client's descriptor stays open
    with contextlib.suppress(OSError):
        os.close(fd)
