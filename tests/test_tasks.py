"""Background tasks fail loudly and come back (nvr/runtime/tasks.py's written policy)."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from nvr.runtime import tasks
from nvr.runtime.tasks import Supervisor


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "FIRST_RESTART_S", 0.01)
    monkeypatch.setattr(tasks, "MAX_BACKOFF_S", 0.05)


async def test_a_periodic_job_that_raises_is_logged_with_its_traceback_counted_and_runs_again(
) -> None:
    stopping = asyncio.Event()
    sup = Supervisor(stopping)
    runs: list[int] = []
    ran_again = asyncio.Event()

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("disk hiccup")
        ran_again.set()

    with capture_logs() as logs:
        sup.every("still_expiry", 0.01, job)
        await asyncio.wait_for(ran_again.wait(), 5)
    stopping.set()
    await sup.stop()
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert failed and failed[0]["task"] == "still_expiry"
    assert failed[0]["exc_info"] is True  # logger.exception: the traceback goes with it
    assert sup.failures["still_expiry"] == 1
    assert sup.running() == []


async def test_a_long_running_task_that_raises_is_restarted_with_backoff() -> None:
    stopping = asyncio.Event()
    sup = Supervisor(stopping)
    starts: list[float] = []
    third = asyncio.Event()

    async def loop_forever() -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) >= 3:
            third.set()
            await stopping.wait()
            return
        raise OSError("database is locked")

    with capture_logs() as logs:
        sup.keep_running("retention", loop_forever)
        await asyncio.wait_for(third.wait(), 5)
    assert sup.failures["retention"] == 2 and sup.restarts["retention"] == 2
    # The waits double (0.01 s, then 0.02 s): lower bounds only, a loaded machine adds to both.
    assert starts[1] - starts[0] >= 0.009 and starts[2] - starts[1] >= 0.019
    assert [e["task"] for e in logs if e["event"] == "task_failed"] == ["retention"] * 2
    stopping.set()
    await sup.stop()


async def test_a_critical_task_that_fails_stops_the_daemon_instead() -> None:
    stopping = asyncio.Event()
    sup = Supervisor(stopping)

    async def watchdog() -> None:
        raise RuntimeError("cannot read the disk's free space")

    sup.keep_running("watchdog", watchdog, critical=True)
    await asyncio.wait_for(sup.fatal.wait(), 5)
    assert sup.fatal_reason is not None and "watchdog" in sup.fatal_reason
    assert sup.restarts["watchdog"] == 0
    await sup.stop()


async def test_a_task_meant_to_finish_is_not_restarted_but_its_failure_is_counted() -> None:
    stopping = asyncio.Event()
    sup = Supervisor(stopping)
    done = asyncio.Event()

    async def check() -> None:
        done.set()
        raise ValueError("segment unreadable")

    sup.keep_running("recovery_check", check, restart=False)
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0)  # let the supervisor see the exception
    for _ in range(100):
        if not sup.running():
            break
        await asyncio.sleep(0.01)
    assert sup.running() == [] and sup.failures["recovery_check"] == 1
    assert sup.restarts["recovery_check"] == 0
    await sup.stop()


async def test_a_one_shot_job_that_raises_is_logged_and_counted_and_stop_waits_for_it() -> None:
    stopping = asyncio.Event()
    sup = Supervisor(stopping)
    failed = asyncio.Event()
    hanging = asyncio.Event()

    async def reload() -> None:
        failed.set()
        raise RuntimeError("camera map vanished")

    async def slow_reload() -> None:
        hanging.set()
        await asyncio.Event().wait()  # never returns by itself: stop() must end it

    with capture_logs() as logs:
        sup.once("reload", reload)
        sup.once("reload", slow_reload)  # two under one name: both run
        await asyncio.wait_for(failed.wait(), 5)
        await asyncio.wait_for(hanging.wait(), 5)
        await sup.stop()
    assert sup.failures["reload"] == 1
    assert [(e["task"], e["kind"], e["exc_info"]) for e in logs
            if e["event"] == "task_failed"] == [("reload", "one-shot", True)]


# Runs as the daemon's own logging runs (nvr.log.configure: JSON lines on stdout), in a fresh
# interpreter, so the line checked is the one journald would get.
_DAEMON_LIKE = """
import asyncio, sys
from nvr import log
from nvr.runtime import metrics, tasks

log.configure("info")
tasks.FIRST_RESTART_S = 0.01

async def main() -> None:
    stopping = asyncio.Event()
    sup = tasks.Supervisor(stopping)
    starts = []
    back = asyncio.Event()

    async def retention() -> None:
        starts.append(1)
        if len(starts) == 1:
            raise OSError("database is locked")
        back.set()
        await stopping.wait()

    sup.keep_running("retention", retention)
    await asyncio.wait_for(back.wait(), 30)
    stopping.set()
    await sup.stop()
    snap = metrics.Snapshot(task_failures=dict(sup.failures))
    sys.stdout.write(metrics.render(snap).decode())
    print(f"starts {len(starts)} restarts {sup.restarts['retention']}")

asyncio.run(main())
"""


def test_a_failing_task_is_in_the_log_with_its_traceback_restarted_and_in_the_metrics() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", _DAEMON_LIKE], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "task_failed"]
    assert len(failed) == 1 and failed[0]["task"] == "retention"
    trace = failed[0]["exception"]
    assert trace.startswith("Traceback") and "OSError: database is locked" in trace
    assert "in retention" in trace  # the failing function's frame, not only the message
    assert failed[0]["restart"] is True and "starts 2 restarts 1" in out.stdout
    assert 'nvr_task_failures_total{task="retention"} 1.0' in out.stdout
