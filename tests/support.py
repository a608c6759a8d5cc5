"""Helpers for tests that run the real daemon and call it as real unix accounts."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
NVR = str(Path(sys.executable).parent / "nvr")
ACCOUNT_PREFIX = "nvrtest-"
ACCOUNTS_LOCK = "/run/lock/nvrtest-accounts.lock" if os.path.isdir("/run/lock") else "/tmp/nvrtest-accounts.lock"


def is_root() -> bool:
    return os.geteuid() == 0


# Accounts this pytest session used: removed when it ends (tests/conftest.py) unless
# NVR_KEEP_TEST_ACCOUNTS=1, e.g. while other test runs on the machine share them.
USED_ACCOUNTS: set[str] = set()


# Each live test process lists the accounts it uses in a file of its own here, so a process
# that ends removes only the accounts no other live process (an xdist worker, another run on
# the machine) still uses.
SESSIONS_DIR = Path(ACCOUNTS_LOCK).parent / "nvrtest-sessions"


def _register_use(name: str) -> None:
    if name in USED_ACCOUNTS:
        return
    USED_ACCOUNTS.add(name)
    SESSIONS_DIR.mkdir(mode=0o700, exist_ok=True)
    with (SESSIONS_DIR / str(os.getpid())).open("a") as f:
        f.write(name + "\n")


def accounts_in_use_elsewhere() -> set[str]:
    """Accounts listed by other test processes that are still alive."""
    names: set[str] = set()
    for entry in SESSIONS_DIR.glob("*") if SESSIONS_DIR.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            os.kill(int(entry.name), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)  # a process that died without cleaning up
            continue
        except PermissionError:
            pass
        names.update(entry.read_text().split())
    return names


def release_accounts() -> list[str]:
    """At the end of this process: remove the accounts it used that no other live test process
    uses; the ones that could not be removed, with why."""
    with open(ACCOUNTS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        (SESSIONS_DIR / str(os.getpid())).unlink(missing_ok=True)
        unused = set(USED_ACCOUNTS) - accounts_in_use_elsewhere()
    return remove_accounts(unused)


def ensure_account(name: str) -> pwd.struct_passwd:
    """A real system account for role tests (CI runs as root)."""
    if name.startswith(ACCOUNT_PREFIX) and is_root():
        with open(ACCOUNTS_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _register_use(name)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # Test processes run side by side (pytest-xdist workers, two checkouts on one machine):
    # one lock makes "look up, else create" one step, so two never race to useradd one name.
    with open(ACCOUNTS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                check=True, capture_output=True,
            )
            return pwd.getpwnam(name)


def remove_accounts(names: set[str]) -> list[str]:
    """userdel each of our test accounts; the ones that could not be removed, with why."""
    failed = []
    with open(ACCOUNTS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in sorted(names):
            if not name.startswith(ACCOUNT_PREFIX):
                continue
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            proc = subprocess.run(["userdel", name], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                failed.append(f"{name}: {proc.stderr.strip()}")
    return failed


def _drop_thread_caches_freed_after_fork() -> None:
    """os.fork() runs CPython's after-fork clean-up in the child, which frees the thread-local
    objects of every other thread. PyAV (>= 18.1.1) keeps one FFmpeg scaler per thread that
    has converted a frame, and freeing one waits for its worker threads, which the child does
    not have: the child hangs before it runs a line (seen: run_as timing out after a test left
    such a thread behind). Freeing the caches here, in the parent where the worker threads
    still live, leaves the child nothing to wait for; PyAV makes a new scaler when next asked."""
    frame_module = sys.modules.get("av.video.frame")
    if frame_module is not None and hasattr(frame_module, "_thread_local"):
        vars(frame_module)["_thread_local"] = threading.local()  # the old one, its scalers go


def run_as(user: str, fn: Callable[[], T], timeout: float = 60) -> T:
    """Run fn in a forked child that has dropped to `user` (no exec: the venv's interpreter may
    live where other accounts cannot execute it). Returns fn's value or re-raises its error."""
    entry = ensure_account(user)
    _drop_thread_caches_freed_after_fork()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        try:
            os.setgroups([])
            os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
            os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
            os.environ["USER"] = user
            payload: Any = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            payload = ("err", exc, traceback.format_exc())
        try:
            data = pickle.dumps(payload)
        except Exception:  # noqa: BLE001
            data = pickle.dumps(("err", RuntimeError(repr(payload)), ""))
        with os.fdopen(wfd, "wb") as w:
            w.write(data)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        ready, _, _ = select.select([r], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"run_as({user}) took longer than {timeout}s")
        data = r.read()
    os.waitpid(pid, 0)
    kind, *rest = pickle.loads(data)
    if kind == "ok":
        return rest[0]  # type: ignore[no-any-return]
    raise rest[0]


def shared_tmpdir(prefix: str = "nvrtest-") -> Path:
    """A folder every account can reach and write in (sticky, like /tmp)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o1777)
    return path


class Daemon:
    """`nvr run --config FILE` as a real child process."""

    def __init__(self, config_path: Path, socket_path: Path) -> None:
        self.config_path = config_path
        self.socket_path = socket_path
        self.log_path = config_path.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Daemon:  # a deadline, not a wait: generous
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([NVR, "run", "--config", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            if _answers(self.socket_path):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"daemon did not open its socket:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def raw_exchange(path: Path, data: bytes, timeout: float = 5) -> list[dict[str, Any]]:
    """Send raw bytes to the control socket; every JSON line the daemon answers, in order."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early (too long); the reply, if any, is still readable
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return [json.loads(line) for line in out.splitlines()]
