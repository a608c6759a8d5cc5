"""What retention deletes, and why: a pure decision (no I/O, `now_us` passed in).

Rules (docs/policy.md "Rules that are not about who", docs/retention.md):
  1. Nothing an active hold covers is ever planned, for age or for disk.
  2. Age first: every unheld segment that ended `retention_days` or more before now goes.
  3. Disk pressure next: if free space would still be below `min_free_percent`, the oldest
     unheld segments (by start, across all cameras) go until it would not be.
  4. If every unheld segment is planned and free space is still below the threshold, only held
     footage is left: recording pauses and an alert is raised. Held footage is never deleted to
     make room.
Segments that end after now are never planned (the writer still owns them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from nvr.timeutil import US, to_iso

DAY_US = 86_400 * US


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    id: int
    camera: str
    start_us: int
    end_us: int
    path: str
    bytes: int


@dataclass(frozen=True, slots=True)
class HoldInfo:
    id: str
    cameras: frozenset[str]
    start_us: int
    end_us: int
    until_us: int | None
    released_us: int | None
    reason: str
    incident: str | None

    def active(self, now_us: int) -> bool:
        released = self.released_us is not None and self.released_us <= now_us
        expired = self.until_us is not None and self.until_us <= now_us
        return not released and not expired

    def covers(self, seg: SegmentInfo) -> bool:
        # A range, nothing more: a hold reaching into the future covers what is recorded later.
        return seg.camera in self.cameras and seg.start_us < self.end_us and seg.end_us > self.start_us

    def describe(self) -> str:
        extra = f"; incident {self.incident}" if self.incident else ""
        return f"held by {self.id} ({self.reason}{extra})"


@dataclass(frozen=True, slots=True)
class DiskState:
    total_bytes: int
    free_bytes: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.total_bytes if self.total_bytes else 100.0


@dataclass(frozen=True, slots=True)
class PlannedDeletion:
    segment: SegmentInfo
    why: str
    kind: Literal["age", "disk"]


@dataclass(frozen=True, slots=True)
class KeptSegment:
    segment: SegmentInfo
    why: str
    hold_id: str


@dataclass(frozen=True, slots=True)
class Plan:
    delete: list[PlannedDeletion]
    keep: list[KeptSegment]
    # Non-empty only when only held footage is left and the disk is still below the threshold.
    paused_cameras: frozenset[str]
    alert: str | None
    free_after_bytes: int  # free space once the plan is carried out (as the index counts it)


def _order(seg: SegmentInfo) -> tuple[int, int, str, int]:
    return (seg.start_us, seg.end_us, seg.camera, seg.id)


def _first_cover(seg: SegmentInfo, holds: Sequence[HoldInfo]) -> HoldInfo | None:
    return next((h for h in holds if h.covers(seg)), None)


def plan(
    segments: Sequence[SegmentInfo],
    holds: Sequence[HoldInfo],
    retention_days: Mapping[str, float],
    default_days: float,
    disk: DiskState,
    now_us: int,
    *,
    min_free_percent: float,
) -> Plan:
    """`retention_days` should name every configured camera: they all pause together."""
    active = [h for h in holds if h.active(now_us)]
    ordered = sorted((s for s in segments if s.end_us <= now_us), key=_order)
    held = {s.id: h for s in ordered if (h := _first_cover(s, active)) is not None}
    delete: list[PlannedDeletion] = []
    kept: dict[int, KeptSegment] = {}
    freed = 0
    for seg in ordered:
        days = retention_days.get(seg.camera, default_days)
        if now_us - seg.end_us < days * DAY_US:
            continue
        hold = held.get(seg.id)
        if hold is not None:
            kept[seg.id] = KeptSegment(seg, hold.describe(), hold.id)
            continue
        why = f"age: older than {days:g} days (ended {to_iso(seg.end_us)})"
        delete.append(PlannedDeletion(seg, why, "age"))
        freed += seg.bytes

    threshold = disk.total_bytes * min_free_percent / 100.0
    free = disk.free_bytes + freed
    if free < threshold:
        why = (
            f"disk: free space {100.0 * free / disk.total_bytes:.1f}% below "
            f"min_free_percent {min_free_percent:g}%"
        )
        planned = {d.segment.id for d in delete}
        for seg in ordered:
            if free >= threshold:
                break
            if seg.id in planned:
                continue
            hold = held.get(seg.id)
            if hold is not None:
                kept.setdefault(seg.id, KeptSegment(seg, hold.describe(), hold.id))
                continue
            delete.append(PlannedDeletion(seg, why, "disk"))
            free += seg.bytes

    paused: frozenset[str] = frozenset()
    alert = None
    if free < threshold:
        paused = frozenset(retention_days) | {s.camera for s in segments}
        alert = _alert(free, disk, min_free_percent, held.values(), len(held))
    keep = sorted(kept.values(), key=lambda k: _order(k.segment))
    return Plan(delete, keep, paused, alert, free)


def _alert(
    free: int, disk: DiskState, min_free: float, holds: Iterable[HoldInfo], n_held: int
) -> str:
    ids = ", ".join(sorted({h.id for h in holds})) or "none"
    pct = 100.0 * free / disk.total_bytes if disk.total_bytes else 100.0
    return (
        f"disk full: free space {pct:.1f}% is below min_free_percent {min_free:g}% even after "
        f"deleting all unheld footage; {n_held} held segments remain (holds: {ids}); "
        "recording is paused until space is freed or a hold is released"
    )


def plan_to_dict(p: Plan, at_us: int) -> dict[str, Any]:
    """The `nvr retention plan --json` shape (docs/commands.md), plus paused/alert."""
    return {
        "at": to_iso(at_us),
        "delete": [
            {"camera": d.segment.camera, "path": d.segment.path, "why": d.why} for d in p.delete
        ],
        "keep": [{"camera": k.segment.camera, "path": k.segment.path, "why": k.why} for k in p.keep],
        "paused": sorted(p.paused_cameras),
        "alert": p.alert,
    }
