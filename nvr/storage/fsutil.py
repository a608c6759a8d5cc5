"""Small durable-file helpers: exclusive create, fsync of files and folders, hashing writer."""

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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class HashingFile:
    """A write-only, non-seekable file object for the muxer: every write goes straight to the
    kernel (so a reader sees each flushed fragment at once) and into a running sha256.

    It offers no seek(), so FFmpeg treats the output as a stream and never goes back to patch
    bytes already hashed; fragmented MP4 needs no seeking.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.bytes = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            self._hash.update(view[:n])
            self.bytes += n
            view = view[n:]
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def fsync_and_close(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
