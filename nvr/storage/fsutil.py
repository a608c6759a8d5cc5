"""Small durable-file helpers: exclusive create, fsync of files and folders, hashing a file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def make_private_dir(path: Path) -> None:
    """mkdir -p with mode 0700 for every folder we create (footage is not for other accounts)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a new or removed file name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_exclusive(path: Path) -> int:
    """Open a new file for writing, 0600; FileExistsError rather than overwrite footage."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    return size_and_sha256(path, chunk)[1]


def size_and_sha256(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """Bytes read and their sha256, in one pass (unbuffered reads into one reused buffer)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()
