"""Values for people: times in the box's zone to the second, sizes, durations, plurals.

Pure functions, no I/O: the renderers (nvr.cli.render) call them for every cell a person reads.
`--json` never goes through here; it keeps the daemon's full-precision UTC ISO 8601.
"""

from __future__ import annotations

import datetime as dt
import re

from nvr.control.replies import DiskStatus

# The daemon's instants (nvr.timeutil.to_iso) and anything else ISO-8601-with-offset.
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$")


def parse_iso(text: str) -> dt.datetime | None:
    """An aware datetime for an ISO 8601 instant with a zone, else None."""
    if not isinstance(text, str) or not _ISO.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None


def when(value: str | dt.datetime, *, utc: bool = False, date: bool = True) -> str:
    """`2026-11-29 07:20:19 EST` in this machine's zone (TZ), or `... UTC` with `utc`.
    Truncated to the second: a person reading an incident time wants the second, and the
    microseconds are in --json. Without `date`, the time of day only (`07:20:21 EST`)."""
    d = value if isinstance(value, dt.datetime) else parse_iso(value)
    if d is None:
        return str(value)
    d = d.astimezone(dt.UTC) if utc else d.astimezone()
    zone = "UTC" if utc else (d.tzname() or d.strftime("%z"))
    return d.strftime("%Y-%m-%d %H:%M:%S " if date else "%H:%M:%S ") + zone


def plural(n: int, one: str, many: str | None = None) -> str:
    """`1 gap`, `2 gaps`, `0 segments`; `many` for irregular words (`1 entry`, `2 entries`)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def size(n: float) -> str:
    """Bytes in SI units as `df -H` and disk labels count them: `252 GB`, `1.4 MB`, `812 B`."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 10 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def rate(bits_per_second: float) -> str:
    """A stream's bitrate: `2.1 Mbit/s`, `640 kbit/s`."""
    b = float(bits_per_second)
    if b >= 1e6:
        return f"{b / 1e6:.1f} Mbit/s"
    return f"{b / 1e3:.0f} kbit/s"


def duration(seconds: float) -> str:
    """`36 s`, `4 min 12 s`, `2 h 5 min`, `19 days 3 h`: two units at most, the larger first."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min {r} s" if r else f"{m} min"
    if s < 86400:
        h, r = divmod(s, 3600)
        m = r // 60
        return f"{h} h {m} min" if m else f"{h} h"
    d, r = divmod(s, 86400)
    h = r // 3600
    return plural(d, "day") + (f" {h} h" if h else "")


def days(n: float) -> str:
    """A retention period or a horizon in days: `30 days`, `1 day`, `2.5 days`."""
    if float(n).is_integer():
        return plural(int(n), "day")
    return f"{n:.1f} days"


def span(start: str, end: str) -> float | None:
    """Seconds from one ISO instant to another, or None if either is not one."""
    a, b = parse_iso(start), parse_iso(end)
    if a is None or b is None:
        return None
    return (b - a).total_seconds()


def disk_line(disk: DiskStatus, daily_bytes: float | None) -> str:
    """`252 GB free of 500 GB (50%), 19 days left at today's rate; recordings use 230 GB`.

    "Days left" counts the free space above the reserve retention keeps (min_free_percent),
    at the cameras' current combined bitrate; retention frees space before it runs out, so it
    is the time until the oldest footage starts going, not until recording stops."""
    total, free = disk.get("total_bytes"), disk.get("free_bytes")
    if not isinstance(total, int | float) or not isinstance(free, int | float):
        return ", ".join(f"{k} {v}" for k, v in disk.items())
    pct = 100 * free / max(total, 1)
    text = f"{size(free)} free of {size(total)} ({pct:.0f}%)"
    reserve = total * float(disk.get("min_free_percent") or 0) / 100
    left = disk.get("days_left")  # the daemon's (nvr.runtime.alerts.days_left), when it sends it
    if not isinstance(left, int | float) and daily_bytes and daily_bytes > 0:
        left = max(0.0, free - reserve) / daily_bytes
    if isinstance(left, int | float):
        text += (f", {days(round(left)) if left >= 1 else 'less than a day'} left "
                 "at today's rate")  # fmt: skip
    used = disk.get("recordings_bytes")
    if isinstance(used, int | float):
        text += f"; recordings use {size(used)}"
    return text
