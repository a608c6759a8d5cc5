"""Prometheus text for an IT person's monitoring: GET /metrics.

The figures are read from the running Service at scrape time (a snapshot taken on the event
loop, disk figures from a worker thread), then rendered by prometheus_client; nothing in the
recording path is instrumented, so a slow scraper costs the recorder nothing but the scrape.

Served by its own small aiohttp app on `metrics.listen` (camera map) when that is set;
`metrics_handler` is the same handler for mounting on the live-view server's loopback address.
Only counts and states: no footage, no names of people, no camera URLs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from nvr import alerts, log
from nvr.retention.disk import disk_state

if TYPE_CHECKING:
    from nvr.service import Service

logger = log.get("nvr.metrics")

# Every state a camera can be in (nvr.ingest.recorder); one 0/1 series each, as a StateSet.
CAMERA_STATES = ("connecting", "recording", "backoff", "failed", "disabled")
SERVICE_KEY: web.AppKey[Service] = web.AppKey("nvr_service")


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


async def snapshot(service: Service) -> Snapshot:
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
        async with service.db.execute(
                "SELECT MIN(start_us) FROM segments WHERE camera = ?", (cam.id,)) as cur:
            row = await cur.fetchone()
        if row is not None and row[0] is not None:
            fig.horizon_s = max(0.0, (now_us - int(row[0])) / 1e6)
        snap.cameras.append(fig)
    disk = await asyncio.to_thread(disk_state, service.root)
    snap.disk_total, snap.disk_free = disk.total_bytes, disk.free_bytes
    snap.recordings_bytes = await service.index.total_bytes()
    snap.audit_rows = (await service.audit.head())[0]
    # The same alerts as `nvr status` and the STATUS= line (nvr.alerts).
    snap.alerts = alerts.counts(alerts.of_service(service))
    snap.task_failures = dict(service.supervisor.failures)
    return snap


class _SnapshotCollector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        state = GaugeMetricFamily("nvr_camera_state", "1 for the state each camera is in now",
                                  labels=["camera", "state"])
        frames = CounterMetricFamily("nvr_camera_frames", "Video frames recorded since the "
                                     "camera's thread started", labels=["camera"])
        data = CounterMetricFamily("nvr_camera_bytes", "Video bytes recorded since the camera's "
                                   "thread started", labels=["camera"])
        reconnects = CounterMetricFamily("nvr_camera_reconnects", "Camera sessions that failed "
                                         "and were retried", labels=["camera"])
        restarts = CounterMetricFamily("nvr_camera_thread_restarts", "Wedged camera threads the "
                                       "watchdog replaced", labels=["camera"])
        age = GaugeMetricFamily("nvr_camera_last_segment_age_seconds", "Seconds since the end of "
                                "the camera's last finished segment", labels=["camera"])
        horizon = GaugeMetricFamily("nvr_camera_retention_horizon_seconds", "Age of the camera's "
                                    "oldest footage kept", labels=["camera"])
        keep = GaugeMetricFamily("nvr_camera_retention_target_seconds", "How long the camera's "
                                 "footage is kept (retention.days)", labels=["camera"])
        for c in s.cameras:
            for st in CAMERA_STATES:
                state.add_metric([c.id, st], 1.0 if c.state == st else 0.0)
            frames.add_metric([c.id], c.frames)
            data.add_metric([c.id], c.bytes)
            reconnects.add_metric([c.id], c.reconnects)
            restarts.add_metric([c.id], c.thread_restarts)
            if c.last_segment_age_s is not None:
                age.add_metric([c.id], c.last_segment_age_s)
            if c.horizon_s is not None:
                horizon.add_metric([c.id], c.horizon_s)
            keep.add_metric([c.id], c.retention_days * 86400)
        yield from (state, frames, data, reconnects, restarts, age, horizon, keep)
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
                                       "(logged with their traceback; nvr/tasks.py)",
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


async def metrics_handler(request: web.Request) -> web.Response:
    return await _scrape(request.app[SERVICE_KEY])


async def _scrape(service: Service) -> web.Response:
    started = time.monotonic()
    body = render(await snapshot(service))
    logger.debug("metrics_scraped", ms=round(1000 * (time.monotonic() - started), 1))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def handler_for(service: Service) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics for another app (the viewing pages' server on a loopback live.listen)."""

    async def handler(request: web.Request) -> web.Response:
        return await _scrape(service)

    return handler


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def add_routes(app: web.Application, service: Service) -> None:
    """Mount GET /metrics on an existing aiohttp app (e.g. live view on loopback)."""
    app[SERVICE_KEY] = service
    app.router.add_get("/metrics", metrics_handler)


class MetricsServer:
    """The standalone listener on `metrics.listen`."""

    def __init__(self, service: Service, listen: str) -> None:
        self.service = service
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        add_routes(app, self.service)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        logger.info("metrics_listening", listen=f"{self.host}:{self.port}")

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
