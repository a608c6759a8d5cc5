"""Scale benchmark (issue 9): the real daemon on an index of a month of 64 cameras.

    .venv/bin/python bench/seed_index.py /tmp/nvr-scale          # once: 2.8 M rows, 50 holds
    .venv/bin/python bench/scale_bench.py /tmp/nvr-scale [--record 8] [--seconds 60]

Runs `nvr run`'s Service in this process (so a probe on its event loop sees every stall) with
`--record` cameras recording from one real test camera (tools/testcam.py), and reports:
  * socket ready: seconds from Service.start() to the control socket answering;
  * event-loop lag (a 5 ms sleep's overshoot) p50/p99/max over: start-up, the first retention
    pass (which deletes the seed's footage past 30 days) with the background check running,
    3 s of nothing else (the floor on a shared machine), a later retention pass, `retention
    plan`, and with --catch-up-hours a plan and a pass that many hours ahead;
  * `nvr status` and `nvr recordings --camera cam00` for one day: latency over the real
    socket (the request's round trip, from a client process), p50 and max of 20 each.
Targets: lag p99 < 50 ms and max < 200 ms; status < 200 ms; recordings < 100 ms; socket < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402

from nvr import log  # noqa: E402
from nvr.config.loader import load_camera_map  # noqa: E402
from nvr.runtime.service import Service  # noqa: E402
from nvr.timeutil import to_iso  # noqa: E402
from tests.camserver import TestCamera  # noqa: E402


class LagProbe:
    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.interval_s)
            self.samples.append(loop.time() - t - self.interval_s)

    def take(self) -> dict[str, float]:
        s, self.samples = sorted(self.samples), []
        if not s:
            return {}
        return {"samples": len(s), "p50_ms": round(1000 * s[len(s) // 2], 1),
                "p99_ms": round(1000 * s[min(len(s) - 1, int(len(s) * 0.99))], 1),
                "max_ms": round(1000 * s[-1], 1)}


def config_text(root: Path, sock: Path, url: str, n: int, seconds: int) -> str:
    cams = "\n".join(
        f'  - {{id: cam{i:02d}, name: CAM{i:02d}, area: entrance, rtsp: "{url}"}}'
        for i in range(n))
    return f"""site: Scale bench
storage:
  root: {root}
  segment_seconds: {seconds}
  min_free_percent: 1
retention:
  days: 30
  interval_seconds: 86400
control:
  socket: {sock}
people:
  - {{user: root, role: it}}
cameras:
{cams}
"""


# The client runs in its own process, as `nvr status` does: in this one, its JSON decoding
# would hold the GIL and show up as the daemon's event-loop lag.
_CLIENT = """
import json, sys, time
from pathlib import Path
from nvr.control import client
sock, op, args, n = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
times = []
for _ in range(n):
    t = time.monotonic()
    client.call(sock, op, args, timeout=30)
    times.append(time.monotonic() - t)
print(json.dumps(times))
"""


async def timed_calls(sock: Path, op: str, args: dict[str, Any], n: int) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CLIENT, str(sock), op, json.dumps(args), str(n),
        stdout=asyncio.subprocess.PIPE, cwd=REPO)
    out, _ = await proc.communicate()
    times = json.loads(out)
    return {"p50_ms": round(1000 * statistics.median(times), 1),
            "max_ms": round(1000 * max(times), 1)}


async def bench(root: Path, record: int, seconds: int, catch_up_hours: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="nvr-scale-"))
    sock = work / "control.sock"
    with TestCamera() as cam:
        cfg_path = work / "cameras.yaml"
        cfg_path.write_text(config_text(root, sock, cam.url("h264-noaudio"), record, seconds))
        config = load_camera_map(cfg_path)
        probe = LagProbe()
        probe_task = asyncio.ensure_future(probe.run())
        svc = Service(cfg_path, config)
        t0 = time.monotonic()
        await svc.start()
        out["socket_ready_s"] = round(time.monotonic() - t0, 2)
        out["lag_startup"] = probe.take()
        # The first pass was started by start(); wait for it (it deletes the seed's footage
        # past 30 days) while the background check runs.
        t = time.monotonic()
        while svc.retention.passes == 0:
            await asyncio.sleep(0.05)
            if time.monotonic() - t > 120:
                break
        out["first_pass_s"] = round(time.monotonic() - t, 2)
        out["lag_first_pass"] = probe.take()
        # The floor: 3 s of nothing but the cameras and the background check.
        await asyncio.sleep(3)
        out["lag_idle"] = probe.take()
        out["status"] = await timed_calls(sock, "status", {}, 20)
        day_end = svc.clock() - 2 * 86_400_000_000
        out["recordings_one_day"] = await timed_calls(
            sock, "recordings", {"camera": "cam00", "start": to_iso(day_end - 86_400_000_000),
                                 "end": to_iso(day_end)}, 20)
        out["lag_during_calls"] = probe.take()
        t = time.monotonic()
        report = await svc.retention.run_once()
        out["pass"] = {"s": round(time.monotonic() - t, 2), "deleted": report.deleted,
                       "kept": report.kept, "lag": probe.take()}
        t = time.monotonic()
        plan = await svc.retention.plan_dict()
        out["plan"] = {"s": round(time.monotonic() - t, 2), "delete": len(plan["delete"]),
                       "keep": len(plan["keep"]), "lag": probe.take()}
        if catch_up_hours:
            # A pass after the box was off for a while: hours of every camera due at once.
            ahead = svc.clock() + int(catch_up_hours * 3600e6)
            svc.retention._clock = lambda: ahead
            t = time.monotonic()
            plan = await svc.retention.plan_dict()
            out["catch_up_plan"] = {"s": round(time.monotonic() - t, 2),
                                    "delete": len(plan["delete"]), "lag": probe.take()}
            t = time.monotonic()
            report = await svc.retention.run_once()
            out["catch_up_pass"] = {"s": round(time.monotonic() - t, 2),
                                    "deleted": report.deleted, "lag": probe.take()}
        out["recovery"] = svc.recovery_check.progress()
        await svc.stop()
        probe_task.cancel()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--record", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--catch-up-hours", type=float, default=0,
                    help="then plan and run a pass this many hours ahead (deletes seed rows)")
    a = ap.parse_args()
    log.configure("warning")
    result = uvloop.run(bench(a.root, a.record, a.seconds, a.catch_up_hours))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
