"""Time at the edges: ISO 8601 text in, integer microseconds since the epoch (UTC) inside.

Inside the recorder every instant is an `int` of microseconds since 1970-01-01 UTC ("µs").
Integers compare exactly, sort in SQLite, and never drift the way float seconds do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from pathlib import Path

from nvr.errors import UsageError

US = 1_000_000
# The instants the recorder can name: 1970-01-01 up to the end of year 9998 (so that any
# time zone's view of them still has a four-digit year and to_iso never overflows).
MIN_US = 0
MAX_US = 253_370_764_800 * US - 1


# How often a thread sleeping in sleep_unless looks at its stop flag.
STOP_CHECK_S = 0.2


def sleep_unless(stop: threading.Event, seconds: float) -> bool:
    """Sleep up to `seconds` in a thread; True as soon as `stop` is set (checked every 0.2 s).

    Not `stop.wait(seconds)`: a timed Event.wait ends in sem_clockwait on an absolute
    CLOCK_MONOTONIC deadline, and libfaketime 0.9.10 (Debian 12's; the suite runs under it at
    other dates) shifts that clock without intercepting sem_clockwait, so the wait would never
    time out and a camera would never be retried. time.sleep's clock_nanosleep it does handle.
    """
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(STOP_CHECK_S, left))
    return True


def now_us() -> int:
    return time.time_ns() // 1000


def to_iso(us: int) -> str:
    """UTC, microsecond precision, with a `Z` suffix: sorts as text and parses everywhere."""
    # Built from the integer: fromtimestamp() on a float can be off by a microsecond.
    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, *, end_of_day: bool = False) -> int:
    """ISO 8601 date or time. Without an offset it is local time (docs/commands.md "Times").

    A bare date means its local midnight, or the end of that day when `end_of_day` is set
    (so `--until 2026-12-31` keeps a still through the 31st).
    """
    raw = text.strip()
    if raw.endswith("Z") or raw.endswith("z"):
        raw = raw[:-1] + "+00:00"
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            d = dt.datetime.combine(day, dt.time.min)
            if end_of_day:
                d += dt.timedelta(days=1)
        else:
            d = dt.datetime.fromisoformat(raw)
        if d.tzinfo is None:
            d = d.astimezone()  # local time zone of this machine
        delta = d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"{text!r} is not an ISO 8601 time we can use; write e.g. 2026-11-29T14:05:00 "
            "(local) or 2026-11-29T19:05:00Z"
        ) from None
    us = (delta.days * 86400 + delta.seconds) * US + delta.microseconds
    if not MIN_US <= us <= MAX_US:
        raise UsageError(f"{text!r} is outside the times the recorder can hold "
                         "(1970-01-01 to 9998-12-31)")
    return us


def segment_name(start_us: int) -> str:
    """File name of a segment: its UTC start, sortable, no characters a shell minds."""
    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=start_us)
    return d.strftime("%Y%m%dT%H%M%S.%fZ") + ".mp4"


def parse_segment_name(name: str) -> int | None:
    """Inverse of segment_name; None for a name that is not ours."""
    if not name.endswith(".mp4"):
        return None
    try:
        d = dt.datetime.strptime(name[:-4], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    delta = d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def local_zone() -> dict[str, object]:
    """This machine's time zone for a browser to show times as the CLI does (`when`).

    `name` is the IANA name (for JavaScript's Intl.DateTimeFormat) or None when TZ names a
    rule rather than a zone; `names` maps UTC offsets in minutes to the abbreviation this
    machine prints (Intl's own short names are often "GMT+1" where the CLI says "BST");
    `offset_minutes` is the offset now, for a browser without the zone.
    """
    import os
    import zoneinfo

    name: str | None = None
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    real = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in real:
        candidates.append(real.split("/zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    if not candidates[0] and "TZ" in os.environ:
        candidates = ["UTC"]  # TZ set but empty: glibc means UTC
    for cand in candidates:
        if not cand or cand.startswith("/"):
            continue
        try:
            zoneinfo.ZoneInfo(cand)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            if cand is candidates[0]:
                break  # TZ names a POSIX rule: no IANA name; the offsets below still hold
            continue
        name = cand
        break
    now = dt.datetime.now().astimezone()
    names: dict[str, str] = {}
    # The abbreviations for this year's offsets (summer and winter time).
    for month in (1, 7):
        d = dt.datetime(now.year, month, 15, 12).astimezone()
        off = d.utcoffset()
        if off is not None:
            names[str(int(off.total_seconds() // 60))] = d.tzname() or d.strftime("%z")
    off_now = now.utcoffset()
    return {"name": name, "names": names,
            "offset_minutes": int(off_now.total_seconds() // 60) if off_now else 0}
