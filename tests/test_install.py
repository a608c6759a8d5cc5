"""README "Install on the recorder box", run as far as it can without systemd: tools/install.sh
into a throw-away root, the map edits the README asks for, the recorder started under the unit's
restrictions, `nvr status` showing the cameras, an upgrade that keeps the map, and uninstall."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import run_cli
from tests.support import ensure_account, is_root, remove_tree, run_as, shared_tmpdir

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.skipif(not is_root(), reason="installing needs root"),
    pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers"),
]


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "tools/install.sh"), "--root", str(root), "--no-setup",
                           *extra], capture_output=True, text=True, timeout=120)


def test_install_edit_run_upgrade_uninstall() -> None:
    t = shared_tmpdir()
    proc: subprocess.Popen[bytes] | None = None
    try:
        res = install(t)
        assert res.returncode == 0, res.stdout + res.stderr
        # The account and folders (sysusers.d, tmpfiles.d).
        passwd = {line.split(":")[0]: line.split(":") for line in
                  (t / "etc/passwd").read_text().splitlines()}
        assert passwd["nvr"][6] == "/usr/sbin/nologin"
        gid = int(passwd["nvr"][3])
        etc = (t / "etc/nvr").stat()
        assert stat.S_IMODE(etc.st_mode) == 0o750 and etc.st_gid == gid
        assert stat.S_IMODE((t / "var/lib/nvr").stat().st_mode) == 0o700
        # The unit, the command on PATH, the example map.
        unit = (t / "etc/systemd/system/nvr.service").read_text()
        assert unit == (REPO / "systemd/nvr.service").read_text().replace("/opt/nvr", str(REPO))
        assert "--config /etc/nvr/nvr.yaml" in unit
        link = t / "usr/local/bin/nvr"
        assert os.readlink(link) == str(REPO / ".venv/bin/nvr")
        nvr_map = t / "etc/nvr/nvr.yaml"
        assert nvr_map.read_text() == (REPO / "config/example.yaml").read_text()
        # `man nvr` renders the installed page; Tab completion knows the commands.
        page = t / "usr/local/share/man/man1/nvr.1"
        shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                               env={**os.environ, "MANPAGER": "cat", "COLUMNS": "80"})
        assert shown.returncode == 0 and "export verify" in shown.stdout, shown.stderr
        completion = (t / "usr/local/share/bash-completion/completions/nvr").read_text()
        assert "complete" in completion and "retention" in completion
        # The first check fails on the missing password file, exactly as the README shows.
        line = next(x for x in res.stderr.splitlines() if "password_file" in x)
        assert line.replace(str(t), "") in (REPO / "README.md").read_text(), line

        # README step 2: people (yourself as it), cameras, password files.
        ensure_account("nvrtest-it")
        text = nvr_map.read_text().replace("  - {user: itstaff, role: it}",
                                        "  - {user: nvrtest-it, role: it}")
        nvr_map.write_text(text)
        secret = t / "etc/nvr/parking-lot-cam.pass"
        subprocess.run(["install", "-m", "0640", "-o", "0", "-g", str(gid), "/dev/null",
                        str(secret)], check=True)
        secret.write_text("s3cret\n")
        check = subprocess.run([str(link), "check-config", str(nvr_map)], capture_output=True,
                               text=True)
        assert check.returncode == 0 and "ok (8 cameras, 6 people)" in check.stdout, check.stderr

        # Upgrade: install again; the edited map stays.
        again = install(t)
        assert again.returncode == 0 and "kept as it is" in again.stdout, again.stderr
        assert nvr_map.read_text() == text

        # Start the recorder as systemd would (the unit's restrictions, its own account),
        # with storage and socket inside the throw-away root; then `nvr status`.
        ensure_account("nvrtest-nvr")
        run_map = t / "etc/nvr/run.yaml"
        run_map.write_text(text.replace("root: /var/lib/nvr", f"root: {t}/var/lib/nvr")
                           .replace("socket: /run/nvr/control.sock", f"socket: {t}/run/control.sock"))
        shutil.chown(t / "var/lib/nvr", "nvrtest-nvr", "nvrtest-nvr")
        (t / "run").mkdir(mode=0o1777)
        (t / "run").chmod(0o1777)
        # The host has no `nvr` group (only the throw-away root has): let the stand-in account
        # read the map and the password file the way the group would.
        (t / "etc/nvr").chmod(0o755)
        for p in (run_map, secret):
            p.chmod(0o644)
        log = (t / "daemon.log").open("ab")
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", sys.executable,
             str(REPO / "tools/sandbox.py"), "--unit", str(t / "etc/systemd/system/nvr.service"),
             "--user", "nvrtest-nvr", "--rw", str(t / "var/lib/nvr"), "--rw", str(t / "run"),
             "--", str(link), "run", "--config", str(run_map)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        sock = str(t / "run/control.sock")
        while True:
            assert proc.poll() is None, (t / "daemon.log").read_text()[-3000:]
            status = run_as("nvrtest-it", lambda: run_cli(["status", "--socket", sock, "--json"]))
            if status.code == 0:
                break
            assert time.monotonic() < deadline, status.err
            time.sleep(0.3)
        ids = [c["id"] for c in status.json()["cameras"]]
        assert ids == re.findall(r"^  - id: (\S+)", text, flags=re.M) and len(ids) == 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

        # Uninstall: the service goes, the map and the footage stay.
        gone = install(t, "--uninstall")
        assert gone.returncode == 0, gone.stderr
        assert not (t / "etc/systemd/system/nvr.service").exists() and not link.is_symlink()
        assert not page.exists()
        assert nvr_map.exists() and (t / "var/lib/nvr/index.db").exists()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_tree(t)


def test_a_clone_the_service_cannot_see_is_refused() -> None:
    """Issue 28: the unit has ProtectHome=yes and PrivateTmp=yes; a clone under /tmp or /home
    would install a service that cannot find its own code. install.sh refuses, naming
    /opt/nvr, before it changes anything."""
    for parent in (Path("/tmp"), Path("/home")):
        if not parent.is_dir():
            continue
        clone = Path(shutil.copytree(REPO / "tools", Path(
            subprocess.run(["mktemp", "-d", "-p", str(parent)], capture_output=True,
                           text=True, check=True).stdout.strip()) / "tools"))  # fmt: skip
        try:
            res = subprocess.run([str(clone / "install.sh"), "--no-setup"], capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
            assert res.returncode == 78, res.stdout + res.stderr
            assert "which the service cannot see" in res.stderr and "/opt/nvr" in res.stderr
            assert res.stdout == ""  # nothing was done
        finally:
            shutil.rmtree(clone.parent)


def test_without_systemd_install_says_where_it_stopped() -> None:
    """Issue 28: on a box (or container) without systemd as PID 1, install.sh does all but
    systemctl, says so and what to do instead, and succeeds."""
    t = shared_tmpdir()
    try:
        res = subprocess.run([str(REPO / "tools/install.sh"), "--root", str(t), "--no-setup"],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NVR_INSTALL_START": "1",
                                  "NVR_SYSTEMD_DIR": str(t / "no-systemd-here")})  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert "stopped before systemctl: systemd is not running here" in res.stdout
        assert "runuser -u nvr -- nvr run --config /etc/nvr/nvr.yaml" in res.stdout
        assert (t / "etc/systemd/system/nvr.service").exists()
        assert "--no-start" in (REPO / "README.md").read_text()
    finally:
        remove_tree(t)
