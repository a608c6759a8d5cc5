"""Reconnect delays: exponential with jitter, capped, reset after a stretch of good uptime.

The cap is small (2 s, ± 20 %): a camera that was away for a minute or an hour is a camera whose
footage is lost until we ask again, so after a network failure we ask again about every 2 s however
long it has been away (footage resumes within one keyframe interval + ~3 s of the camera
answering). One attempt costs a TCP connect that a dead host refuses or lets time out, which is
nothing. Only what retrying cannot fix (credentials refused, no video stream) waits `slow_s`.

Pure: the caller passes the uptime of the last session and a random source, so tests drive it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 1.0
    cap_s: float = 2.0  # with the jitter, 1.6-2.4 s between two attempts
    factor: float = 2.0
    # ± this fraction of the delay, so cameras that drop together (a switch reboot) do not all
    # reconnect in the same instant.
    jitter: float = 0.2
    # A session that stayed up this long was healthy: the next failure starts again at initial_s.
    reset_after_s: float = 60.0
    # Failures that fast retrying cannot fix (credentials refused, no video) wait this long.
    slow_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    _next_s: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next_s = self.initial_s

    def delay(self, uptime_s: float, *, permanent: bool = False) -> float:
        """Seconds to wait after a session that lasted `uptime_s` ended in failure."""
        if uptime_s >= self.reset_after_s:
            self._next_s = self.initial_s
        if permanent:
            base = self.slow_s
        else:
            base = self._next_s
            self._next_s = min(self.cap_s, self._next_s * self.factor)
        spread = base * self.jitter
        return max(0.0, base + self.rng.uniform(-spread, spread))

    def reset(self) -> None:
        self._next_s = self.initial_s
