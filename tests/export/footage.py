"""Make recorder-style segments without a camera: fragmented MP4, video only, named by start.

Every frame is a solid gray level that changes frame to frame, so frames (and their packets)
are distinguishable; x264 runs with no B-frames, like an IP camera's low-latency stream.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av

from nvr.storage.index import Index, NewSegment, Segment
from nvr.timeutil import US, segment_name

FPS = 15
FRAG_FLAGS = "frag_keyframe+empty_moov+default_base_moof"


def write_segment(
    path: Path,
    seconds: float,
    *,
    codec: str = "libx264",
    width: int = 640,
    height: int = 360,
    first_frame: int = 0,
    gop: int = FPS,
    bitrate: int = 0,
) -> tuple[int, int]:
    """Encode `seconds` of video into a fragmented MP4. Returns (frames, keyframes)."""
    frames = round(seconds * FPS)
    keyframes = 0
    with av.open(str(path), "w", format="mp4", options={"movflags": FRAG_FLAGS}) as out:
        st = out.add_stream(codec, rate=FPS)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.time_base = Fraction(1, 90000)
        opts = {"g": str(gop), "bf": "0", "preset": "ultrafast"}
        if codec == "libx265":
            opts["x265-params"] = f"keyint={gop}:min-keyint={gop}:bframes=0:log-level=error"
            st.codec_tag = "hvc1"
        else:
            opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        if bitrate:
            st.bit_rate = bitrate
        st.codec_context.options = opts
        for i in range(frames):
            frame = _gray_frame(width, height, first_frame + i)
            frame.pts = i * 90000 // FPS
            frame.time_base = Fraction(1, 90000)
            for pkt in st.encode(frame):
                keyframes += pkt.is_keyframe
                out.mux(pkt)
        for pkt in st.encode(None):
            keyframes += pkt.is_keyframe
            out.mux(pkt)
    return frames, keyframes


def _gray_frame(width: int, height: int, n: int) -> av.VideoFrame:
    """Frame n: a gray level of its own plus a white bar whose length grows (some motion)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    luma = bytearray([(n * 37) % 220 + 16]) * (width * height)
    bar = (n % 60 + 1) * width // 60
    for row in range(height // 8):
        luma[row * width : row * width + bar] = b"\xeb" * bar
    _fill(frame.planes[0], bytes(luma), width)
    for plane in frame.planes[1:]:
        _fill(plane, b"\x80" * (plane.width * plane.height), plane.width)
    return frame


def _fill(plane: av.video.plane.VideoPlane, data: bytes, width: int) -> None:
    if plane.line_size == width:
        plane.update(data)
        return
    padded = bytearray()  # rows padded to the plane's line size
    for row in range(len(data) // width):
        padded += data[row * width : (row + 1) * width].ljust(plane.line_size, b"\x00")
    plane.update(bytes(padded))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def add_footage(
    index: Index,
    root: Path,
    camera: str,
    start_us: int,
    seconds: float,
    *,
    codec: str = "libx264",
    first_frame: int = 0,
) -> Segment:
    """Write one segment under root/segments/<camera>/ and index it like the recorder does."""
    folder = root / "segments" / camera
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / segment_name(start_us)
    frames, keyframes = write_segment(path, seconds, codec=codec, first_frame=first_frame)
    await index.ensure_camera(camera, camera, start_us)
    new = NewSegment(
        camera=camera, start_us=start_us, end_us=start_us + int(seconds * US), path=str(path),
        bytes=path.stat().st_size, frames=frames, keyframes=keyframes,
        codec="hevc" if codec == "libx265" else "h264", width=640, height=360,
        sha256=sha256_file(path),
    )
    seg_id = await index.add_segment(new)
    seg = await index.segment_by_path(str(path))
    assert seg is not None and seg.id == seg_id
    return seg
