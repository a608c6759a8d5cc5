"""Live view benchmark: daemon CPU added per WebRTC viewer, time to first frame, receive delay.

    sudo .venv/bin/python bench/live_bench.py --viewers 4 --seconds 20

One 720p15 H.264 2 Mb/s test camera (GOP 15) recorded by the real daemon; viewers are pages in
Debian's headless Chromium opening `nvr live` links. CPU is the daemon process's utime+stime
(/proc) over the same wall time with 0 viewers and with N viewers; the difference divided by N
is the CPU one viewer costs the recorder (target: under 2 % of one core). Time to first frame is
from page.goto() to videoWidth > 0. Glass-to-glass latency: a second camera on the test camera's
/timecode mount stamps each frame with the wall-clock ms it was made (a barcode); the page reads
it back from every frame it shows (requestVideoFrameCallback → canvas) and subtracts it from
Date.now() — camera, recorder and browser share this box's clock (target under 1 s).

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
# Reads tools/testcam.py's /timecode barcode (44 bits, 14×24 px blocks) off each frame shown.
GLASS = """(ms) => new Promise((resolve) => {
  const v = document.querySelector('video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = 24;
  const g = c.getContext('2d', {willReadFrequently: true});
  const out = []; const end = performance.now() + ms;
  const frame = () => {
    const now = Date.now();
    g.drawImage(v, 0, 0, v.videoWidth, v.videoHeight, 0, 0, v.videoWidth, v.videoHeight);
    const px = g.getImageData(0, 12, 44 * 14, 1).data;
    let t = 0;
    for (let b = 0; b < 44; b++) t = t * 2 + (px[(b * 14 + 7) * 4] > 128 ? 1 : 0);
    if (Math.abs(now - t) < 60000) out.push(now - t);
    if (performance.now() < end) v.requestVideoFrameCallback(frame); else resolve(out);
  };
  v.requestVideoFrameCallback(frame);
})"""


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
                     "rtsp": cam.url("h264-noaudio")},
                    {"id": "tc", "name": "timecode", "area": "stacks",
                     "rtsp": cam.url("timecode")}], segment_seconds=10,
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
            # Glass to glass, on a page of its own after the CPU measurement.
            link = mint(rec, "director", "live", "--camera", "tc", "--reason", "bench")
            page = browser.new_page()
            page.goto(link["url"])
            wait_js(page, "document.querySelector('video')?.videoWidth > 0", 10, "a frame")
            g2g = page.evaluate(GLASS, 5000)
        per = (busy - idle) / a.viewers
        print(f"| daemon CPU, 0 viewers | {100 * idle:.1f} % of a core |")
        print(f"| daemon CPU, {a.viewers} viewers | {100 * busy:.1f} % of a core |")
        print(f"| CPU added per viewer (720p15, 2 Mb/s) | {100 * per:.2f} % of a core (target < 2 %) |")
        print(f"| time to first frame | median {sorted(firsts)[len(firsts) // 2]:.2f} s, "
              f"max {max(firsts):.2f} s |")
        if delays:
            print(f"| Chromium jitter-buffer delay per frame | "
                  f"mean {1000 * sum(delays) / len(delays):.0f} ms |")
        if g2g:
            g2g.sort()
            print(f"| glass-to-glass latency (WebRTC, {len(g2g)} frames) | median "
                  f"{g2g[len(g2g) // 2]:.0f} ms, 95th {g2g[int(len(g2g) * 0.95)]:.0f} ms, "
                  f"max {g2g[-1]:.0f} ms (target < 1000 ms) |")
    finally:
        rec.cleanup()
        cam.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
