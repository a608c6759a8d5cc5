"""The running recorder: the objects `nvr run` owns, started and stopped in one order.

The camera threads, the index, the audit log, the control socket and the viewing pages meet
here and nowhere else. This is the assembly: `Service` builds each part and hands itself to
it as that part's port, a Protocol of exactly what the part uses (control:
nvr.control.ports.RecorderPort; web: nvr.web.ports.WebPort; metrics, watchdog and alerts:
MetricsPort, WatchdogPort and AlertsPort in their modules). No part imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nvr import log
from nvr.config.loader import ConfigError, load_camera_map
from nvr.config.model import CameraConfig, CameraMap
from nvr.export.records import still_expirer
from nvr.export.signing import SigningKey
from nvr.export.spool import ExportSpool, max_spool_bytes
from nvr.ingest.onvif import OnvifUriCache
from nvr.ingest.recorder import CameraRecorder
from nvr.policy.audit import AuditLog, canonical_json
from nvr.policy.refusals import RefusalLimiter
from nvr.policy.store import Breaches, Grants, Requests
from nvr.retention.clockcheck import ClockRef, alert_text, clock_problem
from nvr.retention.disk import disk_state
from nvr.retention.executor import RetentionExecutor
from nvr.retention.holds import Holds
from nvr.retention.planner import DiskState
from nvr.runtime import alerts
from nvr.runtime.sdnotify import Notifier
from nvr.runtime.tasks import Supervisor
from nvr.storage import db as dbmod
from nvr.storage import rootlock
from nvr.storage.index import Index, NewSegment
from nvr.storage.recovery import BackgroundCheck, reconcile_startup
from nvr.timeutil import now_us, to_iso

if TYPE_CHECKING:
    from nvr.web.server import WebServer

logger = log.get("nvr.service")

# Audit checkpoints (nvr.policy.checkpoint): written only when the head moved, so a quiet
# recorder writes none; rows cut from the end are caught unless newer than the last one.
AUDIT_HEAD_INTERVAL_S = 60.0
STILL_EXPIRY_INTERVAL_S = 5.0
REFUSAL_FLUSH_INTERVAL_S = 5.0
LINK_RECHECK_INTERVAL_S = 1.0
SPOOL_RELEASE_INTERVAL_S = 5.0


def storage_dirs(root: Path) -> dict[str, Path]:
    return {
        name: root / name for name in ("segments", "keys", "stills", "tmp", "quarantine")
    }


def prepare_storage(root: Path) -> None:
    """Create storage.root and its folders owner-only (README: "created 0700")."""
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
        async with svc.index.unit():  # the downtime gap and the segment that ends it, as one
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
        pass  # the recorder logs `camera_state` itself, once; nothing else to do here


class Service:
    def __init__(self, config_path: Path, config: CameraMap, *,
                 clock: Callable[[], int] = now_us, root_lock: int | None = None,
                 mono_clock: Callable[[], int] = lambda: time.monotonic_ns() // 1000) -> None:
        self.config_path = config_path
        self.root_lock = root_lock  # the storage-root lock's descriptor, once taken
        self.config = config
        self.clock = clock
        self.mono_clock = mono_clock
        self.root = config.storage.root
        self.recorders: dict[str, CameraRecorder] = {}
        self.uri_caches: dict[str, OnvifUriCache] = {}
        # camera → (end of its last indexed segment, why nothing was recorded since)
        self.downtime: dict[str, tuple[int, str]] = {}
        self.stopping = asyncio.Event()
        # Every background task, supervised (nvr/runtime/tasks.py: logged, counted, restarted).
        self.supervisor = Supervisor(self.stopping)
        self.paused: set[str] = set()
        self.pause_alert: str | None = None
        self.sink = Sink(self)
        # One reload at a time: two at once would both start a recorder for the same camera.
        self.reload_lock = asyncio.Lock()
        # The (seq, hash) last written to the audit checkpoint file.
        self._checkpointed: tuple[int, str] | None = None
        # systemd's notify socket (a no-op without $NOTIFY_SOCKET); nvr.runtime.watchdog's figures.
        self.notifier = Notifier()
        self.thread_restarts: dict[str, int] = {}
        self.loop_lag_s = 0.0
        # Routes other parts add to the web server on live.listen, e.g. ("GET", "/metrics", fn);
        # add them before start().
        self.extra_routes: list[tuple[str, str, Any]] = []
        self.web: WebServer | None = None
        self.web_alert: str | None = None  # why the viewing pages are not served (alerts)

    # -- start-up ------------------------------------------------------------------------

    async def start(self) -> None:
        # Before anything in the root is touched (tmp cleanup, recovery, the index): a second
        # instance stops here with RootBusy (exit 75) and changes nothing (docs/design.md).
        if self.root_lock is None:
            self.root_lock = await asyncio.to_thread(rootlock.acquire, self.root)
        await asyncio.to_thread(prepare_storage, self.root)
        await asyncio.to_thread(self.publish_key)
        self.db: dbmod.Db = await dbmod.connect(self.root / "index.db")
        self.index = Index(self.db)
        self.audit = AuditLog(self.db)
        # Before anything is appended: rows cut from the end while we were stopped.
        await self.check_audit_tail()
        self.refusals = RefusalLimiter(self.audit)
        self.holds = Holds(self.db)
        self.grants = Grants(self.db)
        self.requests = Requests(self.db)
        self.breaches = Breaches(self.db)
        crashed = await dbmod.get_meta(self.db, "running") == "1"
        # Only what a crash can have touched, before any camera starts; every older row and
        # file is checked in the background once the socket is open (progress: nvr status).
        report, boundary = await reconcile_startup(self.index, self.root,
                                                   [c.id for c in self.config.cameras])
        logger.info("reconciled", crashed=crashed, **report.to_dict())
        self.recovery_check = BackgroundCheck(self.index, self.root, boundary)
        await dbmod.set_meta(self.db, "running", "1")
        reason = "crash" if crashed else "recorder_stopped"
        total = (await asyncio.to_thread(disk_state, self.root)).total_bytes
        self.spool = ExportSpool(lambda: max_spool_bytes(total))
        self.retention = RetentionExecutor(
            self.db, self.index, self.holds, self.audit, self.config,
            clock=self.clock, on_pause=self.on_retention_pause, disk=self.footage_disk,
            clock_guard=self.clock_guard,
        )
        self.clock_ref = ClockRef(self.clock(), self.mono_clock(), await self.newest_footage())
        for cam in self.config.cameras:
            await self.launch_camera(cam, reason)
        tasks = self.supervisor
        tasks.every("audit_checkpoint", AUDIT_HEAD_INTERVAL_S, self.checkpoint_audit)

        async def flush_refusals() -> None:
            await self.refusals.flush(self.clock())

        tasks.every("refusal_flush", REFUSAL_FLUSH_INTERVAL_S, flush_refusals)
        from nvr.control import handlers
        from nvr.control.server import ControlServer

        await self.start_web()
        h = handlers.Handlers(self)
        self.control = ControlServer(self.config.control.socket, h.dispatch,
                                     role_of=lambda user: self.config.role_of(user),
                                     on_bad_request=h.bad_request)
        await self.control.start()
        # After the socket: a first pass over a big index must not delay the answers.
        tasks.every("retention", self.config.retention.interval_seconds, self.retention.run_once)
        # Meant to finish: its failure is logged, counted and shown in `nvr status`.
        tasks.keep_running("recovery_check", self._background_check, restart=False)
        tasks.every("still_expiry", STILL_EXPIRY_INTERVAL_S,
                    still_expirer(self.db, self.audit, self.clock))
        tasks.every("spool_release", SPOOL_RELEASE_INTERVAL_S, self.release_spool)
        # A grant that expires or a camera map that changes ends the links it no longer allows.
        from nvr.control import views

        async def recheck_links() -> None:
            await views.recheck_links(h)

        tasks.every("link_recheck", LINK_RECHECK_INTERVAL_S, recheck_links)
        logger.info("started", cameras=len(self.config.cameras),
                    socket=str(self.config.control.socket), storage=str(self.root))

    def publish_key(self) -> None:
        """Make the signing key now and publish its public half beside the control socket, so
        that every local account can verify exports (docs/export.md "Who signed it")."""
        from nvr.export.signing import load_or_create_key, publish_public_key, published_key_path

        self.signing_key: SigningKey = load_or_create_key(self.root)
        publish_public_key(self.signing_key, published_key_path(self.config.control.socket))

    # -- audit checkpoints (nvr.policy.checkpoint) -------------------------------------------

    async def check_audit_tail(self) -> None:
        from nvr.policy import checkpoint

        path = checkpoint.checkpoint_path(self.root)
        read = await asyncio.to_thread(checkpoint.read, path, self.signing_key.public_key())
        newest = checkpoint.newest_head(read.checkpoints)
        head = await self.audit.head()
        same = newest is not None and (newest.seq, newest.hash) == head
        self._checkpointed = head if same else None
        cut = checkpoint.cut_record(head, newest, self.clock())
        if cut is not None:
            line = await asyncio.to_thread(checkpoint.append, path, cut, self.signing_key)
            # The cut line is part of the chain of checkpoints: its journal copy too.
            logger.info("audit_checkpoint", seq=cut.seq, hash=cut.hash, at=line["at"],
                        fingerprint=line["fingerprint"], sig=line["sig"],
                        line=canonical_json(line))
            logger.error("audit_chain_cut", after_seq=head[0], checkpoint_seq=cut.extra[
                "checkpoint_seq"], detail="rows were deleted from the end of the audit log "
                "while the recorder was stopped; `nvr audit verify` reports it")

    async def checkpoint_audit(self) -> None:
        """Sign the chain's head into the checkpoint file and the journal (if it moved)."""
        from nvr.policy import checkpoint

        seq, digest = await self.audit.head()
        if self._checkpointed == (seq, digest):
            return
        cp = checkpoint.Checkpoint("head", seq, digest, self.clock())
        line = await asyncio.to_thread(checkpoint.append, checkpoint.checkpoint_path(self.root),
                                       cp, self.signing_key)
        self._checkpointed = (seq, digest)
        # The same signed line in the journal: a second copy outside storage.root, which
        # `nvr audit verify --journal` holds against the file (a cut tail of the file shows).
        logger.info("audit_checkpoint", seq=seq, hash=digest, at=line["at"],
                    fingerprint=line["fingerprint"], sig=line["sig"],
                    line=canonical_json(line))

    async def _background_check(self) -> None:
        try:
            await self.recovery_check.run()
        except Exception:
            self.recovery_check.state = "failed"  # `nvr status` shows it
            raise  # the supervisor logs it with its traceback and counts it

    async def start_web(self) -> None:
        """The viewing pages on live.listen (nvr.web), before the control socket opens so that
        the first `nvr live` can already be answered. On a loopback address it also answers
        GET /metrics (for this machine only; camera figures need the metrics token)."""
        from nvr.runtime import metrics
        from nvr.web import app
        from nvr.web.server import WATCH_INTERVAL_S

        web = app.build(self)
        if metrics.is_loopback(self.config.live.listen):
            web.add_route("GET", "/metrics", metrics.handler_for(self, self.config.live.listen))
        for method, path, handler in self.extra_routes:
            web.add_route(method, path, handler)
        try:
            await web.start()
        except OSError as exc:
            # Recording matters more than watching: a taken port or an unreadable TLS key
            # leaves the recorder running, and `nvr live` answers that no link can be made.
            logger.error("web_unavailable", listen=self.config.live.listen, error=str(exc))
            self.web_alert = alerts.web_alert(self.config.live.listen, self.config_path, exc)
            await web.stop()
            return
        self.web, self.web_alert = web, None
        # Expired links' streams closed, idle sessions ended, coalesced refusals written.
        self.supervisor.every("web_watch", WATCH_INTERVAL_S, web.watch_once)

    @property
    def viewing(self) -> WebServer | None:
        """The viewing pages' server as the control ops see it; None when it is not running."""
        return self.web

    def active_alerts(self) -> list[alerts.Alert]:
        """What `nvr status`, the STATUS= line and the metrics list as alerts now."""
        return alerts.active(self)

    def task_failures(self) -> Mapping[str, int]:
        """Failures of each background task so far (nvr.runtime.tasks)."""
        return self.supervisor.failures

    def footage_disk(self, root: Path) -> DiskState:
        """The disk as retention should judge it: the export spool (bounded, released within
        minutes; nvr/export/spool.py) is not footage, so it never makes footage go early."""
        d = disk_state(root)
        held = self.spool.bytes_held()
        return DiskState(d.total_bytes, min(d.total_bytes, d.free_bytes + held))

    async def newest_footage(self) -> int | None:
        return await self.index.newest_end()

    @property
    def clock_alert(self) -> str | None:
        """Why retention does not trust the wall clock now (nvr.runtime.alerts reads it)."""
        return self.retention.clock_alert

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

    async def launch_camera(self, cam: CameraConfig, downtime_reason: str | None) -> None:
        """The one way a camera starts, at start-up and on reload: registered in the index,
        its downtime since its last segment noted as a gap with `downtime_reason` (crash,
        recorder_stopped, reload; None: no gap), and paused from the start if the disk is
        full of held footage (a disk-full pause covers every camera, a restarted one too)."""
        await self.index.ensure_camera(cam.id, cam.name, self.clock())
        last = await self.index.last_segment(cam.id)
        if last is not None and downtime_reason is not None:
            self.downtime[cam.id] = (last.end_us, downtime_reason)
        self.start_camera(cam, None if last is None else last.end_us)

    def start_camera(self, cam: CameraConfig, last_end_us: int | None = None) -> None:
        # last_end_us: a new segment never starts before the last indexed one ended, even if
        # the box's clock stepped back across the restart (docs/time.md).
        rec = CameraRecorder(cam, self.config.storage, self.root, self.sink,
                             self.url_resolver(cam), last_end_us=last_end_us,
                             config_file=str(self.config_path))
        self.recorders[cam.id] = rec
        if self.paused:
            rec.pause(self.pause_alert or "disk full of held footage")
            self.paused.add(cam.id)
        rec.start()
        if self.web is not None:  # live view: a recorder started by reload or the watchdog
            self.web.attach_all()

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
            self.notifier.reloading()
            try:
                return await self._reload(why)
            finally:
                self.notifier.ready("reloaded the camera map")

    async def _reload(self, why: str) -> dict[str, list[str]]:
        try:
            new = await asyncio.to_thread(load_camera_map, self.config_path)
        except ConfigError as exc:
            logger.error("reload_refused", why=why, problems=str(exc))
            raise
        pending = [name for name, changed in (
            ("storage.root", new.storage.root != self.config.storage.root),
            ("control", new.control != self.config.control)) if changed]
        if pending:
            # The running recorder keeps its root (locked, indexed, recovered) and socket:
            # nothing, retention included, follows the new values until the next restart.
            logger.warning("reload_partial", pending=pending, root=str(self.root),
                           detail=f"{' and '.join(pending)} take effect at the next restart")
            new = new.model_copy(update={
                "storage": new.storage.model_copy(update={"root": self.config.storage.root}),
                "control": self.config.control})
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
            # The restart's hole (stop, reconnect, first keyframe) is a gap with a reason.
            await self.launch_camera(fresh[cam_id], "reload")
        logger.info("reloaded", why=why, added=added, removed=removed, changed=changed)
        answer: dict[str, list[str]] = {"added": added, "removed": removed, "changed": changed}
        if pending:
            answer["restart_needed"] = pending  # applied only after `systemctl restart nvr`
        return answer

    async def stop(self) -> None:
        self.notifier.stopping()
        self.stopping.set()
        await self.control.close()
        if self.web is not None:
            await self.web.stop()
        await asyncio.gather(*(rec.stop() for rec in self.recorders.values()),
                             return_exceptions=True)
        await self.supervisor.stop()
        try:
            await self.checkpoint_audit()  # at every stop: the tail cut later shows
        except Exception:
            logger.exception("audit_checkpoint_failed")
        with contextlib.suppress(Exception):
            await self.refusals.flush()  # every counted refusal gets its row
        self.spool.close()
        await dbmod.set_meta(self.db, "running", "0")
        await self.db.close()
        if self.root_lock is not None:
            rootlock.release(self.root_lock)
        logger.info("stopped")
