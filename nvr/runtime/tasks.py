"""The daemon's background work, supervised: nothing fails silently, nothing fails for good.

The policy (docs/design.md, "Background tasks"):

1. A **periodic** job (`every`: the audit checkpoint, still expiry, link re-checks, …) that
   raises is logged with its traceback and counted (`failures[name]`, exported as
   `nvr_task_failures_total{task}`); it runs again after its interval, doubled for each failure
   in a row up to `MAX_BACKOFF_S`, and back to its interval after a success. One bad pass never
   stops the job.
2. A **long-running** task (`keep_running`: retention's loop, the background recovery check)
   that returns or raises is logged and counted the same way and started again after a backoff
   (1 s, doubling to `MAX_BACKOFF_S`), unless the daemon is stopping. A task that is meant to
   finish (the recovery check) says so: `restart=False`; its failure is still logged and
   counted.
3. A task whose failure the daemon cannot run without (`critical=True`) sets `fatal` instead of
   restarting: the daemon stops with a non-zero exit and systemd starts it again.
4. A **one-shot** job (`once`: a reload asked for by SIGHUP) that raises is logged with its
   traceback and counted; it is not retried (the next request runs it again).
5. `stop()` cancels every task and waits for them: no task outlives the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable

from nvr import log

logger = log.get("nvr.tasks")

MAX_BACKOFF_S = 60.0
FIRST_RESTART_S = 1.0


class Supervisor:
    """Owns the daemon's background tasks; see the module's policy."""

    def __init__(self, stopping: asyncio.Event) -> None:
        self.stopping = stopping
        self.failures: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        # Set when a critical task failed: the daemon's main loop waits on it and exits.
        self.fatal = asyncio.Event()
        self.fatal_reason: str | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._one_shots: set[asyncio.Task[None]] = set()

    def every(self, name: str, interval_s: float,
              job: Callable[[], Awaitable[object]]) -> None:
        """Run `job` now and then every `interval_s` until the daemon stops (policy 1)."""
        self._start(name, self._periodic(name, interval_s, job))

    def keep_running(self, name: str, make: Callable[[], Awaitable[None]], *,
                     restart: bool = True, critical: bool = False) -> None:
        """Run `make()` until the daemon stops, restarting it when it ends (policy 2, 3)."""
        self._start(name, self._long(name, make, restart=restart, critical=critical))

    def once(self, name: str, job: Callable[[], Awaitable[object]]) -> None:
        """Run `job` once, in the background (policy 4); several may run under one name."""
        task = asyncio.ensure_future(self._one_shot(name, job))
        self._one_shots.add(task)
        task.add_done_callback(self._one_shots.discard)

    async def _one_shot(self, name: str, job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        except Exception:
            self.failures[name] += 1
            logger.exception("task_failed", task=name, kind="one-shot")

    def _start(self, name: str, coro: Awaitable[None]) -> None:
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already running")
        self._tasks[name] = asyncio.ensure_future(coro)

    async def _periodic(self, name: str, interval_s: float,
                        job: Callable[[], Awaitable[object]]) -> None:
        failed_in_a_row = 0
        while not self.stopping.is_set():
            try:
                await job()
                failed_in_a_row = 0
            except Exception:
                failed_in_a_row += 1
                self.failures[name] += 1
                logger.exception("task_failed", task=name, kind="periodic",
                                 failed_in_a_row=failed_in_a_row)
            wait = min(MAX_BACKOFF_S, interval_s * 2 ** failed_in_a_row) if failed_in_a_row \
                else interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), wait)

    async def _long(self, name: str, make: Callable[[], Awaitable[None]], *, restart: bool,
                    critical: bool) -> None:
        backoff = FIRST_RESTART_S
        while not self.stopping.is_set():
            try:
                await make()
                if self.stopping.is_set() or not restart:
                    return
                logger.warning("task_ended", task=name, restart_in_s=backoff)
            except Exception as exc:
                self.failures[name] += 1
                logger.exception("task_failed", task=name, kind="long-running",
                                 critical=critical, restart=restart and not critical)
                if critical:
                    self.fatal_reason = f"background task {name} failed: {exc}"
                    self.fatal.set()
                    return
                if not restart:
                    return
            self.restarts[name] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def stop(self) -> None:
        """Cancel every task and wait for all of them (policy 5)."""
        everything = [*self._tasks.values(), *self._one_shots]
        for task in everything:
            task.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
        self._tasks.clear()

    def running(self) -> list[str]:
        return sorted(name for name, task in self._tasks.items() if not task.done())
