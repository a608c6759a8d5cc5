"""Run by the crash test as a child process: record one camera until SIGKILLed.

Usage: python -m tests.storage.crash_writer URL ROOT SEGMENT_SECONDS
Prints `RECORDING` once the first segment is open.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from nvr.config.model import CameraConfig, StorageConfig
from nvr.ingest.recorder import CameraRecorder
from nvr.storage.index import NewSegment


class PrintSink:
    async def segment_closed(self, seg: NewSegment) -> None:
        print("CLOSED", seg.path, flush=True)

    async def gap(self, camera: str, start_us: int, end_us: int, reason: str, detail: str) -> None:
        pass

    def state_changed(self, camera: str, state: str, reason: str) -> None:
        if state == "recording":
            print("RECORDING", flush=True)


async def main(url: str, root: Path, seconds: float) -> None:
    async def resolve(force: bool) -> str:
        return url

    cam = CameraConfig(id="crashcam", name="crash", area="entrance", rtsp=url)
    rec = CameraRecorder(cam, StorageConfig(root=root, segment_seconds=seconds), root,
                         PrintSink(), resolve)
    rec.start()
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    from nvr import log

    log.configure("warning")
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])))
