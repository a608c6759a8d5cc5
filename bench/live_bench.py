"""Live view benchmark: daemon CPU added per WebRTC viewer, time to first frame, receive delay.

    sudo .venv/bin/python bench/live_bench.py --viewers 4 --seconds 20

One 720p15 H.264 2 Mb/s test camera (GOP 15) recorded by the real daemon; viewers are pages in
Debian's headless Chromium opening `nvr live` links. CPU is the daemon process's utime+stime
(/proc) over the same wall time with 0 viewers and with N viewers; the difference divided by N
is the CPU one viewer costs the recorder (target: under 2 % of one core). Time to first frame is
from page.goto() to videoWidth > 0. Receive delay is Chromium's jitter-buffer delay per frame
(getStats), a lower bound on glass-to-glass latency (not measured: it needs reading the camera's
clock overlay off the screen).

Needs root (it runs `nvr` as the test accounts, like the e2e tests).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.camserver import TestCamera  # noqa: E402
from tests.e2e.harness import Recorder  # noqa: E402
from tests.web.browser import chromium, free_port  # noqa: E402
from tests.web.test_live_browser import STATS, mint, wait_js  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(pid: int, seconds: float) -> float:
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_s(pid) - c0) / (time.monotonic() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--viewers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    a = p.parse_args()
    cam = TestCamera("--width", "1280", "--height", "720", "--bitrate", "2000",
                     "--gop", "15").start()
    rec = Recorder([{"id": "cam", "name": "cam", "area": "stacks",
                     "rtsp": cam.url("h264-noaudio")}], segment_seconds=10,
                   extra=f"live:\n  listen: 127.0.0.1:{free_port()}\n").start()
    try:
        rec.wait_for_segments("cam", 1, timeout=40)
        assert rec.daemon.proc is not None
        pid = rec.daemon.proc.pid
        idle = measure(pid, a.seconds)
        firsts, pages = [], []
        with chromium() as browser:
            for _ in range(a.viewers):
                link = mint(rec, "director", "live", "--camera", "cam", "--reason", "bench")
                page = browser.new_page()
                t0 = time.monotonic()
                page.goto(link["url"])
                wait_js(page, "document.querySelector('video')?.videoWidth > 0", 10, "a frame")
                firsts.append(time.monotonic() - t0)
                pages.append(page)
            time.sleep(2)
            busy = measure(pid, a.seconds)
            delays = []
            for page in pages:
                st = page.evaluate(STATS.replace(
                    "pli: s.pliCount", "jb: s.jitterBufferDelay, jbn: s.jitterBufferEmittedCount"))
                if st and st[0].get("jbn"):
                    delays.append(st[0]["jb"] / st[0]["jbn"])
        per = (busy - idle) / a.viewers
        print(f"| daemon CPU, 0 viewers | {100 * idle:.1f} % of a core |")
        print(f"| daemon CPU, {a.viewers} viewers | {100 * busy:.1f} % of a core |")
        print(f"| CPU added per viewer (720p15, 2 Mb/s) | {100 * per:.2f} % of a core (target < 2 %) |")
        print(f"| time to first frame | median {sorted(firsts)[len(firsts) // 2]:.2f} s, "
              f"max {max(firsts):.2f} s |")
        if delays:
            print(f"| Chromium jitter-buffer delay per frame | "
                  f"mean {1000 * sum(delays) / len(delays):.0f} ms |")
    finally:
        rec.cleanup()
        cam.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
