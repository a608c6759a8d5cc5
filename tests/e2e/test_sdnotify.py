"""systemd's notify protocol, as systemd would see it: `nvr run` with $NOTIFY_SOCKET pointing at a
datagram socket this test owns (and $WATCHDOG_USEC set), as a Type=notify unit runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.camserver import TestCamera
from tests.e2e.harness import camera_map
from tests.support import NVR, remove_tree, shared_tmpdir

WATCHDOG_S = 4.0  # WatchdogSec: pings are due every 2 s


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30) -> float:
        """Receive until a message carries KEY (=VALUE); its arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            at = time.monotonic()
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((at, fields))
            if key in fields and (value is None or fields[key] == value):
                return at
        raise AssertionError(f"no {key}={value or '*'} within {timeout}s; got "
                             f"{[m for _, m in self.messages][-5:]}")

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.wait_for("NEVER", timeout=left)
            except AssertionError:
                pass

    def times(self, key: str, since: float = 0) -> list[float]:
        return [t for t, m in self.messages if key in m and t >= since]

    def close(self) -> None:
        self.sock.close()


def start(tmp: Path, cameras: list[dict[str, str]], **env: str) -> tuple[subprocess.Popen[bytes], NotifyListener]:
    config = tmp / "nvr.yaml"
    config.write_text(camera_map(tmp / "storage", tmp / "control.sock", cameras))
    listener = NotifyListener(tmp / "notify.sock")
    full_env = {**os.environ, "NOTIFY_SOCKET": str(tmp / "notify.sock"),
                "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)), **env}
    with (tmp / "daemon.log").open("ab") as log:
        proc = subprocess.Popen([NVR, "run", "--config", str(config)], env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
    return proc, listener


def accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def wait_log(tmp: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in (tmp / "daemon.log").read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"log never said {text!r}:\n"
                         + (tmp / "daemon.log").read_text(errors="replace")[-3000:])


def test_ready_watchdog_status_reload_stopping_and_a_wedged_camera_restarted(
        testcam: TestCamera) -> None:
    tmp = shared_tmpdir()
    cams = [{"id": c, "name": c, "area": "stacks", "rtsp": testcam.url("h264-noaudio")}
            for c in ("a", "b")]
    proc, notify = start(tmp, cams, NVR_TEST_HANG_CAMERA="a", NVR_CAMERA_STALL_SECONDS="3")
    try:
        notify.wait_for("READY", "1")
        # READY=1 means the control socket already answers: connect right now, no retry.
        assert accepts(tmp / "control.sock"), "READY=1 sent before the control socket listens"
        assert not notify.times("WATCHDOG"), "a watchdog ping before READY=1"

        # Camera a's first thread wedges at its first packet (test hook); the watchdog
        # replaces it and pings on.
        wait_log(tmp, '"camera_thread_restarted"')
        restarted = time.monotonic()
        log = (tmp / "daemon.log").read_text()
        assert '"event": "camera_thread_wedged"' in log and '"camera": "a"' in log
        notify.drain(2 * WATCHDOG_S)
        after = notify.times("WATCHDOG", since=restarted)
        assert len(after) >= 2 * WATCHDOG_S / (WATCHDOG_S / 2) - 1, after
        pings = notify.times("WATCHDOG")
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        assert max(gaps) < WATCHDOG_S, f"a gap between pings longer than WatchdogSec: {gaps}"
        statuses = [m["STATUS"] for _, m in notify.messages if "STATUS" in m]
        assert statuses and all("\n" not in s for s in statuses)
        assert statuses[-1].startswith("2/2 cameras recording, disk "), statuses[-1]
        assert list((tmp / "storage" / "segments" / "a").glob("*.mp4")), \
            "the restarted camera thread records nothing"

        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING", "1")
        assert notify.wait_for("READY", "1") >= reloading

        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        remove_tree(tmp)


def test_a_blocked_event_loop_stops_the_pings() -> None:
    tmp = shared_tmpdir()
    block = tmp / "block-the-loop"
    proc, notify = start(tmp, [], NVR_TEST_BLOCK_LOOP_FILE=str(block))
    try:
        notify.wait_for("READY", "1")
        notify.wait_for("WATCHDOG", "1")
        block.touch()
        wait_log(tmp, "test_hook_blocking_event_loop")
        blocked = time.monotonic()
        notify.drain(1.5 * WATCHDOG_S)
        assert not notify.times("WATCHDOG", since=blocked + 0.5), \
            "pings went on while the event loop was blocked"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        notify.close()
        remove_tree(tmp)
