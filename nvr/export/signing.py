"""The recorder's Ed25519 signing key: made at first use, kept under <storage.root>/keys/.

keys/ is 0700 and the private key 0600 (PEM, PKCS#8). The public key is also written beside it
as public.pem, so `nvr export verify` run by the same account can compare fingerprints without
touching the private key. Writes are atomic (temp file, fsync, rename, fsync folder): a crash
leaves either no key or a whole one, never a truncated key that would stop every export.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nvr import log

# The key object lives below export and policy, which both sign with it; re-exported here.
from nvr.storage.keys import SigningKey as SigningKey  # noqa: E402
from nvr.storage.keys import fingerprint as fingerprint  # noqa: E402
from nvr.storage.keys import public_pem as public_pem  # noqa: E402

PRIVATE_NAME = "export-ed25519.pem"
PUBLIC_NAME = "export-ed25519.pub.pem"
ALGORITHM = "Ed25519"

_log = log.get("nvr.export")


def keys_dir(storage_root: Path) -> Path:
    return Path(storage_root) / "keys"


def load_or_create_key(storage_root: Path) -> SigningKey:
    folder = keys_dir(storage_root)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    path = folder / PRIVATE_NAME
    if not path.exists():
        _create(path)
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    key = SigningKey(private, path)
    pub = folder / PUBLIC_NAME
    if not pub.exists() or pub.read_text() != key.public_pem():
        _write_atomic(pub, key.public_pem().encode(), 0o644, replace=True)
    return key


def _create(path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if _write_atomic(path, pem, 0o600, replace=False):
        _log.info("signing_key_created", path=str(path), fingerprint=fingerprint(private.public_key()))


def _write_atomic(path: Path, data: bytes, mode: int, *, replace: bool) -> bool:
    """temp + fsync + rename (or link, which never overwrites a key made meanwhile)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False  # another process made the key first: use theirs
    finally:
        Path(tmp).unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def load_public_key(storage_root: Path) -> Ed25519PublicKey | None:
    """The recorder's public key if this account can read it; None otherwise."""
    try:
        data = (keys_dir(storage_root) / PUBLIC_NAME).read_bytes()
    except OSError:
        return None
    key = serialization.load_pem_public_key(data)
    return key if isinstance(key, Ed25519PublicKey) else None


def key_show(storage_root: Path, published: Path | None = None) -> dict[str, str]:
    """What `nvr key show` prints: the key to publish, so anyone can check an export's origin."""
    key = load_or_create_key(storage_root)
    out = {
        "algorithm": ALGORITHM,
        "fingerprint": key.fingerprint(),
        "public_key_pem": key.public_pem(),
        "path": str(key.path),
    }
    if published is not None:
        out["published"] = str(published)
    return out


# ---- the published public key ------------------------------------------------------------
# The daemon writes its public key, world-readable, beside its control socket
# (/run/nvr/export-key.pub with the packaged unit), so that `nvr export verify` run by ANY
# local account trusts this recorder's key without reading storage.root (0700).
PUBLISHED_NAME = "export-key.pub"


def published_key_path(socket_path: Path) -> Path:
    return Path(socket_path).parent / PUBLISHED_NAME


def publish_public_key(key: SigningKey, path: Path) -> None:
    """Write the public key at `path`, 0644, atomically (readers never see half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        if path.read_text() == key.public_pem():
            return
    except OSError:
        pass
    _write_atomic(path, key.public_pem().encode(), 0o644, replace=True)
    _log.info("public_key_published", path=str(path), fingerprint=key.fingerprint())


def load_published_key(path: Path) -> tuple[Ed25519PublicKey | None, str]:
    """(key, "") if `path` holds a public key that only the recorder could have written; else
    (None, why not). Trusted only when the file belongs to root or to the owner of its folder
    and nobody else may write it: in a shared folder (sticky /tmp) another account could
    otherwise plant its own key there before the daemon starts."""
    try:
        st = path.stat()
        dst = path.parent.stat()
        data = path.read_bytes()
    except OSError as exc:
        return None, f"{path}: {exc.strerror}"
    if st.st_uid not in (0, dst.st_uid):
        return None, f"{path} belongs to uid {st.st_uid}, not to the recorder: not trusted"
    if st.st_mode & 0o022:
        return None, f"{path} is writable by other accounts: not trusted"
    if dst.st_mode & 0o002 and not dst.st_mode & 0o1000:
        return None, f"{path.parent} is world-writable without the sticky bit: not trusted"
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        return None, f"{path} is not a PEM public key"
    if not isinstance(key, Ed25519PublicKey):
        return None, f"{path} is not an Ed25519 public key"
    return key, ""
