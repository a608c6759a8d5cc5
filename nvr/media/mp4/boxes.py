"""ISO BMFF (MP4) boxes, read and written (ISO/IEC 14496-12 4.2; pure: no I/O).

A box is a 32-bit size (header included), a four-character type and a body. Size 1 means a
64-bit size follows the type; size 0 means "to the end of the file (or parent)". A full box's
body starts with a version byte and 24 bits of flags. Container boxes (moov, trak, moof, traf
...) hold nothing but boxes.

Two ways to read:
- `top_level(size, read_at)`: the boxes of a file, through a reader of byte ranges (only the
  headers are read). It stops at the first box the file does not hold whole: a file that is
  still being written, or was cut by a crash, ends there.
- `children(buf, start, end)`: the boxes inside a box held in memory; a box that runs past its
  parent is an error (`BoxError`), as a parent's size is written after its children's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

_HEADER = struct.Struct(">I4s")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")

ReadAt = Callable[[int, int], bytes]  # (offset, n) -> up to n bytes at offset


class BoxError(ValueError):
    """The bytes are not well-formed boxes."""


def box(kind: bytes, *parts: bytes) -> bytes:
    """A box of `kind` whose body is `parts` joined (a 32-bit size)."""
    body = b"".join(parts)
    return _HEADER.pack(8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    """A full box: version and flags, then `parts`."""
    return box(kind, _U32.pack(version << 24 | flags), *parts)


def top_level(data_size: int, read_at: ReadAt) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of each whole top-level box of a file of `data_size` bytes, in
    order; stops at the first box that is not whole."""
    boxes: list[tuple[bytes, int, int]] = []
    off = 0
    while off + 8 <= data_size:
        size, kind = _HEADER.unpack(read_at(off, 8))
        header = 8
        if size == 1:
            if off + 16 > data_size:
                break
            (size,) = _U64.unpack(read_at(off + 8, 8))
            header = 16
        elif size == 0:
            size = data_size - off
        if size < header or off + size > data_size:
            break
        boxes.append((kind, off, size))
        off += size
    return boxes


def children(buf: bytes | bytearray | memoryview, start: int,
             end: int) -> list[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes in buf[start:end]."""
    out = []
    pos = start
    while pos + 8 <= end:
        n, kind = _HEADER.unpack_from(buf, pos)
        header = 8
        if n == 1:
            if pos + 16 > end:
                raise BoxError(f"box {kind!r} runs past its parent")
            n, header = _U64.unpack_from(buf, pos + 8)[0], 16
        elif n == 0:
            n = end - pos
        if n < header or pos + n > end:
            raise BoxError(f"box {kind!r} runs past its parent")
        out.append((bytes(kind), pos + header, pos + n))
        pos += n
    return out


def find(buf: bytes | bytearray | memoryview, start: int, end: int,
         *path: bytes) -> tuple[int, int] | None:
    """(body start, body end) of the first box at `path` (types, outermost first) inside
    buf[start:end], or None."""
    for kind, a, b in children(buf, start, end):
        if kind == path[0]:
            return (a, b) if len(path) == 1 else find(buf, a, b, *path[1:])
    return None


def body(buf: bytes, *path: bytes) -> bytes:
    """The body of the box at `path` inside the box `buf` (whole, header included), or b""
    where there is none or the box is malformed."""
    header = 16 if buf[:4] == b"\x00\x00\x00\x01" else 8
    try:
        found = find(buf, header, len(buf), *path)
    except BoxError:
        return b""
    return buf[found[0]:found[1]] if found else b""
