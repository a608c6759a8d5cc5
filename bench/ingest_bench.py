"""Ingest benchmark: N CameraRecorders in one Python process vs N `ffmpeg -c copy -f segment`.

    .venv/bin/python bench/ingest_bench.py --cameras 16 --seconds 60

One shared test camera (720p15 H.264 2 Mb/s, GOP 30) feeds every client. Each side runs in
child processes so os.wait4() gives its exact CPU seconds and peak RSS. Frames written are
counted by ffprobe over every file. Targets (issue "Record every camera"): recorder CPU ≤ 0.6×
ffmpeg's, RSS ≤ 0.2× ffmpeg's summed RSS, no lost frame.

The mount is /h264-noaudio: GStreamer's shared /h264 media (video + audio) refuses a second
client that sets up video only, which is what the recorder does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.camserver import TestCamera  # noqa: E402

GOP = 30
FPS = 15


def count_frames(folder: Path) -> list[int]:
    counts = []
    for f in sorted(folder.rglob("*.mp4")):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
             "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(f)],
            capture_output=True, text=True, check=False,
        )
        counts.append(int(out.stdout.strip() or 0))
    return counts


def wait_child(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of one finished child."""
    _, _, ru = os.wait4(pid, 0)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024


def run_recorders(url: str, n: int, seconds: float, out: Path) -> tuple[float, int, dict[str, float]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", url, str(out), str(n), str(seconds)], cwd=REPO,
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    summary = json.loads(proc.stdout.read() or "{}")
    proc.stdout.close()
    cpu, rss = wait_child(proc.pid)
    proc.returncode = 0  # reaped by wait4
    return cpu, rss, summary


def run_ffmpeg(url: str, n: int, seconds: float, out: Path) -> tuple[float, int]:
    procs = []
    for i in range(n):
        d = out / f"cam{i}"
        d.mkdir(parents=True)
        procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
             "-map", "0:v", "-c", "copy", "-f", "segment", "-segment_time", "10",
             "-segment_format", "mp4", "-reset_timestamps", "1", str(d / "%05d.mp4")],
        ))
        time.sleep(0.05)  # GStreamer's shared media crashed when 16 clients arrived at once
    time.sleep(seconds)
    for p in procs:
        # os.kill, not Popen.send_signal: that polls and may reap the child before wait4().
        os.kill(p.pid, signal.SIGINT)  # ffmpeg finishes its segment on SIGINT
    cpu = rss = 0
    for p in procs:
        c, r = wait_child(p.pid)
        p.returncode = 0  # reaped by wait4
        cpu += c
        rss += r
    return cpu, rss


async def child(url: str, root: Path, n: int, seconds: float) -> None:
    from nvr import log
    from nvr.config.model import CameraConfig, StorageConfig
    from nvr.ingest.recorder import CameraRecorder
    from nvr.storage.index import NewSegment

    log.configure("warning")

    totals = {"frames": 0.0, "media_s": 0.0}

    class NullSink:
        async def segment_closed(self, seg: NewSegment) -> None:
            totals["frames"] += seg.frames
            totals["media_s"] += (seg.end_us - seg.start_us) / 1e6

        async def gap(self, camera: str, start_us: int, end_us: int, reason: str, detail: str) -> None:
            pass

        def state_changed(self, camera: str, state: str, reason: str) -> None:
            pass

    async def resolve(force: bool) -> str:
        return url

    storage = StorageConfig(root=root, segment_seconds=10)
    recs = [CameraRecorder(CameraConfig(id=f"cam{i}", name="b", area="entrance", rtsp=url),
                           storage, root, NullSink(), resolve) for i in range(n)]
    for r in recs:
        r.start()
    await asyncio.sleep(seconds)
    await asyncio.gather(*(r.stop() for r in recs))
    print(json.dumps(totals))


@contextlib.contextmanager
def camera() -> Iterator[str]:
    cam = TestCamera("--width", "1280", "--height", "720", "--fps", str(FPS), "--gop", str(GOP),
                     "--bitrate", "2000").start()
    try:
        yield cam.url("h264-noaudio")
    finally:
        cam.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cameras", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        url, root, n, secs = a.child
        asyncio.run(child(url, Path(root), int(n), float(secs)))
        return 0
    with tempfile.TemporaryDirectory(prefix="nvr-bench-") as tmp:
        # A fresh camera for each side: the shared media is then in the same state for both.
        with camera() as url:
            base_cpu, base_rss, _ = run_recorders(url, 0, 0, Path(tmp) / "base")
            rec_cpu, rec_rss, summary = run_recorders(url, a.cameras, a.seconds, Path(tmp) / "rec")
        rec_frames = count_frames(Path(tmp) / "rec" / "segments")
        with camera() as url:
            ff_cpu, ff_rss = run_ffmpeg(url, a.cameras, a.seconds, Path(tmp) / "ff")
        ff_frames = count_frames(Path(tmp) / "ff")
    print(f"python start-up + imports alone: {base_cpu:.2f} CPU-s, {base_rss / 2**20:.1f} MB "
          "(included in the recorder figures below)")
    print(f"recorder: {summary['frames']:.0f} frames indexed over {summary['media_s']:.2f} s of "
          f"media = {summary['frames'] / max(summary['media_s'], 1e-9):.3f} fps (camera: {FPS})")
    report(a, rec_cpu, rec_rss, rec_frames, ff_cpu, ff_rss, ff_frames)
    return 0


def report(a: argparse.Namespace, rec_cpu: float, rec_rss: int, rec_frames: list[int],
           ff_cpu: float, ff_rss: int, ff_frames: list[int]) -> None:
    expected = a.cameras * a.seconds * FPS
    print(f"{a.cameras} cameras x {a.seconds:g} s, 720p15 H.264 2 Mb/s GOP {GOP}")
    print(f"{'':10} {'CPU-s':>8} {'peak RSS MB':>12} {'frames':>8} {'of ~expected':>13}")
    for name, cpu, rss, fr in (("recorder", rec_cpu, rec_rss, rec_frames),
                               ("ffmpeg", ff_cpu, ff_rss, ff_frames)):
        print(f"{name:10} {cpu:8.2f} {rss / 2**20:12.1f} {sum(fr):8d} {sum(fr) / expected:13.3f}")
    print(f"CPU ratio {rec_cpu / ff_cpu:.2f} (target <= 0.6); RSS ratio {rec_rss / ff_rss:.2f} "
          f"(target <= 0.2); frames recorder - ffmpeg = {sum(rec_frames) - sum(ff_frames)}")
    full = sorted(set(rec_frames))
    print(f"frames per recorder segment (distinct counts): {full}; a full 10 s segment "
          f"should hold {10 * FPS}")
    print(json.dumps({"rec_cpu_s": rec_cpu, "rec_rss": rec_rss, "rec_frames": sum(rec_frames),
                      "ff_cpu_s": ff_cpu, "ff_rss": ff_rss, "ff_frames": sum(ff_frames)}))


if __name__ == "__main__":
    sys.exit(main())
