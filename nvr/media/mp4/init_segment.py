"""A fragmented MP4's `ftyp`+`moov`, written by FFmpeg's mov muxer once per stream description.

The moov of a fragmented MP4 (`empty_moov`) holds no frames: only what the stream is (codec,
size, and the avcC/hvcC FFmpeg builds from the parameter sets). So it is the same for every
segment of a session, and FFmpeg writes it once — by muxing the session's first keyframe into
memory and keeping what comes before the first fragment — instead of once per segment. The
fragments after it are ours (nvr.media.mp4.fragment). Runs on the camera's (or read loop's)
thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import av.container
import av.stream

from nvr.media.mp4.boxes import top_level
from nvr.media.mp4.samples import video_track

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


@dataclass(frozen=True, slots=True)
class InitSegment:
    data: bytes  # ftyp + moov
    timescale: int  # the video track's ticks a second (mdhd)
    width: int  # the picture's size, as the sample entry (avc1, hvc1) gives it
    height: int


class _Sink(io.RawIOBase):
    """Collects what the muxer writes. Not seekable, so the muxer writes as it does to a pipe,
    front to back, never going back to patch a size."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: Buffer, /) -> int:
        data = bytes(b)
        self.parts.append(data)
        return len(data)


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
    boxes = top_level(len(data), lambda off, n: data[off:off + n])
    kinds = [kind for kind, _, _ in boxes]
    if kinds[:2] != [b"ftyp", b"moov"]:
        raise ValueError(f"the mov muxer wrote {kinds[:3]} where ftyp, moov were expected")
    _, moov_at, moov_size = boxes[1]
    track = video_track(data[moov_at:moov_at + moov_size])
    return InitSegment(data[:moov_at + moov_size], track.timescale, track.width, track.height)
