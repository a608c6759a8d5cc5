"""A real retention set-up for tests: SQLite index, segment files, holds, audit log, a clock."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite
import av

from nvr.config.model import CameraConfig, CameraMap, RetentionConfig, StorageConfig
from nvr.policy.audit import AuditLog
from nvr.retention.executor import RetentionExecutor
from nvr.retention.holds import Holds
from nvr.storage.db import connect
from nvr.storage.index import Index, NewSegment
from nvr.timeutil import US, parse_time, segment_name

T0 = parse_time("2026-03-01T09:00:00Z")
DAY = 86_400 * US


class Clock:
    """Injected into the executor; tests move it forward instead of patching time."""

    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t

    def advance(self, days: float) -> None:
        self.t += int(days * DAY)


def camera_map(root: Path, cameras: tuple[str, ...], min_free: float = 10) -> CameraMap:
    return CameraMap(
        site="Test library",
        storage=StorageConfig(root=root, min_free_percent=min_free),
        retention=RetentionConfig(days=30),
        cameras=[CameraConfig(id=c, name=c.title(), area="entrance", rtsp=f"rtsp://cam/{c}")
                 for c in cameras],
    )


def tiny_fmp4(shade: int, frames: int = 8) -> bytes:
    """A real fragmented MP4 (H.264, 64x64), as the recorder writes them."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4",
                 options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as out:
        stream = out.add_stream("libx264", rate=15, options={"preset": "ultrafast"})
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = av.VideoFrame(64, 64, "gray")
            img.planes[0].update(bytes([(shade * 37 + i) % 256]) * img.planes[0].buffer_size)
            for pkt in stream.encode(img.reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return buf.getvalue()


def decoded_frames(path: str) -> int:
    with av.open(path) as f:
        return sum(1 for _ in f.decode(video=0))


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:
        f.write(data)
        os.fsync(f.fileno())


@dataclass
class Env:
    root: Path
    db: aiosqlite.Connection
    config: CameraMap
    clock: Clock
    index: Index = field(init=False)
    holds: Holds = field(init=False)
    audit: AuditLog = field(init=False)
    pauses: list[tuple[set[str], str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index, self.holds, self.audit = Index(self.db), Holds(self.db), AuditLog(self.db)

    def executor(self) -> RetentionExecutor:
        return RetentionExecutor(
            self.db, self.index, self.holds, self.audit, self.config, clock=self.clock,
            on_pause=lambda cams, alert: self.pauses.append((cams, alert)),
        )

    async def add_segment(self, camera: str, start_us: int, data: bytes) -> str:
        """Writer's order: file → fsync → row (so a row always has its file)."""
        path = self.root / "segments" / camera / segment_name(start_us)
        await asyncio.to_thread(_write_durably, path, data)
        await self.index.add_segment(NewSegment(
            camera=camera, start_us=start_us, end_us=start_us + 60 * US, path=str(path),
            bytes=len(data), frames=8, keyframes=1, codec="h264", width=64, height=64,
            sha256=hashlib.sha256(data).hexdigest(),
        ))
        return str(path)

    def files_on_disk(self) -> set[str]:
        return {str(p) for p in (self.root / "segments").rglob("*.mp4")}

    async def paths_in_index(self) -> set[str]:
        return {s.path for s in await self.index.all_segments(include_deleting=True)}


async def open_env(root: Path, db_path: Path, cameras: tuple[str, ...], clock: Clock,
                   min_free: float = 10) -> Env:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = await connect(db_path)
    cfg = camera_map(root, cameras, min_free)
    for c in cameras:
        await Index(db).ensure_camera(c, c.title(), clock())
    return Env(root, db, cfg, clock)
