"""`nvr backup --config FILE --out DIR` and `nvr restore --from DIR --config FILE`.

A backup holds what no footage can be found or proven without, and nothing else:
  index.db            the index (segments, gaps, holds, grants, requests, the audit log),
                      copied with SQLite's online backup API: a consistent snapshot taken in
                      one read transaction, safe while the recorder writes (WAL);
  keys/               the export signing key (private: the backup folder is owner-only);
  camera-map.yaml     the camera map the recorder runs with (camera password files are not
                      copied: keep them with /etc/nvr);
  audit-checkpoint    the audit chain's head (seq and hash) in the copy, also in the manifest:
                      a later `nvr audit verify` on a restored index must reach it;
  manifest.json       what was copied, with sha256 and sizes, from which storage root.
Footage is not copied: it is large and already on disk. A restore points the index at the
footage where it is, or at a new storage root whose segments/ folder was copied separately
(`cp -a OLD/segments NEW/`), before the recorder starts (README "Install on the recorder box").

Offline and read-only on the live storage: nothing the daemon owns is written, so it is safe
while the daemon runs (one writer per resource).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

from nvr.config.loader import ConfigError, load_camera_map
from nvr.errors import EX_DATAERR, EX_OK, EX_UNAVAILABLE
from nvr.storage.fsck import daemon_answers
from nvr.timeutil import now_us, to_iso

FORMAT = "nvr-backup/1"
INDEX = "index.db"
MAP = "camera-map.yaml"
CHECKPOINT = "audit-checkpoint"
MANIFEST = "manifest.json"


class BackupError(Exception):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_index(src: Path, dst: Path) -> None:
    """SQLite's online backup: every page in one step, so one read transaction, one snapshot."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            ok = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
    finally:
        source.close()
    if ok != "ok":
        raise BackupError(f"the copied index fails its integrity check: {ok}")


def _audit_head(db_path: Path) -> dict[str, Any]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        segments, footage = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segments").fetchone()
        version = db.execute("PRAGMA user_version").fetchone()[0]
    return {"seq": row[0] if row else 0, "hash": row[1] if row else "0" * 64,
            "segments": segments, "footage_bytes": footage, "schema_version": version}


def backup(config_path: Path, out: Path) -> dict[str, Any]:
    config = load_camera_map(config_path)
    root = config.storage.root
    index = root / INDEX
    if not index.is_file():
        raise BackupError(f"no index at {index}; nothing recorded yet, nothing to back up")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    if any(out.iterdir()):
        raise BackupError(f"{out} is not empty; give a new folder for each backup")
    copy_index(index, out / INDEX)
    shutil.copyfile(config_path, out / MAP)
    keys = root / "keys"
    if keys.is_dir():
        shutil.copytree(keys, out / "keys")
    facts = _audit_head(out / INDEX)
    checkpoint = {"seq": facts["seq"], "hash": facts["hash"]}
    (out / CHECKPOINT).write_text(json.dumps(checkpoint) + "\n")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    for p in files:
        os.chmod(p, 0o600)
        _fsync(p)
    manifest = {
        "format": FORMAT,
        "created": to_iso(now_us()),
        "host": socket.gethostname(),
        "storage_root": str(root),
        "camera_map": str(config_path.resolve()),
        "index": {k: facts[k] for k in ("schema_version", "segments", "footage_bytes")},
        "audit_checkpoint": checkpoint,
        "files": {str(p.relative_to(out)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
                  for p in files},
        "footage": f"not copied: {root / 'segments'} (copy it separately with cp -a)",
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(out / MANIFEST, 0o600)
    _fsync(out / MANIFEST)
    _fsync(out)
    return manifest


def _check(src: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{src} is not an nvr backup: {MANIFEST} unreadable ({e})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src}: unknown backup format {manifest.get('format')!r}")
    for name, want in manifest["files"].items():
        path = src / name
        if not path.is_file() or _sha256(path) != want["sha256"]:
            raise BackupError(f"{path} is missing or changed since the backup (sha256 differs)")
    return manifest


def restore(src: Path, config_path: Path) -> dict[str, Any]:
    """Into the (empty) storage.root of the map at config_path. Segment paths are moved from the
    backed-up root to this one; the footage itself must be there before the recorder starts."""
    manifest = _check(src)
    config = load_camera_map(config_path)
    root = config.storage.root
    if daemon_answers(config.control.socket):
        raise BackupError(f"a recorder answers on {config.control.socket}; stop it first")
    if (root / INDEX).exists():
        raise BackupError(f"{root / INDEX} exists; restore only into a fresh storage root "
                          "(move the old one aside first)")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = root.stat()
    dst = root / INDEX
    tmp = root / (INDEX + ".restoring")
    shutil.copyfile(src / INDEX, tmp)
    old = manifest["storage_root"].rstrip("/")
    new = str(root).rstrip("/")
    if old != new:
        with sqlite3.connect(tmp) as db:
            db.execute("UPDATE segments SET path = ? || substr(path, ?) WHERE path LIKE ? ESCAPE '\\'",
                       (new, len(old) + 1, _like_prefix(old) + "/%"))
    _fsync(tmp)
    if (src / "keys").is_dir():
        shutil.copytree(src / "keys", root / "keys", dirs_exist_ok=True)
    os.replace(tmp, dst)
    _fsync(root)
    if os.geteuid() == 0:
        # What the restore wrote belongs to the recorder's account: the root's owner (made by
        # tmpfiles.d or StateDirectory=), even though root ran the restore.
        keys = root / "keys"
        written = [dst, *([keys, *keys.rglob("*")] if keys.is_dir() else [])]
        for p in written:
            os.chown(p, st.st_uid, st.st_gid)
    with sqlite3.connect(f"file:{dst}?mode=ro", uri=True) as db:
        paths = [r[0] for r in db.execute("SELECT path FROM segments")]
    missing = sum(1 for p in paths if not os.path.exists(p))
    result = {"restored": str(dst), "from": str(src), "segments": len(paths),
              "segments_missing_on_disk": missing, "audit_checkpoint": manifest["audit_checkpoint"],
              "storage_root_moved": old != new}
    return result


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def main_backup(config_path: str, out: str) -> int:
    try:
        manifest = backup(Path(config_path), Path(out))
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return EX_DATAERR
    except (BackupError, OSError, sqlite3.Error) as e:
        sys.stderr.write(f"nvr: backup failed: {e}\n")
        return EX_UNAVAILABLE if isinstance(e, OSError) else EX_DATAERR
    idx = manifest["index"]
    sys.stdout.write(f"backed up {idx['segments']} segments' index, the signing key and the camera "
                     f"map to {out} (audit seq {manifest['audit_checkpoint']['seq']}); footage "
                     f"stays in {manifest['storage_root']}/segments\n")
    return EX_OK


def main_restore(src: str, config_path: str) -> int:
    try:
        result = restore(Path(src), Path(config_path))
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return EX_DATAERR
    except (BackupError, OSError, sqlite3.Error) as e:
        sys.stderr.write(f"nvr: restore failed: {e}\n")
        return EX_UNAVAILABLE if isinstance(e, OSError) else EX_DATAERR
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if result["segments_missing_on_disk"]:
        sys.stderr.write(f"nvr: {result['segments_missing_on_disk']} of {result['segments']} "
                         "indexed segments are not on disk yet: copy the footage into "
                         f"{Path(result['restored']).parent}/segments before starting the "
                         "recorder, or they will be recorded as missing\n")
    return EX_OK
