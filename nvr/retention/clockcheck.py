"""Clock sanity before retention deletes anything. Pure: the caller passes the clocks.

Retention compares the wall clock with segment end times, so a wall clock 40 days ahead (a dead
RTC battery, a bad NTP answer) would delete every unheld segment in one pass and expire holds.
Before a pass deletes, the wall clock must agree with two witnesses:

1. the monotonic clock since a reference point (the daemon's start, or the IT person's last
   confirmation): wall time elapsed and monotonic time elapsed differ by less than a day;
2. the footage: no segment ends more than a day after now (the clock went back), and at the
   reference point the clock was not more than a day past the newest footage (the clock jumped
   while the recorder was off, or the recorder was off for more than a day: a person must say
   which).

Otherwise deletion by age pauses (recording does not, and a full disk still frees its oldest
unheld footage: nvr.retention.executor, "clock in doubt"), `nvr status` and the log carry the
alert, and deletion by age resumes when the clock agrees again (set right) or when the IT person
confirms the clock with `nvr retention confirm-clock`, which makes now the new reference point.
"""

from __future__ import annotations

from dataclasses import dataclass

from nvr.timeutil import to_iso

DAY_US = 86_400_000_000
MAX_SKEW_US = DAY_US


@dataclass(frozen=True, slots=True)
class ClockRef:
    wall_us: int  # the wall clock at the reference point
    mono_us: int  # the monotonic clock at the same moment
    newest_footage_us: int | None  # the newest segment end then; None once confirmed


def _days(us: int) -> str:
    return f"{abs(us) / DAY_US:.1f} days"


def clock_problem(
    ref: ClockRef, wall_us: int, mono_us: int, newest_footage_us: int | None,
    *, max_skew_us: int = MAX_SKEW_US,
) -> str | None:
    """One line saying why the wall clock cannot be trusted to delete by, or None."""
    drift = (wall_us - ref.wall_us) - (mono_us - ref.mono_us)
    if abs(drift) > max_skew_us:
        way = "ahead" if drift > 0 else "back"
        return (f"clock jump: the wall clock moved {_days(drift)} {way} of the monotonic clock "
                f"since {to_iso(ref.wall_us)}")
    if newest_footage_us is not None and newest_footage_us - wall_us > max_skew_us:
        return (f"clock jump: footage ends at {to_iso(newest_footage_us)}, "
                f"{_days(newest_footage_us - wall_us)} after the clock's now ({to_iso(wall_us)})")
    if ref.newest_footage_us is not None and ref.wall_us - ref.newest_footage_us > max_skew_us:
        return (f"clock jump?: at start the clock read {to_iso(ref.wall_us)}, "
                f"{_days(ref.wall_us - ref.newest_footage_us)} after the newest footage "
                f"({to_iso(ref.newest_footage_us)})")
    return None


def alert_text(problem: str) -> str:
    return (f"{problem}; retention deletes nothing for age until the clock is right or the IT "
            "person confirms it with `nvr retention confirm-clock` (recording goes on; a full "
            "disk still frees the oldest unheld footage)")
