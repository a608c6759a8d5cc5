"""The sample table of a fragmented MP4 (a recorder segment), read from its boxes alone.

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
from itertools import accumulate

from nvr.media.mp4.boxes import BoxError, children, find, top_level
from nvr.media.mp4.fragment import NON_SYNC_BIT, Trun, read_traf

# A trun may hold at most this many samples (~4.9 h at 60 fps, where a recorder fragment holds
# one GOP): a forged count must not make the exporter build a table of billions of entries.
MAX_TRUN_SAMPLES = 1 << 20
MAX_DTS = 1 << 62  # decode times beyond this are forged, not recorded


class NotASegment(BoxError):
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
    boxes = top_level(file_size, lambda pos, n: pread(n, pos))
    for kind, pos, n in boxes:
        if kind not in (b"moov", b"moof"):
            continue
        body = pread(n, pos)
        if len(body) != n:
            raise OSError("segment shrank while it was being read")
        if kind == b"moov":
            if layout is not None:
                raise NotASegment("two moov boxes")
            track = video_track(body)
            layout = SegmentLayout(track.timescale, track.sample_entry, track.width,
                                   track.height)
            track_id, trex = track.track_id, track.trex
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


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """What an init segment's moov says of its video track."""

    track_id: int
    timescale: int  # ticks a second (mdhd)
    sample_entry: bytes  # the stsd entry (avc1/hvc1 ... with avcC/hvcC), verbatim
    width: int  # the picture's size, as the sample entry gives it
    height: int
    trex: tuple[int, int, int]  # default sample duration, size, flags (mvex/trex)


def video_track(moov: bytes) -> VideoTrack:
    """The first video track of a moov (whole, header included); NotASegment if there is none
    or it has not one sample description."""
    for kind, a, b in children(moov, 8, len(moov)):
        if kind != b"trak":
            continue
        hdlr = find(moov, a, b, b"mdia", b"hdlr")
        if hdlr is None or moov[hdlr[0] + 8:hdlr[0] + 12] != b"vide":
            continue
        tkhd = find(moov, a, b, b"tkhd")
        mdhd = find(moov, a, b, b"mdia", b"mdhd")
        stsd = find(moov, a, b, b"mdia", b"minf", b"stbl", b"stsd")
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
        # The entry: header, 6 reserved, data reference index, 16 bytes of pre-defined and
        # reserved, then width and height.
        width, height = struct.unpack_from(">HH", entry, 32)
        trex = (0, 0, 0)
        mvex = find(moov, 8, len(moov), b"mvex")
        if mvex is not None:
            for kind3, e, _ in children(moov, *mvex):
                if kind3 == b"trex" and struct.unpack_from(">I", moov, e + 4)[0] == track_id:
                    trex = struct.unpack_from(">III", moov, e + 12)
        if timescale <= 0:
            raise NotASegment("video timescale 0")
        return VideoTrack(track_id, timescale, entry, width, height, trex)
    raise NotASegment("no video track")


def _fragment(moof: bytes, moof_at: int, track_id: int, trex: tuple[int, int, int],
              next_dts: int, layout: SegmentLayout) -> int:
    """Append one fragment's samples to layout; returns the dts after its last sample."""
    data_end = moof_at  # where the previous traf's data ended (the base without flags)
    first_traf = True
    for kind, a, b in children(moof, 8, len(moof)):
        if kind != b"traf":
            continue
        traf = read_traf(moof, a, b)
        base = moof_at if (traf.base_is_moof or first_traf) else data_end
        first_traf = False
        if traf.base_data_offset is not None:
            base = traf.base_data_offset
        if traf.track_id != track_id:
            continue
        defaults = (trex[0] if traf.duration is None else traf.duration,
                    trex[1] if traf.size is None else traf.size,
                    trex[2] if traf.flags is None else traf.flags)
        if traf.decode_time is not None:
            next_dts = traf.decode_time
            if next_dts >= MAX_DTS:
                raise NotASegment(f"decode time {next_dts} out of range")
        for run in traf.runs:
            if run.count > MAX_TRUN_SAMPLES:
                raise NotASegment(f"a trun of {run.count} samples")
            offset = base if run.data_offset is None else base + run.data_offset
            next_dts, data_end = _append(run, offset, defaults, next_dts, layout)
            base = data_end
    return next_dts


def _append(run: Trun, offset: int, defaults: tuple[int, int, int], dts: int,
            layout: SegmentLayout) -> tuple[int, int]:
    """Append a trun's samples (data from `offset`, decode times from `dts`); returns the
    dts and the offset after them."""
    n = run.count
    if n == 0:
        return dts, offset
    dur0, size0, flags0 = defaults
    durations = run.durations.tolist() if run.durations is not None else [dur0] * n
    sizes = run.sizes.tolist() if run.sizes is not None else [size0] * n
    layout.dts.extend(accumulate(durations[:-1], initial=dts))
    layout.offset.extend(accumulate(sizes[:-1], initial=offset))
    layout.duration.extend(durations)
    layout.size.extend(sizes)
    layout.cto.extend(run.ctos.tolist() if run.ctos is not None else [0] * n)
    if run.flags is not None:
        keys = bytearray(0 if f & NON_SYNC_BIT else 1 for f in run.flags)
    else:
        keys = bytearray([0 if flags0 & NON_SYNC_BIT else 1]) * n
    if run.first_flags is not None:
        keys[0] = 0 if run.first_flags & NON_SYNC_BIT else 1
    layout.key.extend(keys)
    return dts + sum(durations), offset + sum(sizes)
