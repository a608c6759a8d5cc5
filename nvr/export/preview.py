"""`nvr masks preview`: a camera's latest keyframe with its privacy masks outlined and numbered,
as PNG, so IT can place the masks (the command prints which number is which note).

The picture is NOT masked (it is for placing the masks); the policy lets only those who may see
the camera's picture anyway ask for it (nvr/policy/rules.py, Action.masks_preview), and every
preview is audited like a view of footage. Runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from nvr.config.model import PrivacyMask
from nvr.errors import DataError
from nvr.export.remux import check_hash
from nvr.storage.index import Segment
from nvr.timeutil import US

# Outline colours (RGB), one per mask in turn: bright, and unlike each other.
COLOURS = ((255, 220, 0), (0, 230, 255), (255, 60, 200), (120, 255, 60), (255, 120, 0))
THICK = 2  # outline half-width, pixels

# 3 x 5 digits, one string of 15 bits (row by row) each: enough to number the masks.
_DIGITS = ("111101101101111", "010110010010111", "111001111100111", "111001111001111",
           "101101111001001", "111100111001111", "111100111101111", "111001001001001",
           "111101111101111", "111101111001111")

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class PreviewResult:
    sha256: str
    frame_us: int
    width: int
    height: int


def write_preview(seg: Segment, masks: Sequence[PrivacyMask], out_path: Path) -> PreviewResult:
    """Write out_path (created 0600, must not exist): the segment's last keyframe with masks
    outlined and numbered 1, 2, … in the order of the camera map."""
    check_hash(seg)
    frame, frame_us = _last_keyframe(seg)
    img: Image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    h, w = img.shape[:2]
    for i, m in enumerate(masks):
        colour = COLOURS[i % len(COLOURS)]
        pts = [(x * (w - 1), y * (h - 1)) for x, y in m.polygon]
        for a, b in zip(pts, pts[1:] + pts[:1], strict=True):
            _line(img, a, b, colour)
        _number(img, i + 1, pts[0], colour)
    data = _png(img)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return PreviewResult(hashlib.sha256(data).hexdigest(), frame_us, w, h)


def _last_keyframe(seg: Segment) -> tuple[av.VideoFrame, int]:
    with av.open(seg.path, "r") as src:
        ist = src.streams.video[0]
        tb = ist.time_base
        assert tb is not None
        first: int | None = None
        key: av.Packet[av.video.stream.VideoStream] | None = None
        for pkt in src.demux(ist):
            if pkt.size == 0 or pkt.dts is None:
                continue
            pts = pkt.pts if pkt.pts is not None else pkt.dts
            first = pts if first is None else first
            if pkt.is_keyframe:
                key = pkt
        if key is None or first is None:
            raise DataError(f"segment {seg.path} has no keyframe to show")
        key_pts = key.pts if key.pts is not None else key.dts
        assert key_pts is not None
        frames = [*ist.codec_context.decode(key), *ist.codec_context.decode(None)]
        if not frames:
            raise DataError(f"the last keyframe of {seg.path} does not decode")
        wall = seg.start_us + (key_pts - first) * tb.numerator * US // tb.denominator
        return frames[0], wall


def _line(img: Image, a: tuple[float, float], b: tuple[float, float],
          colour: tuple[int, int, int]) -> None:
    h, w = img.shape[:2]
    n = int(max(abs(b[0] - a[0]), abs(b[1] - a[1])) * 2) + 2
    xs = np.rint(np.linspace(a[0], b[0], n)).astype(np.int64)
    ys = np.rint(np.linspace(a[1], b[1], n)).astype(np.int64)
    for dy in range(-THICK, THICK + 1):
        for dx in range(-THICK, THICK + 1):
            img[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] = colour


def _number(img: Image, n: int, at: tuple[float, float], colour: tuple[int, int, int]) -> None:
    """The mask's number in 3 x 5 digits scaled 5 times, on black, inside the first corner."""
    h, w = img.shape[:2]
    scale, text = 5, str(n)
    bw, bh = (4 * len(text) + 1) * scale, 7 * scale
    x0 = int(min(max(at[0] + 2 * THICK, 0), w - bw))
    y0 = int(min(max(at[1] + 2 * THICK, 0), h - bh))
    img[y0:y0 + bh, x0:x0 + bw] = 0
    for k, ch in enumerate(text):
        bits = _DIGITS[int(ch)]
        for r in range(5):
            for c in range(3):
                if bits[r * 3 + c] == "1":
                    y, x = y0 + (r + 1) * scale, x0 + (k * 4 + c + 1) * scale
                    img[y:y + scale, x:x + scale] = colour


def _png(img: Image) -> bytes:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    enc = av.CodecContext.create("png", "w")
    enc.width, enc.height = frame.width, frame.height
    enc.pix_fmt = "rgb24"
    enc.time_base = Fraction(1, 25)
    frame.pts = 0
    return b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])
