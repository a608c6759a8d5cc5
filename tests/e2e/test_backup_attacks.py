"""`nvr backup` and `nvr restore` as another local account would attack them (issue 27).

Root runs both commands over folders other accounts can touch: a backup folder made beforehand
in /tmp, a storage root that belongs to the recorder's account, a backup that comes back from
elsewhere. Each test plays the attacker with a real nvrtest-* account (or plants what such an
account could) and checks what a user would: the command refuses with exit 65 and one line
naming the path, nothing is written where the attacker can read it, and no file outside the
root changes owner or content. Link targets are files this test makes, never real system files.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nvr.export.manifest import sign_manifest
from nvr.export.signing import ALGORITHM, SigningKey
from tests.camserver import TestCamera
from tests.e2e.harness import ACCOUNTS, CliResult, Recorder, camera_map, run_cli
from tests.support import ensure_account, remove_tree, run_as, shared_tmpdir

ATTACKER = ACCOUNTS["public"]  # listed nowhere: any local account
PRIVATE = "keys/export-ed25519.pem"
PUBLIC = "keys/export-ed25519.pub.pem"


@dataclass
class Site:
    rec: Recorder
    backup: Path  # a good backup made by root, never changed by a test: tests copy it
    fingerprint: str
    cams: list[dict[str, str]]


@pytest.fixture(scope="module")
def site(testcam: TestCamera) -> Iterator[Site]:
    cams = [{"id": "cam0", "name": "Camera 0", "area": "stacks", "rtsp": testcam.url("h264")}]
    rec = Recorder(cams).start()
    try:
        segs = rec.wait_for_segments("cam0", 2)
        res = rec.cli("director", "export", "--camera", "cam0", "--start", segs[0]["start"],
                      "--end", segs[1]["end"], "--reason", "incident 9",
                      "--out", rec.out_path("clip.mp4"))
        assert res.code == 0, res.err
        rec.stop()  # the stop writes an audit checkpoint: the backup carries signed ones
        good = rec.dir / "good-backup"
        res = run_cli(["backup", "--config", str(rec.config), "--out", str(good)])
        assert res.code == 0, res.err
        fp = json.loads((good / "manifest.json").read_text())["key"]["fingerprint"]
        assert f"signed by key {fp}" in res.out
        yield Site(rec, good, fp, cams)
    finally:
        rec.cleanup()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A sticky, world-writable folder (like /tmp) for this test, with the attacker's targets."""
    path = shared_tmpdir()
    ensure_account(ATTACKER)
    try:
        yield path
    finally:
        remove_tree(path)


@dataclass(frozen=True)
class Snapshot:
    uid: int
    gid: int
    mode: int
    data: bytes


def victims(scratch: Path) -> dict[Path, Snapshot | None]:
    """Files outside any storage root, owned by root and private, that links will point at."""
    vdir = scratch / "victim-dir"
    vdir.mkdir(mode=0o700)
    (vdir / "secret.txt").write_text("root's secret\n")
    (scratch / "victim.txt").write_text("root's other secret\n")
    for p in (vdir / "secret.txt", scratch / "victim.txt"):
        p.chmod(0o600)
    return {p: None for p in (vdir, vdir / "secret.txt", scratch / "victim.txt")}


def snapshot(paths: dict[Path, Snapshot | None]) -> dict[Path, Snapshot | None]:
    out: dict[Path, Snapshot | None] = {}
    for p in paths:
        st = p.stat()
        out[p] = Snapshot(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                          b"" if p.is_dir() else p.read_bytes())
    return out


def as_attacker(fn: Callable[[], object]) -> None:
    run_as(ATTACKER, fn)


def restore(src: Path, config: Path, *extra: str) -> CliResult:
    return run_cli(["restore", "--from", str(src), "--config", str(config), *extra])


def new_box(site: Site, scratch: Path, name: str = "box") -> tuple[Path, Path]:
    """(camera map, storage root) of a recorder yet to be restored; the root not made yet."""
    box = scratch / name
    box.mkdir(mode=0o755)
    root = box / "storage"
    cfg = box / "nvr.yaml"
    cfg.write_text(camera_map(root, box / "control.sock", site.cams))
    return cfg, root


def copy_backup(site: Site, dst: Path) -> Path:
    shutil.copytree(site.backup, dst)  # as root: root's files, 0600 in 0700 folders
    return dst


def resign(backup: Path, key: Ed25519PrivateKey | None = None,
           edit: Callable[[Path], None] | None = None) -> None:
    """What an attacker holding a key does: change files, fix the manifest's hashes, sign.
    With `key`, the backup's key is swapped for it first."""
    manifest = json.loads((backup / "manifest.json").read_bytes())
    if key is not None:
        (backup / PRIVATE).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        signer = SigningKey(key, backup / PRIVATE)
        (backup / PUBLIC).write_text(signer.public_pem())
    else:
        private = serialization.load_pem_private_key((backup / PRIVATE).read_bytes(), None)
        assert isinstance(private, Ed25519PrivateKey)
        signer = SigningKey(private, backup / PRIVATE)
    if edit is not None:
        edit(backup)
    for name in manifest["files"]:
        data = (backup / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest["key"] = {"algorithm": ALGORITHM, "fingerprint": signer.fingerprint(),
                       "public_key_pem": signer.public_pem()}
    body, sig = sign_manifest(manifest, signer)
    (backup / "manifest.json").write_bytes(body)
    (backup / "manifest.sig").write_bytes(sig)


def assert_not_restored(root: Path) -> None:
    """No index, and no temp copy of one (a link the attacker planted under that name stays)."""
    tmp = root / "index.db.restoring"
    assert not os.path.lexists(root / "index.db")
    assert not os.path.lexists(tmp) or tmp.is_symlink()


# ---- backup ------------------------------------------------------------------------------

def test_backup_refuses_a_folder_another_account_made(site: Site, scratch: Path) -> None:
    out = scratch / "nvr-backup-2026-12-07"
    as_attacker(lambda: (os.mkdir(out), os.chmod(out, 0o777)))
    res = run_cli(["backup", "--config", str(site.rec.config), "--out", str(out)])
    assert res.code == 65, res.err
    assert "already exists" in res.err and "name a new folder" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert os.listdir(out) == []  # nothing written where the attacker could read it
    # Under a folder the attacker owns, it could swap the new folder for its own: refused too.
    theirs = scratch / "theirs"
    as_attacker(lambda: theirs.mkdir(mode=0o755))
    res = run_cli(["backup", "--config", str(site.rec.config), "--out", str(theirs / "b")])
    assert res.code == 65 and f"{theirs} belongs to uid" in res.err, res.err
    assert not (theirs / "b").exists()


def test_an_account_polling_the_backup_folder_reads_nothing(site: Site, scratch: Path) -> None:
    """An attacker loops over the would-be backup's files while root backs up, and once more
    after: it never opens one nor lists the folder (0700 from mkdir, files 0600 from open)."""
    out = scratch / "nvr-backup-polled"
    names = ["", "index.db", "camera-map.yaml", "manifest.json", "audit-checkpoints.jsonl",
             "keys", PRIVATE, PUBLIC]
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()

    def poll() -> dict[str, int]:
        got = {"passes": 0, "saw_folder": 0, "read": 0, "listed": 0}
        os.write(ready_w, b"1")
        while True:
            done = bool(select.select([stop_r], [], [], 0)[0])
            got["saw_folder"] += out.is_dir()
            for n in names:
                p = out / n
                try:
                    if n in ("", "keys"):
                        os.listdir(p)
                        got["listed"] += 1
                    else:
                        with open(p, "rb") as f:
                            f.read(1)
                        got["read"] += 1
                except OSError:
                    pass
            got["passes"] += 1
            if done:
                return got

    result: list[dict[str, int]] = []
    attacker = threading.Thread(target=lambda: result.append(run_as(ATTACKER, poll)))
    attacker.start()
    try:
        os.read(ready_r, 1)  # the attacker is looping
        res = run_cli(["backup", "--config", str(site.rec.config), "--out", str(out)])
    finally:
        os.write(stop_w, b"1")  # one more pass over the finished backup, then stop
        attacker.join(30)
        for fd in (ready_r, ready_w, stop_r, stop_w):
            os.close(fd)
    assert res.code == 0, res.err
    assert result and result[0]["passes"] >= 2 and result[0]["saw_folder"] >= 1, result
    assert result[0]["read"] == 0 and result[0]["listed"] == 0, result
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.lstat().st_mode) for p in out.rglob("*")}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert modes.pop("keys") == 0o700 and set(modes.values()) == {0o600}, modes


def test_backup_refuses_links_in_the_storage_root(site: Site, scratch: Path) -> None:
    targets = victims(scratch)
    before = snapshot(targets)
    keys = site.rec.root / "keys"
    pub = keys / "export-ed25519.pub.pem"
    kept = keys / "pub.kept"
    pub.rename(kept)
    try:
        pub.symlink_to(scratch / "victim.txt")
        out = scratch / "b1"
        res = run_cli(["backup", "--config", str(site.rec.config), "--out", str(out)])
        assert res.code == 65 and f"{pub} is a symbolic link" in res.err, res.err
        assert not out.exists()  # refused before the folder is made
        pub.unlink()
        # A second name (hard link) of a file outside: its content would land in the backup.
        os.link(scratch / "victim.txt", pub)
        out = scratch / "b3"
        res = run_cli(["backup", "--config", str(site.rec.config), "--out", str(out)])
        assert res.code == 65 and f"{pub} has 2 names" in res.err, res.err
        assert not out.exists()
    finally:
        if os.path.lexists(pub):
            pub.unlink()
        kept.rename(pub)
    # keys -> a folder outside: refused, not copied.
    moved = site.rec.root / "keys.real"
    keys.rename(moved)
    keys.symlink_to(scratch / "victim-dir")
    try:
        out = scratch / "b2"
        res = run_cli(["backup", "--config", str(site.rec.config), "--out", str(out)])
        assert res.code == 65 and f"{keys} is a symbolic link" in res.err, res.err
        assert not out.exists()
    finally:
        keys.unlink()
        moved.rename(keys)
    assert snapshot(targets) == before


# ---- restore: links ------------------------------------------------------------------------

@pytest.mark.parametrize("plant", ["keys-dir-link", "key-file-link", "temp-name-link",
                                   "segments-link"])
def test_restore_refuses_links_planted_in_the_storage_root(site: Site, scratch: Path,
                                                            plant: str) -> None:
    """The recorder's account owns the root and plants links before root restores into it."""
    targets = victims(scratch)
    before = snapshot(targets)
    cfg, root = new_box(site, scratch)
    root.mkdir(mode=0o700)
    attacker = ensure_account(ATTACKER)
    os.chown(root, attacker.pw_uid, attacker.pw_gid)  # the root is the service account's

    def plant_links() -> None:
        if plant == "keys-dir-link":
            (root / "keys").symlink_to(scratch / "victim-dir")
        elif plant == "key-file-link":
            (root / "keys").mkdir()
            (root / "keys" / "zz").symlink_to(scratch / "victim.txt")
        elif plant == "temp-name-link":
            (root / "index.db.restoring").symlink_to(scratch / "victim.txt")
        else:
            (root / "segments").symlink_to(scratch / "victim-dir")

    as_attacker(plant_links)
    res = restore(site.backup, cfg)
    assert res.code == 65, res.out + res.err
    assert len(res.err.strip().splitlines()) == 1
    named = {"keys-dir-link": root / "keys", "key-file-link": root / "keys",
             "temp-name-link": root / "index.db.restoring", "segments-link": root / "segments"}
    assert str(named[plant]) in res.err, res.err
    assert_not_restored(root)
    assert snapshot(targets) == before  # no owner, mode or byte changed outside the root


@pytest.mark.parametrize("plant", ["key-file-link", "keys-dir-link", "fifo"])
def test_restore_refuses_links_in_the_backup(site: Site, scratch: Path, plant: str) -> None:
    targets = victims(scratch)
    before = snapshot(targets)
    bad = copy_backup(site, scratch / "bad-backup")
    if plant == "key-file-link":
        (bad / "keys" / "zz").symlink_to(scratch / "victim.txt")
        named = bad / "keys" / "zz"
    elif plant == "keys-dir-link":
        shutil.rmtree(bad / "keys")
        (bad / "keys").symlink_to(scratch / "victim-dir")
        named = bad / "keys"
    else:
        os.mkfifo(bad / "index.db.fifo")
        named = bad / "index.db.fifo"
    cfg, root = new_box(site, scratch)
    res = restore(bad, cfg)
    assert res.code == 65 and f"{named} is a" in res.err, res.err
    assert_not_restored(root)
    assert snapshot(targets) == before


# ---- restore: a changed backup -------------------------------------------------------------

def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("change", ["manifest-byte", "index-byte", "key-byte", "signature-gone",
                                    "key-swapped"])
def test_restore_refuses_a_changed_backup_with_exit_65(site: Site, scratch: Path,
                                                       change: str) -> None:
    bad = copy_backup(site, scratch / "changed")
    extra: list[str] = []
    if change == "manifest-byte":
        _flip_byte(bad / "manifest.json", 40)
    elif change == "index-byte":
        _flip_byte(bad / "index.db", 5000)
    elif change == "key-byte":
        (bad / PRIVATE).write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    elif change == "signature-gone":
        (bad / "manifest.sig").unlink()
    else:
        # The whole backup re-signed with the attacker's own key: self-consistent, so only
        # the fingerprint the operator kept can tell.
        resign(bad, Ed25519PrivateKey.generate())
        extra = ["--key", site.fingerprint]
    cfg, root = new_box(site, scratch)
    res = restore(bad, cfg, *extra)
    assert res.code == 65, res.out + res.err
    assert "changed since the backup" in res.err or "NOT by the trusted key" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1
    assert_not_restored(root)


def test_restore_trusts_another_accounts_backup_only_by_key(site: Site, scratch: Path) -> None:
    """A backup the attacker made, validly signed by the attacker's key, is refused without
    --key (its files are the attacker's); the genuine backup in the attacker's hands restores
    only with the fingerprint the operator kept."""
    attacker = ensure_account(ATTACKER)
    forged = copy_backup(site, scratch / "forged")
    resign(forged, Ed25519PrivateKey.generate())
    for p in [forged, *forged.rglob("*")]:
        os.chown(p, attacker.pw_uid, attacker.pw_gid)
    cfg, root = new_box(site, scratch)
    res = restore(forged, cfg)
    assert res.code == 65 and "belongs to uid" in res.err and "--key" in res.err, res.err
    assert_not_restored(root)

    carried = copy_backup(site, scratch / "carried")
    for p in [carried, *carried.rglob("*")]:
        os.chown(p, attacker.pw_uid, attacker.pw_gid)
    res = restore(carried, cfg, "--key", site.fingerprint)
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert result["signed_by"] == site.fingerprint and result["audit_checkpoints"] >= 1
    # What root restored belongs to the root's owner (root here), not to the backup's owner.
    for p in [root / "index.db", root / "keys", *(root / "keys").iterdir()]:
        assert p.lstat().st_uid == 0 and stat.S_IMODE(p.lstat().st_mode) in (0o600, 0o700)
    assert (root / "audit-checkpoints.jsonl").is_file()


def test_restore_enforces_the_recorded_audit_head(site: Site, scratch: Path) -> None:
    """Even signed with the genuine key (the key is in the backup), an index whose audit log
    lost its newest row does not reach the head the backup recorded: refused."""
    cut = copy_backup(site, scratch / "cut")

    def drop_last_audit_row(backup: Path) -> None:
        with sqlite3.connect(backup / "index.db") as db:
            db.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
        db.close()

    resign(cut, None, drop_last_audit_row)
    cfg, root = new_box(site, scratch)
    res = restore(cut, cfg)
    assert res.code == 65 and "audit chain does not reach the head" in res.err, res.err
    assert_not_restored(root)


# ---- review of the hardening: parents, the index read, sizes, trust ------------------------

def service_root(site: Site, scratch: Path) -> tuple[Path, Path]:
    """(camera map, storage root) of a copy of the site's storage root (no footage) that
    belongs to the attacker, as a storage root belongs to the recorder's account."""
    cfg, root = new_box(site, scratch, "svc")
    root.mkdir(mode=0o750)
    for name in ("index.db", "audit-checkpoints.jsonl"):
        shutil.copy2(site.rec.root / name, root / name)
    shutil.copytree(site.rec.root / "keys", root / "keys")
    attacker = ensure_account(ATTACKER)
    for p in [root, *root.rglob("*")]:
        os.chown(p, attacker.pw_uid, attacker.pw_gid)
    return cfg, root


def test_backup_refuses_an_out_whose_parent_is_missing(site: Site, scratch: Path) -> None:
    """A parent folder backup made itself could be made first, in /tmp, by another account
    looping mkdir/rmdir, which then owns the folder the backup is written into: refused."""
    out = scratch / "a" / "b" / "backup"
    res = run_cli(["backup", "--config", str(site.rec.config), "--out", str(out)])
    assert res.code == 65, res.err
    assert len(res.err.strip().splitlines()) == 1
    assert f"{out.parent} does not exist" in res.err and "create" in res.err, res.err
    assert not (scratch / "a").exists()  # nothing made by path


def test_the_index_is_read_as_the_storage_roots_owner(site: Site, scratch: Path) -> None:
    """The owner of the storage root can turn index.db into a link between backup's check and
    SQLite's open by path. The open is done as that owner: where the link won, it reaches only
    what the owner could read anyway, and root makes no file in the owner's folder."""
    cfg, root = service_root(site, scratch)
    attacker = ensure_account(ATTACKER)
    out = scratch / "svc-backup"
    res = run_cli(["backup", "--config", str(cfg), "--out", str(out)])
    assert res.code == 0, res.err
    with sqlite3.connect(f"file:{out / 'index.db'}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
    db.close()
    made_by_root = [p.name for p in root.rglob("*") if p.lstat().st_uid != attacker.pw_uid]
    assert made_by_root == []

    from nvr.backup import BackupError, _snapshot_index

    # The race won, played deterministically: index.db is already the link when the index is
    # opened. The target is a root-only SQLite file; its rows never reach the copy.
    secret = scratch / "victim-dir"
    secret.mkdir(mode=0o700)
    with sqlite3.connect(secret / "root.db") as db:
        db.execute("CREATE TABLE root_secret (x)")
    db.close()
    (root / "index.db").rename(root / "index.kept")
    as_attacker(lambda: (root / "index.db").symlink_to(secret / "root.db"))
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(BackupError, match=f"as its owner \\(uid {attacker.pw_uid}\\)"):
            _snapshot_index(root, fd)
    finally:
        os.close(fd)
    assert sorted(os.listdir(secret)) == ["root.db"]  # no -shm or -wal made beside it


def test_backup_refuses_a_sparse_checkpoints_file(site: Site, scratch: Path) -> None:
    cfg, root = service_root(site, scratch)
    cps = root / "audit-checkpoints.jsonl"
    as_attacker(lambda: os.truncate(cps, 300 << 20))  # 300 MB, no block on disk
    out = scratch / "sparse-backup"
    res = run_cli(["backup", "--config", str(cfg), "--out", str(out)])
    assert res.code == 65, res.err
    assert len(res.err.strip().splitlines()) == 1 and f"{cps} is 314572800 bytes" in res.err
    assert not out.exists()


def test_restore_refuses_a_file_bigger_than_signed_before_copying(site: Site,
                                                                   scratch: Path) -> None:
    big = copy_backup(site, scratch / "big")
    os.truncate(big / "audit-checkpoints.jsonl", 300 << 20)
    cfg, root = new_box(site, scratch)
    res = restore(big, cfg)
    assert res.code == 65, res.err
    assert "audit-checkpoints.jsonl is 314572800 bytes, the manifest says" in res.err, res.err
    assert_not_restored(root)


def test_restore_refuses_a_deeply_nested_manifest_with_exit_65(site: Site,
                                                                scratch: Path) -> None:
    bad = copy_backup(site, scratch / "nested")
    (bad / "manifest.json").write_text("[" * 200000)
    cfg, root = new_box(site, scratch)
    res = restore(bad, cfg)
    assert res.code == 65, res.err
    assert len(res.err.strip().splitlines()) == 1 and "manifest.json" in res.err, res.err
    assert_not_restored(root)


def test_restore_without_key_trusts_only_roots_backup(site: Site, scratch: Path) -> None:
    """The recorder's account holds a key: taken over, it could sign a forged backup. A backup
    it owns is trusted only by the fingerprint the operator kept (--key)."""
    attacker = ensure_account(ATTACKER)
    cfg, root = new_box(site, scratch)
    root.mkdir(mode=0o700)
    os.chown(root, attacker.pw_uid, attacker.pw_gid)  # the root is the recorder's account's
    forged = copy_backup(site, scratch / "forged-by-recorder")
    resign(forged, Ed25519PrivateKey.generate())
    for p in [forged, *forged.rglob("*")]:
        os.chown(p, attacker.pw_uid, attacker.pw_gid)
    res = restore(forged, cfg)
    assert res.code == 65, res.err
    assert "this backup is not owned by root: give --key FINGERPRINT" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1
    assert_not_restored(root)


def test_backup_reads_only_the_signing_keys_files(site: Site, scratch: Path) -> None:
    """keys/ is the recorder's account's: whatever else it puts there (many files, big ones)
    is not read, so it cannot make the backup slow, big or fail."""
    cfg, root = service_root(site, scratch)

    def fill() -> None:
        for i in range(50):
            (root / "keys" / f"junk{i}").write_bytes(b"x" * (2 << 20))

    as_attacker(fill)
    out = scratch / "junk-backup"
    res = run_cli(["backup", "--config", str(cfg), "--out", str(out)])
    assert res.code == 0, res.err
    assert sorted(os.listdir(out / "keys")) == ["export-ed25519.pem", "export-ed25519.pub.pem"]
