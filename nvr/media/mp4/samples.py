"""The sample table of one recorder segment (fragmented MP4), read from its boxes alone.

An export needs, for every frame of a segment, where its bytes are (offset, size), when it is
decoded and shown (dts, pts) and whether it is a keyframe. All of that is in the segment's
small boxes: the init `moov` (timescale, sample description) and one `moof` per fragment (`tfhd`,
`tfdt`, `trun`). Reading them takes a few preads per fragment, skipping every `mdat`, so an
export knows its whole layout (and can write its `moov` first) before it reads a single frame.

The boxes read here are kept (`SegmentLayout.boxes`), so the exporter can check them against
the segment bytes it later reads once, hashes and copies from: the table describes exactly the
bytes whose sha256 matched the index (docs/export.md).

Times here are in the segment's own timescale; pts = dts + composition offset, as FFmpeg's mp4
demuxer gives them for a file without an edit list (the recorder writes none: `empty_moov`).
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from nvr.storage.recovery import top_level_boxes

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"}
_NON_SYNC = 0x00010000  # sample_is_non_sync_sample in the sample flags
# A trun may hold at most this many samples (~4.9 h at 60 fps, where a recorder fragment holds
# one GOP): a forged count must not make the exporter build a table of billions of entries.
MAX_TRUN_SAMPLES = 1 << 20
MAX_DTS = 1 << 62  # decode times beyond this are forged, not recorded

# tfhd flags
_BASE_DATA_OFFSET = 0x000001
_SAMPLE_DESCRIPTION = 0x000002
_DEFAULT_DURATION = 0x000008
_DEFAULT_SIZE = 0x000010
_DEFAULT_FLAGS = 0x000020
_DEFAULT_BASE_IS_MOOF = 0x020000
# trun flags
_DATA_OFFSET = 0x000001
_FIRST_FLAGS = 0x000004
_DURATION = 0x000100
_SIZE = 0x000200
_FLAGS = 0x000400
_CTO = 0x000800


class NotASegment(ValueError):
    """The file is not a fragmented MP4 with one video track (not written by the recorder)."""


@dataclass(slots=True)
class SegmentLayout:
    """Every frame of one segment, in decode order, in the segment's timescale."""

    timescale: int
    sample_entry: bytes  # the video stsd entry (avc1/hvc1 … with avcC/hvcC), verbatim
    width: int
    height: int
    file_size: int = 0
    boxes: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, bytes) read
    dts: array[int] = field(default_factory=lambda: array("q"))
    cto: array[int] = field(default_factory=lambda: array("q"))
    duration: array[int] = field(default_factory=lambda: array("q"))
    offset: array[int] = field(default_factory=lambda: array("q"))
    size: array[int] = field(default_factory=lambda: array("q"))
    key: bytearray = field(default_factory=bytearray)
    truncated: bool = False  # the file ended inside a box: the frames before it are kept


def read_layout(fd: int, file_size: int) -> SegmentLayout:
    """The layout of the segment open at fd (preads only: the file position is not used)."""
    return _read_layout(lambda n, pos: os.pread(fd, n, pos), file_size)


def layout_of_bytes(data: bytes | memoryview) -> SegmentLayout:
    """The layout of a segment held in memory (the same walk over the same boxes)."""
    return _read_layout(lambda n, pos: bytes(data[pos:pos + n]), len(data))


def _read_layout(pread: Callable[[int, int], bytes], file_size: int) -> SegmentLayout:
    layout: SegmentLayout | None = None
    track_id = 0
    trex = (0, 0, 0)  # default duration, size, flags from mvex/trex
    next_dts = 0
    boxes = top_level_boxes(file_size, lambda pos, n: pread(n, pos))
    for kind, pos, n in boxes:
        if kind not in (b"moov", b"moof"):
            continue
        body = pread(n, pos)
        if len(body) != n:
            raise OSError("segment shrank while it was being read")
        if kind == b"moov":
            if layout is not None:
                raise NotASegment("two moov boxes")
            layout, track_id, trex = _init(body)
        else:
            if layout is None:
                raise NotASegment("a moof before the moov")
            next_dts = _fragment(body, pos, track_id, trex, next_dts, layout)
        layout.boxes.append((pos, body))
    if layout is None:
        raise NotASegment("no moov box")
    layout.file_size = file_size
    walked = boxes[-1][1] + boxes[-1][2] if boxes else 0
    layout.truncated = file_size - walked >= 8  # the file ends inside a box
    # Frames whose bytes are not (all) in the file: a segment cut inside its last fragment.
    while layout.offset and layout.offset[-1] + layout.size[-1] > file_size:
        for column in (layout.dts, layout.cto, layout.duration, layout.offset, layout.size):
            column.pop()
        layout.key.pop()
        layout.truncated = True
    return layout


def _children(buf: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes in buf[start:end]."""
    out = []
    pos = start
    while pos + 8 <= end:
        n, kind = struct.unpack_from(">I4s", buf, pos)
        hdr = 8
        if n == 1:
            n, hdr = struct.unpack_from(">Q", buf, pos + 8)[0], 16
        elif n == 0:
            n = end - pos
        if n < hdr or pos + n > end:
            raise NotASegment(f"box {kind!r} runs past its parent")
        out.append((kind, pos + hdr, pos + n))
        pos += n
    return out


def _find(buf: bytes, start: int, end: int, *path: bytes) -> tuple[int, int] | None:
    for kind, a, b in _children(buf, start, end):
        if kind == path[0]:
            return (a, b) if len(path) == 1 else _find(buf, a, b, *path[1:])
    return None


def _init(moov: bytes) -> tuple[SegmentLayout, int, tuple[int, int, int]]:
    """The video track's timescale and sample entry, its track id, and the trex defaults."""
    for kind, a, b in _children(moov, 8, len(moov)):
        if kind != b"trak":
            continue
        hdlr = _find(moov, a, b, b"mdia", b"hdlr")
        if hdlr is None or moov[hdlr[0] + 8:hdlr[0] + 12] != b"vide":
            continue
        tkhd = _find(moov, a, b, b"tkhd")
        mdhd = _find(moov, a, b, b"mdia", b"mdhd")
        stsd = _find(moov, a, b, b"mdia", b"minf", b"stbl", b"stsd")
        if tkhd is None or mdhd is None or stsd is None:
            raise NotASegment("video track without tkhd, mdhd or stsd")
        t = tkhd[0]
        track_id = struct.unpack_from(">I", moov, t + (20 if moov[t] == 1 else 12))[0]
        m = mdhd[0]
        timescale = struct.unpack_from(">I", moov, m + (20 if moov[m] == 1 else 12))[0]
        (count,) = struct.unpack_from(">I", moov, stsd[0] + 4)
        if count != 1:
            raise NotASegment(f"{count} sample descriptions (the recorder writes one)")
        (entry_len,) = struct.unpack_from(">I", moov, stsd[0] + 8)
        entry = bytes(moov[stsd[0] + 8:stsd[0] + 8 + entry_len])
        width, height = struct.unpack_from(">HH", entry, 32)
        trex = (0, 0, 0)
        for kind2, c, d in _children(moov, 8, len(moov)):
            if kind2 == b"mvex":
                for kind3, e, _ in _children(moov, c, d):
                    if kind3 == b"trex" and struct.unpack_from(">I", moov, e + 4)[0] == track_id:
                        trex = struct.unpack_from(">III", moov, e + 12)
        if timescale <= 0:
            raise NotASegment("video timescale 0")
        return SegmentLayout(timescale, entry, width, height), track_id, trex
    raise NotASegment("no video track")


def _fragment(moof: bytes, moof_at: int, track_id: int, trex: tuple[int, int, int],
              next_dts: int, layout: SegmentLayout) -> int:
    """Append one fragment's samples to layout; returns the dts after its last sample."""
    data_end = moof_at  # where the previous traf's data ended (the base without flags)
    first_traf = True
    for kind, a, b in _children(moof, 8, len(moof)):
        if kind != b"traf":
            continue
        parts = {k: (c, d) for k, c, d in _children(moof, a, b)}
        if b"tfhd" not in parts:
            raise NotASegment("traf without tfhd")
        t = parts[b"tfhd"][0]
        flags = int.from_bytes(moof[t + 1:t + 4], "big")
        (tid,) = struct.unpack_from(">I", moof, t + 4)
        p = t + 8
        base = moof_at if (flags & _DEFAULT_BASE_IS_MOOF or first_traf) else data_end
        first_traf = False
        if flags & _BASE_DATA_OFFSET:
            (base,) = struct.unpack_from(">Q", moof, p)
            p += 8
        if flags & _SAMPLE_DESCRIPTION:
            p += 4
        dur, size, sflags = trex
        if flags & _DEFAULT_DURATION:
            (dur,) = struct.unpack_from(">I", moof, p)
            p += 4
        if flags & _DEFAULT_SIZE:
            (size,) = struct.unpack_from(">I", moof, p)
            p += 4
        if flags & _DEFAULT_FLAGS:
            (sflags,) = struct.unpack_from(">I", moof, p)
        if tid != track_id:
            continue
        if b"tfdt" in parts:
            c = parts[b"tfdt"][0]
            next_dts = struct.unpack_from(">Q" if moof[c] == 1 else ">I", moof, c + 4)[0]
            if next_dts >= MAX_DTS:
                raise NotASegment(f"decode time {next_dts} out of range")
        for kind2, c, _d in _children(moof, a, b):
            if kind2 == b"trun":
                next_dts, data_end = _trun(moof, c, base, (dur, size, sflags), next_dts, layout)
                base = data_end
    return next_dts


def _trun(moof: bytes, c: int, base: int, defaults: tuple[int, int, int], dts: int,
          layout: SegmentLayout) -> tuple[int, int]:
    version = moof[c]
    flags = int.from_bytes(moof[c + 1:c + 4], "big")
    (count,) = struct.unpack_from(">I", moof, c + 4)
    if count > MAX_TRUN_SAMPLES:
        raise NotASegment(f"a trun of {count} samples")
    p = c + 8
    offset = base
    if flags & _DATA_OFFSET:
        offset = base + struct.unpack_from(">i", moof, p)[0]
        p += 4
    first_flags = None
    if flags & _FIRST_FLAGS:
        (first_flags,) = struct.unpack_from(">I", moof, p)
        p += 4
    fields = [(f, ch) for f, ch in ((_DURATION, "I"), (_SIZE, "I"), (_FLAGS, "I"),
                                     (_CTO, "i" if version == 1 else "I")) if flags & f]
    fmt = ">" + "".join(ch for _, ch in fields)
    width = struct.calcsize(fmt)
    if p + count * width > len(moof):
        raise NotASegment("trun runs past its moof")
    names = [f for f, _ in fields]
    dur0, size0, flags0 = defaults
    for i, values in enumerate(struct.iter_unpack(fmt, moof[p:p + count * width]) if fields
                               else ((),) * count):
        got = dict(zip(names, values, strict=True))
        dur = got.get(_DURATION, dur0)
        size = got.get(_SIZE, size0)
        if i == 0 and first_flags is not None:
            sflags = first_flags
        else:
            sflags = got.get(_FLAGS, flags0)
        layout.dts.append(dts)
        layout.cto.append(got.get(_CTO, 0))
        layout.duration.append(dur)
        layout.offset.append(offset)
        layout.size.append(size)
        layout.key.append(0 if sflags & _NON_SYNC else 1)
        dts += dur
        offset += size
    return dts, offset
