"""Privacy-mask export benchmark: N minutes of one 720p camera with one mask, nvr's masked
export (decode → fill → libx264) vs ffmpeg's `-vf drawbox=…:t=fill -c:v libx264` of the same
clip, same run, same encoder settings (crf 19, preset veryfast).

    .venv/bin/python bench/mask_bench.py [--minutes 10] [--workdir /tmp/nvr-mask-bench] [--keep]

Footage: 1280x720 15 fps H.264 (ffmpeg's testsrc2: moving, textured, some flat areas), 1 s
GOP, ~2 Mb/s, written as recorder segments (fragmented MP4, one a minute). nvr's time
includes what every export does first (the sources' sha256 checked, the plain clip written);
ffmpeg starts from that plain clip. Wall and CPU time (user + system, all threads) are
measured for each; the results go to bench/results/mask-<time>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nvr.config.model import PrivacyMask  # noqa: E402
from nvr.export.masked import CRF, PRESET, write_masked  # noqa: E402
from nvr.export.remux import plan_clip, write_planned  # noqa: E402
from nvr.storage.index import Segment  # noqa: E402
from nvr.timeutil import US, segment_name  # noqa: E402

T0 = 1_790_000_000_000_000
FPS, W, H = 15, 1280, 720
# The public computers in the bottom-left of the picture.
MASK = PrivacyMask(note="public computers",
                   polygon=[(0.10, 0.55), (0.45, 0.55), (0.45, 0.95), (0.10, 0.95)])


def make_segments(folder: Path, minutes: int) -> list[Segment]:
    folder.mkdir(parents=True, exist_ok=True)
    segs = []
    for i in range(minutes):
        start = T0 + i * 60 * US
        path = folder / segment_name(start)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size={W}x{H}:rate={FPS}:duration=60,format=yuv420p",
             "-vf", f"setpts=PTS+{i * 60}/TB",  # each minute its own picture (the clock)
             "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-maxrate", "2M",
             "-bufsize", "2M", "-g", str(FPS), "-bf", "0",
             "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", str(path)],
            check=True)
        data = path.read_bytes()
        segs.append(Segment(camera="bench", start_us=start, end_us=start + 60 * US,
                            path=str(path), bytes=len(data), frames=60 * FPS,
                            keyframes=60, codec="h264", width=W, height=H,
                            sha256=hashlib.sha256(data).hexdigest(), id=i + 1))
    return segs


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--workdir", default="/tmp/nvr-mask-bench")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t = time.monotonic()
    segs = make_segments(work / "segments", a.minutes)
    print(f"footage: {a.minutes} min in {time.monotonic() - t:.0f} s", flush=True)
    end = T0 + a.minutes * 60 * US
    plan = plan_clip(segs, [], T0, end)
    frames = plan.plan.frames

    # nvr: plan already made (the handler does that before deciding); write_masked checks,
    # copies, decodes, fills and encodes.
    t, c = time.monotonic(), cpu_self()
    ours = write_masked(plan, [MASK], work / "nvr.mp4")
    nvr_wall, nvr_cpu = time.monotonic() - t, cpu_self() - c
    print(f"nvr: {nvr_wall:.1f} s wall, {nvr_cpu:.1f} s CPU", flush=True)

    plain = write_planned(plan, work / "plain.mp4")
    x0, y0 = MASK.polygon[0]
    x1, y1 = MASK.polygon[2]
    box = (f"drawbox=x={round(x0 * W)}:y={round(y0 * H)}:w={round((x1 - x0) * W)}:"
           f"h={round((y1 - y0) * H)}:color=black:t=fill")
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(plain.path), "-vf", box, "-c:v", "libx264",
           "-crf", CRF, "-preset", PRESET, "-movflags", "+faststart", str(work / "ffmpeg.mp4")]
    t, c = time.monotonic(), cpu_children()
    subprocess.run(cmd, check=True)
    ff_wall, ff_cpu = time.monotonic() - t, cpu_children() - c
    print(f"ffmpeg: {ff_wall:.1f} s wall, {ff_cpu:.1f} s CPU", flush=True)

    result = {
        "minutes": a.minutes, "frames": frames, "size": f"{W}x{H}", "fps": FPS,
        "source_bytes": plan.source_bytes, "cores": os.cpu_count(),
        "nvr": {"wall_s": round(nvr_wall, 2), "cpu_s": round(nvr_cpu, 2),
                "fps": round(frames / nvr_wall, 1), "bytes": ours.bytes,
                "realtime_x": round(a.minutes * 60 / nvr_wall, 2)},
        "ffmpeg": {"wall_s": round(ff_wall, 2), "cpu_s": round(ff_cpu, 2),
                   "fps": round(frames / ff_wall, 1),
                   "bytes": (work / "ffmpeg.mp4").stat().st_size,
                   "realtime_x": round(a.minutes * 60 / ff_wall, 2), "cmd": " ".join(cmd)},
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / f"mask-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
