"""Run tools/testcam.py (the real GStreamer RTSP server) as a child process for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

TESTCAM = Path(__file__).resolve().parent.parent / "tools" / "testcam.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # gi imports only under Debian's interpreter


def camera_env() -> dict[str, str]:
    """The test camera's environment: this one without libfaketime. A camera is a device with
    its own clock, and GStreamer's RTSP server stalls under libfaketime (seen: no reply to
    DESCRIBE), so a suite run under `faketime` (tools/test-dates.sh, the README) fakes the
    recorder's date, not the camera's."""
    return {k: v for k, v in os.environ.items()
            if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}


def recorder_ahead_of_camera_ms() -> float:
    """How far the recorder's clock is ahead of the test camera's: 0, but under faketime's
    offset form (`FAKETIME=+N` seconds, what `faketime DATE` sets) the camera keeps this
    machine's clock (camera_env) and the recorder runs N s ahead. A capture time burned into
    the picture by the camera is compared with the recorder's stamps after this shift."""
    offset = os.environ.get("FAKETIME", "")
    try:
        return float(offset) * 1000 if offset[:1] in "+-" and offset else 0.0
    except ValueError:
        return 0.0


class TestCamera:
    """One RTSP server process. stop() is the camera going offline; start() brings it back
    on the same port."""

    __test__ = False  # not a pytest test class

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        # The server's stderr, kept so that a crash of the test camera is reported as one
        # (with GStreamer's last words) instead of as a recorder that never got to recording.
        self.stderr: IO[bytes] | None = None

    def start(self, timeout: float = 15.0) -> TestCamera:
        cmd = [SYSTEM_PYTHON, str(TESTCAM), "--port", str(self.port), *self.args]
        if os.environ.get("FAKETIME"):
            # The camera keeps this machine's clock while the recorder's is shifted: its sender
            # reports would (rightly) raise the camera_clock alert on every camera. A camera
            # that sends none is common; the alert itself is tested with the replay camera.
            cmd.append("--no-rtcp")
        self.stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                start_new_session=True, env=camera_env(),
            )
        except BaseException:
            self.stderr.close()
            self.stderr = None
            raise
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY "):
                self.port = int(line.split()[1])
                return self
            if not line and self.proc.poll() is not None:
                break
        why = self.crashed() or "no READY line"
        self.stop()
        raise RuntimeError(f"test camera did not start ({why}): {' '.join(cmd)}")

    def crashed(self) -> str | None:
        """Why the server exited while it should be running, or None if it is running (or
        was stopped on purpose)."""
        if self.proc is None or self.proc.poll() is None or self.stderr is None:
            return None
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - 4096))  # the last words are enough
        last = self.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
        return f"test camera exited with status {self.proc.returncode}: {' | '.join(last)}"

    def stop(self) -> None:
        """Stop the server (a camera going offline). Raises if it had already exited on its
        own: a test that stops a crashed camera must not pass over the crash."""
        why = self.crashed()
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
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None
        if why is not None:
            raise RuntimeError(why)

    def url(self, mount: str = "h264", user: str | None = None, password: str | None = None) -> str:
        cred = f"{user}:{password}@" if user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/{mount}"

    def __enter__(self) -> TestCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
