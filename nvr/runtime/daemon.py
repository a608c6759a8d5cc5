"""`nvr run`: the recorder daemon. Wires config → index → cameras → control socket → retention.

Start-up order (each step can rely on the ones before it):
  1. load and validate the camera map (exit 65 on a bad map; nothing is touched);
  2. lock storage.root (exit 75 if another nvr owns it), create its folders (0700), open the
     index (migrating it);
  3. reconcile what a crash can have touched (finish interrupted deletions, index the segment
     each camera had open); older rows and files are checked in the background after step 6;
  4. note the downtime since the last run as a gap per camera (reason crash or recorder_stopped);
  5. start one CameraRecorder per enabled camera, the retention executor, the still expirer;
  6. open the control socket last, so nobody is answered before the recorder is consistent;
  7. metrics.listen if set, then tell systemd READY=1 and start the watchdog (nvr.runtime.watchdog).
Shutdown runs the other way (uvicorn's Server.shutdown): socket → cameras → background tasks →
index. A second SIGTERM/SIGINT forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from nvr import log
from nvr.config.loader import ConfigError, load_camera_map
from nvr.config.model import CameraMap
from nvr.errors import EX_DATAERR, EX_OK, EX_SOFTWARE, RootBusy
from nvr.runtime import watchdog
from nvr.storage import rootlock
from nvr.timeutil import now_us

if TYPE_CHECKING:
    from nvr.runtime.metrics import MetricsServer
    from nvr.runtime.service import Service

logger = log.get("nvr.daemon")


def _clock() -> Callable[[], int]:
    """The policy and retention clock. NVR_TEST_CLOCK_OFFSET_S is a TEST DOUBLE for a machine
    whose clock jumped (tests may not change this machine's clock): it shifts this clock only,
    by that many seconds, and the daemon logs loudly that it is in use."""
    offset = os.environ.get("NVR_TEST_CLOCK_OFFSET_S")
    if not offset:
        return now_us
    shift = int(float(offset) * 1_000_000)
    logger.warning("test_clock_offset_in_use", offset_s=float(offset))
    return lambda: now_us() + shift


async def _run(config_path: Path, config: CameraMap, root_lock: int) -> int:
    from nvr.runtime.service import Service  # the heavy imports (PyAV), after the lock is ours

    service = Service(config_path, config, root_lock=root_lock, clock=_clock())
    await service.start()
    metrics = await _start_metrics(service, config)
    # systemd: ready only now, with the index open, recovery done and the socket listening.
    service.notifier.ready(watchdog.summary(service, await watchdog.free_percent(service)))
    # Critical: without the watchdog's pings systemd would kill us anyway; better to stop now,
    # saying why, with a non-zero exit that systemd restarts.
    service.supervisor.keep_running("watchdog",
                                    lambda: watchdog.run(service, service.notifier),
                                    critical=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_stop_signal(signame: str) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            logger.warning("forced_exit", signal=signame)
            os._exit(EX_SOFTWARE)
        logger.info("stopping", signal=signame)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop_signal, sig.name)

    async def reload_on_sighup() -> None:
        # A map that does not load is the person's to fix, and reload() has logged its
        # problems (reload_refused); anything else is a failure of the task.
        with contextlib.suppress(ConfigError):
            await service.reload("SIGHUP")

    loop.add_signal_handler(signal.SIGHUP, service.supervisor.once, "reload", reload_on_sighup)
    fatal = service.supervisor.fatal
    try:
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(fatal.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if fatal.is_set():
            logger.error("stopping_after_task_failure", reason=service.supervisor.fatal_reason)
    finally:
        if metrics is not None:
            await metrics.close()
        await service.stop()
    return EX_SOFTWARE if fatal.is_set() else EX_OK


async def _start_metrics(service: Service, config: CameraMap) -> MetricsServer | None:
    """GET /metrics on metrics.listen, if set. A port already taken costs the metrics, never
    the recording: logged, and the recorder runs on."""
    from nvr.runtime.metrics import MetricsServer

    if config.metrics is None:
        return None
    server = MetricsServer(service, config.metrics.listen)
    try:
        await server.start()
    except OSError as exc:
        logger.error("metrics_listen_failed", listen=config.metrics.listen, error=str(exc))
        await server.close()
        return None
    return server


def main(config_path: str) -> int:
    log.configure(os.environ.get("NVR_LOG_LEVEL", "info"))
    path = Path(config_path)
    try:
        config = load_camera_map(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EX_DATAERR
    # First thing after reading the map: a second instance must refuse at once, naming the
    # holder, before anything (imports included) takes time or touches the root.
    try:
        lock = rootlock.acquire(config.storage.root)
    except RootBusy as exc:
        sys.stderr.write(f"nvr: {exc}\n")
        return exc.exit_code
    # Descriptors: a soft limit below the hard one (1024 by default) is raised, so cameras,
    # segment files and viewers have the room the web server's limits assume (nvr.web.limits).
    from nvr.web.limits import raise_nofile, reserve

    soft, hard = raise_nofile()
    logger.info("file_descriptors", soft=soft, hard=hard, web_reserve=reserve(soft))
    return uvloop.run(_run(path, config, lock))
