"""Pre-encoded benchmark streams (made once, cached, never committed) and the looping RTSP
server that serves them (bench/loopcam.py) without encoding anything.

Streams, 20 s each (loops seamlessly; 2 s GOP, closed, no scene cuts), with real motion and
temporal noise so the encoder really spends the bit rate:
  h264          720p15 H.264 Main, 2 Mb/s, no B-frames
  h264-bframes  720p15 H.264 High, 2 Mb/s, 2 B-frames with B-pyramid (as most cameras' main stream)
  h265          720p15 H.265, 2 Mb/s
  h264-1080     1080p15 H.264 Main, 4 Mb/s (the README's cameras-per-core figure)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

LOOPCAM = Path(__file__).resolve().parent / "loopcam.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # gi imports only under Debian's interpreter
DEFAULT_CACHE = Path(os.environ.get("NVR_BENCH_CACHE", Path.home() / ".cache" / "nvr-bench"))
SECONDS, FPS, GOP = 20, 15, 30

_X264 = "keyint=30:min-keyint=30:scenecut=0:open-gop=0"
STREAMS: dict[str, tuple[str, str, list[str]]] = {
    # name: (size, bit rate, encoder arguments)
    "h264": ("1280x720", "2M", ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
                                "-x264-params", f"{_X264}:bframes=0"]),
    "h264-bframes": ("1280x720", "2M", ["-c:v", "libx264", "-preset", "veryfast", "-profile:v",
                                        "high", "-x264-params",
                                        f"{_X264}:bframes=2:b-pyramid=normal:b-adapt=0"]),
    "h265": ("1280x720", "2M", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                                "keyint=30:min-keyint=30:scenecut=0:open-gop=0:bframes=0:log-level=error"]),
    "h264-1080": ("1920x1080", "4M", ["-c:v", "libx264", "-preset", "veryfast", "-profile:v",
                                      "main", "-x264-params", f"{_X264}:bframes=0"]),
}


def prepare(name: str, cache: Path = DEFAULT_CACHE) -> Path:
    """Encode stream `name` once (ffmpeg), then split it into `<name>.es` (Annex-B access units
    back to back) and `<name>.json` (offset, size, pts, dts in ns, keyframe) for loopcam."""
    index = cache / f"{name}.json"
    if index.exists():
        return index
    import av  # the venv's PyAV: demux only

    cache.mkdir(parents=True, exist_ok=True)
    size, rate, enc = STREAMS[name]
    ts = cache / f"{name}.ts"
    src = (f"testsrc2=size={size}:rate={FPS},"
           "noise=c0s=14:c0f=t+u:c1s=6:c1f=t+u:c2s=6:c2f=t+u,format=yuv420p")
    t0 = time.monotonic()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
         "-t", str(SECONDS), *enc, "-b:v", rate, "-maxrate", rate, "-bufsize", rate,
         "-an", "-f", "mpegts", str(ts)], check=True,
    )
    frames: list[list[int]] = []
    with av.open(str(ts)) as inp, open(cache / f"{name}.es", "wb") as es:
        v = inp.streams.video[0]
        tb = Fraction(v.time_base or Fraction(1, 90000))
        dts0: int | None = None
        off = 0
        for pkt in inp.demux(v):
            if pkt.size == 0 or pkt.dts is None or pkt.pts is None:
                continue
            dts0 = pkt.dts if dts0 is None else dts0
            data = bytes(pkt)
            es.write(data)
            frames.append([off, len(data), int((pkt.pts - dts0) * tb * 10**9),
                           int((pkt.dts - dts0) * tb * 10**9), int(pkt.is_keyframe)])
            off += len(data)
        codec = "h264" if v.codec_context.name == "h264" else "h265"
    step = 10**9 // FPS
    index.write_text(json.dumps({"codec": codec, "fps": FPS, "loop_ns": len(frames) * step,
                                 "frames": frames}))
    ts.unlink()
    print(f"prepared {name}: {len(frames)} frames, {off * 8 / SECONDS / 1e6:.2f} Mb/s, "
          f"in {time.monotonic() - t0:.0f} s -> {cache}", flush=True)
    return index


def frames_per_loop(name: str, cache: Path = DEFAULT_CACHE) -> int:
    return len(json.loads((cache / f"{name}.json").read_text())["frames"])


def proc_cpu_s(pid: int, stat: str = "") -> float:
    """utime + stime of a live process (all its threads), or of one thread (`stat`), in s."""
    fields = Path(stat or f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LoopCamera:
    """bench/loopcam.py as a child process: every prepared stream is a mount."""

    def __init__(self, cache: Path = DEFAULT_CACHE) -> None:
        self.cache = cache
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> LoopCamera:
        cmd = [SYSTEM_PYTHON, str(LOOPCAM), "--cache", str(self.cache), "--port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY "):
                self.port = int(line.split()[1])
                return self
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"loop camera did not start: {' '.join(cmd)}")

    def cpu_s(self) -> float:
        assert self.proc is not None
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def __enter__(self) -> LoopCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    import sys
    for n in sys.argv[1:] or list(STREAMS):
        prepare(n)
