"""Telling the Director about a breach report.

Policy: "Any Library employee who becomes aware of any unauthorized disclosure of a video record
and/or a potential privacy breach has a responsibility to immediately inform the Library Director
of the breach." The report is already stored (nvr.policy.store.Breaches) and audited before this
runs; notifying is best effort, so a broken mail script never loses the report or fails the
caller's command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=notify_env(),
        )
    except OSError as exc:
        logger.error("breach_notify_failed", command=command[0], error=str(exc))
        return False
    try:
        _, err = await asyncio.wait_for(proc.communicate(details.encode("utf-8")), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        logger.error("breach_notify_failed", command=command[0], error="timeout",
                     timeout_s=timeout_s)
        return False
    if proc.returncode != 0:
        logger.error("breach_notify_failed", command=command[0], returncode=proc.returncode,
                     stderr=err.decode("utf-8", "replace")[-500:])
        return False
    logger.info("breach_notified", command=command[0])
    return True
