"""A plain (not fragmented) MP4 whose moov comes first: ftyp, then a moov that describes every
frame, then the mdat. The export's clips.

Pure functions: tables in, bytes out. The exporter knows the whole sample table before it copies
a frame (nvr.media.mp4.samples reads it from the segments' small boxes), so the moov goes first
("faststart") and the clip is written once, front to back: no rewrite of the whole file to move
the moov, and the clip's sha256 is taken as it is written.

Layout (ISO/IEC 14496-12, as FFmpeg's mp4 muxer writes it): one video track (track 1) with an
edit list that starts the presentation at the first frame's pts; and, only when the range holds
a gap, a disabled QuickTime text track (track 2) that the video track names as its chapter
track (tref/chap), plus Nero chapters (udta/chpl) for players that read those instead.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from nvr.media.mp4.boxes import box, full_box

MOVIE_TIMESCALE = 1000
U32 = 0xFFFFFFFF
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
# The text sample entry and the base media header of FFmpeg's chapter track, as QuickTime wants.
_TEXT_ENTRY = bytes.fromhex(
    "000000000000000100000001000000000000000000000000000000000000000100000000000000"
    "00000d667461620001000100")
_GMHD = bytes.fromhex(
    "00000018676d696e000000000040800080008000000000000000002c7465787400010000000000000000"
    "0000000000000001000000000000000000000000000040000000")
_ENCD = bytes.fromhex("0000000c656e636400000100")  # text encoding: UTF-8


def mdat_header(payload: int) -> bytes:
    if payload + 8 <= U32:
        return struct.pack(">I4s", payload + 8, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", payload + 16)


def ftyp(codec: str) -> bytes:
    brands = [b"isom", b"iso2"] + ([b"avc1"] if codec == "h264" else []) + [b"mp41"]
    return box(b"ftyp", b"isom", struct.pack(">I", 512), *brands)


@dataclass(frozen=True, slots=True)
class VideoTable:
    """The video track, in decode order. dts start at 0; times in `timescale` units."""

    sample_entry: bytes
    width: int
    height: int
    timescale: int
    dts: Sequence[int]
    cto: Sequence[int]  # pts - dts per sample
    last_duration: int
    sizes: Sequence[int]
    keys: Sequence[int]
    chunk_samples: Sequence[int]  # samples in each chunk, in order
    chunk_offsets: Sequence[int]  # from the first byte of the mdat payload
    media_time: int  # where the presentation starts, in media time (the edit list)
    shown: int  # presentation length in `timescale` units


@dataclass(frozen=True, slots=True)
class Chapters:
    """Titles with their start and length in ms; one text sample each, at `offset`."""

    titles: Sequence[str]
    starts_ms: Sequence[int]
    lengths_ms: Sequence[int]
    offset: int  # of the first text sample, from the first byte of the mdat payload


def chapter_samples(titles: Sequence[str]) -> list[bytes]:
    out = []
    for t in titles:
        text = t.encode()[:0xFFFF]
        out.append(struct.pack(">H", len(text)) + text + _ENCD)
    return out


def moov(video: VideoTable, chapters: Chapters | None, data_at: int, *, wide: bool) -> bytes:
    """The moov for a clip whose mdat payload starts at file offset `data_at`; `wide` makes
    chunk offsets 64-bit (co64). Its length does not depend on `data_at`."""
    duration_ms = _ms(video.shown, video.timescale)
    tracks = [_video_trak(video, data_at, wide, duration_ms, chapters is not None)]
    udta = b""
    if chapters is not None:
        tracks.append(_chapter_trak(chapters, data_at, wide, duration_ms))
        udta = box(b"udta", _chpl(chapters))
    mvhd = full_box(
        b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, min(duration_ms, U32)),
        struct.pack(">IH10x", 0x00010000, 0x0100), _MATRIX, bytes(24),
        struct.pack(">I", len(tracks) + 1))
    return box(b"moov", mvhd, *tracks, udta)


def _ms(units: int, timescale: int) -> int:
    return -(-units * MOVIE_TIMESCALE // timescale)


def _tkhd(track_id: int, flags: int, duration_ms: int, width: int, height: int) -> bytes:
    return full_box(
        b"tkhd", 0, flags, struct.pack(">IIII", 0, 0, track_id, 0),
        struct.pack(">I8xhhH2x", min(duration_ms, U32), 0, 0, 0), _MATRIX,
        struct.pack(">II", width << 16, height << 16))


def _mdhd(timescale: int, duration: int, language: int) -> bytes:
    if duration > U32:
        return full_box(b"mdhd", 1, 0, struct.pack(">QQIQHH", 0, 0, timescale, duration,
                                                   language, 0))
    return full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, duration, language, 0))


def _hdlr(kind: bytes, name: bytes) -> bytes:
    return full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, kind), name + b"\x00")


def _elst(duration_ms: int, media_time: int) -> bytes:
    return box(b"edts", full_box(b"elst", 0, 0, struct.pack(">IIiI", 1, min(duration_ms, U32),
                                                             media_time, 0x00010000)))


_DINF = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """(count, value) run-length pairs."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0] + 1, v)
        else:
            out.append((1, v))
    return out


def _stts(deltas: Sequence[int]) -> bytes:
    runs = _runs(deltas)
    return full_box(b"stts", 0, 0, struct.pack(f">I{2 * len(runs)}I", len(runs),
                                               *[x for r in runs for x in r]))


def _stsc(chunk_samples: Sequence[int]) -> bytes:
    entries: list[tuple[int, int, int]] = []
    for i, n in enumerate(chunk_samples):
        if not entries or entries[-1][1] != n:
            entries.append((i + 1, n, 1))
    return full_box(b"stsc", 0, 0, struct.pack(f">I{3 * len(entries)}I", len(entries),
                                               *[x for e in entries for x in e]))


def _stco(offsets: Sequence[int], data_at: int, wide: bool) -> bytes:
    moved = [o + data_at for o in offsets]
    if wide:
        return full_box(b"co64", 0, 0, struct.pack(f">I{len(moved)}Q", len(moved), *moved))
    return full_box(b"stco", 0, 0, struct.pack(f">I{len(moved)}I", len(moved), *moved))


def _video_trak(v: VideoTable, data_at: int, wide: bool, duration_ms: int,
                has_chapters: bool) -> bytes:
    n = len(v.dts)
    deltas = [v.dts[i + 1] - v.dts[i] for i in range(n - 1)] + [v.last_duration]
    media_duration = v.dts[-1] + v.last_duration
    entry = v.sample_entry
    if entry[4:8] == b"hev1":
        entry = entry[:4] + b"hvc1" + entry[8:]  # hev1 does not play in Apple players/browsers
    stbl = [full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry), _stts(deltas)]
    if any(v.cto):
        runs = _runs(v.cto)
        version = 1 if any(c < 0 for _, c in runs) else 0
        fmt = ">I" + ("Ii" if version else "II") * len(runs)
        stbl.append(full_box(b"ctts", version, 0, struct.pack(
            fmt, len(runs), *[x for r in runs for x in r])))
    if not all(v.keys):
        sync = [i + 1 for i in range(n) if v.keys[i]]
        stbl.append(full_box(b"stss", 0, 0, struct.pack(f">I{len(sync)}I", len(sync), *sync)))
    stbl += [
        _stsc(v.chunk_samples),
        full_box(b"stsz", 0, 0, struct.pack(f">II{n}I", 0, n, *v.sizes)),
        _stco(v.chunk_offsets, data_at, wide),
    ]
    minf = box(b"minf", full_box(b"vmhd", 0, 1, bytes(8)), _DINF, box(b"stbl", *stbl))
    mdia = box(b"mdia", _mdhd(v.timescale, media_duration, 0x55C4),  # 'und'
               _hdlr(b"vide", b"VideoHandler"), minf)
    tref = box(b"tref", box(b"chap", struct.pack(">I", 2))) if has_chapters else b""
    return box(b"trak", _tkhd(1, 3, duration_ms, v.width, v.height),
               _elst(duration_ms, v.media_time), tref, mdia)


def _chapter_trak(c: Chapters, data_at: int, wide: bool, duration_ms: int) -> bytes:
    samples = chapter_samples(c.titles)
    n = len(samples)
    offsets = [c.offset]
    for s in samples[:-1]:
        offsets.append(offsets[-1] + len(s))
    stbl = box(
        b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1), box(b"text", _TEXT_ENTRY)),
        _stts(c.lengths_ms), _stsc([1] * n),
        full_box(b"stsz", 0, 0, struct.pack(f">II{n}I", 0, n, *[len(s) for s in samples])),
        _stco(offsets, data_at, wide))
    minf = box(b"minf", box(b"gmhd", _GMHD), _DINF, stbl)
    mdia = box(b"mdia", _mdhd(MOVIE_TIMESCALE, sum(c.lengths_ms), 0),
               _hdlr(b"text", b"SubtitleHandler"), minf)
    return box(b"trak", _tkhd(2, 2, duration_ms, 0, 0), _elst(duration_ms, 0), mdia)


def _chpl(c: Chapters) -> bytes:
    """Nero chapters: a one-byte count, so the first 255 (as FFmpeg writes them); the text
    track holds them all."""
    titles = list(c.titles)[:255]
    parts = [struct.pack(">IB", 0, len(titles))]
    for start_ms, title in zip(c.starts_ms, titles, strict=False):
        text = title.encode()[:255]
        parts.append(struct.pack(">QB", start_ms * 10_000, len(text)) + text)
    return full_box(b"chpl", 1, 0, *parts)
