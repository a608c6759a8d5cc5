"""Shared by the recorder and recovery tests: a real index as the sink, ffprobe readers."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nvr.config.model import CameraConfig, StorageConfig
from nvr.ingest import readers
from nvr.ingest.backoff import Backoff
from nvr.ingest.recorder import CameraRecorder, Reader
from nvr.storage import db as dbmod
from nvr.storage.index import Gap, Index, NewSegment


class IndexSink:
    """What the daemon's sink does: rows into the real SQLite index."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.states: list[tuple[str, str, str]] = []
        self.gaps: list[Gap] = []
        self.indexed: dict[str, int] = {}  # camera -> segments indexed

    async def segment_closed(self, seg: NewSegment) -> None:
        await self.index.add_segment(seg)
        self.indexed[seg.camera] = self.indexed.get(seg.camera, 0) + 1

    async def gap(self, camera: str, start_us: int, end_us: int, reason: str, detail: str) -> None:
        self.gaps.append(Gap(camera, start_us, end_us, reason, detail))
        await self.index.add_gap(camera, start_us, end_us, reason, detail)

    def state_changed(self, camera: str, state: str, reason: str) -> None:
        self.states.append((camera, state, reason))


async def open_index(root: Path) -> Index:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Index(await dbmod.connect(root / "index.db"))


def make_recorder(
    cam_id: str, url: str, root: Path, sink: IndexSink, *, segment_seconds: float = 2.0,
    io_timeout_s: float = 3.0, reader: str = "ffmpeg", transport: str = "auto",
    reader_for: Callable[[str], Reader] = readers.by_name,
) -> CameraRecorder:
    camera = CameraConfig(id=cam_id, name=cam_id, area="entrance", rtsp=url,
                          reader=reader, transport=transport)  # type: ignore[arg-type]

    async def resolve(force: bool) -> str:
        return url

    return CameraRecorder(
        camera, StorageConfig(root=root, segment_seconds=segment_seconds), root, sink, resolve,
        backoff=Backoff(initial_s=0.5, cap_s=2.0, slow_s=30.0), io_timeout_s=io_timeout_s,
        reader_for=reader_for,
    )


async def wait_for(cond: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            try:  # name the condition by its source, not as "<function <lambda>>"
                what = inspect.getsource(cond).strip()
            except (OSError, TypeError):
                what = repr(cond)
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.1)


def ffprobe(path: Path) -> dict:  # type: ignore[type-arg]
    """Streams and every video packet's pts/duration (seconds) of a file, by ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_packets", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def record_through_stepping_relay(source_url: str, tmp_path: Path, index: Index,
                                        steps: list[tuple[float, int]],
                                        within_s: float = 40.0) -> dict[str, Any]:
    """Camera `stacks` recorded by the own reader through a relay (tests/ingest/rtsp_relay.py)
    that steps its RTP clock at `steps` ((seconds into the stream, ticks added)), until every
    step is past and one more segment is in `index`; the recorder's status then."""
    from tests.ingest.rtsp_relay import Relay

    with Relay(source_url, steps=steps) as relay:
        relay.wait_buffered(0.2)
        sink = IndexSink(index)
        rec = make_recorder("stacks", relay.url(), tmp_path, sink, reader="nvr")
        rec.start()
        try:
            await wait_for(relay.stepped.is_set, within_s=within_s)
            after = sink.indexed.get("stacks", 0)
            await wait_for(lambda: sink.indexed.get("stacks", 0) >= after + 1, within_s=20)
            return rec.status()
        finally:
            await rec.stop()
