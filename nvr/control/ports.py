"""What the control ops need of the rest of the recorder, as Protocols: the running recorder
(`RecorderPort`), its viewing pages (`ViewingPort`, when they run) and, for the viewing-link ops
in nvr.control.views, the handlers (`OpContext`). nvr.control depends on these and on nothing
above it: nvr.runtime.service implements RecorderPort and builds the handlers, nvr.web's server
implements ViewingPort, and neither is imported here (no import cycle)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Literal, Protocol

from nvr.config.model import CameraConfig, CameraMap, Role
from nvr.control.protocol import Caller
from nvr.export.signing import SigningKey
from nvr.export.spool import ExportSpool
from nvr.policy.actions import Action
from nvr.policy.audit import AuditLog
from nvr.policy.refusals import RefusalLimiter
from nvr.policy.rules import Decision
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


class AlertView(Protocol):
    """One active alert (nvr.runtime.alerts.Alert)."""

    @property
    def kind(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def camera(self) -> str | None: ...

    def to_dict(self) -> dict[str, Any]: ...


# The kinds of viewing link: the same three as nvr.web.links.Kind.
LinkKind = Literal["live", "playback", "emergency"]


class ViewLink(Protocol):
    """A viewing link as the control ops read it (nvr.web.links.Link)."""

    id: str
    kind: LinkKind
    actor: str
    uid: int | None
    cameras: tuple[str, ...]
    start_us: int | None
    end_us: int | None
    purpose: str
    expires_us: int

    def usable(self, now_us: int) -> bool: ...

    def to_dict(self, now_us: int) -> dict[str, Any]: ...


class ViewingPort(Protocol):
    """The viewing pages' server as the control ops see it (nvr.web.server.WebServer): links
    are minted, listed and ended here; the server checks them on every request."""

    recheck_lock: asyncio.Lock

    async def mint_link(self, *, kind: LinkKind, actor: str, uid: int | None, role: str,
                        cameras: list[str], start_us: int | None, end_us: int | None,
                        purpose: str, now_us: int, expires_us: int) -> tuple[ViewLink, str]:
        """A new link and its token (the token is shown once, in the URL)."""
        ...

    def find_link(self, link_id: str) -> ViewLink | None: ...

    def list_links(self, *, kind: LinkKind | None = None, actor: str | None = None,
                   open_only: bool = False, now_us: int) -> Sequence[ViewLink]: ...

    async def close_link(self, link_id: str, why: str) -> bool:
        """End the link now, its open streams with it; False if it had already ended."""
        ...

    async def audit_link(self, link_id: str, action: str, **detail: Any) -> None: ...

    def base_url(self) -> str: ...


class RecorderParts(Protocol):
    """What every reader of the running recorder starts from: the camera map, the clock
    (microseconds, UTC), the storage root, the index and its connection, the audit log."""

    config: CameraMap
    clock: Callable[[], int]
    root: Path
    db: Db
    index: Index
    audit: AuditLog


class RecorderPort(RecorderParts, Protocol):
    """The running recorder as the handlers see it (nvr.runtime.service implements it)."""

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

    @property
    def viewing(self) -> ViewingPort | None:
        """The viewing pages' server; None when it is not running (then `web_alert` says why,
        if it failed to start)."""
        ...

    @property
    def web_alert(self) -> str | None: ...

    def active_alerts(self) -> Sequence[AlertView]: ...

    async def reload(self, why: str) -> dict[str, list[str]]: ...

    def confirm_clock(self) -> None: ...


class OpContext(Protocol):
    """What the viewing-link ops (nvr.control.views) use of the handlers
    (nvr.control.handlers.Handlers, which imports those ops)."""

    @property
    def svc(self) -> RecorderPort: ...

    def role(self, caller: Caller) -> Role: ...

    def camera(self, camera_id: str) -> CameraConfig: ...

    def may_plan(self, caller: Caller, action: Action, camera: str) -> bool: ...

    async def authorize(self, caller: Caller, action: Action, *,
                        detail: dict[str, Any] | None = None) -> Decision: ...

    def authorized(self, caller: Caller, action: Action,
                   **kw: Any) -> AbstractAsyncContextManager[Decision]: ...

    async def decision(self, caller: Caller, action: Action, now: int, *,
                       cameras: Sequence[str] = (), start_us: int | None = None,
                       end_us: int | None = None, reason: str | None = None,
                       minutes: int | None = None) -> Decision: ...
