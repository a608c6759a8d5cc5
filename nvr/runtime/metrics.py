"""Prometheus text for an IT person's monitoring: GET /metrics.

The figures are read from the running recorder (through `MetricsPort`) at scrape time (a
snapshot taken on the event loop, disk figures from a worker thread), then rendered by
prometheus_client; nothing in the recording path is instrumented, so a slow scraper costs the
recorder nothing but the scrape.

Served by its own small aiohttp app on `metrics.listen` (camera map) when that is set, and
on the live-view server's address when that is loopback. Only counts and states: no footage, no
names of people, no camera URLs.

Who may read them: the figures are what `nvr status` shows, which unlisted accounts
are refused, so
- a request must name the listen address in its Host header (a web page whose name was
  rebound to 127.0.0.1 sends its own name: refused), and on a loopback listen address must come
  from this machine;
- the full figures need `Authorization: Bearer TOKEN`, TOKEN being the content of
  `storage.root/keys/metrics.token` (made by the recorder at start, 0600 in a 0700 folder:
  readable by the recorder's account and root only). Without it a loopback listener answers
  `nvr_up` and nothing about cameras; a listener on any other address answers 401.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from nvr import log
from nvr.control.ports import RecorderParts
from nvr.retention.disk import disk_state
from nvr.runtime import alerts
from nvr.runtime.alerts import Alert
from nvr.storage import footage_stats
from nvr.web.limits import HEADER_TIMEOUT_S, Acceptor

MAX_CONNECTIONS = 16  # GET /metrics on metrics.listen: a scraper or two
MAX_PER_PEER = 8

logger = log.get("nvr.metrics")

# Every state a camera can be in (nvr.ingest.recorder); one 0/1 series each, as a StateSet.
CAMERA_STATES = ("connecting", "recording", "backoff", "failed", "disabled")


class _Stats(Protocol):
    @property
    def frames(self) -> int: ...

    @property
    def bytes(self) -> int: ...


class _Writer(Protocol):
    @property
    def last_end_us(self) -> int | None: ...


class CameraCounters(Protocol):
    """A camera's recorder as the metrics read it (nvr.ingest.recorder.CameraRecorder)."""

    state: str
    errors: int

    @property
    def stats(self) -> _Stats: ...

    @property
    def writer(self) -> _Writer: ...


class MetricsPort(RecorderParts, Protocol):
    """What the metrics read of the running recorder (nvr.runtime.service implements it)."""

    @property
    def recorders(self) -> Mapping[str, CameraCounters]: ...

    @property
    def thread_restarts(self) -> Mapping[str, int]: ...

    loop_lag_s: float

    def active_alerts(self) -> list[Alert]: ...

    def task_failures(self) -> Mapping[str, int]: ...


@dataclass
class CameraFigures:
    id: str
    state: str
    frames: int = 0
    bytes: int = 0
    reconnects: int = 0
    thread_restarts: int = 0
    last_segment_age_s: float | None = None
    horizon_s: float | None = None  # age of the oldest footage kept
    retention_days: float = 0.0


@dataclass
class Snapshot:
    cameras: list[CameraFigures] = field(default_factory=list)
    disk_total: int = 0
    disk_free: int = 0
    recordings_bytes: int = 0
    loop_lag_s: float = 0.0
    audit_rows: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    task_failures: dict[str, int] = field(default_factory=dict)


async def snapshot(service: MetricsPort) -> Snapshot:
    now_us = service.clock()
    snap = Snapshot(loop_lag_s=service.loop_lag_s)
    for cam in service.config.cameras:
        rec = service.recorders.get(cam.id)
        fig = CameraFigures(cam.id, rec.state if rec else "disabled",
                            retention_days=service.config.retention_days_for(cam.id),
                            thread_restarts=service.thread_restarts.get(cam.id, 0))
        if rec is not None:
            fig.frames, fig.bytes, fig.reconnects = rec.stats.frames, rec.stats.bytes, rec.errors
            if rec.writer.last_end_us is not None:
                fig.last_segment_age_s = max(0.0, (now_us - rec.writer.last_end_us) / 1e6)
        oldest = await footage_stats.oldest_start(service.db, cam.id)
        if oldest is not None:
            fig.horizon_s = max(0.0, (now_us - oldest) / 1e6)
        snap.cameras.append(fig)
    disk = await asyncio.to_thread(disk_state, service.root)
    snap.disk_total, snap.disk_free = disk.total_bytes, disk.free_bytes
    snap.recordings_bytes = await service.index.total_bytes()
    snap.audit_rows = (await service.audit.head())[0]
    # The same alerts as `nvr status` and the STATUS= line (nvr.runtime.alerts).
    snap.alerts = alerts.counts(service.active_alerts())
    snap.task_failures = dict(service.task_failures())
    return snap


# One sample per camera: (family, name, help, the figure of a CameraFigures or None).
_CAMERA_FIGURES: list[tuple[type[CounterMetricFamily] | type[GaugeMetricFamily], str, str,
                            Callable[[CameraFigures], float | None]]] = [
    (CounterMetricFamily, "nvr_camera_frames",
     "Video frames recorded since the camera's thread started", lambda c: c.frames),
    (CounterMetricFamily, "nvr_camera_bytes",
     "Video bytes recorded since the camera's thread started", lambda c: c.bytes),
    (CounterMetricFamily, "nvr_camera_reconnects",
     "Camera sessions that failed and were retried", lambda c: c.reconnects),
    (CounterMetricFamily, "nvr_camera_thread_restarts",
     "Wedged camera threads the watchdog replaced", lambda c: c.thread_restarts),
    (GaugeMetricFamily, "nvr_camera_last_segment_age_seconds",
     "Seconds since the end of the camera's last finished segment",
     lambda c: c.last_segment_age_s),
    (GaugeMetricFamily, "nvr_camera_retention_horizon_seconds",
     "Age of the camera's oldest footage kept", lambda c: c.horizon_s),
    (GaugeMetricFamily, "nvr_camera_retention_target_seconds",
     "How long the camera's footage is kept (retention.days)",
     lambda c: c.retention_days * 86400),
]


class _SnapshotCollector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        state = GaugeMetricFamily("nvr_camera_state", "1 for the state each camera is in now",
                                  labels=["camera", "state"])
        per_camera = [(family(name, text, labels=["camera"]), value)
                      for family, name, text, value in _CAMERA_FIGURES]
        for c in s.cameras:
            for st in CAMERA_STATES:
                state.add_metric([c.id, st], 1.0 if c.state == st else 0.0)
            for metric, value in per_camera:
                v = value(c)
                if v is not None:  # a camera without a figure yet (no segment) has no sample
                    metric.add_metric([c.id], v)
        yield state
        yield from (metric for metric, _ in per_camera)
        yield GaugeMetricFamily("nvr_disk_free_bytes", "Free bytes on the storage filesystem "
                                "(for the recorder's account)", value=s.disk_free)
        yield GaugeMetricFamily("nvr_disk_size_bytes", "Size of the storage filesystem",
                                value=s.disk_total)
        yield GaugeMetricFamily("nvr_recordings_bytes", "Bytes of footage in the index",
                                value=s.recordings_bytes)
        yield GaugeMetricFamily("nvr_event_loop_lag_seconds", "How late the watchdog's last "
                                "tick woke: the event loop's responsiveness", value=s.loop_lag_s)
        yield CounterMetricFamily("nvr_audit_rows", "Rows in the hash-chained audit log",
                                  value=s.audit_rows)
        failures = CounterMetricFamily("nvr_task_failures", "Failures of a background task "
                                       "(logged with their traceback; nvr/runtime/tasks.py)",
                                       labels=["task"])
        for task, count in sorted(s.task_failures.items()):
            failures.add_metric([task], count)
        yield failures
        alerts = GaugeMetricFamily("nvr_alerts", "Active alerts by kind (0 when none)",
                                   labels=["alert"])
        for kind, n in sorted(s.alerts.items()):
            alerts.add_metric([kind], n)
        yield alerts


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)


TOKEN_NAME = "metrics.token"
PUBLIC = (b"# HELP nvr_up 1: the recorder answers. Camera figures need the bearer token in "
          b"storage.root/keys/metrics.token (docs/commands.md, Metrics)\n"
          b"# TYPE nvr_up gauge\nnvr_up 1.0\n")


def token_path(storage_root: Path) -> Path:
    from nvr.export.signing import keys_dir

    return keys_dir(storage_root) / TOKEN_NAME


def load_or_create_token(storage_root: Path) -> str:
    """The metrics bearer token, made (0600, in the 0700 keys folder) if there is none."""
    path = token_path(storage_root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        logger.info("metrics_token_created", path=str(path))
    token = path.read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{path} holds no usable token; delete it and restart to make one")
    return token


class Gate:
    """Who gets which figures from one listener (module docstring)."""

    def __init__(self, listen: str, token: str) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]").lower()
        self.loopback = is_loopback(listen)
        self.token = token.encode()
        shown = f"[{host}]" if ":" in host else host
        self.hosts = {f"{shown}:{port}"}
        if self.loopback:
            self.hosts |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
        self.listen = f"{shown}:{port}"

    def full(self, request: web.Request) -> bool:
        """True: all figures; False: only nvr_up; raises an HTTP error for a refused request."""
        if request.host.lower() not in self.hosts:
            raise web.HTTPForbidden(text=f"refused: this recorder's metrics answer to Host "
                                         f"{self.listen} only, not {request.host[:80]!r}\n")
        local = _is_loopback_ip(request.remote)
        if self.loopback and not local:
            raise web.HTTPForbidden(text="refused: metrics on a loopback address are for "
                                         "this machine only\n")
        given = request.headers.get("Authorization", "")
        if given:
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                     self.token):
                raise web.HTTPUnauthorized(text="refused: wrong metrics token; use the one in "
                                                "storage.root/keys/metrics.token\n")
            return True
        if not self.loopback:
            raise web.HTTPUnauthorized(text="refused: metrics on a non-loopback address need "
                                            "'Authorization: Bearer TOKEN' (the token is in "
                                            "storage.root/keys/metrics.token)\n")
        return False


def _is_loopback_ip(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


async def _scrape(service: MetricsPort, full: bool) -> web.Response:
    if not full:
        return web.Response(body=PUBLIC, headers={"Content-Type": CONTENT_TYPE_LATEST})
    started = time.monotonic()
    body = render(await snapshot(service))
    logger.debug("metrics_scraped", ms=round(1000 * (time.monotonic() - started), 1))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def handler_for(service: MetricsPort,
                listen: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics for a server on `listen` (metrics.listen, or a loopback live.listen)."""
    gate = Gate(listen, load_or_create_token(service.root))

    async def handler(request: web.Request) -> web.Response:
        return await _scrape(service, gate.full(request))

    return handler


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class MetricsServer:
    """The standalone listener on `metrics.listen`."""

    def __init__(self, service: MetricsPort, listen: str) -> None:
        self.service = service
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.listen = listen
        self.runner: web.AppRunner | None = None
        self.acceptor: Acceptor | None = None
        self.refused = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", handler_for(self.service, self.listen))
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    keepalive_timeout=HEADER_TIMEOUT_S)
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        # Bounded like the viewing pages' server (nvr.web.limits): a scraper needs a few
        # connections, a flood must not spend the recorder's descriptors.
        self.acceptor = Acceptor(lambda: server(), ssl_context=None, on_refused=self._refused,
                                 max_connections=MAX_CONNECTIONS, max_per_peer=MAX_PER_PEER)
        self.port = self.acceptor.listen(self.host, self.port)
        logger.info("metrics_listening", listen=f"{self.host}:{self.port}")

    def _refused(self, peer: str, why: str) -> None:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            logger.warning("metrics_connections_refused", count=self.refused, peer=peer, why=why)

    async def close(self) -> None:
        if self.acceptor is not None:
            await self.acceptor.close()
            self.acceptor = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
