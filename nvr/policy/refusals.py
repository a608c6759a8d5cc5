"""Refusals are audited without letting one account grow the index without bound.

Every refusal is a fact worth keeping, but an account that is refused a thousand times a minute
must not be able to fill the disk with audit rows (and so make retention delete footage). Per
account (uid), the first `burst` refusals of each action in each `window_s` (and at most
`account_burst` in all) are audited in full, as before; the rest of that window are counted,
and one `refusals_coalesced` row records how many there were, of which actions, and when the
first and last came. So a person who is refused now and then sees every refusal as its own row,
and a flood costs at most `account_burst` + 1 rows a window. Nothing is dropped from the record:
every refusal is either its own row or counted in one. Caller-chosen text in a refusal row is
capped at `max_text` characters (what is left out is counted), so a row stays well under 1 KB.

The limiter wraps AuditLog.append and keeps its state in memory: after a restart every account
starts a fresh window. `flush()` writes the pending counts (the daemon calls it every few
seconds and at shutdown).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from nvr import log
from nvr.timeutil import to_iso

_log = log.get("nvr.audit.refusals")

BURST = 20  # full rows per account and action per window
ACCOUNT_BURST = 60  # full rows per account per window, whatever the actions
WINDOW_S = 60.0
MAX_TEXT = 200
MAX_ACCOUNTS = 4096  # accounts with pending counts; beyond, the oldest window is flushed early


class Appender(Protocol):
    async def append(
        self, *, at_us: int, actor: str, uid: int | None, role: str, action: str,
        allowed: bool, detail: dict[str, Any],
    ) -> Any: ...


def cap_text(value: Any, max_text: int = MAX_TEXT) -> Any:
    """Strings longer than `max_text` are cut, saying how much was left out; nested too."""
    if isinstance(value, str):
        if len(value) <= max_text:
            return value
        return f"{value[:max_text]}… [{len(value) - max_text} more characters not kept]"
    if isinstance(value, dict):
        return {str(k)[:max_text]: cap_text(v, max_text) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [cap_text(v, max_text) for v in list(value)[:64]]
        if len(value) > 64:
            items.append(f"[{len(value) - 64} more items not kept]")
        return items
    return value


@dataclass
class _Window:
    start_us: int
    actor: str
    role: str
    audited: int = 0
    audited_actions: Counter[str] = field(default_factory=Counter)
    suppressed: int = 0
    first_us: int = 0
    last_us: int = 0
    actions: Counter[str] = field(default_factory=Counter)


class RefusalLimiter:
    def __init__(self, audit: Appender, *, burst: int = BURST,
                 account_burst: int = ACCOUNT_BURST, window_s: float = WINDOW_S,
                 max_text: int = MAX_TEXT) -> None:
        self.audit = audit
        self.burst = burst
        self.account_burst = account_burst
        self.window_us = int(window_s * 1_000_000)
        self.max_text = max_text
        self._windows: dict[int | None, _Window] = {}

    async def refused(
        self, *, at_us: int, actor: str, uid: int | None, role: str, action: str,
        detail: dict[str, Any],
    ) -> bool:
        """Record one refusal. True if it got its own audit row, False if it was counted."""
        w = self._windows.get(uid)
        if w is not None and (at_us - w.start_us >= self.window_us or at_us < w.start_us):
            await self._flush_one(uid, w)  # the window is over (or the clock went back)
            w = None
        if w is None:
            if len(self._windows) >= MAX_ACCOUNTS:
                oldest = min(self._windows, key=lambda k: self._windows[k].start_us)
                await self._flush_one(oldest, self._windows[oldest])
            w = self._windows[uid] = _Window(at_us, actor, role)
        if w.audited_actions[action] < self.burst and w.audited < self.account_burst:
            w.audited += 1
            w.audited_actions[action] += 1
            await self.audit.append(at_us=at_us, actor=actor, uid=uid, role=role, action=action,
                                    allowed=False, detail=cap_text(detail, self.max_text))
            return True
        if w.suppressed == 0:
            _log.warning("refusals_rate_limited", actor=actor, uid=uid, action=action,
                         burst=self.burst, window_s=self.window_us / 1e6)
            w.first_us = at_us
        w.suppressed += 1
        w.last_us = at_us
        w.actions[action] += 1
        return False

    async def flush(self, now_us: int | None = None) -> int:
        """Write a coalesced row for every window with counted refusals that is over (all of
        them when `now_us` is None, e.g. at shutdown). Returns the rows written."""
        rows = 0
        for uid, w in list(self._windows.items()):
            if now_us is None or now_us - w.start_us >= self.window_us or now_us < w.start_us:
                rows += await self._flush_one(uid, w)
        return rows

    async def _flush_one(self, uid: int | None, w: _Window) -> int:
        self._windows.pop(uid, None)
        if not w.suppressed:
            return 0
        detail = {
            "count": w.suppressed, "first": to_iso(w.first_us), "last": to_iso(w.last_us),
            "actions": dict(sorted(w.actions.items())),
            "refusal": f"{w.suppressed} more refusals of this account within "
                       f"{self.window_us / 1e6:g} s, beyond the {self.burst} of each action "
                       "audited in full (rate limit: counted here, not one row each)",
        }
        await self.audit.append(at_us=w.last_us, actor=w.actor, uid=uid, role=w.role,
                                action="refusals_coalesced", allowed=False, detail=detail)
        _log.info("refusals_coalesced", actor=w.actor, uid=uid, count=w.suppressed)
        return 1
