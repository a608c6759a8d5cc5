"""Start-up recovery and `nvr fsck`: make the index and the segment folders agree again.

Invariant (segment_writer): a 'complete' row names a durable file. A crash can leave
  (a) rows in state 'deleting'   → finish the delete: unlink, fsync folder, drop the row;
  (b) files without rows         → a segment left open by a crash or power cut: cut it back to
      its last complete fragment, count, hash, fsync and index it (recovered=True); a file that
      holds no complete fragment is moved to <root>/quarantine/ — never silently deleted;
  (c) rows whose file is missing → reported, removed, and a gap with reason 'missing' recorded.
With repair=False nothing is changed; the report says what would be done.
Run before any recorder starts: an open segment of a running recorder has no row yet.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av

from nvr import log, timeutil
from nvr.media.mp4.boxes import top_level
from nvr.media.mp4.fragment import complete_length
from nvr.storage import fsutil
from nvr.storage.index import Index, NewSegment, Segment

_log = log.get("nvr.storage.recovery")


@dataclass
class Probe:
    frames: int
    keyframes: int
    media_us: int
    codec: str
    width: int
    height: int


def probe_segment(path: Path, length: int | None = None) -> Probe | None:
    """Count what PyAV can read back from the first `length` bytes (all if None); None if
    nothing is readable. Reads through a bounded view: the file is not changed."""
    try:
        with open(path, "rb") as raw, av.open(_Prefix(raw, length), "r") as c:
            if not c.streams.video:
                return None
            v = c.streams.video[0]
            tb = Fraction(v.time_base or Fraction(1, 90000))
            frames = keys = 0
            first: int | None = None
            end = 0
            for p in c.demux(v):
                if p.size == 0 or p.pts is None:
                    continue
                frames += 1
                keys += int(p.is_keyframe)
                first = p.pts if first is None else min(first, p.pts)
                end = max(end, p.pts + (p.duration or 0))
            if frames == 0 or first is None:
                return None
            ctx = v.codec_context
            return Probe(frames, keys, int((end - first) * tb * 1_000_000), str(ctx.name),
                         int(ctx.width or 0), int(ctx.height or 0))
    except (av.error.FFmpegError, OSError):
        return None


@dataclass
class ReconcileReport:
    repair: bool
    finished_deletes: list[str] = field(default_factory=list)
    recovered: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # files not named like segments: left alone
    last_end_us: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.finished_deletes or self.recovered or self.quarantined or self.missing)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clean"] = self.clean
        d["last_end"] = {c: timeutil.to_iso(us) for c, us in self.last_end_us.items()}
        return d


async def reconcile(
    index: Index, storage_root: Path, camera_ids: Iterable[str], *, repair: bool = True
) -> ReconcileReport:
    report = ReconcileReport(repair=repair)
    await _finish_deletes(index, report)
    seg_root = storage_root / "segments"
    cams = set(camera_ids)
    cams |= set(await asyncio.to_thread(_subfolders, seg_root))
    known = {s.path for s in await index.all_segments(include_deleting=True)}
    for cam in sorted(cams):
        for path in await asyncio.to_thread(_files, seg_root / cam):
            if str(path) not in known:
                await _orphan(index, storage_root, cam, path, report)
    await _missing(index, report)
    for cam in sorted(cams):
        last = await index.last_segment(cam)
        if last is not None:
            report.last_end_us[cam] = last.end_us
    _log.info("reconciled", repair=repair, recovered=len(report.recovered),
              quarantined=len(report.quarantined), missing=len(report.missing),
              finished_deletes=len(report.finished_deletes))
    return report


async def _finish_deletes(index: Index, report: ReconcileReport) -> None:
    for seg in await index.deleting():
        report.finished_deletes.append(seg.path)
        if report.repair:
            await asyncio.to_thread(_unlink_durably, Path(seg.path))
            await index.remove([seg.id])


def _unlink_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    if path.parent.is_dir():
        fsutil.fsync_dir(path.parent)


async def _orphan(
    index: Index, root: Path, cam: str, path: Path, report: ReconcileReport
) -> None:
    start_us = timeutil.parse_segment_name(path.name)
    if start_us is None:
        report.foreign.append(str(path))
        return
    found = await asyncio.to_thread(_inspect, path)
    if isinstance(found, str):
        dest = root / "quarantine" / cam / path.name
        report.quarantined.append({"path": str(path), "why": found, "to": str(dest)})
        if report.repair:
            await asyncio.to_thread(_move_durably, path, dest)
        return
    keep, size, probe = found
    entry = {"path": str(path), "frames": probe.frames, "bytes": keep,
             "cut_bytes": size - keep, "end": timeutil.to_iso(start_us + probe.media_us)}
    report.recovered.append(entry)
    if not report.repair:
        return
    sha = await asyncio.to_thread(_cut_and_sync, path, keep)
    async with index.unit():
        # The recorder that wrote this file died before it closed its first segment, so the
        # gap it would then have written (from the footage before, to this file's start) was
        # never written: the crash is its reason. It commits with the segment that ends it.
        hole_from = await index.unexplained_hole_before(cam, start_us)
        if hole_from is not None:
            await index.add_gap(cam, hole_from, start_us, "crash",
                                "the recorder stopped before it indexed a segment")
        await index.add_segment(NewSegment(
            camera=cam, start_us=start_us, end_us=start_us + probe.media_us, path=str(path),
            bytes=keep, frames=probe.frames, keyframes=probe.keyframes, codec=probe.codec,
            width=probe.width, height=probe.height, sha256=sha, recovered=True,
        ))
    _log.info("segment_recovered", camera=cam, path=str(path), frames=probe.frames,
              cut_bytes=size - keep)


def _inspect(path: Path) -> tuple[int, int, Probe] | str:
    """(bytes to keep, size now, what they hold), or why the file cannot be recovered."""
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    with open(path, "rb") as f:
        def read_at(off: int, n: int) -> bytes:
            f.seek(off)
            return f.read(n)

        keep = complete_length(top_level(size, read_at))
    if keep == 0:
        return "no complete fragment (not a fragmented MP4 written by nvr, or cut before one)"
    probe = probe_segment(path, keep)
    if probe is None:
        return "fragments do not decode as video"
    return keep, size, probe


class _Prefix:
    """A read-only file object that ends after `length` bytes of `raw`."""

    def __init__(self, raw: BinaryIO, length: int | None) -> None:
        self.raw = raw
        self.length = os.fstat(raw.fileno()).st_size if length is None else length

    def read(self, n: int = -1) -> bytes:
        left = self.length - self.raw.tell()
        return self.raw.read(left if n < 0 else max(0, min(n, left)))

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.raw.tell(), 2: self.length}[whence]
        return self.raw.seek(base + offset)

    def tell(self) -> int:
        return self.raw.tell()


def _cut_and_sync(path: Path, keep: int) -> str:
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsutil.fsync_dir(path.parent)
    return fsutil.sha256_file(path)


def _move_durably(path: Path, dest: Path) -> None:
    fsutil.make_private_dir(dest.parent)
    os.replace(path, dest)
    fsutil.fsync_dir(dest.parent)
    fsutil.fsync_dir(path.parent)


def _subfolders(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


async def _missing(index: Index, report: ReconcileReport) -> None:
    segments = await index.all_segments()
    # One worker-thread call for every stat, not one hop per row (a month of 64 cameras is
    # millions of rows).
    present = await asyncio.to_thread(lambda: [os.path.exists(s.path) for s in segments])
    for seg, exists in zip(segments, present, strict=True):
        if exists:
            continue
        report.missing.append({"camera": seg.camera, "path": seg.path,
                               "start": timeutil.to_iso(seg.start_us),
                               "end": timeutil.to_iso(seg.end_us)})
        if report.repair:
            await index.remove([seg.id])
            await index.add_gap(seg.camera, seg.start_us, seg.end_us, "missing",
                                f"file {seg.path} was gone at start-up")


# -- start-up: only what a crash can have touched; the rest in the background ---------------------
#
# A crash can leave (a) rows marked 'deleting', (b) the segment each camera had open — a file
# named after the camera's newest row — and (c) damage the newest row's file at most. Those are
# checked before a camera starts or the socket opens. Every other row and file is checked by
# BackgroundCheck while the recorder runs, in bounded batches: a month of 64 cameras is 2.8
# million files, which would hold the socket shut for minutes.


async def reconcile_startup(
    index: Index, storage_root: Path, camera_ids: Iterable[str]
) -> tuple[ReconcileReport, dict[str, int]]:
    """(report, boundary): boundary[camera] is the end of its newest row; files and rows from
    before it are BackgroundCheck's, after it the new recorder's."""
    report = ReconcileReport(repair=True)
    await _finish_deletes(index, report)
    seg_root = storage_root / "segments"
    cams = set(camera_ids) | set(await asyncio.to_thread(_subfolders, seg_root))
    boundary: dict[str, int] = {}
    for cam in sorted(cams):
        last = await index.last_segment(cam)
        after = "" if last is None else timeutil.segment_name(last.start_us)
        for path in await asyncio.to_thread(_files_named_after, seg_root / cam, after):
            if await index.segment_by_path(str(path)) is None:
                await _orphan(index, storage_root, cam, path, report)
        if last is not None and not await asyncio.to_thread(os.path.exists, last.path):
            await _drop_missing(index, last, report)
        last = await index.last_segment(cam)
        if last is not None:
            report.last_end_us[cam] = boundary[cam] = last.end_us
    _log.info("reconciled_startup", recovered=len(report.recovered),
              quarantined=len(report.quarantined), missing=len(report.missing),
              finished_deletes=len(report.finished_deletes))
    return report, boundary


def _files_named_after(folder: Path, after: str) -> list[Path]:
    """Files whose name sorts after `after` (segment names sort in time order), without
    parsing every name: a camera folder holds 43,000 files a month."""
    if not folder.is_dir():
        return []
    # listdir, not scandir: plain strings cost a third of DirEntry objects at this count.
    newer = sorted(folder / name for name in os.listdir(folder) if name > after)
    return [p for p in newer if p.is_file()]


async def _drop_missing(index: Index, seg: Segment, report: ReconcileReport) -> None:
    report.missing.append({"camera": seg.camera, "path": seg.path,
                           "start": timeutil.to_iso(seg.start_us),
                           "end": timeutil.to_iso(seg.end_us)})
    if report.repair:
        async with index.unit():  # the row goes with the gap that says why
            await index.remove([seg.id])
            await index.add_gap(seg.camera, seg.start_us, seg.end_us, "missing",
                                f"file {seg.path} was gone at start-up")
    _log.warning("segment_missing", camera=seg.camera, path=seg.path)


class BackgroundCheck:
    """Every row and file from before start-up, checked while the recorder runs: rows whose
    file is gone (dropped, with a gap `missing`) and files without a row (recovered or
    quarantined). Bounded work a tick: `batch` rows per query, a pause between batches."""

    def __init__(self, index: Index, storage_root: Path, boundary: dict[str, int], *,
                 batch: int = 1000, pause_s: float = 0.02) -> None:
        self.index, self.root, self.boundary = index, storage_root, boundary
        self.batch, self.pause_s = batch, pause_s
        self.report = ReconcileReport(repair=True)
        self.state = "pending"
        self.checked = 0
        self.total = 0

    def progress(self) -> dict[str, Any]:
        """For `nvr status`."""
        return {"state": self.state, "checked": self.checked, "total": self.total,
                "missing": len(self.report.missing), "recovered": len(self.report.recovered),
                "quarantined": len(self.report.quarantined)}

    async def run(self) -> None:
        self.state = "running"
        self.total = await self.index.segment_count()
        seg_root = self.root / "segments"
        for cam in sorted(self.boundary):
            edge = self.boundary[cam]
            names = set(await asyncio.to_thread(_names, seg_root / cam))
            async for page in self.index.pages_by_start(cam, edge, self.batch):
                gone = [s for s in page if os.path.basename(s.path) not in names
                        or os.path.dirname(s.path) != str(seg_root / cam)]
                for s in page:
                    names.discard(os.path.basename(s.path))
                # Re-check in a thread (the listing is a moment old), then drop what is gone.
                really = await asyncio.to_thread(_gone, gone)
                for s in really:
                    row = await self.index.segment_by_path(s.path)
                    if row is not None and row.state == "complete":
                        await _drop_missing(self.index, row, self.report)
                self.checked += len(page)
                await asyncio.sleep(self.pause_s)
            edge_name = timeutil.segment_name(edge)
            for name in sorted(n for n in names if n < edge_name):
                path = seg_root / cam / name
                if not await asyncio.to_thread(path.is_file):
                    continue
                if await self.index.segment_by_path(str(path)) is None:
                    await _orphan(self.index, self.root, cam, path, self.report)
        self.state = "done"
        _log.info("background_check_done", **self.progress())


def _gone(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if not os.path.exists(s.path)]


def _names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return os.listdir(folder)  # a folder among the names is never indexed: left alone
