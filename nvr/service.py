"""The running recorder: the objects `nvr run` owns, started and stopped in one order.

The camera threads, the index, the audit log and the control socket meet here and nowhere
else; the control handlers (nvr.control.handlers) reach the rest through this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite

from nvr import log
from nvr.config.loader import ConfigError, load_camera_map
from nvr.config.model import CameraConfig, CameraMap
from nvr.export.spool import ExportSpool, max_spool_bytes
from nvr.ingest.onvif import OnvifUriCache
from nvr.ingest.recorder import CameraRecorder
from nvr.policy.audit import AuditLog
from nvr.policy.refusals import RefusalLimiter
from nvr.policy.store import Breaches, Grants, Requests
from nvr.retention.clockcheck import ClockRef, alert_text, clock_problem
from nvr.retention.disk import disk_state
from nvr.retention.executor import RetentionExecutor
from nvr.retention.holds import Holds
from nvr.retention.planner import DiskState
from nvr.storage import db as dbmod
from nvr.storage.index import Index, NewSegment
from nvr.storage.recovery import reconcile
from nvr.timeutil import now_us, to_iso

logger = log.get("nvr.service")

AUDIT_HEAD_INTERVAL_S = 300.0
STILL_EXPIRY_INTERVAL_S = 5.0
REFUSAL_FLUSH_INTERVAL_S = 5.0
SPOOL_RELEASE_INTERVAL_S = 5.0


def storage_dirs(root: Path) -> dict[str, Path]:
    return {
        name: root / name for name in ("segments", "keys", "stills", "tmp", "quarantine")
    }


def prepare_storage(root: Path) -> None:
    """Create storage.root and its folders owner-only (CONTRACT.md: "created 0700")."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for path in storage_dirs(root).values():
        path.mkdir(mode=0o700, exist_ok=True)
    # Leftovers of an export interrupted by a crash are never a copy worth keeping.
    for leftover in (root / "tmp").iterdir():
        with contextlib.suppress(OSError):
            leftover.unlink()


class Sink:
    """Receives finished segments and gaps from the camera threads, on the event loop."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def segment_closed(self, seg: NewSegment) -> None:
        svc = self.service
        pending = svc.downtime.pop(seg.camera, None)
        if pending is not None:
            since, reason = pending
            await svc.index.add_gap(seg.camera, since, seg.start_us, reason)
        await svc.index.add_segment(seg)
        logger.info(
            "segment_indexed", camera=seg.camera, start=to_iso(seg.start_us),
            end=to_iso(seg.end_us), frames=seg.frames, bytes=seg.bytes,
        )

    async def gap(self, camera: str, start_us: int, end_us: int, reason: str, detail: str) -> None:
        await self.service.index.add_gap(camera, start_us, end_us, reason, detail)
        logger.info("gap_recorded", camera=camera, start=to_iso(start_us), end=to_iso(end_us),
                    reason=reason)

    def state_changed(self, camera: str, state: str, reason: str) -> None:
        logger.info("camera_state", camera=camera, state=state, reason=reason)


class Service:
    def __init__(self, config_path: Path, config: CameraMap, *,
                 clock: Callable[[], int] = now_us,
                 mono_clock: Callable[[], int] = lambda: time.monotonic_ns() // 1000) -> None:
        self.config_path = config_path
        self.config = config
        self.clock = clock
        self.mono_clock = mono_clock
        self.root = config.storage.root
        self.recorders: dict[str, CameraRecorder] = {}
        self.uri_caches: dict[str, OnvifUriCache] = {}
        # camera → (end of its last indexed segment, why nothing was recorded since)
        self.downtime: dict[str, tuple[int, str]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()
        self.paused: set[str] = set()
        self.pause_alert: str | None = None
        self.sink = Sink(self)
        # One reload at a time: two at once would both start a recorder for the same camera.
        self.reload_lock = asyncio.Lock()

    # -- start-up ------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(prepare_storage, self.root)
        self.db: aiosqlite.Connection = await dbmod.connect(self.root / "index.db")
        self.index = Index(self.db)
        self.audit = AuditLog(self.db)
        self.refusals = RefusalLimiter(self.audit)
        self.holds = Holds(self.db)
        self.grants = Grants(self.db)
        self.requests = Requests(self.db)
        self.breaches = Breaches(self.db)
        crashed = await dbmod.get_meta(self.db, "running") == "1"
        report = await reconcile(self.index, self.root, [c.id for c in self.config.cameras])
        logger.info("reconciled", crashed=crashed, **report.to_dict())
        await dbmod.set_meta(self.db, "running", "1")
        reason = "crash" if crashed else "recorder_stopped"
        for cam in self.config.cameras:
            await self.index.ensure_camera(cam.id, cam.name, self.clock())
            last = await self.index.last_segment(cam.id)
            if last is not None:
                self.downtime[cam.id] = (last.end_us, reason)
        total = (await asyncio.to_thread(disk_state, self.root)).total_bytes
        self.spool = ExportSpool(lambda: max_spool_bytes(total))
        self.retention = RetentionExecutor(
            self.db, self.index, self.holds, self.audit, self.config,
            clock=self.clock, on_pause=self.on_retention_pause, disk=self.footage_disk,
            clock_guard=self.clock_guard,
        )
        self.clock_ref = ClockRef(self.clock(), self.mono_clock(), await self.newest_footage())
        for cam in self.config.cameras:
            self.start_camera(cam, self.downtime.get(cam.id, (None, ""))[0])
        self.spawn(self.retention.run_forever(self.config.retention.interval_seconds,
                                              self.stopping))
        self.spawn(self.every(AUDIT_HEAD_INTERVAL_S, self.audit.log_head))
        self.spawn(self.every(REFUSAL_FLUSH_INTERVAL_S,
                              lambda: self.refusals.flush(self.clock())))
        from nvr.control import handlers  # imported late: handlers import this module
        from nvr.control.server import ControlServer

        self.control = ControlServer(self.config.control.socket, handlers.Handlers(self).dispatch,
                                     role_of=lambda user: self.config.role_of(user))
        await self.control.start()
        self.spawn(self.every(STILL_EXPIRY_INTERVAL_S, handlers.expire_stills(self)))
        self.spawn(self.every(SPOOL_RELEASE_INTERVAL_S, self.release_spool))
        logger.info("started", cameras=len(self.config.cameras),
                    socket=str(self.config.control.socket), storage=str(self.root))

    def footage_disk(self, root: Path) -> DiskState:
        """The disk as retention should judge it: the export spool (bounded, released within
        minutes; nvr/export/spool.py) is not footage, so it never makes footage go early."""
        d = disk_state(root)
        held = self.spool.bytes_held()
        return DiskState(d.total_bytes, min(d.total_bytes, d.free_bytes + held))

    async def newest_footage(self) -> int | None:
        async with self.db.execute("SELECT MAX(end_us) FROM segments") as cur:
            row = await cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def clock_guard(self) -> str | None:
        """Asked by retention before each pass: why the wall clock cannot be trusted, if so."""
        problem = clock_problem(self.clock_ref, self.clock(), self.mono_clock(),
                                await self.newest_footage())
        return alert_text(problem) if problem else None

    def confirm_clock(self) -> None:
        """`nvr retention confirm-clock`: now is the new reference point; the next pass
        deletes again if nothing else is wrong."""
        self.clock_ref = ClockRef(self.clock(), self.mono_clock(), None)
        self.retention.clock_alert = None
        logger.warning("clock_confirmed", clock=to_iso(self.clock()))

    async def release_spool(self) -> None:
        self.spool.release_expired()

    def spawn(self, coro: Awaitable[None]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    async def every(self, interval_s: float, fn: Callable[[], Awaitable[object]]) -> None:
        while not self.stopping.is_set():
            try:
                await fn()
            except Exception:
                logger.exception("periodic_task_failed", task=getattr(fn, "__name__", "?"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval_s)

    def start_camera(self, cam: CameraConfig, last_end_us: int | None = None) -> None:
        # last_end_us: a new segment never starts before the last indexed one ended, even if
        # the box's clock stepped back across the restart (docs/time.md).
        rec = CameraRecorder(cam, self.config.storage, self.root, self.sink,
                             self.url_resolver(cam), last_end_us=last_end_us)
        self.recorders[cam.id] = rec
        rec.start()

    def url_resolver(self, cam: CameraConfig) -> Callable[[bool], Awaitable[str]]:
        if cam.onvif is None:
            url = cam.rtsp or ""

            async def fixed(force_refresh: bool) -> str:
                return url

            return fixed
        cache = self.uri_caches.setdefault(cam.id, OnvifUriCache(cam.onvif))
        return cache.get

    def on_retention_pause(self, cameras: set[str], alert: str | None) -> None:
        for cam_id in cameras - self.paused:
            if cam_id in self.recorders:
                self.recorders[cam_id].pause(alert or "disk full of held footage")
        for cam_id in self.paused - cameras:
            if cam_id in self.recorders:
                self.recorders[cam_id].resume()
        self.paused = set(cameras)
        self.pause_alert = alert

    # -- reload and shutdown ---------------------------------------------------------------

    async def reload(self, why: str) -> dict[str, list[str]]:
        """Re-read the camera map; restart only cameras whose settings changed."""
        async with self.reload_lock:
            return await self._reload(why)

    async def _reload(self, why: str) -> dict[str, list[str]]:
        try:
            new = await asyncio.to_thread(load_camera_map, self.config_path)
        except ConfigError as exc:
            logger.error("reload_refused", why=why, problems=str(exc))
            raise
        if new.storage.root != self.config.storage.root or new.control != self.config.control:
            logger.warning("reload_partial", detail="storage.root and control.socket "
                           "take effect at the next restart")
        old = {c.id: c for c in self.config.cameras}
        fresh = {c.id: c for c in new.cameras}
        removed = [i for i in old if i not in fresh]
        changed = [i for i in fresh if i in old and fresh[i] != old[i]]
        added = [i for i in fresh if i not in old]
        for cam_id in removed + changed:
            rec = self.recorders.pop(cam_id, None)
            self.uri_caches.pop(cam_id, None)
            if rec is not None:
                # Longer than a camera read can block (io timeout 5 s): the old thread must be
                # gone before a new one writes into the same folder.
                await rec.stop(timeout=15.0)
        self.config = new
        self.retention.config = new
        for cam_id in changed + added:
            await self.index.ensure_camera(cam_id, fresh[cam_id].name, self.clock())
            last = await self.index.last_segment(cam_id)
            if last is not None:
                # The restart's hole (stop, reconnect, first keyframe) is a gap with a reason.
                self.downtime[cam_id] = (last.end_us, "reloaded")
            self.start_camera(fresh[cam_id], last.end_us if last else None)
        logger.info("reloaded", why=why, added=added, removed=removed, changed=changed)
        return {"added": added, "removed": removed, "changed": changed}

    async def stop(self) -> None:
        self.stopping.set()
        await self.control.close()
        await asyncio.gather(*(rec.stop() for rec in self.recorders.values()),
                             return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.refusals.flush()  # every counted refusal gets its row
        self.spool.close()
        await dbmod.set_meta(self.db, "running", "0")
        await self.db.close()
        logger.info("stopped")
