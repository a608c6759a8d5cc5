"""The watchdog task: proves to systemd that the recorder works, not merely that it runs.

Every tick (half of WatchdogSec, or CHECK_INTERVAL_S without a watchdog) it
  1. restarts any camera thread that has made no progress for CAMERA_STALL_S (a wedged read, a
     deadlock): the old thread is abandoned and logged, a new one records the camera;
  2. sends WATCHDOG=1 with a one-line STATUS= summary. The ping is sent from the event loop, so
     a blocked loop stops the pings by itself and systemd restarts the service;
  3. measures the event loop's lag (how late the tick woke), for the metrics.

CAMERA_STALL_S must exceed the longest single blocking step of a camera thread: an ONVIF look-up
(60 s limit, nvr.ingest.recorder._resolve) and an RTSP open (several round trips of io_timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Protocol

from nvr import log
from nvr.config.model import CameraConfig, CameraMap
from nvr.ingest.session import CAMERA_STALL_S
from nvr.retention.disk import disk_state
from nvr.runtime import alerts
from nvr.runtime.sdnotify import Notifier, status_line

logger = log.get("nvr.watchdog")

CHECK_INTERVAL_S = 10.0
DISK_TIMEOUT_S = 2.0


class _Writer(Protocol):
    @property
    def last_end_us(self) -> int | None: ...


class WatchedCamera(Protocol):
    """A camera's recorder as the watchdog sees it (nvr.ingest.recorder.CameraRecorder)."""

    state: str

    @property
    def writer(self) -> _Writer: ...

    def stalled_for(self, now: float) -> float: ...

    def abandon(self) -> None: ...


class WatchdogPort(Protocol):
    """What the watchdog reads and does of the running recorder (nvr.runtime.service
    implements it)."""

    config: CameraMap
    root: Path

    @property
    def recorders(self) -> Mapping[str, WatchedCamera]: ...

    stopping: asyncio.Event

    @property
    def thread_restarts(self) -> MutableMapping[str, int]: ...

    # How late the watchdog's last tick woke (the metrics show it).
    loop_lag_s: float

    def start_camera(self, cam: CameraConfig, last_end_us: int | None = None) -> None:
        """Start a new recorder for `cam` in place of the one there."""
        ...

    def active_alerts(self) -> list[alerts.Alert]: ...


def restart_wedged(service: WatchdogPort, now: float | None = None) -> list[str]:
    """Replace every camera thread that has not beaten for CAMERA_STALL_S; their ids."""
    now = time.monotonic() if now is None else now
    restarted = []
    for cam_id, rec in list(service.recorders.items()):
        stalled = rec.stalled_for(now)
        if stalled < CAMERA_STALL_S:
            continue
        cam = service.config.camera(cam_id)
        logger.error("camera_thread_wedged", camera=cam_id, stalled_s=round(stalled, 1),
                     action="restarting the camera thread")
        rec.abandon()
        if cam is not None:
            service.start_camera(cam, rec.writer.last_end_us)
        service.thread_restarts[cam_id] = service.thread_restarts.get(cam_id, 0) + 1
        logger.info("camera_thread_restarted", camera=cam_id)
        restarted.append(cam_id)
    return restarted


def summary(service: WatchdogPort, free_percent: float | None) -> str:
    """`3/4 cameras recording, disk 41% free, alerts: none` — what `systemctl status` shows."""
    states = {cam.id: (service.recorders[cam.id].state if cam.id in service.recorders
                       else "disabled") for cam in service.config.cameras}
    recording = sum(1 for s in states.values() if s == "recording")
    disk = "disk ?" if free_percent is None else f"disk {free_percent:.0f}% free"
    # The same alerts as `nvr status` and the metrics (nvr.runtime.alerts).
    return (f"{recording}/{len(states)} cameras recording, {disk}, "
            f"alerts: {alerts.short(service.active_alerts())}")


async def free_percent(service: WatchdogPort) -> float | None:
    try:
        disk = await asyncio.wait_for(asyncio.to_thread(disk_state, service.root), DISK_TIMEOUT_S)
    except (TimeoutError, OSError):
        return None
    return 100 * disk.free_bytes / max(disk.total_bytes, 1)


async def run(service: WatchdogPort, notifier: Notifier) -> None:
    interval = notifier.watchdog_interval_s() or CHECK_INTERVAL_S
    block_file = os.environ.get("NVR_TEST_BLOCK_LOOP_FILE")
    free: float | None = None
    loop = asyncio.get_running_loop()
    while not service.stopping.is_set():
        try:
            restart_wedged(service)
        except Exception:
            logger.exception("watchdog_check_failed")
        if block_file and Path(block_file).exists():
            # Test hook (tests/e2e/test_sdnotify.py): a wedged event loop must stop the pings.
            logger.warning("test_hook_blocking_event_loop")
            time.sleep(3600)  # noqa: ASYNC251 - blocking the loop is the point
        text = summary(service, free)
        if notifier.watchdog_interval_s() is not None:
            notifier.watchdog(text)
        else:
            notifier.notify(status_line(text))
        free = await free_percent(service)
        began = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.stopping.wait(), interval)
        service.loop_lag_s = max(0.0, loop.time() - began - interval)
