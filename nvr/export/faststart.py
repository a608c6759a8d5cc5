"""Move a finished MP4's moov in front of its mdat, in place, and hash the final file in the
same pass (what `movflags=+faststart` does, plus the sha256 the manifest needs).

Why not FFmpeg's +faststart: it rewrites the whole file at close and the clip must then be read
a third time to hash it. Here the bytes are hashed as they are moved (hashlib in a second
thread: it releases the GIL, so hashing overlaps the copy on two cores).

Layout in: [head: ftyp, free…][mdat][moov] (PyAV/FFmpeg's plain MP4). Layout out:
[head][moov'][mdat], where moov' is moov with every chunk offset (stco/co64) moved by
len(moov'); stco becomes co64 when an offset would no longer fit in 32 bits. Anything else
(moov already first, boxes after moov, several mdat) is left as it is and only hashed.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

CHUNK = 1 << 20
MAX_STCO = 0xFFFFFFFF  # the largest offset a 32-bit stco entry holds
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def top_level_boxes(fd: int, size: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, length) of each top-level box."""
    boxes = []
    pos = 0
    while pos + 8 <= size:
        hdr = os.pread(fd, 16, pos)
        n, kind = struct.unpack(">I4s", hdr[:8])
        if n == 1:
            n = struct.unpack(">Q", hdr[8:16])[0]
        elif n == 0:
            n = size - pos
        if n < 8 or pos + n > size:
            raise ValueError(f"box {kind!r} at {pos} runs past the end of the file")
        boxes.append((kind, pos, n))
        pos += n
    return boxes


def _rebuild(buf: bytes, shift: int, to64: bool) -> bytes:
    """The boxes of `buf` with chunk offsets moved by `shift` (and stco made co64 if to64)."""
    out = bytearray()
    pos = 0
    while pos + 8 <= len(buf):
        n, kind = struct.unpack_from(">I4s", buf, pos)
        hdr = 8
        if n == 1:
            n, hdr = struct.unpack_from(">Q", buf, pos + 8)[0], 16
        elif n == 0:
            n = len(buf) - pos
        body = buf[pos + hdr:pos + n]
        if kind in _CONTAINERS:
            payload = _rebuild(body, shift, to64)
        elif kind in (b"stco", b"co64"):
            count = struct.unpack_from(">I", body, 4)[0]
            wide = kind == b"co64"
            offsets = struct.unpack_from(f">{count}{'Q' if wide else 'I'}", body, 8)
            moved = [o + shift for o in offsets]
            if wide or to64:
                kind, payload = b"co64", body[:8] + struct.pack(f">{count}Q", *moved)
            else:
                payload = body[:8] + struct.pack(f">{count}I", *moved)
        else:
            payload = body
        out += struct.pack(">I4s", 8 + len(payload), kind) + payload
        pos += n
    return bytes(out)


def faststart_and_hash(path: Path) -> tuple[int, str]:
    """Rewrite `path` with its moov first (if it is last); return (size, sha256) of the result."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        boxes = top_level_boxes(fd, size)
        kinds = [k for k, _, _ in boxes]
        if kinds.count(b"moov") != 1 or kinds.count(b"mdat") != 1 or kinds[-1] != b"moov" \
                or boxes[0][0] != b"ftyp":
            return size, _hash_fd(fd, size)  # not the layout we know: leave it, hash it
        _, moov_at, moov_len = boxes[-1]
        data_at = next(off for k, off, _ in boxes if k == b"mdat")
        moov = os.pread(fd, moov_len, moov_at)
        if len(moov) != moov_len:
            raise OSError(f"short read of moov in {path}")
        # The new moov's length does not depend on the offsets' values, only on their width;
        # every chunk offset is below moov_at, so after the move below moov_at + len(new).
        to64 = moov_at + len(_rebuild(moov, 0, False)) > MAX_STCO
        new = _rebuild(moov, len(_rebuild(moov, 0, to64)), to64)
        return size - moov_len + len(new), _shift(fd, data_at, moov_at, new)
    finally:
        os.close(fd)


def _shift(fd: int, data_at: int, data_end: int, moov: bytes) -> str:
    """Move [data_at, data_end) forward by len(moov), put moov at data_at, hash the result in
    file order. Reads run at least len(moov) + CHUNK ahead of writes, so nothing is overwritten
    before it was read."""
    shift = len(moov)
    h = hashlib.sha256()
    with ThreadPoolExecutor(1, thread_name_prefix="export-hash") as pool:
        pending: deque[Future[None]] = deque()

        def hashed(b: bytes) -> None:
            pending.append(pool.submit(h.update, b))
            while len(pending) > 4:  # bounded memory: wait for the oldest
                pending.popleft().result()

        hashed(os.pread(fd, data_at, 0))  # the head (ftyp, free) stays where it is
        hashed(moov)
        queue: deque[bytes] = deque()
        held = 0
        rpos = data_at
        wpos = data_at + shift
        while rpos < data_end or queue:
            while rpos < data_end and held < shift + CHUNK:
                b = os.pread(fd, min(CHUNK, data_end - rpos), rpos)
                if not b:
                    raise OSError("file shrank while it was being rewritten")
                queue.append(b)
                held += len(b)
                rpos += len(b)
            b = queue.popleft()
            held -= len(b)
            _pwrite_all(fd, b, wpos)
            hashed(b)
            wpos += len(b)
        _pwrite_all(fd, moov, data_at)
        os.ftruncate(fd, wpos)
        for f in pending:
            f.result()
    return h.hexdigest()


def _pwrite_all(fd: int, b: bytes, pos: int) -> None:
    view = memoryview(b)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


def _hash_fd(fd: int, size: int) -> str:
    h = hashlib.sha256()
    pos = 0
    while pos < size:
        b = os.pread(fd, CHUNK, pos)
        if not b:
            break
        h.update(b)
        pos += len(b)
    return h.hexdigest()
