"""Checks shared by the privacy-mask tests: is a region one colour, does the rest match."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from nvr.config.model import PrivacyMask

# A rectangle over the middle-left of the picture: pixels x 160-320, y 90-270 at 640x360.
MASK = PrivacyMask(note="public computers",
                   polygon=[(0.25, 0.25), (0.5, 0.25), (0.5, 0.75), (0.25, 0.75)])
INSET = 4  # pixels: chroma edges and the encoder's blocks may blur the boundary this much
# The fill is rounded out to 16-pixel blocks (nvr.media.masks.BLOCK): the picture is compared beyond.
GROWN = 16 + INSET

Planes = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]


def box(width: int, height: int, grow: int) -> tuple[slice, slice]:
    """(rows, columns) of MASK's rectangle, grown (or, negative, shrunk) by `grow` pixels."""
    x0, y0 = MASK.polygon[0]
    x1, y1 = MASK.polygon[2]
    return (slice(round(y0 * height) - grow, round(y1 * height) + grow),
            slice(round(x0 * width) - grow, round(x1 * width) + grow))


def planes(frame: av.VideoFrame) -> Planes:
    """Y, U, V of a decoded frame as arrays (limited or full range, as decoded)."""
    fmt = "yuvj420p" if frame.format.name == "yuvj420p" else "yuv420p"
    arr = frame.reformat(format=fmt).to_ndarray()
    h, w = frame.height, frame.width
    y = arr[:h]
    u = arr[h:h + h // 4].reshape(h // 2, w // 2)
    v = arr[h + h // 4:].reshape(h // 2, w // 2)
    return y, u, v


def decode_all(path: Path | str) -> list[tuple[int, Planes]]:
    with av.open(str(path)) as c:
        return [(f.pts or 0, planes(f)) for f in c.decode(video=0)]


def uniform_problem(p: Planes, width: int, height: int) -> str | None:
    """Why the inset mask region is not one colour in every plane (±2), or None."""
    rows, cols = box(width, height, -INSET)
    crows, ccols = slice(rows.start // 2, rows.stop // 2), slice(cols.start // 2, cols.stop // 2)
    for name, region in (("Y", p[0][rows, cols]), ("U", p[1][crows, ccols]),
                         ("V", p[2][crows, ccols])):
        lo, hi = int(region.min()), int(region.max())
        if hi - lo > 4 or abs(int(np.median(region)) - (lo + hi) // 2) > 2:
            return f"{name} ranges {lo}..{hi} inside the mask"
    return None


def psnr_outside(a: Planes, b: Planes, width: int, height: int) -> float:
    """Luma PSNR of two pictures over everything but the mask (grown by GROWN pixels)."""
    keep = np.ones((height, width), dtype=bool)
    keep[box(width, height, GROWN)] = False
    diff = a[0][keep].astype(np.float64) - b[0][keep].astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse)


def fill_luma(p: Planes, width: int, height: int) -> int:
    """The median luma inside the inset mask region."""
    return int(np.median(p[0][box(width, height, -INSET)]))
