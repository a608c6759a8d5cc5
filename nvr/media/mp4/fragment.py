"""Fragments of a recording, byte for byte as FFmpeg's mov muxer writes them (pure: no I/O).

The segment writer used to hand every frame to PyAV's `mux()`: per frame a Python→C call, an
AVPacket and FFmpeg's own bookkeeping, and per segment an output context, a header and a
trailer. Profiled on a replayed camera that was ~0.3 ms of every 1.0 ms of CPU a camera-second
costs (docs/design.md, "Ingest hot path"). FFmpeg still writes each session's `ftyp`+`moov`
(nvr.storage.init_segment: it knows avcC and hvcC), and this module writes the rest as FFmpeg's
muxer does with `frag_keyframe+empty_moov+default_base_moof`, so a recording is the same file,
byte for byte, as before (tests/storage/test_fmp4.py muxes the same frames both ways):

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

H.264 and H.265 frames arrive in Annex-B (start codes), as both RTSP readers give them (other
codecs, e.g. MJPEG through FFmpeg's reader, are written as they come); MP4 wants each NAL unit
behind its 4-byte length (ff_avc_parse_nal_units: the zero byte before a 3-byte start code
belongs to the start code), and an H.265 (`hvc1`) sample without its parameter sets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame)
NON_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
_TFHD_FLAGS = 0x020000 | 0x08 | 0x10 | 0x20  # base-is-moof, default duration, size, flags
_TRUN_DATA_OFFSET, _TRUN_FIRST_FLAGS = 0x001, 0x004
_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTS = 0x100, 0x200, 0x400, 0x800
_U32 = struct.Struct(">I")
_SC = b"\x00\x00\x01"


def length_prefixed(data: bytearray) -> bytes | bytearray:
    """An Annex-B access unit with each start code replaced by its NAL unit's 4-byte length.

    The common case (every start code 4 bytes long, as both readers write them) is done in
    place, a length written over each start code (the caller gives `data` away); anything else
    takes FFmpeg's general rule into new bytes."""
    n = len(data)
    if n < 4 or data[:4] != b"\x00\x00\x00\x01":
        return _general(bytes(data))
    codes = [0]  # where each NAL unit's 4-byte start code begins
    p = data.find(_SC, 4)
    while p >= 0:
        if data[p - 1] != 0 or p - 1 < codes[-1] + 4:  # a 3-byte start code: lengths move
            return _general(bytes(data))
        codes.append(p - 1)
        p = data.find(_SC, p + 3)
    codes.append(n)
    for i in range(len(codes) - 1):
        _U32.pack_into(data, codes[i], codes[i + 1] - codes[i] - 4)
    return data


def annexb(sample: bytes | bytearray) -> bytes:
    """A length-prefixed access unit in Annex-B form (each length replaced by a 4-byte start
    code): what FFmpeg's parsers and the live view take."""
    out = bytearray(sample)
    i, end = 0, len(out)
    while end - i >= 4:
        n = int.from_bytes(out[i:i + 4], "big")
        out[i:i + 4] = b"\x00\x00\x00\x01"
        i += 4 + n
    return bytes(out)


def without_parameter_sets(sample: bytes | bytearray) -> bytes | bytearray:
    """An H.265 sample (length-prefixed) without its VPS, SPS and PPS: FFmpeg's muxer drops them
    from an `hvc1` track, whose parameter sets live in the hvcC only (ff_hevc_annexb2mp4 with
    filter_ps)."""
    end = len(sample)
    i = 0
    kept: list[bytes | bytearray] = []
    dropped = False
    while end - i > 4:
        n = min(int.from_bytes(sample[i:i + 4], "big"), end - i - 4)
        if 32 <= (sample[i + 4] >> 1) & 0x3F <= 34:
            dropped = True
        else:
            kept.append(_U32.pack(n) + sample[i + 4:i + 4 + n])
        i += 4 + n
    if not dropped and i == end:
        return sample
    return b"".join(kept)


def _general(data: bytes) -> bytes:
    """ff_avc_parse_nal_units: after each start code (leading zeros skipped), a NAL unit runs
    to the next start code, less one zero byte before it; nothing before the first."""
    n = len(data)
    out: list[bytes] = []

    def next_code(i: int) -> int:
        p = data.find(_SC, i)
        if p < 0:
            return n
        return p - 1 if p > i and data[p - 1] == 0 else p

    start = next_code(0)
    while True:
        while start < n:  # past the start code's zeros and its 1
            start += 1
            if data[start - 1] != 0:
                break
        if start >= n:
            break
        end = next_code(start)
        out.append(_U32.pack(end - start))
        out.append(data[start:end])
        start = end
    return b"".join(out)


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


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
    flags = _TRUN_DATA_OFFSET
    if any(d != d_dur for d in durations):
        flags |= _TRUN_DURATION
    if any(s != d_size for s in sizes):
        flags |= _TRUN_SIZE
    if any((SYNC if k else NON_SYNC) != d_flags for k in keys[1:]):
        flags |= _TRUN_FLAGS
    first_flags = SYNC if keys[0] else NON_SYNC
    if not flags & _TRUN_FLAGS and first_flags != d_flags:
        flags |= _TRUN_FIRST_FLAGS
    if with_cts:
        flags |= _TRUN_CTS
    columns: list[list[int]] = []
    if flags & _TRUN_DURATION:
        columns.append(durations)
    if flags & _TRUN_SIZE:
        columns.append(sizes)
    if flags & _TRUN_FLAGS:
        columns.append([SYNC if k else NON_SYNC for k in keys])
    if flags & _TRUN_CTS:
        columns.append(frag.ctss)
    per_sample = len(columns)
    entries = [0] * (n * per_sample)
    for c, column in enumerate(columns):
        entries[c::per_sample] = column
    head = 4 if flags & _TRUN_FIRST_FLAGS else 0
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
    """A 32-bit mdat header, as FFmpeg writes one per fragment (the writer's fragments stay far
    below 4 GiB: FRAGMENT_MAX_BYTES, and no frame is that large)."""
    if nbytes + 8 > 0xFFFFFFFF:
        raise ValueError(f"a fragment of {nbytes} bytes does not fit a 32-bit mdat")
    return struct.pack(">I4s", nbytes + 8, b"mdat")


def starts_with_sync(moof: bytes) -> bool:
    """Whether a fragment's first frame is a keyframe (moof > traf: tfhd, trun), for any moof
    FFmpeg's muxer or ours writes. A player must start at such a fragment."""
    traf = child_box(moof, 8, b"traf")
    tfhd, trun = child_box(traf, 8, b"tfhd"), child_box(traf, 8, b"trun")
    if not tfhd or not trun:
        return False
    flags: int | None = None
    t_flags = int.from_bytes(tfhd[9:12], "big")
    if t_flags & 0x20:  # default sample flags, after the optional fields before them
        at = 16 + 8 * bool(t_flags & 0x1) + 4 * (bool(t_flags & 0x2) + bool(t_flags & 0x8)
                                                  + bool(t_flags & 0x10))
        flags = int.from_bytes(tfhd[at:at + 4], "big")
    r_flags = int.from_bytes(trun[9:12], "big")
    at = 16 + 4 * bool(r_flags & 0x1)
    if r_flags & _TRUN_FIRST_FLAGS:
        flags = int.from_bytes(trun[at:at + 4], "big")
    elif r_flags & _TRUN_FLAGS:
        at += 4 * bool(r_flags & _TRUN_DURATION) + 4 * bool(r_flags & _TRUN_SIZE)
        flags = int.from_bytes(trun[at:at + 4], "big")
    return flags is not None and not flags & 0x00010000  # sample_is_non_sync_sample


def child_box(box: bytes, at: int, kind: bytes) -> bytes:
    """The first box of that kind (whole) among the boxes from `at` (a box's header length:
    its children), or b"" ."""
    while at + 8 <= len(box):
        size = int.from_bytes(box[at:at + 4], "big")
        if size < 8:
            return b""
        if box[at + 4:at + 8] == kind:
            return box[at:at + size]
        at += size
    return b""


def mfra(entries: list[tuple[int, int]], track_id: int = 1) -> bytes:
    """The movie fragment random access box: (first pts, moof offset) of each fragment."""
    tfra = b""
    if entries:
        rows = b"".join(struct.pack(">QQBBB", t, off, 1, 1, 1) for t, off in entries)
        tfra = _box(b"tfra", struct.pack(">IIII", 1 << 24, track_id, 0, len(entries)), rows)
    size = 8 + len(tfra) + 16
    return struct.pack(">I4s", size, b"mfra") + tfra + struct.pack(">I4sII", 16, b"mfro", 0, size)
