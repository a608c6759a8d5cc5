"""A recorder for end-to-end tests: the real daemon, the real test camera, real accounts."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.camserver import TestCamera
from tests.support import Daemon, ensure_account, run_as, shared_tmpdir

# One account per role of docs/policy.md, and one that is listed nowhere (the public).
ACCOUNTS = {
    "director": "nvrtest-director",
    "assistant_director": "nvrtest-assistant",
    "staff": "nvrtest-clerk",
    "elder_affairs_director": "nvrtest-elder",
    "it": "nvrtest-it",
    "facilities": "nvrtest-facilities",
    "public": "nvrtest-public",
}


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(argv: list[str]) -> CliResult:
    """`nvr ARGV` in this process (after run_as has dropped to the account)."""
    from nvr.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse --help and the like
            code = int(exc.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


def camera_map(root: Path, socket: Path, cameras: list[dict[str, Any]], *,
               segment_seconds: float = 2, extra: str = "") -> str:
    # root is the box's IT person (sudo): status and recordings, no pictures.
    people = "\n".join(
        f"  - {{user: {user}, role: {role}}}" for role, user in ACCOUNTS.items()
        if role != "public"
    ) + "\n  - {user: root, role: it}"
    if "live:" not in extra:
        # Its own port for the web server: tests run side by side, 8443 would be taken.
        import socket as _socket

        with _socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            extra += f"\nlive:\n  listen: 127.0.0.1:{s.getsockname()[1]}\n"
    cams = "\n".join(
        "  - " + json.dumps(c) for c in cameras  # JSON is YAML
    ) or "  []"
    return f"""site: Test branch
storage:
  root: {root}
  segment_seconds: {segment_seconds}
  min_free_percent: 1
retention:
  days: 30
control:
  socket: {socket}
people:
{people}
cameras:
{cams}
{extra}"""


class Recorder:
    """The daemon recording the given cameras, with its storage and socket in a shared folder."""

    def __init__(self, cameras: list[dict[str, Any]], **kw: Any) -> None:
        for user in ACCOUNTS.values():
            ensure_account(user)
        self.dir = shared_tmpdir()
        self.root = self.dir / "storage"
        self.socket = self.dir / "control.sock"
        self.config = self.dir / "cameras.yaml"
        self.config.write_text(camera_map(self.root, self.socket, cameras, **kw))
        self.config.chmod(0o644)
        self.daemon = Daemon(self.config, self.socket)

    def start(self) -> Recorder:
        try:
            self.daemon.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cli(self, role: str, *argv: str) -> CliResult:
        """Run `nvr ARGV --socket S` as the account of `role`."""
        args = [*argv, "--socket", str(self.socket)]
        if role == "root":
            return run_cli(args)
        return run_as(ACCOUNTS[role], lambda: run_cli(args))

    def wait_for_segments(self, camera: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.cli("root", "recordings", "--camera", camera, "--json")
            if res.code == 0 and len(res.json()["segments"]) >= count:
                return res.json()["segments"]  # type: ignore[no-any-return]
            time.sleep(0.5)
        raise AssertionError(f"{camera}: fewer than {count} segments after {timeout}s\n"
                             + self.daemon.logs()[-4000:])

    def wait_for_state(self, state: str = "recording", cameras: list[str] | None = None,
                       timeout: float = 60) -> dict[str, Any]:
        """Poll `nvr status --json` until every camera named (all, by default) is in `state`;
        the status reply, or an AssertionError naming what it waited for and what it last saw."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            res = self.cli("root", "status", "--json")
            if res.code == 0:
                status: dict[str, Any] = res.json()
                seen = {c["id"]: c["state"] for c in status["cameras"]}
                wanted = cameras if cameras is not None else list(seen)
                if wanted and all(seen.get(c) == state for c in wanted):
                    return status
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"waited {timeout}s for cameras {cameras or 'all'} to be {state!r}; "
                    f"last seen: {seen or res.err}\n" + self.daemon.logs()[-4000:])
            time.sleep(0.5)

    def out_path(self, name: str) -> str:
        """A path the requester can create (the shared folder is sticky and world-writable)."""
        path = self.dir / "out" / name
        path.parent.mkdir(mode=0o1777, exist_ok=True)
        path.parent.chmod(0o1777)
        return str(path)

    def stop(self) -> None:
        self.daemon.stop()

    def cleanup(self) -> None:
        self.daemon.stop()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def cams_for(testcam: TestCamera) -> list[dict[str, Any]]:
    return [
        {"id": "lobby", "name": "Lobby", "area": "public_seating",
         "rtsp": testcam.url("h264-noaudio")},
        {"id": "senior-lounge", "name": "Senior Center lounge", "area": "senior_center_shared",
         "shared_with_senior_center": True, "rtsp": testcam.url("h264")},
    ]


__all__ = ["ACCOUNTS", "CliResult", "Recorder", "cams_for", "run_cli", "os"]


@contextlib.contextmanager
def recording_lobby(testcam: TestCamera, segments: int, timeout: float = 90) -> Iterator[Recorder]:
    """The usual cameras (cams_for) recording until the lobby has `segments` segments; cleaned
    up after (a module fixture's body: `with recording_lobby(testcam, 3) as r: yield r`)."""
    r = Recorder(cams_for(testcam)).start()
    try:
        r.wait_for_segments("lobby", segments, timeout=timeout)
        yield r
    finally:
        r.cleanup()
