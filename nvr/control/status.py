"""What `nvr status` adds for people: per camera its oldest footage, footage kept,
held footage and today's rate; the days of footage left; the active alerts, listed first.

`enrich` turns what the handler gathered (StatusBase) into the reply (StatusReply, both in
nvr.control.replies): the same keys, with these beside them. Cheap: a few index seeks per camera
(nvr.storage.footage_stats), the holds table (a handful of rows), and the recorder port's
alerts (RecorderPort.active_alerts, no I/O). Every instant is UTC ISO 8601 (nvr.timeutil.to_iso).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from nvr.control.replies import AlertRow, CameraStatus, DiskStatus, StatusBase, StatusReply
from nvr.storage import footage_stats
from nvr.timeutil import to_iso

if TYPE_CHECKING:
    from nvr.control.ports import RecorderPort


async def enrich(svc: RecorderPort, result: StatusBase) -> StatusReply:
    now = svc.clock()
    totals = await footage_stats.totals(svc.db)
    holds = await svc.holds.active(now)
    held_total = footage_stats.Held()
    combined = 0.0
    cameras: list[CameraStatus] = []
    for row in result["cameras"]:
        cam_id = row["id"]
        oldest = await footage_stats.oldest_start(svc.db, cam_id)
        segments, size = totals.get(cam_id, (0, 0))
        daily = await footage_stats.daily_bytes(svc.db, cam_id, now)
        combined += daily or 0.0
        windows = [(h.start_us, h.end_us) for h in holds if cam_id in h.cameras]
        held = await footage_stats.held(svc.db, cam_id, windows)
        held_total = footage_stats.Held(held_total.bytes + held.bytes,
                                        held_total.seconds + held.seconds,
                                        held_total.segments + held.segments)
        cameras.append(CameraStatus(
            **row,
            oldest_footage=None if oldest is None else to_iso(oldest),
            segments=segments,
            recordings_bytes=size,
            daily_bytes=None if daily is None else round(daily),
            held_bytes=held.bytes,
            held_seconds=round(held.seconds, 3),
            holds=sum(1 for h in holds if cam_id in h.cameras),
        ))
    disk = result["disk"]
    left = days_left(disk["free_bytes"], disk["total_bytes"],
                     disk["min_free_percent"], combined)
    return {
        **result,
        "cameras": cameras,
        "disk": DiskStatus(
            **disk,
            reserve_bytes=round(disk["total_bytes"] * float(disk["min_free_percent"]) / 100),
            daily_bytes=round(combined) if combined else None,
            days_left=None if left is None else round(left, 2),
        ),
        "held": {"holds": len(holds), "bytes": held_total.bytes,
                 "seconds": round(held_total.seconds, 3)},
        # Alert.to_dict is this shape (tests/cli/test_reply_shapes_live.py checks it).
        "alerts": [cast(AlertRow, a.to_dict()) for a in svc.active_alerts()],
        "at": to_iso(now),
    }


def days_left(free_bytes: int, total_bytes: int, min_free_percent: float,
              daily_bytes: float | None) -> float | None:
    """Days until the free space above the retention floor (min_free_percent of the disk,
    which retention keeps free) is used up at `daily_bytes` a day; None without a rate.

    When it reaches 0, retention starts deleting the oldest unheld footage early (before its
    retention days): it is the time until footage starts going, not until recording stops."""
    if not daily_bytes or daily_bytes <= 0:
        return None
    floor = total_bytes * float(min_free_percent) / 100
    return max(0.0, free_bytes - floor) / daily_bytes
