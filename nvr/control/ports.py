"""What the control handlers need of the running recorder: a narrow interface, so nvr.control
depends on this Protocol and not on nvr.service (which builds the handlers: no import cycle)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from nvr.config.model import CameraMap
from nvr.export.signing import SigningKey
from nvr.export.spool import ExportSpool
from nvr.policy.audit import AuditLog
from nvr.policy.refusals import RefusalLimiter
from nvr.policy.store import Breaches, Grants, Requests
from nvr.retention.executor import RetentionExecutor
from nvr.retention.holds import Holds
from nvr.storage.db import Db
from nvr.storage.index import Index

# How a handler sends a progress line to the client while it works.
Progress = Callable[[dict[str, Any]], Awaitable[None]]


class CameraStatus(Protocol):
    state: str
    reason: str
    errors: int

    @property
    def clock_offset_s(self) -> float | None:
        """The camera's own clock minus the box's (RTCP sender reports), or None."""

    def status(self) -> dict[str, Any]: ...


class RecoveryProgress(Protocol):
    def progress(self) -> dict[str, Any]: ...


class RecorderPort(Protocol):
    """The running recorder as the handlers see it (nvr.service.Service implements it)."""

    config: CameraMap
    clock: Callable[[], int]
    root: Path
    db: Db
    index: Index
    audit: AuditLog
    holds: Holds
    grants: Grants
    requests: Requests
    breaches: Breaches
    retention: RetentionExecutor
    paused: set[str]
    pause_alert: str | None
    signing_key: SigningKey
    spool: ExportSpool
    refusals: RefusalLimiter

    @property
    def recovery_check(self) -> RecoveryProgress: ...

    @property
    def recorders(self) -> Mapping[str, CameraStatus]: ...

    async def reload(self, why: str) -> dict[str, list[str]]: ...

    def confirm_clock(self) -> None: ...
