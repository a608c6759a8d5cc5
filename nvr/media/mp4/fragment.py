"""Movie fragments: written byte for byte as FFmpeg's mov muxer writes them, and read back
(pure: no I/O).

Written with FFmpeg's `frag_keyframe+empty_moov+default_base_moof` layout, after the init
segment (nvr.media.mp4.init_segment), so a recording is the same file, byte for byte, as the
muxer's (tests/storage/test_fmp4.py muxes the same frames both ways):

    moof { mfhd(sequence), traf { tfhd, tfdt, trun } }  mdat   ... one pair a fragment ...
    mfra { tfra(one entry a fragment), mfro }                  ... at close

Rules copied from libavformat/movenc.c (mov_write_tfhd_tag, mov_write_trun_tag,
mov_write_tfra_tag), so that readers see nothing new:
- tfhd: default-base-is-moof, and defaults taken from the fragment: the first sample's duration
  and size, the second sample's flags (a lone sample: "not a sync sample");
- trun: per-sample duration, size or flags only where one differs from the default, the first
  sample's flags separately when only it differs; composition offsets once any frame of the
  file has had pts != dts (and from then on);
- tfra: a fragment's time is its first frame's pts, its offset that of its moof.
Samples are stored length-prefixed (nvr.media.access_unit).

Read: `read_traf` parses a traf (tfhd, tfdt, its truns) of any muxer's fragments, the one
parser of track runs (the export's sample tables, nvr.media.mp4.samples, and
`starts_with_sync` use it); `complete_length` finds what of a file cut short is whole
fragments.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, field

from nvr.media.mp4.boxes import BoxError, box, children, find, full_box

SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame)
NON_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
NON_SYNC_BIT = 0x00010000  # sample_is_non_sync_sample, in any sample flags
# tfhd flags
TFHD_BASE_DATA_OFFSET = 0x000001
TFHD_SAMPLE_DESCRIPTION = 0x000002
TFHD_DEFAULT_DURATION = 0x000008
TFHD_DEFAULT_SIZE = 0x000010
TFHD_DEFAULT_FLAGS = 0x000020
TFHD_BASE_IS_MOOF = 0x020000
# trun flags
TRUN_DATA_OFFSET = 0x001
TRUN_FIRST_FLAGS = 0x004
TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS = 0x100, 0x200, 0x400, 0x800
_TFHD_FLAGS = TFHD_BASE_IS_MOOF | TFHD_DEFAULT_DURATION | TFHD_DEFAULT_SIZE | TFHD_DEFAULT_FLAGS
_U32 = struct.Struct(">I")
_BIG_ENDIAN = sys.byteorder == "big"


# -- writing --------------------------------------------------------------------------------------
@dataclass(slots=True)
class Fragment:
    """The frames of one fragment, held until it is written (a GOP, as FFmpeg holds it)."""

    dts0: int = -1  # first frame's dts, in track ticks
    cts0: int = 0  # first frame's pts - dts
    durations: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    keys: list[bool] = field(default_factory=list)
    ctss: list[int] = field(default_factory=list)
    data: list[bytes | bytearray] = field(default_factory=list)
    nbytes: int = 0

    def add(self, dts: int, cts: int, duration: int, key: bool, sample: bytes | bytearray) -> None:
        if not self.durations:
            self.dts0, self.cts0 = dts, cts
        self.durations.append(duration)
        self.sizes.append(len(sample))
        self.keys.append(key)
        self.ctss.append(cts)
        self.data.append(sample)
        self.nbytes += len(sample)

    def __len__(self) -> int:
        return len(self.durations)


def moof(sequence: int, frag: Fragment, with_cts: bool, track_id: int = 1) -> bytes:
    """The moof for `frag`, whose mdat follows it at once."""
    n = len(frag)
    durations, sizes, keys = frag.durations, frag.sizes, frag.keys
    d_dur, d_size = durations[0], sizes[0]
    d_flags = (SYNC if keys[1] else NON_SYNC) if n > 1 else NON_SYNC
    flags = TRUN_DATA_OFFSET
    if any(d != d_dur for d in durations):
        flags |= TRUN_DURATION
    if any(s != d_size for s in sizes):
        flags |= TRUN_SIZE
    if any((SYNC if k else NON_SYNC) != d_flags for k in keys[1:]):
        flags |= TRUN_FLAGS
    first_flags = SYNC if keys[0] else NON_SYNC
    if not flags & TRUN_FLAGS and first_flags != d_flags:
        flags |= TRUN_FIRST_FLAGS
    if with_cts:
        flags |= TRUN_CTS
    columns: list[list[int]] = []
    if flags & TRUN_DURATION:
        columns.append(durations)
    if flags & TRUN_SIZE:
        columns.append(sizes)
    if flags & TRUN_FLAGS:
        columns.append([SYNC if k else NON_SYNC for k in keys])
    if flags & TRUN_CTS:
        columns.append(frag.ctss)
    per_sample = len(columns)
    entries = [0] * (n * per_sample)
    for c, column in enumerate(columns):
        entries[c::per_sample] = column
    head = 4 if flags & TRUN_FIRST_FLAGS else 0
    # The sizes are counted here rather than by box(): one join for the whole moof.
    trun_size = 8 + 4 + 4 + 4 + head + 4 * len(entries)
    tfhd = struct.pack(">I4sIIIII", 28, b"tfhd", _TFHD_FLAGS, track_id, d_dur, d_size, d_flags)
    tfdt = struct.pack(">I4sIQ", 20, b"tfdt", 1 << 24, frag.dts0)
    traf_size = 8 + 28 + 20 + trun_size
    moof_size = 8 + 16 + traf_size
    trun = struct.pack(">I4sIII", trun_size, b"trun", flags, n, moof_size + 8)
    if head:
        trun += _U32.pack(first_flags)
    trun += struct.pack(f">{len(entries)}I", *entries)  # cts: pts >= dts, never negative
    return b"".join((
        struct.pack(">I4s", moof_size, b"moof"),
        struct.pack(">I4sI", 16, b"mfhd", 0) + _U32.pack(sequence),
        struct.pack(">I4s", traf_size, b"traf"), tfhd, tfdt, trun,
    ))


def mdat_header(nbytes: int) -> bytes:
    """A 32-bit mdat header, as FFmpeg writes one per fragment (a recorder's fragments stay far
    below 4 GiB, and no frame is that large)."""
    if nbytes + 8 > 0xFFFFFFFF:
        raise ValueError(f"a fragment of {nbytes} bytes does not fit a 32-bit mdat")
    return struct.pack(">I4s", nbytes + 8, b"mdat")


def mfra(entries: list[tuple[int, int]], track_id: int = 1) -> bytes:
    """The movie fragment random access box: (first pts, moof offset) of each fragment."""
    tfra = b""
    if entries:
        rows = b"".join(struct.pack(">QQBBB", t, off, 1, 1, 1) for t, off in entries)
        tfra = full_box(b"tfra", 1, 0, struct.pack(">III", track_id, 0, len(entries)), rows)
    size = 8 + len(tfra) + 16
    return box(b"mfra", tfra, full_box(b"mfro", 0, 0, _U32.pack(size)))


# -- reading --------------------------------------------------------------------------------------
@dataclass(slots=True)
class Trun:
    """One track run: `count` samples; a column is None where the trun leaves it to the
    defaults (tfhd's, else trex's)."""

    count: int
    data_offset: int | None  # from the base (tfhd's), where given
    first_flags: int | None  # the first sample's flags, where given apart
    durations: array[int] | None
    sizes: array[int] | None
    flags: array[int] | None
    ctos: array[int] | None  # pts - dts

    def first_sample_flags(self, default: int | None) -> int | None:
        if self.first_flags is not None:
            return self.first_flags
        if self.flags is not None and self.count:
            return self.flags[0]
        return default


@dataclass(slots=True)
class Traf:
    """A track fragment: its tfhd, tfdt and truns. A default is None where tfhd leaves it to
    the trex."""

    track_id: int
    base_is_moof: bool
    base_data_offset: int | None
    duration: int | None
    size: int | None
    flags: int | None
    decode_time: int | None  # tfdt
    runs: list[Trun]


def read_traf(buf: bytes | bytearray | memoryview, start: int, end: int) -> Traf:
    """The traf whose body is buf[start:end]. BoxError if it is malformed."""
    parts = children(buf, start, end)
    tfhd = next(((a, b) for kind, a, b in parts if kind == b"tfhd"), None)
    if tfhd is None:
        raise BoxError("traf without tfhd")
    t, t_end = tfhd
    if t_end - t < 8:
        raise BoxError("tfhd too short")
    flags = int.from_bytes(buf[t + 1:t + 4], "big")
    (track_id,) = _U32.unpack_from(buf, t + 4)
    p = t + 8
    base: int | None = None
    if flags & TFHD_BASE_DATA_OFFSET:
        (base,) = struct.unpack_from(">Q", buf, p)
        p += 8
    if flags & TFHD_SAMPLE_DESCRIPTION:
        p += 4
    defaults: list[int | None] = []
    for bit in (TFHD_DEFAULT_DURATION, TFHD_DEFAULT_SIZE, TFHD_DEFAULT_FLAGS):
        if flags & bit:
            if p + 4 > t_end:
                raise BoxError("tfhd too short")
            defaults.append(_U32.unpack_from(buf, p)[0])
            p += 4
        else:
            defaults.append(None)
    decode_time: int | None = None
    runs: list[Trun] = []
    for kind, a, b in parts:
        if kind == b"tfdt":
            decode_time = struct.unpack_from(">Q" if buf[a] == 1 else ">I", buf, a + 4)[0]
        elif kind == b"trun":
            runs.append(read_trun(buf, a, b))
    return Traf(track_id, bool(flags & TFHD_BASE_IS_MOOF), base, defaults[0], defaults[1],
                defaults[2], decode_time, runs)


def read_trun(buf: bytes | bytearray | memoryview, start: int, end: int) -> Trun:
    """The trun whose body is buf[start:end]. BoxError if its samples run past it."""
    if end - start < 8:
        raise BoxError("trun too short")
    version = buf[start]
    flags = int.from_bytes(buf[start + 1:start + 4], "big")
    (count,) = _U32.unpack_from(buf, start + 4)
    p = start + 8
    data_offset: int | None = None
    first_flags: int | None = None
    if flags & TRUN_DATA_OFFSET:
        (data_offset,) = struct.unpack_from(">i", buf, p)
        p += 4
    if flags & TRUN_FIRST_FLAGS:
        (first_flags,) = _U32.unpack_from(buf, p)
        p += 4
    present = [bit for bit in (TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS) if flags & bit]
    columns: dict[int, array[int]] = {}
    if present:
        width = len(present)
        if p + 4 * width * count > end:
            raise BoxError("trun runs past its box")
        entries = array("I", bytes(buf[p:p + 4 * width * count]))
        if not _BIG_ENDIAN:
            entries.byteswap()
        for i, bit in enumerate(present):
            columns[bit] = entries[i::width]
        if version == 1 and TRUN_CTS in columns:  # signed composition offsets
            columns[TRUN_CTS] = array("i", columns[TRUN_CTS].tobytes())
    elif p > end:
        raise BoxError("trun runs past its box")
    return Trun(count, data_offset, first_flags, columns.get(TRUN_DURATION),
                columns.get(TRUN_SIZE), columns.get(TRUN_FLAGS), columns.get(TRUN_CTS))


def starts_with_sync(moof_box: bytes) -> bool:
    """Whether a fragment's first frame is a keyframe, for any moof (whole, header included)
    FFmpeg's muxer or ours writes. A player must start at such a fragment."""
    try:
        traf = find(moof_box, 8, len(moof_box), b"traf")
        if traf is None:
            return False
        t = read_traf(moof_box, *traf)
    except (BoxError, struct.error):
        return False
    if not t.runs:
        return False
    flags = t.runs[0].first_sample_flags(t.flags)
    return flags is not None and not flags & NON_SYNC_BIT


def complete_length(boxes: list[tuple[bytes, int, int]]) -> int:
    """Of a fragmented MP4's top-level boxes (nvr.media.mp4.boxes.top_level), the bytes
    through its last complete moof+mdat pair (or the mfra after it): what a file cut short
    holds whole. 0 when there is no ftyp+moov header or no complete fragment."""
    kinds = [b[0] for b in boxes]
    if kinds[:2] != [b"ftyp", b"moov"]:
        return 0
    keep = 0
    for i in range(2, len(boxes)):
        kind, off, size = boxes[i]
        if kind == b"mdat" and boxes[i - 1][0] == b"moof":
            keep = off + size
        elif kind == b"mfra" and keep == off:
            keep = off + size
    return keep
