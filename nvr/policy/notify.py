"""Telling the Director about a breach report.

Policy: "Any Library employee who becomes aware of any unauthorized disclosure of a video record
and/or a potential privacy breach has a responsibility to immediately inform the Library Director
of the breach." The report is already stored (nvr.policy.store.Breaches) and audited before this
runs; notifying is best effort, so a broken mail script never loses the report or fails the
caller's command.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 30.0
# The only variables the notify command gets: never the daemon's environment, which may hold
# camera passwords (`${ENV}` in the camera map) or systemd credentials paths.
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def notify_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    env["NVR_EVENT"] = "breach_reported"
    return env


async def notify_director(
    command: list[str] | None, details: str, logger: Any, *, timeout_s: float = TIMEOUT_S
) -> bool:
    """Log `breach_reported` at warning and run `command` (camera map `notify_command`) with the
    details on stdin. True if the command ran and exited 0 (or none is configured)."""
    logger.warning("breach_reported", details=details, notify_command=bool(command))
    if not command:
        return True
    try:
        # Started by the subprocess module in a worker thread, never by the event loop:
        # uvloop's spawn runs CPython's after-fork clean-up in the child before exec, which
        # frees every other thread's thread-local objects there, and a freed FFmpeg scaler
        # (PyAV >= 18.1.1 keeps one per thread) waits for its worker threads, which do not
        # exist in the child: the child never reaches exec and the loop waits on it for ever
        # (seen: every command stopped answering after a still). The subprocess module forks
        # and execs without running Python in the child. The outer deadline bounds the wait
        # even if the start itself stalls.
        outcome = await asyncio.wait_for(_start(command, details, timeout_s),
                                         timeout_s + _START_GRACE_S)
    except TimeoutError:
        outcome = _Outcome(error="timeout")
    if outcome.error is not None:
        logger.error("breach_notify_failed", command=command[0], error=outcome.error,
                     **({"timeout_s": timeout_s} if outcome.error == "timeout" else {}))
        return False
    if outcome.returncode != 0:
        logger.error("breach_notify_failed", command=command[0], returncode=outcome.returncode,
                     stderr=outcome.stderr_tail)
        return False
    logger.info("breach_notified", command=command[0])
    return True


@dataclass(frozen=True)
class _Outcome:
    returncode: int | None = None
    stderr_tail: str = ""
    error: str | None = None  # the command could not run or did not finish


_START_GRACE_S = 5.0
_STDERR_KEPT = 500  # bytes of the command's stderr kept for the log line
# Notify commands run in threads of their own, never the loop's default pool, which the index
# and the disk work share: a slow mail script can hold these, not those. Past the queue's
# bound a report is still stored and audited, only not mailed (logged as such).
_THREADS = 2
_MAX_WAITING = 16
_pool: ThreadPoolExecutor | None = None
_waiting = 0


async def _start(command: list[str], details: str, timeout_s: float) -> _Outcome:
    global _pool, _waiting
    if _waiting >= _MAX_WAITING:
        return _Outcome(error=f"{_MAX_WAITING} notify commands are already waiting")
    if _pool is None:
        _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="nvr-notify")
    _waiting += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_pool, _run, command, details.encode("utf-8"),
                                          timeout_s)
    finally:
        _waiting -= 1


def _run(command: list[str], stdin: bytes, timeout_s: float) -> _Outcome:
    """Blocking: run the command to its end or its deadline (then it is killed)."""
    # stderr goes to a file, not a pipe: a chatty script costs disk it frees at once, not
    # the daemon's memory; only its tail is read back.
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(command, input=stdin, stdout=subprocess.DEVNULL, stderr=err,
                                  env=notify_env(), timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:  # run() has killed and reaped it
            return _Outcome(error="timeout")
        except OSError as exc:
            return _Outcome(error=str(exc))
        size = err.seek(0, os.SEEK_END)
        err.seek(max(0, size - _STDERR_KEPT))
        tail = err.read().decode("utf-8", "replace")
    return _Outcome(returncode=proc.returncode, stderr_tail=tail)
