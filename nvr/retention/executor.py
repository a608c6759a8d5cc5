"""Carries out retention plans on disk and in the index, crash-safely (docs/retention.md).

Delete lifecycle, per batch (Moonfire's "turn the row into a garbage row first"):
  1+2. one unit of work: re-read holds, mark_deleting(ids), append the audit rows (one per
       camera and cause) — they commit together, so a decided deletion always has its audit
       row and an audit row always its decided deletion
  3. unlink, fsync folder — in a thread, never on the event loop
  4. remove(ids)          — the row goes only once the unlink is durable
A crash before 1+2 commits changes nothing; after it, leaves 'deleting' rows, and
finish_pending() redoes 3 and 4 for them. So a 'complete' row always has its file, and a file
with no row can only be one being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from nvr import log as nvr_log
from nvr.config.model import CameraMap
from nvr.retention.disk import disk_state
from nvr.retention.holds import Holds
from nvr.retention.planner import (
    DAY_US,
    DiskState,
    HoldInfo,
    Plan,
    PlannedDeletion,
    SegmentInfo,
    plan,
    plan_to_dict,
)
from nvr.storage.db import Db
from nvr.storage.index import Index
from nvr.timeutil import now_us, to_iso

log = nvr_log.get("nvr.retention")

T = TypeVar("T")
BATCH = 500  # rows a transaction; bounds the time one pass holds the index
PAGE = 2000  # rows a query when planning; the loop runs between pages
# "Now", when the clock is in doubt: after every row's end, so the disk sweep sees every row.
AFTER_EVERY_ROW_US = 2**62


class AuditSink(Protocol):
    """The part of nvr.policy.audit.AuditLog that retention uses."""

    async def append(
        self, *, at_us: int, actor: str, uid: int | None, role: str, action: str,
        allowed: bool, detail: dict[str, Any],
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class PassReport:
    at_us: int
    deleted: int
    bytes_freed: int
    kept: int
    refused: tuple[str, ...]  # paths outside storage.root/segments, left alone
    failed: tuple[str, ...]  # unlink errors; their rows stay 'deleting' for the next pass
    paused_cameras: frozenset[str]
    alert: str | None


def _no_pause(cameras: set[str], alert: str | None) -> None:
    return None


class RetentionExecutor:
    def __init__(
        self,
        db: Db,
        index: Index,
        holds: Holds,
        audit: AuditSink,
        config: CameraMap,
        *,
        clock: Callable[[], int] = now_us,
        disk: Callable[[Path], DiskState] = disk_state,
        on_pause: Callable[[set[str], str | None], None] = _no_pause,
        clock_guard: Callable[[], Awaitable[str | None]] | None = None,
        _after_mark: Callable[[], None] | None = None,
        _after_unlink: Callable[[str], None] | None = None,
        _step: Callable[[str], None] | None = None,
    ) -> None:
        self.db, self.index, self.holds, self.audit = db, index, holds, audit
        self.config = config
        self._clock, self._disk, self._on_pause = clock, disk, on_pause
        # Asked before every pass (nvr/retention/clockcheck.py): a reason not to trust the
        # wall clock pauses deletion, never recording.
        self._clock_guard = clock_guard
        self.clock_alert: str | None = None
        # Test hooks for crash-safety tests (called where a crash would hurt most).
        self._after_mark, self._after_unlink = _after_mark, _after_unlink
        # _step(name) at every step of a pass: planned, marked (inside the unit, before the
        # audit rows), audited (inside, before COMMIT), committed, removed.
        self._step = _step
        self.paused: frozenset[str] = frozenset()
        self.alert: str | None = None
        self.page = PAGE
        self.passes = 0  # completed passes (for `nvr status` and the scale benchmark)

    def set_config(self, config: CameraMap) -> None:
        """After a reload: new retention days and thresholds apply from the next pass."""
        self.config = config

    @property
    def segments_dir(self) -> Path:
        return self.config.storage.root / "segments"

    async def plan(self, at_us: int | None = None, *, clock_in_doubt: bool = False) -> Plan:
        """What a pass at `at_us` (default now) would do, against today's disk state.

        With the clock in doubt (a clock alert), nothing can be judged by age: no segment goes
        for age, every hold not released keeps protecting (the clock cannot tell that one ran
        out), and only disk pressure deletes, oldest first. Recording must not stop because
        the clock is wrong: an alert left for a week would otherwise fill the disk."""
        at = self._clock() if at_us is None else at_us
        holds = await self._holds(at, clock_in_doubt)
        disk = await asyncio.to_thread(self._disk, self.config.storage.root)
        if clock_in_doubt:
            days = {c.id: math.inf for c in self.config.cameras}
            default, at = math.inf, AFTER_EVERY_ROW_US
        else:
            days = {c.id: self.config.retention_days_for(c.id) for c in self.config.cameras}
            default = self.config.retention.days
        segs = await self._candidates(at, holds, days, default, disk)
        # Pure and linear over the candidates only; off the loop all the same.
        return await asyncio.to_thread(
            plan, segs, holds, days, default, disk, at,
            min_free_percent=self.config.storage.min_free_percent,
        )

    async def _holds(self, at: int, clock_in_doubt: bool) -> list[HoldInfo]:
        if not clock_in_doubt:
            return await self.holds.active(at)
        return [dataclasses.replace(r.info(), until_us=None)
                for r in await self.holds.list(include_inactive=True, now_us=at)
                if r.released_us is None]

    async def _candidates(
        self, at: int, holds: Sequence[HoldInfo], days: dict[str, float], default_days: float,
        disk: DiskState,
    ) -> list[SegmentInfo]:
        """The rows the planner can need, asked of SQL page by page instead of loading every
        row (2.8 million for a month of 64 cameras): per camera, the rows past its retention
        (held ones included, so the plan can say why they stay); then, only if the disk would
        still be short, the oldest rows across cameras until their unheld bytes cover the
        shortfall. plan() over these is plan() over every row (tests/retention/
        test_candidates.py): the disk sweep takes a prefix in start order, and this is one."""
        active = [h for h in holds if h.active(at)]
        # Per camera, only its own holds: 2000 rows a page × 50 holds would be 100,000 checks
        # on the event loop; a camera is rarely under more than a few.
        cams = await self.index.cameras_with_segments()
        by_cam = {c: [h for h in active if c in h.cameras] for c in cams}
        out: dict[int, SegmentInfo] = {}
        freed = 0
        for cam in cams:
            d = days.get(cam, default_days)
            if math.isinf(d):  # nothing goes for age (the clock is in doubt)
                continue
            cutoff = min(at - math.floor(d * DAY_US), at)
            cam_holds = by_cam[cam]
            async for page in self.index.ended_by_pages(cam, cutoff, self.page):
                for r in page:
                    seg = SegmentInfo(*r)
                    out[seg.id] = seg
                    if at - seg.end_us >= d * DAY_US and not any(
                            h.covers(seg) for h in cam_holds):
                        freed += seg.bytes
        short = disk.total_bytes * self.config.storage.min_free_percent / 100.0 - (
            disk.free_bytes + freed)
        if short > 0:
            async for page in self.index.oldest_pages(at, self.page):
                for r in page:
                    if r.id in out:
                        continue
                    seg = SegmentInfo(*r)
                    out[seg.id] = seg
                    if not any(h.covers(seg) for h in by_cam.get(seg.camera, active)):
                        short -= seg.bytes
                if short <= 0:
                    break
        return list(out.values())

    async def plan_dict(self, at_us: int | None = None) -> dict[str, Any]:
        """`nvr retention plan --json` (docs/commands.md)."""
        at = self._clock() if at_us is None else at_us
        # Now (no --at): the next pass, by the clock alert's rules if one stands. A given time
        # is a question about that time, answered by the usual rules.
        doubt = at_us is None and self.clock_alert is not None
        p = await self.plan(at, clock_in_doubt=doubt)
        out = await asyncio.to_thread(plan_to_dict, p, at)  # thousands of to_iso: off the loop
        out["clock_alert"] = self.clock_alert if doubt else None
        return out

    async def run_once(self) -> PassReport:
        await self.finish_pending()  # leftovers of a crash or of a failed unlink
        at = self._clock()
        if self._clock_guard is not None:
            problem = await self._clock_guard()
            if problem != self.clock_alert:
                if problem:
                    log.warning("retention_paused_clock", alert=problem)
                else:
                    log.info("retention_clock_ok")
            self.clock_alert = problem
        doubt = self.clock_alert is not None
        p = await self.plan(at, clock_in_doubt=doubt)
        # abspath and commonpath per planned path: thousands after a long stop, so in a thread.
        inside = await asyncio.to_thread(lambda: [self._inside(d.segment.path) for d in p.delete])
        ok = [d for d, yes in zip(p.delete, inside, strict=True) if yes]
        refused = tuple(d.segment.path for d, yes in zip(p.delete, inside, strict=True)
                        if not yes)
        for path in refused:
            log.error("retention_refused", path=path, segments_dir=str(self.segments_dir))
        self._hook("planned")
        ok = await self._mark_unless_held(ok, at, doubt)
        if any(d.kind == "disk" for d in ok):
            await self._explain_disk_pressure(ok)
        if self._after_mark is not None:
            self._after_mark()
        done, failed = await self._unlink_and_remove([(d.segment.id, d.segment.path) for d in ok])
        freed = sum(d.segment.bytes for d in ok if d.segment.id in done)
        self._notify_pause(p)
        if ok:
            log.info("retention_pass", deleted=len(done), bytes=freed, kept=len(p.keep))
        self.passes += 1
        return PassReport(
            at, len(done), freed, len(p.keep), refused, failed, p.paused_cameras, p.alert
        )

    async def finish_pending(self) -> int:
        """Complete deletions a crash interrupted. Idempotent; returns rows finished."""
        rows = [s for s in await self.index.deleting() if self._inside(s.path)]
        if not rows:
            return 0
        done, _ = await self._unlink_and_remove([(s.id, s.path) for s in rows])
        log.info("retention_pending_finished", segments=len(done))
        return len(done)

    async def run_forever(self, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("retention_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    def _hook(self, step: str) -> None:
        if self._step is not None:
            self._step(step)

    def _inside(self, path: str) -> bool:
        # Lexical, no I/O: unlink removes a symlink itself, never what it points to.
        base = os.path.abspath(self.segments_dir)
        p = os.path.abspath(path)
        return p != base and os.path.commonpath([base, p]) == base

    async def _mark_unless_held(
        self, planned: list[PlannedDeletion], at: int, clock_in_doubt: bool = False
    ) -> list[PlannedDeletion]:
        """Mark planned segments 'deleting' and audit them, in one unit of work per batch.
        The holds are re-read inside the unit: a hold created while this pass was planning
        (say, on day-30 footage about to go) must still win. Returns what was marked."""
        marked: list[PlannedDeletion] = []
        for chunk in batched(planned, BATCH):
            async with self.index.unit():
                holds = await self._holds(at, clock_in_doubt)
                cams = {d.segment.camera for d in chunk}
                mine = {c: [h for h in holds if c in h.cameras] for c in cams}
                free = [d for d in chunk
                        if not any(h.covers(d.segment) for h in mine[d.segment.camera])]
                await self.index.mark_deleting([d.segment.id for d in free])
                self._hook("marked")
                await self._audit(free, at)
                self._hook("audited")
            self._hook("committed")
            for d in chunk:
                if d not in free:
                    log.info("retention_spared", camera=d.segment.camera, path=d.segment.path,
                             why="held by a hold created during the pass")
            marked += free
        return marked

    async def _transaction(
        self, op: Callable[[Sequence[int]], Awaitable[None]], ids: Sequence[int]
    ) -> None:
        # One transaction a batch: with synchronous=FULL each autocommit write is an fsync.
        # The shared lock keeps other tasks' transactions from interleaving with ours: joined
        # to one that rolled back, our 'deleting' marks would vanish while the files go anyway.
        if not ids:
            return
        async with self.index.unit():
            await op(ids)

    async def _unlink_and_remove(
        self, items: Sequence[tuple[int, str]]
    ) -> tuple[set[int], tuple[str, ...]]:
        done: set[int] = set()
        failed: list[str] = []
        for chunk in batched(items, BATCH):
            gone = await asyncio.to_thread(_unlink_all, [p for _, p in chunk], self._after_unlink)
            ids = [i for i, p in chunk if p in gone]
            failed += [p for _, p in chunk if p not in gone]
            await self._transaction(self.index.remove, ids)
            self._hook("removed")
            done.update(ids)
        return done, tuple(failed)

    async def _explain_disk_pressure(self, deletions: Sequence[PlannedDeletion]) -> None:
        """Say in the log why footage goes before its time: how the disk is shared between
        footage and everything else (the disk the planner saw already leaves out the export
        spool, nvr/export/spool.py, so exports are never the cause)."""
        disk = await asyncio.to_thread(self._disk, self.config.storage.root)
        footage = await self.index.total_bytes()
        other = max(0, disk.total_bytes - disk.free_bytes - footage)
        early = [d for d in deletions if d.kind == "disk"]
        cause = ("footage filled the disk" if footage >= other
                 else "footage and other files filled the disk")
        log.warning(
            "retention_early_deletion", cause=cause, segments=len(early),
            bytes=sum(d.segment.bytes for d in early),
            cameras=sorted({d.segment.camera for d in early}),
            total_bytes=disk.total_bytes, free_bytes=disk.free_bytes, footage_bytes=footage,
            other_bytes=other, min_free_percent=self.config.storage.min_free_percent,
        )

    async def _audit(self, deletions: Sequence[PlannedDeletion], at: int) -> None:
        groups: dict[tuple[str, str], list[SegmentInfo]] = {}
        for d in deletions:
            groups.setdefault((d.segment.camera, d.kind), []).append(d.segment)
        for (camera, why), segs in sorted(groups.items()):
            detail = {
                "camera": camera, "from": to_iso(min(s.start_us for s in segs)),
                "to": to_iso(max(s.end_us for s in segs)), "segments": len(segs),
                "bytes": sum(s.bytes for s in segs), "why": why,
            }
            await self.audit.append(
                at_us=at, actor="nvr", uid=os.getuid(), role="system",
                action="retention_delete", allowed=True, detail=detail,
            )
            log.info("retention_deleting", **detail)

    def _notify_pause(self, p: Plan) -> None:
        self.alert = p.alert
        if p.paused_cameras == self.paused:
            return  # report changes only: the alert's numbers move every pass
        self.paused = p.paused_cameras
        if p.paused_cameras:
            log.warning("retention_paused", cameras=sorted(p.paused_cameras), alert=p.alert)
        else:
            log.info("retention_resumed")
        self._on_pause(set(p.paused_cameras), p.alert)


def batched(items: Sequence[T], n: int) -> list[Sequence[T]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _unlink_all(paths: Sequence[str], after: Callable[[str], None] | None) -> set[str]:
    """Blocking: unlink each file (already gone counts as done), then fsync each folder once."""
    gone: set[str] = set()
    folders: set[str] = set()
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.error("retention_unlink_failed", path=path, error=str(e))
            continue
        gone.add(path)
        folders.add(os.path.dirname(path))
        if after is not None:
            after(path)
    for folder in folders:
        _fsync_dir(folder)
    return gone


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
