"""Privacy masks as pixels: which samples of a picture a camera's masks cover, and filling them.

A mask is a polygon in picture-relative coordinates (a camera's `privacy_masks`). Here it
becomes a boolean array per resolution, computed once per export or still (not per frame), and
every decoded frame gets those samples set to one solid colour before it is encoded. Solid, not
blurred: a blur can be partly undone and still shows shapes and movement; a fill shows nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt

# (x, y) as fractions of the picture's width and height, 0-1.
Point = tuple[float, float]


class PrivacyMask(Protocol):
    """What the raster needs of a mask (the camera map's PrivacyMask has it)."""

    @property
    def polygon(self) -> Sequence[Point]: ...

# The fill: black in limited-range YUV (Y 16, U = V = 128). Uniform in every plane, so a
# viewer (or a test) can tell a masked area from a dark part of the scene.
FILL_Y, FILL_U, FILL_V = 16, 128, 128

# The fill is grown to whole 16 × 16 blocks (an H.264 macroblock, a JPEG 4:2:0 MCU): each
# block is then all fill or all picture, so quantisation cannot smear the picture into the
# mask (with 2-pixel blocks, x264 at crf 19 left ±5 grey levels of the scene inside it).
BLOCK = 16

BoolArray = npt.NDArray[np.bool_]


def polygon_raster(polygon: Sequence[Point], width: int, height: int) -> BoolArray:
    """(height, width) array: True where the pixel's centre lies inside the polygon (even-odd)."""
    ys = (np.arange(height, dtype=np.float64) + 0.5) / height
    xs = (np.arange(width, dtype=np.float64) + 0.5) / width
    inside = np.zeros((height, width), dtype=np.bool_)
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        rows = (np.minimum(y1, y2) <= ys) & (ys < np.maximum(y1, y2))
        if not rows.any():
            continue
        # Where the edge crosses each row's centre line; pixels left of it flip.
        cross = x1 + (ys[rows] - y1) * (x2 - x1) / (y2 - y1)
        inside[rows] ^= xs[np.newaxis, :] < cross[:, np.newaxis]
    return inside


def coverage(masks: Sequence[PrivacyMask], width: int = 320, height: int = 180) -> float:
    """The fraction of the picture the masks cover together (overlaps counted once)."""
    if not masks:
        return 0.0
    union = np.zeros((height, width), dtype=np.bool_)
    for m in masks:
        union |= polygon_raster(m.polygon, width, height)
    return float(union.mean())


@dataclass(frozen=True, slots=True)
class MaskPlanes:
    """What to fill in a yuv420p picture of one size: per-plane boolean arrays. A block is
    filled when any of its pixels is inside a mask, so the filled area is one colour to its
    edge and never smaller than the polygon (at most block - 1 pixels larger on a side)."""

    width: int
    height: int
    luma: BoolArray
    chroma: BoolArray

    @classmethod
    def of(cls, masks: Sequence[PrivacyMask], width: int, height: int,
           block: int = BLOCK) -> MaskPlanes:
        """`block`: the fill is grown to whole blocks of block × block luma pixels (even)."""
        union = np.zeros((height, width), dtype=np.bool_)
        for m in masks:
            union |= polygon_raster(m.polygon, width, height)
        bh, bw = -(-height // block), -(-width // block)
        padded = np.zeros((bh * block, bw * block), dtype=np.bool_)
        padded[:height, :width] = union
        blocks = padded.reshape(bh, block, bw, block).any(axis=(1, 3))
        full = np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)
        ch, cw = (height + 1) // 2, (width + 1) // 2
        chroma: BoolArray = np.ascontiguousarray(full[: ch * 2 : 2, : cw * 2 : 2])
        luma: BoolArray = np.ascontiguousarray(full[:height, :width])
        return cls(width, height, luma, chroma)


def fill(frame: av.VideoFrame, planes: MaskPlanes) -> av.VideoFrame:
    """A yuv420p copy of `frame` with the masked samples filled (the decoder's own frame is
    never written: it may still be a reference for the frames after it)."""
    src = frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
    w, h = src.width, src.height
    if (w, h) != (planes.width, planes.height):
        raise ValueError(f"mask planes are for {planes.width}x{planes.height}, frame is {w}x{h}")
    out = av.VideoFrame(w, h, "yuv420p")
    for i, (plane_mask, value) in enumerate(
            ((planes.luma, FILL_Y), (planes.chroma, FILL_U), (planes.chroma, FILL_V))):
        ph, pw = plane_mask.shape
        src_plane, dst_plane = src.planes[i], out.planes[i]
        pixels = np.frombuffer(memoryview(src_plane), dtype=np.uint8).reshape(-1, src_plane.line_size)
        pixels = pixels[:ph, :pw].copy()
        pixels[plane_mask] = value
        dst = np.frombuffer(memoryview(dst_plane), dtype=np.uint8).reshape(-1, dst_plane.line_size)
        dst[:ph, :pw] = pixels
    out.pts = frame.pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out
