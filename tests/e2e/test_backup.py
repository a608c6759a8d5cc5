"""`nvr backup` while four cameras record, then `nvr restore` into a new storage root: the
restored recorder lists the old footage, its audit chain verifies, and a clip exported before
the backup verifies against the restored signing key."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder, camera_map, run_cli
from tests.support import Daemon, remove_tree, shared_tmpdir


def test_backup_while_recording_then_restore_into_a_new_root(testcam: TestCamera) -> None:
    cams = [{"id": f"cam{i}", "name": f"Camera {i}", "area": "stacks", "rtsp": testcam.url(m)}
            for i, m in enumerate(("h264-noaudio", "h264", "h265", "h264-noaudio"))]
    rec = Recorder(cams).start()
    new_dir = shared_tmpdir()
    restored: Daemon | None = None
    try:
        segs = {c["id"]: rec.wait_for_segments(c["id"], 2) for c in cams}
        clip = rec.out_path("before-backup.mp4")
        res = rec.cli("director", "export", "--camera", "cam0", "--start", segs["cam0"][0]["start"],
                      "--end", segs["cam0"][1]["end"], "--reason", "incident 7", "--out", clip)
        assert res.code == 0, res.err

        out = rec.dir / "backup-1"
        res = run_cli(["backup", "--config", str(rec.config), "--out", str(out)])
        assert res.code == 0, res.err
        assert "footage stays in" in res.out
        manifest = json.loads((out / "manifest.json").read_text())
        assert set(manifest["files"]) >= {"index.db", "camera-map.yaml", "audit-checkpoint",
                                          "keys/export-ed25519.pem", "keys/export-ed25519.pub.pem"}
        assert manifest["audit_checkpoint"]["seq"] >= 1  # the export above was audited
        assert (out.stat().st_mode & 0o777) == 0o700
        # Recording went on during the backup: the live index has moved past the copy.
        rec.wait_for_segments("cam3", manifest["index"]["segments"] // 4 + 3)
        with sqlite3.connect(out / "index.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        again = run_cli(["backup", "--config", str(rec.config), "--out", str(out)])
        assert again.code == 65 and "not empty" in again.err
        rec.stop()

        # A new box: a map naming a fresh storage root, the footage copied over separately.
        new_root, new_sock = new_dir / "storage", new_dir / "control.sock"
        new_map = new_dir / "nvr.yaml"
        new_map.write_text(camera_map(new_root, new_sock, cams))
        new_map.chmod(0o644)
        new_root.mkdir(mode=0o700)
        shutil.copytree(rec.root / "segments", new_root / "segments")  # cp -a OLD/segments NEW/
        res = run_cli(["restore", "--from", str(out), "--config", str(new_map)])
        assert res.code == 0, res.err
        result = json.loads(res.out)
        assert result["storage_root_moved"] and result["segments_missing_on_disk"] == 0
        again = run_cli(["restore", "--from", str(out), "--config", str(new_map)])
        assert again.code == 65 and "fresh storage root" in again.err

        restored = Daemon(new_map, new_sock).start()
        listed = run_cli(["recordings", "--camera", "cam0", "--json", "--socket", str(new_sock)])
        assert listed.code == 0, listed.err
        paths = [s["path"] for s in listed.json()["segments"]]
        assert segs["cam0"][0]["start"] in [s["start"] for s in listed.json()["segments"]]
        assert all(p.startswith(str(new_root) + "/") for p in paths), paths[:3]
        verify = run_cli(["audit", "verify", "--socket", str(new_sock)])
        assert verify.code == 0, verify.out + verify.err
        key = new_root / "keys" / "export-ed25519.pub.pem"
        checked = run_cli(["export", "verify", clip, "--key", str(key)])
        assert checked.code == 0 and "VERIFIED" in checked.out, checked.out
        # The same clip against some other key is refused: the --key check can fail.
        other = run_cli(["export", "verify", clip, "--key", "0" * 64])
        assert other.code == 65 and "NOT by the trusted key" in other.out, other.out
    finally:
        if restored is not None:
            restored.stop()
        rec.cleanup()
        remove_tree(new_dir)


def test_restore_refuses_a_changed_backup(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": "nvr-backup/1", "storage_root": "/x", "audit_checkpoint": {},
         "files": {"index.db": {"sha256": "0" * 64, "bytes": 1}}}))
    (tmp_path / "index.db").write_bytes(b"x")
    cfg = tmp_path / "nvr.yaml"
    cfg.write_text(camera_map(tmp_path / "root", tmp_path / "s.sock", []))
    res = run_cli(["restore", "--from", str(tmp_path), "--config", str(cfg)])
    assert res.code == 65 and "changed since the backup" in res.err
