"""`nvr backup --config FILE --out DIR` and `nvr restore --from DIR --config FILE [--key K]`.

A backup holds what no footage can be found or proven without, and nothing else:
  index.db            the index (segments, gaps, holds, grants, requests, the audit log),
                      every page read in one read transaction (sqlite3_serialize): a
                      consistent snapshot, safe while the recorder writes (WAL);
  keys/               the export signing key (private: the backup folder is owner-only);
  audit-checkpoints.jsonl  the signed audit checkpoints (nvr.policy.checkpoint), if any;
  camera-map.yaml     the camera map the recorder runs with (camera password files are not
                      copied: keep them with /etc/nvr);
  audit-checkpoint    the audit chain's head (seq and hash) in the copy, also in the manifest:
                      a restore refuses an index whose chain does not reach it;
  manifest.json       what was copied, with sha256 and sizes, from which storage root, and the
                      signing key's public half; canonical JSON, as an export manifest;
  manifest.sig        the Ed25519 signature of manifest.json by the recorder's export key.
Footage is not copied: it is large and already on disk. A restore points the index at the
footage where it is, or at a new storage root whose segments/ folder was copied separately
(`cp -a OLD/segments NEW/`), before the recorder starts (README "Install on the recorder box").

Offline and read-only on the live storage: nothing the daemon owns is written, so it is safe
while the daemon runs (one writer per resource).

Both commands run as root, over folders other accounts may have touched (the storage root
belongs to the recorder's account; a backup folder may sit in /tmp or come back from elsewhere).
So neither follows a link nor opens a special file: every file is opened by a folder descriptor
with O_NOFOLLOW and checked with fstat, what is written is created O_EXCL with its final mode,
and ownership is changed on descriptors only. Backup writes only into a folder it makes itself
(0700 from the start); restore writes only into a storage root holding nothing but footage, and
installs only what the signed manifest names, after checking every byte of it.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nvr.config.loader import ConfigError, load_camera_map
from nvr.errors import EX_DATAERR, EX_OK, EX_UNAVAILABLE
from nvr.export.manifest import sign_manifest
from nvr.export.signing import ALGORITHM, PRIVATE_NAME, PUBLIC_NAME, SigningKey, fingerprint
from nvr.policy import checkpoint
from nvr.storage import audit_store, index
from nvr.storage.db import integrity, open_image, serialize, user_version
from nvr.storage.fsck import daemon_answers
from nvr.timeutil import now_us, to_iso

FORMAT = "nvr-backup/2"  # /1 was unsigned: refused by restore
INDEX = "index.db"
MAP = "camera-map.yaml"
CHECKPOINT = "audit-checkpoint"
CHECKPOINTS = checkpoint.CHECKPOINT_NAME
KEYS = "keys"
MANIFEST = "manifest.json"
SIG = "manifest.sig"
# What a restore puts into the storage root; the rest of a backup is for people to read.
INSTALLED = (INDEX, CHECKPOINTS)
# What a storage root may hold before a restore: the footage copied there beforehand (README),
# and a file system's own folder when the root is a mount point.
FRESH_ROOT_MAY_HOLD = ("segments", "lost+found")
MAX_SMALL = 1 << 20  # keys, manifest, signature: anything bigger is not ours
# The signed checkpoints: one line a daemon stop or an hour, ~300 bytes each; 64 MB is
# centuries of them. A bigger (or sparse) file is refused, not copied onto the backup disk.
MAX_CHECKPOINTS = 64 << 20
# The index is copied through memory (_snapshot_index): a library's is tens of MB.
MAX_INDEX = 1 << 30

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a planted FIFO must not hang; it is refused by the fstat right after.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class BackupError(Exception):
    """Refused or failed: exit 65 (bad data: a changed backup, a link, a folder not ours)."""


# ---- no-follow file access -----------------------------------------------------------------

def _what(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _refuse_kind(shown: Path, mode: int, want: str) -> BackupError:
    return BackupError(f"{shown} is {_what(mode)}, not {want}: refusing it (nvr never makes one "
                       "there, so another account may have planted it; remove it and retry)")


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_dir(name: str, dir_fd: int, shown: Path) -> int:
    """A sub-folder's descriptor; a link or anything else in its place is refused."""
    try:
        fd = os.open(name, _DIR, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            st = _lstat(name, dir_fd)
            raise _refuse_kind(shown, st.st_mode if st else 0, "a folder") from None
        raise
    return fd


def _open_file(name: str, dir_fd: int, shown: Path,
               one_name: bool = True) -> tuple[int, os.stat_result]:
    """A regular file, opened without following a link; (fd, its fstat). Anything else is
    refused before it is opened: opening a device can itself do something. one_name: a file
    with a second name (hard link) is refused too, where its content is not checked against a
    signed hash (the storage root), since it may be someone else's file (/etc/shadow)."""
    before = _lstat(name, dir_fd)
    if before is None:
        raise FileNotFoundError(errno.ENOENT, "no such file", str(shown))
    if not stat.S_ISREG(before.st_mode):
        raise _refuse_kind(shown, before.st_mode, "a file")
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:  # made a link since the lstat
            raise _refuse_kind(shown, stat.S_IFLNK, "a file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise BackupError(f"{shown} was replaced while it was opened: refusing it")
    if one_name and st.st_nlink != 1:
        os.close(fd)
        raise BackupError(f"{shown} has {st.st_nlink} names (hard links): refusing it, it may "
                          "be another file's; copy it to a file of its own and retry")
    os.set_blocking(fd, True)
    return fd, st


def _read_small(name: str, dir_fd: int, shown: Path,
                one_name: bool = True) -> tuple[bytes, os.stat_result]:
    fd, st = _open_file(name, dir_fd, shown, one_name)
    try:
        if st.st_size > MAX_SMALL:
            raise BackupError(f"{shown} is {st.st_size} bytes, too big for what it should be")
        return _read_all(fd), st
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _create(name: str, dir_fd: int, data: bytes | bytearray | None = None, src_fd: int | None = None,
            mode: int = 0o600, limit: int | None = None) -> tuple[str, int]:
    """A new file, 0600 from its first instant, written from bytes or a descriptor (at most
    `limit` bytes of it) and fsynced; (sha256, bytes) of what was written."""
    fd = os.open(name, _NEW, mode, dir_fd=dir_fd)
    try:
        h, size = hashlib.sha256(), 0
        chunks: Iterator[bytes | bytearray] = (iter([data]) if data is not None
                                               else _chunks(src_fd, limit))
        for chunk in chunks:
            h.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        return h.hexdigest(), size
    finally:
        os.close(fd)


def _chunks(fd: int | None, limit: int | None = None) -> Iterator[bytes]:
    assert fd is not None
    left = -1 if limit is None else limit
    while left and (chunk := os.read(fd, 1 << 20 if left < 0 else min(left, 1 << 20))):
        left -= len(chunk) if left > 0 else 0
        yield chunk


def _hash_fd(fd: int) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    for chunk in _chunks(fd):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# ---- backup --------------------------------------------------------------------------------

def _snapshot_index(root: Path, root_fd: int) -> bytearray:
    """The index's bytes, every page read in one read transaction (so one snapshot, the WAL's
    committed pages included), in memory.

    SQLite opens the index by path, and the storage root's owner (the recorder's account) can
    turn index.db into a link between any check of ours and that open: so the open is done by
    a child process that has become that account, and can read only what it could anyway. The
    child writes the bytes to a pipe; this process reads at most MAX_INDEX of them and opens no
    path of the index. If root owns the storage root, no one else can swap it: no drop."""
    owner = os.fstat(root_fd)
    drop = os.geteuid() == 0 and owner.st_uid != 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup
        code = 1
        try:
            os.close(r)
            if drop:
                os.setgroups([])
                os.setresgid(owner.st_gid, owner.st_gid, owner.st_gid)
                os.setresuid(owner.st_uid, owner.st_uid, owner.st_uid)
            os.fchdir(root_fd)
            # Every page (the WAL's newest included) read in one read transaction: one
            # consistent snapshot, held once in memory.
            payload = [b"0", serialize(INDEX)]
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent, one line
            payload = [b"1", f"{e}".encode("utf-8", "replace")[:2000]]
        try:
            for part in payload:
                view = memoryview(part)
                while view:
                    view = view[os.write(w, view):]
        finally:
            os._exit(code)
    os.close(w)
    data, over = bytearray(), False  # one buffer, grown in place: the index is held once
    try:
        while chunk := os.read(r, 1 << 20):
            data += chunk
            if len(data) > MAX_INDEX + 1:
                over = True
                os.kill(pid, signal.SIGKILL)
                break
    finally:
        os.close(r)
        status = os.waitpid(pid, 0)[1]
    who = f" as its owner (uid {owner.st_uid})" if drop else ""
    if over:
        raise BackupError(f"{root / INDEX} is over {MAX_INDEX >> 20} MB: too big for a backup "
                          "held in memory; back it up with the recorder stopped (cp -a)")
    if os.waitstatus_to_exitcode(status) != 0 or data[:1] != b"0":
        why = data[1:].decode("utf-8", "replace") if data[:1] == b"1" else "the reader failed"
        raise BackupError(f"cannot read {root / INDEX}{who}: {why}")
    del data[:1]
    return data


def _open_copy(data: bytearray) -> tuple[bytearray, sqlite3.Connection]:
    """The snapshot as a file to write (rollback journal, not WAL: one self-contained file) and
    an in-memory database of exactly those bytes, integrity-checked."""
    if len(data) < 100:
        raise BackupError("the copied index is not an SQLite database")
    # Header bytes 18-19 are the file format's write and read versions: 2 means WAL, 1 the
    # rollback journal. A WAL database is copied with its header; a copy is one file.
    data[18:20] = b"\x01\x01"
    # The recorder's account wrote these pages: open_image runs none of its views' or
    # triggers' functions that are not marked harmless while root reads them.
    try:
        con = open_image(data)
    except sqlite3.Error as e:
        raise BackupError(f"the copied index is unreadable: {e}") from None
    try:
        ok = integrity(con)
    except sqlite3.Error as e:
        con.close()
        raise BackupError(f"the copied index is unreadable: {e}") from None
    if ok != "ok":
        con.close()
        raise BackupError(f"the copied index fails its integrity check: {ok}")
    return data, con


def _audit_head(con: sqlite3.Connection) -> dict[str, Any]:
    head = audit_store.head_of(con)
    segments, footage = index.footage_summary(con)
    return {"seq": head[0] if head else 0, "hash": head[1] if head else "0" * 64,
            "segments": segments, "footage_bytes": footage,
            "schema_version": user_version(con)}


def _parent_problem(st: os.stat_result) -> str | None:
    if st.st_uid not in (0, os.geteuid()):
        return f"belongs to uid {st.st_uid}"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return "is writable by other accounts without the sticky bit"
    return None


def _check_parents(out: Path) -> None:
    """Every folder above --out may be changed only by root or by us (or is sticky, like /tmp):
    otherwise another account could rename the new folder away and put its own in its place,
    with links in it, between two of our steps. --out's parent must exist: a folder made here
    would be made by path, one step at a time, and another account could make it first in a
    folder it can write to (/tmp) and later swap what is under it."""
    if not out.parent.is_dir():
        raise BackupError(f"refusing --out {out}: {out.parent} does not exist; create "
                          f"{out.parent} first, owned by root and not writable by others")
    for folder in out.parents:
        why = _parent_problem(folder.stat())
        if why is not None:
            raise BackupError(f"refusing --out {out}: {folder} {why}, so another account could "
                              "swap the backup folder; put backups under a folder only root or "
                              "you can change")


def _make_out(out: Path) -> tuple[int, int]:
    """Make --out, 0700 from the start; (its parent's descriptor, its descriptor). From here on
    --out is reached only through these: its path is never looked up again. An existing --out
    is refused, empty or not: whoever made it could read what is written into it, or swap it."""
    _check_parents(out)
    try:
        parent_fd = os.open(out.parent, _DIR)
    except OSError as e:
        raise BackupError(f"refusing --out {out}: {out.parent} changed while it was checked "
                          f"({e.strerror}); retry") from None
    try:
        why = _parent_problem(os.fstat(parent_fd))
        if why is not None:  # swapped since the check by path
            raise BackupError(f"refusing --out {out}: {out.parent} {why}")
        try:
            os.mkdir(out.name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            held = ""
            try:
                there = os.open(out.name, _DIR, dir_fd=parent_fd)
                try:
                    held = " and is not empty" if os.listdir(there) else ""
                finally:
                    os.close(there)
            except OSError:
                pass
            raise BackupError(f"refusing --out {out}: it already exists{held}; backup writes "
                              "only into a folder it makes itself (another account could have "
                              "made this one to read the key): name a new folder") from None
        fd = os.open(out.name, _DIR, dir_fd=parent_fd)
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != 0o700:
            os.close(fd)
            raise BackupError(f"{out} changed while it was made (not ours, or not 0700): "
                              "refusing it")
    except BaseException:
        os.close(parent_fd)
        raise
    return parent_fd, fd


def _read_keys(root_fd: int, root: Path) -> dict[str, bytes]:
    """The signing key's two files from ROOT/keys (nothing else there is read: the folder is
    the recorder's account's, which could fill it), without following a link."""
    if _lstat(KEYS, root_fd) is None:
        raise BackupError(f"no signing key at {root / KEYS / PRIVATE_NAME}: start the recorder "
                          "once (it makes the key), then back up")
    keys_fd = _open_dir(KEYS, root_fd, root / KEYS)
    try:
        files: dict[str, bytes] = {}
        for name in (PRIVATE_NAME, PUBLIC_NAME):
            try:
                files[name] = _read_small(name, keys_fd, root / KEYS / name)[0]
            except FileNotFoundError:
                if name == PRIVATE_NAME:
                    raise BackupError(f"no signing key at {root / KEYS / name}: start the "
                                      "recorder once (it makes the key), then back up") from None
        return files
    finally:
        os.close(keys_fd)


def _signing_key(files: dict[str, bytes], where: Path) -> SigningKey:
    pem = files.get(PRIVATE_NAME)
    if pem is None:
        raise BackupError(f"no signing key at {where / PRIVATE_NAME}: start the recorder once "
                          "(it makes the key), then back up")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        private = None
    if not isinstance(private, Ed25519PrivateKey):
        raise BackupError(f"{where / PRIVATE_NAME} is not an Ed25519 private key")
    return SigningKey(private, where / PRIVATE_NAME)


def backup(config_path: Path, out: Path) -> dict[str, Any]:
    config = load_camera_map(config_path)
    root = config.storage.root
    # The folders above --out resolved once: each is then checked, and a link among them (one
    # another account could repoint between two steps) is not looked up again.
    out = Path(os.path.realpath(out.parent)) / out.name
    with _umask(0o077):
        try:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BackupError(f"no index at {root / INDEX}; nothing recorded yet, nothing to "
                              "back up") from None
        try:
            return _backup(config_path, root, root_fd, out)
        finally:
            os.close(root_fd)


def _backup(config_path: Path, root: Path, root_fd: int, out: Path) -> dict[str, Any]:
    index_st = _lstat(INDEX, root_fd)
    if index_st is None:
        raise BackupError(f"no index at {root / INDEX}; nothing recorded yet, nothing to back up")
    if not stat.S_ISREG(index_st.st_mode):
        raise _refuse_kind(root / INDEX, index_st.st_mode, "a file")
    # Everything is read from the source before the folder is made, so a refusal leaves nothing.
    key_files = _read_keys(root_fd, root)
    key = _signing_key(key_files, root / KEYS)
    map_bytes = config_path.read_bytes()  # the map root named: /etc/nvr, not the recorder's
    parent_fd, out_fd = _make_out(out)
    try:
        try:
            manifest = _write_backup(root, root_fd, out, out_fd, key_files, key, map_bytes,
                                     config_path, index_st)
        except BaseException:
            os.close(out_fd)
            # Ours, 0700, in a parent only root can change (or sticky): by descriptor, no link.
            shutil.rmtree(out.name, ignore_errors=True, dir_fd=parent_fd)
            raise
        os.close(out_fd)
    finally:
        os.close(parent_fd)
    return manifest


def _write_backup(root: Path, root_fd: int, out: Path, out_fd: int, key_files: dict[str, bytes],
                  key: SigningKey, map_bytes: bytes, config_path: Path,
                  index_st: os.stat_result) -> dict[str, Any]:
    files: dict[str, dict[str, Any]] = {}

    def record(name: str, digest: tuple[str, int]) -> None:
        files[name] = {"sha256": digest[0], "bytes": digest[1]}

    os.mkdir(KEYS, 0o700, dir_fd=out_fd)
    keys_fd = _open_dir(KEYS, out_fd, out / KEYS)
    try:
        for name, data in key_files.items():
            record(f"{KEYS}/{name}", _create(name, keys_fd, data))
        os.fsync(keys_fd)
    finally:
        os.close(keys_fd)
    # The checkpoints before the index: each one names a head already committed, so all of them
    # are in the snapshot taken next, and the restored chain reaches every one.
    if _lstat(CHECKPOINTS, root_fd) is not None:
        src_fd, st = _open_file(CHECKPOINTS, root_fd, root / CHECKPOINTS)
        try:
            if st.st_size > MAX_CHECKPOINTS:
                raise BackupError(f"{root / CHECKPOINTS} is {st.st_size} bytes, over the "
                                  f"{MAX_CHECKPOINTS >> 20} MB a checkpoints file ever needs: "
                                  "refusing to copy it; see why it grew (or was made sparse)")
            # At most the size checked: the file may grow while it is read.
            record(CHECKPOINTS, _create(CHECKPOINTS, out_fd, src_fd=src_fd, limit=st.st_size))
        finally:
            os.close(src_fd)
    index_data, db = _open_copy(_snapshot_index(root, root_fd))
    try:
        facts = _audit_head(db)
    finally:
        db.close()
    after = _lstat(INDEX, root_fd)
    if after is None or (after.st_dev, after.st_ino) != (index_st.st_dev, index_st.st_ino):
        raise BackupError(f"{root / INDEX} was replaced during the backup: refusing the copy")
    record(INDEX, _create(INDEX, out_fd, index_data))
    record(MAP, _create(MAP, out_fd, map_bytes))
    head = {"seq": facts["seq"], "hash": facts["hash"]}
    record(CHECKPOINT, _create(CHECKPOINT, out_fd, (json.dumps(head) + "\n").encode()))
    manifest = {
        "format": FORMAT,
        "created": to_iso(now_us()),
        "host": socket.gethostname(),
        "storage_root": str(root),
        "camera_map": str(config_path.resolve()),
        "index": {k: facts[k] for k in ("schema_version", "segments", "footage_bytes")},
        "audit_checkpoint": head,
        "files": files,
        "footage": f"not copied: {root / 'segments'} (copy it separately with cp -a)",
        "key": {"algorithm": ALGORITHM, "fingerprint": key.fingerprint(),
                "public_key_pem": key.public_pem()},
    }
    body, sig = sign_manifest(manifest, key)
    _create(MANIFEST, out_fd, body)
    _create(SIG, out_fd, sig)
    os.fsync(out_fd)
    return manifest


# ---- restore -------------------------------------------------------------------------------

def _changed(src: Path, what: str) -> BackupError:
    return BackupError(f"{src}: {what}: a backup that changed since the backup was made is not "
                       "restored; use an untouched copy")


def _allowed_name(name: str) -> bool:
    parts = name.split("/")
    if parts[0] == KEYS and len(parts) == 2:
        return parts[1] not in ("", ".", "..")
    return len(parts) == 1 and name in (INDEX, MAP, CHECKPOINT, CHECKPOINTS)


def _verify_manifest(src: Path, src_fd: int) -> tuple[dict[str, Any], Ed25519PublicKey,
                                                       list[os.stat_result]]:
    """The manifest as signed, its signing key, and the fstat of both files (for trust)."""
    try:
        body, m_st = _read_small(MANIFEST, src_fd, src / MANIFEST, one_name=False)
    except FileNotFoundError:
        raise BackupError(f"{src} is not an nvr backup: no {MANIFEST}") from None
    try:
        raw, s_st = _read_small(SIG, src_fd, src / SIG, one_name=False)
    except FileNotFoundError:
        raise _changed(src, f"{SIG} is missing, so nothing shows the backup unchanged (an "
                       "unsigned backup, from an older nvr, or changed since the backup)") from None
    try:
        sig = base64.b64decode(raw.strip(), validate=True)
        manifest: dict[str, Any] = json.loads(body.decode("utf-8"))
        pem = manifest["key"]["public_key_pem"].encode("ascii")
        pub = serialization.load_pem_public_key(pem)
    except RecursionError:  # '[[[[...': nested past what the parser takes
        raise _changed(src, f"{MANIFEST} is unreadable (nested too deeply)") from None
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as e:
        raise _changed(src, f"{MANIFEST} or {SIG} is unreadable ({e})") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise _changed(src, f"{MANIFEST} names a key that is not Ed25519")
    try:
        pub.verify(sig, body)
    except InvalidSignature:
        raise _changed(src, f"the signature in {SIG} does not match {MANIFEST}") from None
    if manifest["key"].get("fingerprint") != fingerprint(pub):
        raise _changed(src, f"{MANIFEST}'s key fingerprint does not match its key")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src}: unknown backup format {manifest.get('format')!r}")
    return manifest, pub, [m_st, s_st]


def _trusted_fingerprint(key_arg: str) -> str:
    from nvr.export.verify import resolve_trust

    trust = resolve_trust(key_arg, None)
    if trust.fingerprint is None:
        raise BackupError(trust.problem)
    return trust.fingerprint


def _check_owner(shown: Path, st: os.stat_result) -> None:
    """Without --key, a backup is trusted for what it is: files only root could have written.
    Not the recorder's account's: if that account is taken over, it holds a key and could sign
    a forged backup; nor another account's, however validly signed (with its own key)."""
    if st.st_uid != 0:
        raise BackupError(f"{shown} belongs to uid {st.st_uid}: this backup is not owned by "
                          "root: give --key FINGERPRINT (from `nvr key show` on the recorder "
                          "that made it)")
    if st.st_mode & 0o022:
        raise BackupError(f"{shown} is writable by other accounts: another account may have "
                          "changed it; give --key FINGERPRINT (from `nvr key show` on the "
                          "recorder that made it) to trust it by its signature")


def _scan_backup(src: Path, src_fd: int) -> list[tuple[Path, os.stat_result]]:
    """Every entry of the backup: a link or special file anywhere is refused (nvr makes none)."""
    seen: list[tuple[Path, os.stat_result]] = [(src, os.fstat(src_fd))]
    for name in sorted(os.listdir(src_fd)):
        st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode) and name == KEYS:
            keys_fd = _open_dir(KEYS, src_fd, src / KEYS)
            try:
                seen.append((src / KEYS, os.fstat(keys_fd)))
                for sub in sorted(os.listdir(keys_fd)):
                    sst = os.stat(sub, dir_fd=keys_fd, follow_symlinks=False)
                    if not stat.S_ISREG(sst.st_mode):
                        raise _refuse_kind(src / KEYS / sub, sst.st_mode, "a file")
            finally:
                os.close(keys_fd)
        elif not stat.S_ISREG(st.st_mode):
            raise _refuse_kind(src / name, st.st_mode, "a file")
    return seen


def _stage(src: Path, src_fd: int, manifest: dict[str, Any], stage: Path,
           by_owner: bool) -> None:
    """Copy every file the manifest names into our private stage, each read once through a
    no-follow descriptor, and hold what was copied against the manifest: what is installed is
    exactly what was checked."""
    names = manifest.get("files")
    if not isinstance(names, dict) or INDEX not in names or f"{KEYS}/{PRIVATE_NAME}" not in names:
        raise _changed(src, f"{MANIFEST} does not name the index and the signing key")
    (stage / KEYS).mkdir(mode=0o700)
    keys_fd: int | None = None
    try:
        for name, want in sorted(names.items()):
            if not _allowed_name(name) or not isinstance(want, dict):
                raise _changed(src, f"{MANIFEST} names {name!r}, which no backup holds")
            in_keys = name.startswith(KEYS + "/")
            if in_keys and keys_fd is None:
                keys_fd = _open_dir(KEYS, src_fd, src / KEYS)
                if by_owner:
                    _check_owner(src / KEYS, os.fstat(keys_fd))
            base = name.split("/")[-1]
            from_fd = keys_fd if in_keys and keys_fd is not None else src_fd
            try:
                # A second name is fine here: only bytes matching the signed hash are used
                # (and backup rotation tools hard-link unchanged files).
                fd, st = _open_file(base, from_fd, src / name, one_name=False)
            except FileNotFoundError:
                raise _changed(src, f"{name} is missing") from None
            try:
                if by_owner:
                    _check_owner(src / name, st)
                # The signed size, checked before a byte is copied, and the most copied: a
                # sparse or growing file cannot fill the disk the stage is on.
                if st.st_size != want.get("bytes"):
                    raise _changed(src, f"{name} is {st.st_size} bytes, the manifest says "
                                   f"{want.get('bytes')}")
                to = stage / KEYS if in_keys else stage
                to_fd = os.open(to, _DIR)
                try:
                    got = _create(base, to_fd, src_fd=fd, limit=st.st_size)
                finally:
                    os.close(to_fd)
            finally:
                os.close(fd)
            if got != (want.get("sha256"), want.get("bytes")):
                raise _changed(src, f"{name} differs from the manifest (sha256 or size)")
    finally:
        if keys_fd is not None:
            os.close(keys_fd)


def _check_audit(stage: Path, manifest: dict[str, Any], pub: Ed25519PublicKey,
                 src: Path) -> checkpoint.Verdict:
    """The restored chain must verify up to the head the backup recorded, and against the
    backup's signed checkpoints: a backup cannot bring back a shortened or rewritten log."""
    want = manifest.get("audit_checkpoint") or {}
    cps = checkpoint.read(stage / CHECKPOINTS, pub)
    verdict = checkpoint.verify_db(stage / INDEX, cps)
    if (verdict.head_seq, verdict.head_hash) != (want.get("seq"), want.get("hash")):
        why = verdict.problem or (f"it ends at seq {verdict.head_seq}, the backup recorded seq "
                                  f"{want.get('seq')}")
        raise _changed(src, f"the index's audit chain does not reach the head the backup "
                       f"recorded: {why}")
    return verdict


def _fresh_root(root: Path, root_fd: int) -> None:
    """Nothing in the root but footage copied there beforehand: no index, no keys, no link."""
    for name in sorted(os.listdir(root_fd)):
        st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        if name in FRESH_ROOT_MAY_HOLD and stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise _refuse_kind(root / name, st.st_mode, "something a fresh storage root holds")
        raise BackupError(f"{root / name} exists; restore only into a fresh storage root (new "
                          "or empty, but for the footage in segments/): move the old one aside "
                          "first")


def _install(root: Path, root_fd: int, stage: Path, manifest: dict[str, Any]) -> None:
    """Keys, checkpoints, then the index last (its name marks a finished restore), each made
    O_EXCL in the root and given to the root's owner by descriptor. Undone on any failure."""
    owner = os.fstat(root_fd)
    chown = os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0)
    made: list[tuple[int, str, bool]] = []  # (folder fd, name, is a folder), to undo
    keys_fd = -1
    try:
        os.mkdir(KEYS, 0o700, dir_fd=root_fd)
        made.append((root_fd, KEYS, True))
        keys_fd = _open_dir(KEYS, root_fd, root / KEYS)
        st = os.fstat(keys_fd)
        if st.st_uid != os.geteuid():
            raise BackupError(f"{root / KEYS} was swapped while it was made: refusing it")
        key_names = sorted(n.split("/")[1] for n in manifest["files"] if n.startswith(KEYS + "/"))
        for name in key_names:
            _put(stage / KEYS / name, name, keys_fd, made, owner if chown else None)
        if chown:
            os.fchown(keys_fd, owner.st_uid, owner.st_gid)
        os.fsync(keys_fd)
        if CHECKPOINTS in manifest["files"]:
            _put(stage / CHECKPOINTS, CHECKPOINTS, root_fd, made, owner if chown else None)
        tmp = INDEX + ".restoring"
        ours = _put(stage / INDEX, tmp, root_fd, made, owner if chown else None)
        os.link(tmp, INDEX, src_dir_fd=root_fd, dst_dir_fd=root_fd, follow_symlinks=False)
        made.append((root_fd, INDEX, False))
        linked = os.stat(INDEX, dir_fd=root_fd, follow_symlinks=False)
        if (linked.st_dev, linked.st_ino) != ours:
            raise BackupError(f"{root / tmp} was replaced while it was written: refusing it")
        os.unlink(tmp, dir_fd=root_fd)
        made.remove((root_fd, tmp, False))
        os.fsync(root_fd)
    except BaseException:
        for fd, name, is_dir in reversed(made):
            try:
                if is_dir:
                    os.rmdir(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
            except OSError:
                pass
        raise
    finally:
        if keys_fd >= 0:
            os.close(keys_fd)


def _put(staged: Path, name: str, dir_fd: int, made: list[tuple[int, str, bool]],
         owner: os.stat_result | None) -> tuple[int, int]:
    """Copy a staged file to a new name in the root; (st_dev, st_ino) of what was written."""
    src_fd = os.open(staged, _READ)
    try:
        fd = os.open(name, _NEW, 0o600, dir_fd=dir_fd)
        made.append((dir_fd, name, False))
        try:
            for chunk in _chunks(src_fd):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            if owner is not None:
                # What the restore wrote belongs to the recorder's account (the root's owner,
                # made by tmpfiles.d or StateDirectory=), though root ran it: by descriptor.
                os.fchown(fd, owner.st_uid, owner.st_gid)
            os.fsync(fd)
            st = os.fstat(fd)
            return st.st_dev, st.st_ino
        finally:
            os.close(fd)
    finally:
        os.close(src_fd)


def restore(src: Path, config_path: Path, key_arg: str | None = None) -> dict[str, Any]:
    """Into the (fresh) storage.root of the map at config_path. Segment paths are moved from the
    backed-up root to this one; the footage itself must be there before the recorder starts."""
    config = load_camera_map(config_path)
    root = config.storage.root
    if daemon_answers(config.control.socket):
        raise BackupError(f"a recorder answers on {config.control.socket}; stop it first")
    with _umask(0o077):
        src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _restore(src, src_fd, root, key_arg)
        finally:
            os.close(src_fd)


def _restore(src: Path, src_fd: int, root: Path, key_arg: str | None) -> dict[str, Any]:
    seen = _scan_backup(src, src_fd)
    manifest, pub, signed_st = _verify_manifest(src, src_fd)
    fp = fingerprint(pub)
    by_owner = not key_arg
    if key_arg:
        trusted = _trusted_fingerprint(key_arg)
        if trusted != fp:
            raise _changed(src, f"signed by key {fp}, NOT by the trusted key {trusted} (--key): "
                           "the backup was made or re-signed elsewhere")
    else:
        for path, st in seen:
            _check_owner(path, st)
        for path, st in zip((src / MANIFEST, src / SIG), signed_st, strict=True):
            _check_owner(path, st)
    # The root is checked before the work and again just before writing into it.
    root_fd = _open_root(root)
    try:
        _fresh_root(root, root_fd)
    finally:
        os.close(root_fd)
    with tempfile.TemporaryDirectory(prefix="nvr-restore-") as tmp:
        stage = Path(tmp)
        _stage(src, src_fd, manifest, stage, by_owner)
        key_files = {p.name: p.read_bytes() for p in (stage / KEYS).iterdir()}
        key = _signing_key(key_files, src / KEYS)
        if key.fingerprint() != fp:
            raise _changed(src, f"{KEYS}/{PRIVATE_NAME} is not the key that signed {MANIFEST}")
        verdict = _check_audit(stage, manifest, pub, src)
        old = str(manifest["storage_root"]).rstrip("/")
        new = str(root).rstrip("/")
        if old != new:
            index.rebase_paths(stage / INDEX, old, new)
        paths = index.segment_paths(stage / INDEX)
        root_fd = _open_root(root)
        try:
            _fresh_root(root, root_fd)
            _install(root, root_fd, stage, manifest)
        finally:
            os.close(root_fd)
    dst = root / INDEX
    missing = sum(1 for p in paths if not os.path.exists(p))
    return {"restored": str(dst), "from": str(src), "segments": len(paths),
            "segments_missing_on_disk": missing, "audit_checkpoint": manifest["audit_checkpoint"],
            "audit_checkpoints": verdict.checkpoints, "signed_by": fp,
            "storage_root_moved": old != new,
            **({"audit_problem": verdict.problem} if verdict.problem else {})}


def _open_root(root: Path) -> int:
    """The root the map names (a link the administrator made there is followed: root's own
    path); nothing inside it is."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


# ---- command line --------------------------------------------------------------------------

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
                     f"stays in {manifest['storage_root']}/segments\n"
                     f"signed by key {manifest['key']['fingerprint']}: keep this line, and give "
                     "it to `nvr restore --key` when the backup comes back from elsewhere\n")
    return EX_OK


def main_restore(src: str, config_path: str, key: str | None = None) -> int:
    try:
        result = restore(Path(src), Path(config_path), key)
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return EX_DATAERR
    except (BackupError, OSError, sqlite3.Error) as e:
        sys.stderr.write(f"nvr: restore failed: {e}\n")
        return EX_UNAVAILABLE if isinstance(e, OSError) else EX_DATAERR
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if result.get("audit_problem"):
        sys.stderr.write(f"nvr: the restored audit log reaches the backup's head, but `nvr audit "
                         f"verify` will report: {result['audit_problem']}\n")
    if result["segments_missing_on_disk"]:
        sys.stderr.write(f"nvr: {result['segments_missing_on_disk']} of {result['segments']} "
                         "indexed segments are not on disk yet: copy the footage into "
                         f"{Path(result['restored']).parent}/segments before starting the "
                         "recorder, or they will be recorded as missing\n")
    return EX_OK

