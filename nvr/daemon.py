"""`nvr run`: the recorder daemon. Wires config → index → cameras → control socket → retention.

Start-up order (each step can rely on the ones before it):
  1. load and validate the camera map (exit 65 on a bad map; nothing is touched);
  2. create storage.root (0700) and open the index (migrating it);
  3. reconcile disk and index (finish interrupted deletions, index segments a crash left open);
  4. note the downtime since the last run as a gap per camera (reason crash or recorder_stopped);
  5. start one CameraRecorder per enabled camera, the retention executor, the still expirer;
  6. open the control socket last, so nobody is answered before the recorder is consistent.
Shutdown runs the other way (uvicorn's Server.shutdown): socket → cameras → background tasks →
index. A second SIGTERM/SIGINT forces exit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import uvloop

from nvr import log
from nvr.config.loader import ConfigError, load_camera_map
from nvr.config.model import CameraMap
from nvr.errors import EX_DATAERR, EX_OK, EX_SOFTWARE
from nvr.service import Service
from nvr.timeutil import now_us

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


async def _run(config_path: Path, config: CameraMap) -> int:
    service = Service(config_path, config, clock=_clock())
    await service.start()
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
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(service.reload("SIGHUP")))
    try:
        await stop.wait()
    finally:
        await service.stop()
    return EX_OK


def main(config_path: str) -> int:
    log.configure(os.environ.get("NVR_LOG_LEVEL", "info"))
    path = Path(config_path)
    try:
        config = load_camera_map(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EX_DATAERR
    return uvloop.run(_run(path, config))
