"""A recording's `ftyp`+`moov`, written by FFmpeg's mov muxer once per stream description.

The moov of a fragmented MP4 (`empty_moov`) holds no frames: only what the stream is (codec,
size, and the avcC/hvcC FFmpeg builds from the parameter sets). So it is the same for every
segment of a session, and FFmpeg writes it once — by muxing the session's first keyframe into
memory and keeping what comes before the first fragment — instead of once per segment. The
fragments after it are ours (nvr.storage.fmp4). Runs on the camera's (or read loop's) thread.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.stream

from nvr.storage.fmp4 import child_box
from nvr.storage.recovery import top_level_boxes

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


@dataclass(frozen=True, slots=True)
class InitSegment:
    data: bytes  # ftyp + moov
    timescale: int  # the video track's ticks a second (mdhd)
    width: int  # the picture's size, as the sample entry (avc1, hvc1) gives it
    height: int


class _Sink(io.RawIOBase):
    """Collects what the muxer writes. Not seekable, as the segment files' descriptors were
    (`pipe:<fd>`), so the muxer writes exactly what it wrote there."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]  # RawIOBase's takes any Buffer and may return None; this sink takes what PyAV writes, whole
        self.parts.append(bytes(b))
        return len(b)


def build(template: av.stream.Stream, codec: str, extradata: bytes | None,
          first_key: bytes, time_base: Fraction) -> InitSegment:
    """The ftyp+moov FFmpeg writes for a copy of `template` (with `extradata` in place of the
    template's when given) whose first frame is the keyframe `first_key` (Annex-B)."""
    sink = _Sink()
    out = av.open(sink, "w", format="mp4", options={"movflags": MOVFLAGS})
    assert isinstance(out, av.container.OutputContainer)
    with out:
        stream = out.add_stream_from_template(template)
        if codec == "hevc":
            stream.codec_tag = "hvc1"  # hev1 (the default) does not play in most browsers
        if extradata is not None:
            stream.codec_context.extradata = extradata
        pkt = av.Packet(first_key)
        pkt.time_base = time_base
        pkt.pts = pkt.dts = 0
        pkt.duration = 1
        pkt.is_keyframe = True
        pkt.stream = stream
        out.mux(pkt)
    data = b"".join(sink.parts)
    boxes = top_level_boxes(len(data), lambda off, n: data[off:off + n])
    kinds = [kind for kind, _, _ in boxes]
    if kinds[:2] != [b"ftyp", b"moov"]:
        raise ValueError(f"the mov muxer wrote {kinds[:3]} where ftyp, moov were expected")
    _, moov_at, moov_size = boxes[1]
    moov = data[moov_at:moov_at + moov_size]
    mdia = _child(_child(moov, 8, b"trak"), 8, b"mdia")
    mdhd = _child(mdia, 8, b"mdhd")
    timescale = struct.unpack_from(">I", mdhd, 8 + 4 + (8 if mdhd[8] == 0 else 16))[0]
    stsd = _child(_child(_child(mdia, 8, b"minf"), 8, b"stbl"), 8, b"stsd")
    # stsd: header, version+flags, entry count; the entry: header, 6 reserved, data ref index,
    # 16 bytes of pre-defined and reserved, then width and height.
    width, height = struct.unpack_from(">HH", stsd, 16 + 8 + 8 + 16)
    return InitSegment(data[:moov_at + moov_size], int(timescale), width, height)


def _child(box: bytes, header: int, kind: bytes) -> bytes:
    found = child_box(box, header, kind)
    if not found:
        raise ValueError(f"no {kind.decode()} box in the muxer's moov")
    return found
