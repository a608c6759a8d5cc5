"""What the viewing pages' server needs of the running recorder: a narrow interface, so nvr.web
depends on these Protocols and not on nvr.runtime (whose service implements them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nvr.config.model import CameraMap
from nvr.policy.audit import AuditLog
from nvr.policy.refusals import RefusalLimiter
from nvr.storage.db import Db
from nvr.storage.index import Index

# Called in the camera's thread with every packet written: (the packet as written, the video
# stream it belongs to). Must return at once (nvr.web.fanout.tap_for).
LiveTap = Callable[[Any, Any], None]


class LiveSource(Protocol):
    """A camera's recorder as live view sees it (nvr.ingest.recorder.CameraRecorder)."""

    def add_live_tap(self, tap: LiveTap, watched: Callable[[], bool]) -> None:
        """Hand every packet written to `tap`; `watched()` says whether anybody watches."""
        ...

    def remove_live_tap(self) -> None: ...


class WebPort(Protocol):
    """The running recorder as the viewing pages' server sees it (nvr.runtime.service
    implements it). Read on every use: a reload replaces the camera map and the recorders."""

    config: CameraMap
    clock: Callable[[], int]
    db: Db
    index: Index
    audit: AuditLog
    refusals: RefusalLimiter

    @property
    def recorders(self) -> Mapping[str, LiveSource]: ...
