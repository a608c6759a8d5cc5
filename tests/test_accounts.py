"""A test run leaves no nvrtest-* account behind, unless told to keep them."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import is_root, remove_accounts, run_as

ROOT = Path(__file__).resolve().parents[1]


def _probe_session(name: str, **env: str) -> None:
    """A separate pytest session (so its end is real) that uses only the account `name`."""
    base = {k: v for k, v in os.environ.items() if k != "NVR_KEEP_TEST_ACCOUNTS"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/accounts_probe.py"], cwd=ROOT, capture_output=True, text=True,
                          env={**base, "NVR_PROBE_ACCOUNT": name, **env}, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(not is_root(), reason="creates a unix account: needs root")
def test_session_end_removes_the_accounts_it_used_unless_kept() -> None:
    name = f"nvrtest-p{os.getpid()}"  # private: no other run uses it
    try:
        _probe_session(name, NVR_KEEP_TEST_ACCOUNTS="1")
        assert _exists(name), "NVR_KEEP_TEST_ACCOUNTS=1 should keep the account"
        _probe_session(name)
        assert not _exists(name), f"{name} left behind at the end of the session"
    finally:
        remove_accounts({name})


@pytest.mark.skipif(not is_root(), reason="runs as a real account: needs root")
def test_run_as_works_beside_a_thread_that_converted_video() -> None:
    """The test process itself forks for run_as; a thread left holding PyAV's per-thread
    scaler made every forked child hang before it ran (CI: run_as timed out in five tests)."""
    import threading

    import av

    ready, done = threading.Event(), threading.Event()

    def convert_and_stay() -> None:
        av.VideoFrame(1280, 720, "yuv420p").reformat(width=640, height=360, format="rgb24")
        ready.set()
        done.wait()

    holder = threading.Thread(target=convert_and_stay, daemon=True)
    holder.start()
    try:
        assert ready.wait(10)
        assert run_as("nvrtest-public", os.getuid, timeout=15) == pwd.getpwnam(
            "nvrtest-public").pw_uid
    finally:
        done.set()
        holder.join()
