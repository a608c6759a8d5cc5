"""A still image for a suspension notice: the first frame at or after a given instant, as JPEG.

The one place the recorder decodes video. Packets are demuxed (cheap) up to the requested time
and only the GOP holding it is decoded. Runs in a worker thread, like export_clip.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from nvr import log
from nvr.config.model import PrivacyMask
from nvr.export.remux import NoFootage, check_hash
from nvr.media.masks import MaskPlanes, fill
from nvr.storage.index import Segment
from nvr.timeutil import US, to_iso

JPEG_QUALITY = 3  # mjpeg qscale: 2 (best) .. 31; 3 keeps faces recognisable at modest size

_log = log.get("nvr.export")


@dataclass(frozen=True, slots=True)
class StillResult:
    path: Path
    sha256: str
    frame_us: int  # wall time of the frame shown
    width: int
    height: int
    source: str  # segment path


def extract_still(segments: Sequence[Segment], at_us: int, out_path: Path,
                  masks: Sequence[PrivacyMask] = ()) -> StillResult:
    """Write out_path (created 0600, must not exist), with `masks` filled in before the JPEG
    is encoded. Source hash is checked first."""
    for seg in sorted(segments, key=lambda s: s.start_us):
        if seg.end_us <= at_us:
            continue
        check_hash(seg)
        found = _decode_at(seg, at_us)
        if found is None:
            continue  # nothing at or after at_us in this one (e.g. a short tail): try the next
        frame, frame_us = found
        if masks:
            frame = fill(frame, MaskPlanes.of(masks, frame.width, frame.height))
        data = _jpeg(frame)
        _write_private(out_path, data)
        _log.info("still_written", path=str(out_path), at=to_iso(frame_us), bytes=len(data))
        return StillResult(out_path, hashlib.sha256(data).hexdigest(), frame_us,
                           frame.width, frame.height, seg.path)
    raise NoFootage(f"nothing recorded at or after {to_iso(at_us)}")


def _decode_at(seg: Segment, at_us: int) -> tuple[av.VideoFrame, int] | None:
    with av.open(seg.path, "r") as src:
        ist = src.streams.video[0]
        tb = ist.time_base
        assert tb is not None
        base: int | None = None
        gop: list[av.Packet[av.VideoStream]] = []
        feeding = False
        for pkt in src.demux(ist):
            if pkt.size == 0 or pkt.dts is None:
                continue
            pts = pkt.pts if pkt.pts is not None else pkt.dts
            base = pts if base is None else base
            if not feeding:
                # Keep only the GOP that may hold the frame: one keyframe and what follows.
                if pkt.is_keyframe:
                    gop = [pkt]
                elif gop:
                    gop.append(pkt)
                if not gop or _wall(seg, pts, base, tb) + _dur(pkt, tb) <= at_us:
                    continue
                feeding = True
                pkts = gop
            else:
                pkts = [pkt]
            for p in pkts:
                for frame in ist.codec_context.decode(p):
                    found = _pick(seg, frame, base, tb, at_us)
                    if found is not None:
                        return found
        for frame in ist.codec_context.decode(None):
            found = _pick(seg, frame, base or 0, tb, at_us)
            if found is not None:
                return found
    return None


def _pick(
    seg: Segment, frame: av.VideoFrame, base: int, tb: Fraction, at_us: int
) -> tuple[av.VideoFrame, int] | None:
    if frame.pts is None:
        return None
    wall = _wall(seg, frame.pts, base, tb)
    return (frame, wall) if wall >= at_us else None


def _wall(seg: Segment, pts: int, base: int, tb: Fraction) -> int:
    return seg.start_us + (pts - base) * tb.numerator * US // tb.denominator


def _dur(pkt: av.Packet[av.VideoStream], tb: Fraction) -> int:
    return max(1, (pkt.duration or 0) * tb.numerator * US // tb.denominator)


def _jpeg(frame: av.VideoFrame) -> bytes:
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = frame.width, frame.height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"qmin": str(JPEG_QUALITY), "qmax": str(JPEG_QUALITY)}
    img = frame.reformat(format="yuvj420p")
    img.pts = 0
    return b"".join(bytes(p) for p in [*enc.encode(img), *enc.encode(None)])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
