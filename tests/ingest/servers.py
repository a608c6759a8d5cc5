"""What the tests of RTSP servers we did not write share (VLC's, aio-rtsp-toolkit's, the npm
relay): a free port, waiting for a server to listen, stopping it, and the two clips they serve."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, log: IO[bytes], what: str,
                   within_s: float = 15.0) -> None:
    """Until `port` answers (such servers say nothing when they listen); if `proc` ends or the
    time runs out, it is stopped and the end of its `log` told."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise AssertionError(f"{what} did not listen on {port}: {err[-500:]}") from None
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def b_frame_clips(folder: Path, seconds: float) -> dict[str, Path]:
    """H.264 and H.265 at 25 fps with B-frames and a keyframe a second, readable by any
    account (VLC runs as nobody)."""
    encoders = {"h264": ["libx264", "-bf", "2", "-g", "25"],
                "hevc": ["libx265", "-x265-params", "log-level=error:keyint=25:bframes=2"]}
    out = {}
    for codec, args in encoders.items():
        path = folder / f"{codec}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=640x360:rate=25", "-t", str(seconds), "-c:v", *args,
                        "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
        path.chmod(0o644)
        out[codec] = path
    return out
