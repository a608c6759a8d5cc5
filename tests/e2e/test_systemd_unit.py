"""systemd/nvr.service as installed: it verifies, it scores 2.0 or better in `systemd-analyze
security`, and the recorder still records under its restrictions (tools/sandbox.py applies them
where no systemd runs, as on CI containers)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import ACCOUNTS, camera_map, run_cli
from tests.support import NVR, ensure_account, is_root, remove_tree, run_as, shared_tmpdir

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "nvr.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def install_root(tmp: Path) -> Path:
    """A throw-away root holding the unit where it is installed, the programs it names, and the
    system's own units (verify follows the dependencies to sysinit.target and the like)."""
    root = tmp / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/nvr.service")
    for unit_dir in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(unit_dir).is_dir():
            shutil.copytree(unit_dir, root / "usr/lib/systemd/system", symlinks=True,
                            dirs_exist_ok=True)
            break
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "bin").symlink_to("usr/bin")
    shutil.copy("/usr/bin/kill", root / "usr/bin/kill")
    nvr = root / "opt/nvr/.venv/bin/nvr"
    nvr.parent.mkdir(parents=True)
    nvr.write_text("#!/bin/sh\n")
    nvr.chmod(0o755)
    return root


@needs_analyze
def test_unit_verifies_and_scores_ok(tmp_path: Path) -> None:
    root = install_root(tmp_path)
    assert ANALYZE is not None
    verify = subprocess.run([ANALYZE, "verify", f"--root={root}", "nvr.service"],
                            capture_output=True, text=True)
    # verify exits 0 even for an unknown key, so any complaint at all fails the test.
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), (
        verify.stdout + verify.stderr)
    security = subprocess.run([ANALYZE, "security", "--offline=true", f"--root={root}",
                               "nvr.service"], capture_output=True, text=True)
    found = re.search(r"Overall exposure level for nvr\.service: (\d+\.\d+)", security.stdout)
    assert found, security.stdout + security.stderr
    score = float(found.group(1))
    print(f"systemd-analyze security nvr.service: {score}")
    assert score <= 2.0, security.stdout


def test_sandbox_refuses_what_the_unit_forbids(tmp_path: Path) -> None:
    """The stand-in for systemd is itself checked: a W+X mapping, a nice() and a write outside
    the storage folder are refused under it (else the recording test below proves nothing)."""
    if not is_root():
        pytest.skip("the sandbox needs root to drop to the service account")
    ensure_account("nvrtest-nvr")
    rw = shared_tmpdir()
    try:
        probe = (
            "import mmap, os\n"
            "for name, act in [('wx', lambda: mmap.mmap(-1, 4096, prot=7)),\n"
            "                  ('nice', lambda: os.nice(-1)),\n"
            "                  ('etc', lambda: open('/etc/nvr-sandbox-probe', 'w'))]:\n"
            "    try:\n"
            "        act(); print(name, 'allowed')\n"
            "    except OSError as e:\n"
            "        print(name, 'refused', e.errno)\n"
            f"open('{rw}/ok', 'w').write('x'); print('storage writable')\n"
        )
        out = subprocess.run(
            ["unshare", "-m", "--propagation", "private", sys.executable,
             str(REPO / "tools/sandbox.py"), "--unit", str(UNIT), "--user", "nvrtest-nvr",
             "--rw", str(rw), "--", sys.executable, "-c", probe],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n")[:4] == [
            "wx refused 13", "nice refused 1", "etc refused 30", "storage writable"], out.stdout
    finally:
        remove_tree(rw)


@pytest.mark.slow
def test_recorder_records_under_the_units_restrictions(testcam: TestCamera) -> None:
    if not is_root():
        pytest.skip("the sandbox needs root to drop to the service account")
    ensure_account("nvrtest-nvr")
    tmp = shared_tmpdir()
    socket_path = tmp / "control.sock"
    config = tmp / "nvr.yaml"
    config.write_text(camera_map(tmp / "storage", socket_path, [
        {"id": "lobby", "name": "Lobby", "area": "public_seating",
         "rtsp": testcam.url("h264-noaudio")},
        {"id": "hevc", "name": "HEVC", "area": "stacks", "rtsp": testcam.url("h265")}]))
    config.chmod(0o644)
    log = (tmp / "daemon.log").open("ab")
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", sys.executable,
         str(REPO / "tools/sandbox.py"), "--unit", str(UNIT), "--user", "nvrtest-nvr",
         "--rw", str(tmp), "--", NVR, "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    log.close()
    try:
        deadline = time.monotonic() + 90
        segments: list[Path] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp / "daemon.log").read_text()
            res = run_cli(["recordings", "--camera", "hevc", "--json", "--socket",
                           str(socket_path)])
            if res.code == 0 and len(res.json()["segments"]) >= 2:
                segments = [Path(s["path"]) for s in res.json()["segments"]]
                break
            time.sleep(0.5)
        assert segments, "no segment indexed under the sandbox:\n" + (
            tmp / "daemon.log").read_text()[-3000:]
        for cam in ("lobby", "hevc"):
            for seg in sorted((tmp / "storage/segments" / cam).glob("*.mp4"))[:1]:
                with av.open(str(seg)) as c:
                    frames = sum(1 for _ in c.decode(video=0))
                assert frames > 0, seg
        assert "sandbox: user=nvrtest-nvr" in (tmp / "daemon.log").read_text()
        # An export (clip written moov first, Ed25519 signing) works under the same restrictions.
        res = run_cli(["recordings", "--camera", "hevc", "--json", "--socket", str(socket_path)])
        seg = res.json()["segments"][0]
        out = tmp / "out"
        out.mkdir(mode=0o1777)
        out.chmod(0o1777)
        clip = str(out / "clip.mp4")
        args = ["export", "--camera", "hevc", "--start", seg["start"], "--end", seg["end"],
                "--reason", "sandbox check", "--out", clip, "--socket", str(socket_path)]
        ensure_account(ACCOUNTS["director"])
        made = run_as(ACCOUNTS["director"], lambda: run_cli(args))
        assert made.code == 0, made.err + (tmp / "daemon.log").read_text()[-2000:]
        # The published key sits in this test's world-writable folder, which verify rightly
        # does not trust: check against the fingerprint the recorder gives.
        shown = run_cli(["key", "show", "--json", "--socket", str(socket_path)])
        assert shown.code == 0, shown.err
        checked = run_cli(["export", "verify", clip, "--key", shown.json()["fingerprint"]])
        assert checked.code == 0, checked.out
        logged = (tmp / "daemon.log").read_text()
        assert '"level": "error"' not in logged and "Operation not permitted" not in logged, \
            logged[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp / "daemon.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_tree(tmp)
