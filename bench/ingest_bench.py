"""Ingest benchmark: N cameras recorded by nvr's recorders in ONE process against N
`ffmpeg -c copy -f segment` processes (Frigate's recorder command), on the same streams, in the
same run, alternating, for several rounds.

    .venv/bin/python bench/ingest_bench.py --cameras 16 32 64 --seconds 120 --rounds 2
    .venv/bin/python bench/ingest_bench.py --cameras 16 --seconds 40 --rounds 1   # quick look
    .venv/bin/python bench/ingest_bench.py --stream h264-1080 --cameras 16        # README figure

The camera is bench/loopcam.py: pre-encoded streams (bench/camsource.py, made once into
~/.cache/nvr-bench) served looped by GStreamer's RTSP server without encoding, one shared media
for all clients; a fresh server for each side so both start from the same state. Its own CPU is
measured over the same window and reported: it must be small and the same for both sides.

Per side: clients start 50 ms apart; after --warmup seconds the CPU counters are read, again
--seconds later, then the side is stopped. Reported:
  CPU-s        utime+stime over the measured window (daemon: its process, all threads;
               ffmpeg: the sum over its N processes); also per camera-minute, and the ratio
               daemon/ffmpeg per round with its spread over the rounds
  RSS          peak resident memory (VmHWM) read just before stopping: daemon process against
               the sum over the ffmpeg processes
  frames       per camera, counted on disk by demuxing every file (all footage, warm-up included),
               and frames missing inside files (a dts step longer than 1.5 frame intervals)
  loop lag     daemon only: an asyncio task asks for 100 ms sleeps; p99 of the overshoot
  durable      daemon only: median time from a frame's arrival (the demuxer handing it over) to
               its segment being closed, fsynced with its folder (what the index row waits for)
The machine's load averages before and after each side go into the JSON with it (a shared
machine moves both sides' figures; the ratio of the same round moves less).
The daemon side is the real thing minus the control socket: CameraRecorder threads, the real
SQLite index (a row per segment), uvloop. JSON of the whole run goes to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.camsource import FPS, STREAMS, LoopCamera, proc_cpu_s  # noqa: E402  (light: no av)

# The parent imports no av: children's figures must not carry the parent's memory.
STAGGER_S = 0.05  # GStreamer's shared media misbehaved when many clients arrived at once
# The lag probe's tick: 10 ms ticks cost the daemon ~10 % of its CPU at 16 cameras (100
# wake-ups a second); 100 ms still catches any pause that matters (the watchdog ticks slower).
LAG_TICK_S = 0.1


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by kind (camera threads, the event loop, the
    rest: SQLite's worker, asyncio.to_thread workers)."""
    import threading
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = os.getpid()
    out = {"camera": 0.0, "loop": 0.0, "other": 0.0}
    for task in Path("/proc/self/task").iterdir():
        try:
            cpu = proc_cpu_s(int(task.name), f"/proc/self/task/{task.name}/stat")
        except OSError:
            continue
        name = names.get(int(task.name), "")
        kind = "loop" if int(task.name) == main else "camera" if name.startswith("cam-") else "other"
        out[kind] += cpu
    return out


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# -- the daemon side (child process) -------------------------------------------------------------
async def daemon_child(url: str, root: Path, n: int, warmup: float, seconds: float,
                       segment_seconds: float, reader: str = "auto") -> None:
    import resource

    from nvr import log
    from nvr.config.model import CameraConfig, StorageConfig
    from nvr.ingest.recorder import CameraRecorder
    from nvr.storage import segment_writer
    from nvr.storage.db import connect
    from nvr.storage.index import Index, NewSegment

    log.configure("warning")
    durable_ms: list[float] = []
    orig_write, orig_finish = segment_writer.SegmentWriter.write, segment_writer.SegmentWriter._finish

    # Bench-only instrumentation: the arrival time of every frame of the open segment, and when
    # its segment is durable (file and folder fsynced, the moment its index row may be written).
    def write(self: Any, op: Any) -> None:
        self.__dict__.setdefault("_bench_arrivals", []).append(op.arrival_mono_us)
        self._bench_in_write = True
        try:
            orig_write(self, op)
        finally:
            self._bench_in_write = False

    def finish(self: Any, seg: Any, end_us: int) -> Any:
        arrivals = self.__dict__.get("_bench_arrivals", [])
        # A cut inside write(): the frame being written opens the next segment.
        last = arrivals.pop() if arrivals and self.__dict__.get("_bench_in_write") else None
        new = orig_finish(self, seg, end_us)
        now = time.monotonic_ns() // 1000
        durable_ms.extend((now - a) / 1000 for a in arrivals)
        self._bench_arrivals = [] if last is None else [last]  # the cut frame opens the next one
        return new

    segment_writer.SegmentWriter.write = write  # type: ignore[method-assign]
    segment_writer.SegmentWriter._finish = finish  # type: ignore[method-assign,assignment]

    db = await connect(root / "index.db")
    index = Index(db)
    totals = {"segments": 0, "frames": 0}

    class IndexSink:
        async def segment_closed(self, seg: NewSegment) -> None:
            await index.add_segment(seg)
            totals["segments"] += 1
            totals["frames"] += seg.frames

        async def gap(self, camera: str, start_us: int, end_us: int, reason: str, detail: str) -> None:
            pass

        def state_changed(self, camera: str, state: str, reason: str) -> None:
            pass

    async def resolve(force: bool) -> str:
        return url

    now_us = time.time_ns() // 1000
    storage = StorageConfig(root=root, segment_seconds=segment_seconds)
    cams = [CameraConfig(id=f"cam{i}", name="b", area="entrance", rtsp=url,
                         reader=reader)  # type: ignore[arg-type]
            for i in range(n)]
    for c in cams:
        await index.ensure_camera(c.id, c.name, now_us)
    recs = [CameraRecorder(c, storage, root, IndexSink(), resolve) for c in cams]
    lags: list[float] = []

    async def lag_probe() -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(LAG_TICK_S)
            lags.append((time.monotonic() - t - LAG_TICK_S) * 1000)

    for r in recs:
        r.start()
        await asyncio.sleep(STAGGER_S)
    await asyncio.sleep(warmup)
    probe = asyncio.get_running_loop().create_task(lag_probe())
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    th0 = thread_cpu()
    print("WARM", flush=True)
    await asyncio.sleep(seconds)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    th1 = thread_cpu()
    hwm = vm_hwm(os.getpid())
    print("END", flush=True)
    probe.cancel()
    await asyncio.gather(*(r.stop(10) for r in recs))
    await db.close()
    lags.sort()
    durable_ms.sort()
    print(json.dumps({
        "cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), "rss": hwm,
        "loop_lag_p99_ms": lags[int(len(lags) * 0.99)] if lags else None,
        "loop_lag_max_ms": lags[-1] if lags else None,
        "durable_median_ms": statistics.median(durable_ms) if durable_ms else None,
        "threads_cpu_s": {k: th1[k] - th0[k] for k in th1},
        "ctx_switches": (ru1.ru_nvcsw - ru0.ru_nvcsw) + (ru1.ru_nivcsw - ru0.ru_nivcsw),
        "indexed": totals, "dropped_events": sum(r.dropped for r in recs),
    }), flush=True)


# -- counting frames on disk (child process, PyAV) ----------------------------------------------
def count_child(folder: Path) -> None:
    import av

    per_cam: dict[str, dict[str, int]] = {}
    for cam in sorted(p for p in folder.iterdir() if p.is_dir()):
        frames = missing = files = 0
        for f in sorted(cam.glob("*.mp4")):
            try:
                with av.open(str(f)) as c:
                    v = c.streams.video[0]
                    step = 1 / (FPS * float(v.time_base or 1 / 90000))
                    last = None
                    for pkt in c.demux(v):
                        if pkt.size == 0 or pkt.dts is None:
                            continue
                        frames += 1
                        if last is not None and pkt.dts - last > 1.5 * step:
                            missing += round((pkt.dts - last) / step) - 1
                        last = pkt.dts
                files += 1
            except (av.error.FFmpegError, IndexError):
                pass  # an empty last file (ffmpeg stopped before its first frame)
        per_cam[cam.name] = {"frames": frames, "missing": missing, "files": files}
    print(json.dumps(per_cam))


def count_frames(folder: Path) -> dict[str, dict[str, int]]:
    out = subprocess.run([sys.executable, __file__, "--count", str(folder)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    result: dict[str, dict[str, int]] = json.loads(out.stdout)
    return result


# -- the two sides, driven from the parent ------------------------------------------------------
def run_daemon(cam: LoopCamera, url: str, n: int, a: argparse.Namespace, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--daemon-child", url, str(out), str(n), str(a.warmup),
         str(a.seconds), str(a.segment_seconds), a.reader], cwd=REPO, stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    srv0 = srv1 = 0.0
    for line in proc.stdout:
        if line.startswith("WARM"):
            srv0 = cam.cpu_s()
        elif line.startswith("END"):
            srv1 = cam.cpu_s()
            break
    result: dict[str, Any] = json.loads(proc.stdout.read() or "{}")
    proc.wait()
    result["server_cpu_s"] = srv1 - srv0
    result["cameras"] = count_frames(out / "segments")
    return result


def ffmpeg_cmd(url: str, folder: Path, segment_seconds: float) -> list[str]:
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
            "-timeout", "5000000", "-i", url, "-map", "0:v", "-c", "copy", "-f", "segment",
            "-segment_time", f"{segment_seconds:g}", "-segment_format", "mp4",
            "-reset_timestamps", "1", str(folder / "%05d.mp4")]


def run_ffmpeg(cam: LoopCamera, url: str, n: int, a: argparse.Namespace, out: Path) -> dict[str, Any]:
    procs = []
    for i in range(n):
        d = out / f"cam{i}"
        d.mkdir(parents=True)
        procs.append(subprocess.Popen(ffmpeg_cmd(url, d, a.segment_seconds)))
        time.sleep(STAGGER_S)
    time.sleep(a.warmup)
    srv0, cpu0 = cam.cpu_s(), [proc_cpu_s(p.pid) for p in procs]
    time.sleep(a.seconds)
    srv1, cpu1 = cam.cpu_s(), [proc_cpu_s(p.pid) for p in procs]
    rss = sum(vm_hwm(p.pid) for p in procs)
    alive = sum(p.poll() is None for p in procs)
    for p in procs:
        p.send_signal(signal.SIGINT)  # ffmpeg finishes its segment on SIGINT
    for p in procs:
        p.wait()
    return {"cpu_s": sum(cpu1) - sum(cpu0), "rss": rss, "server_cpu_s": srv1 - srv0,
            "alive_at_end": alive, "cameras": count_frames(out)}


def side(name: str, n: int, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    load_before = os.getloadavg()  # the machine may be shared: its load goes with each figure
    with LoopCamera() as cam:
        url = cam.url(a.stream)
        fn = run_daemon if name == "daemon" else run_ffmpeg
        res = fn(cam, url, n, a, tmp / f"{name}-{n}-{time.monotonic_ns()}")
    frames = [c["frames"] for c in res["cameras"].values()]
    res["frames_min"], res["frames_max"] = min(frames, default=0), max(frames, default=0)
    res["frames_total"] = sum(frames)
    res["missing_total"] = sum(c["missing"] for c in res["cameras"].values())
    res["cameras_with_footage"] = sum(f > 0 for f in frames)
    res["cpu_s_per_camera_minute"] = res["cpu_s"] / n / (a.seconds / 60)
    res["loadavg_before"], res["loadavg_after"] = load_before, os.getloadavg()
    return res


def fmt_row(name: str, n: int, rnd: int, r: dict[str, Any], a: argparse.Namespace) -> str:
    lag = r.get("loop_lag_p99_ms")
    dur = r.get("durable_median_ms")
    return (f"{n:4d} {rnd:3d} {name:7} {r['cpu_s']:8.2f} {r['cpu_s'] / a.seconds * 100:6.1f}% "
            f"{r['rss'] / 2**20:9.1f} {r['server_cpu_s']:8.2f} "
            f"{r['frames_min']:6d}-{r['frames_max']:<6d} {r['missing_total']:5d} "
            f"{r['cameras_with_footage']:4d} "
            f"{'-' if lag is None else f'{lag:.1f}':>8} {'-' if dur is None else f'{dur / 1000:.2f}':>8}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cameras", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seconds", type=float, default=120, help="measured window per side")
    p.add_argument("--warmup", type=float, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--stream", default="h264", choices=sorted(STREAMS))
    p.add_argument("--segment-seconds", type=float, default=10)
    p.add_argument("--json", type=Path, help="default: bench/results/ingest-<time>.json")
    p.add_argument("--note", default="", help="stored in the JSON (e.g. 'machine shared')")
    p.add_argument("--reader", choices=("auto", "ffmpeg", "nvr"), default="auto",
                   help="the daemon's RTSP reader (the camera map's `reader:`)")
    p.add_argument("--daemon-child", nargs=7, help=argparse.SUPPRESS)
    p.add_argument("--count", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.daemon_child:
        url, root, n, warm, secs, seg, reader = a.daemon_child
        import uvloop
        uvloop.run(daemon_child(url, Path(root), int(n), float(warm), float(secs), float(seg),
                                reader))
        return 0
    if a.count:
        count_child(a.count)
        return 0
    subprocess.run([sys.executable, str(REPO / "bench" / "camsource.py"), a.stream], check=True)
    runs: list[dict[str, Any]] = []
    load_at_start = os.getloadavg()
    print(f"stream {a.stream} ({STREAMS[a.stream][0]} {FPS} fps {STREAMS[a.stream][1]}b/s), "
          f"{a.seconds:g} s measured after {a.warmup:g} s warm-up, {a.rounds} round(s)", flush=True)
    hdr = (f"{'N':>4} {'rnd':>3} {'side':7} {'CPU-s':>8} {'core':>7} {'RSS MB':>9} {'srv CPU':>8} "
           f"{'frames/cam':>13} {'miss':>5} {'cams':>4} {'lag p99':>8} {'durable':>8}")
    print(hdr, flush=True)
    with tempfile.TemporaryDirectory(prefix="nvr-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for n in a.cameras:
            for rnd in range(1, a.rounds + 1):
                order = ("daemon", "ffmpeg") if rnd % 2 else ("ffmpeg", "daemon")
                pair: dict[str, Any] = {"cameras": n, "round": rnd}
                for name in order:
                    pair[name] = side(name, n, a, tmp)
                    print(fmt_row(name, n, rnd, pair[name], a), flush=True)
                    subprocess.run(["rm", "-rf", *map(str, tmp.iterdir())], check=False)
                d, f = pair["daemon"], pair["ffmpeg"]
                pair["cpu_ratio"] = d["cpu_s"] / f["cpu_s"] if f["cpu_s"] else None
                pair["rss_ratio"] = d["rss"] / f["rss"] if f["rss"] else None
                print(f"{n:4d} {rnd:3d} ratio   CPU {pair['cpu_ratio']:.2f}  RSS {pair['rss_ratio']:.3f}",
                      flush=True)
                runs.append(pair)
    summary = {}
    for n in a.cameras:
        rs = [r for r in runs if r["cameras"] == n]
        summary[str(n)] = {
            "cpu_ratio": statistics.mean(r["cpu_ratio"] for r in rs),
            "rss_ratio": statistics.mean(r["rss_ratio"] for r in rs),
            "daemon_cores": statistics.mean(r["daemon"]["cpu_s"] for r in rs) / a.seconds,
            "ffmpeg_cores": statistics.mean(r["ffmpeg"]["cpu_s"] for r in rs) / a.seconds,
            "cpu_ratio_min": min(r["cpu_ratio"] for r in rs),
            "cpu_ratio_max": max(r["cpu_ratio"] for r in rs),
            "daemon_cpu_s_per_camera_minute": statistics.mean(
                r["daemon"]["cpu_s_per_camera_minute"] for r in rs),
            "ffmpeg_cpu_s_per_camera_minute": statistics.mean(
                r["ffmpeg"]["cpu_s_per_camera_minute"] for r in rs),
            "daemon_rss_mb": statistics.mean(r["daemon"]["rss"] for r in rs) / 2**20,
            "ffmpeg_rss_mb": statistics.mean(r["ffmpeg"]["rss"] for r in rs) / 2**20,
            "missing_daemon": sum(r["daemon"]["missing_total"] for r in rs),
            "missing_ffmpeg": sum(r["ffmpeg"]["missing_total"] for r in rs),
            "loop_lag_p99_ms": max(r["daemon"]["loop_lag_p99_ms"] or 0 for r in rs),
        }
        s = summary[str(n)]
        print(f"N={n}: CPU {s['cpu_ratio']:.2f}x, RSS {s['rss_ratio']:.3f}x of ffmpeg; daemon "
              f"{s['daemon_cores']:.3f} cores = {n / max(s['daemon_cores'], 1e-9):.0f} cameras/core; "
              f"CPU-s per camera-minute {s['daemon_cpu_s_per_camera_minute']:.3f} against "
              f"{s['ffmpeg_cpu_s_per_camera_minute']:.3f}, RSS {s['daemon_rss_mb']:.0f} MB against "
              f"{s['ffmpeg_rss_mb']:.0f} MB; ratio over rounds {s['cpu_ratio_min']:.2f}-"
              f"{s['cpu_ratio_max']:.2f}", flush=True)
    path = a.json or REPO / "bench" / "results" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": " ".join(sys.argv), "stream": a.stream, "seconds": a.seconds,
        "warmup": a.warmup, "rounds": a.rounds, "segment_seconds": a.segment_seconds,
        "note": a.note, "reader": a.reader, "host": platform.node(), "cpus": os.cpu_count(),
        "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg(), "git": _git_rev(), "summary": summary, "runs": runs,
    }, indent=1))
    print(f"JSON: {path}")
    return 0


def _git_rev() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "nvr"], cwd=REPO, capture_output=True,
                           text=True, check=False).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
