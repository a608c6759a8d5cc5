"""Parameter sets in the init segment: one per kind and id, whatever mix of SDP and in-band sets
a camera sends (nvr/media/param_sets.py), on sets encoded here by libx264/libx265."""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av
import pytest

from nvr.ingest.own_session import template_stream
from nvr.ingest.timestamps import OutPacket
from nvr.media import access_unit
from nvr.media import param_sets as ps
from nvr.media.rtsp import VideoTrack
from nvr.storage.index import NewSegment
from nvr.storage.segment_writer import SegmentWriter
from tests.ingest.recording_helpers import ffprobe

T0 = 1_790_000_000_000_000


def _stream(codec: str, frames: int = 30) -> list[bytes]:
    """Access units (Annex-B) at 15 fps, a keyframe every 15, each IDR with its sets in band
    (FFmpeg's libx264/libx265 repeat them without a global header)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264" if codec == "h264" else "hevc") as out:
        s = out.add_stream("libx264" if codec == "h264" else "libx265", rate=15,
                           options={"g": "15", "bf": "0", "preset": "ultrafast"}
                           if codec == "h264" else {"x265-params": "keyint=15:bframes=0:log-level=0",
                                                    "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 8) % 256]) * plane.buffer_size)
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    with av.open(io.BytesIO(buf.getvalue()), format="h264" if codec == "h264" else "hevc") as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _nals(au: bytes) -> list[bytes]:
    return [n.rstrip(b"\x00") for n in au.split(b"\x00\x00\x01") if n.rstrip(b"\x00")]


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_ids_are_read_from_real_sets(codec: str) -> None:
    sets = ps.in_access_unit(_stream(codec, 1)[0], codec)
    assert [ps.key_of(p, codec) for p in sets] == (
        [(7, 0), (8, 0)] if codec == "h264" else [(32, 0), (33, 0), (34, 0)])


def test_in_band_sets_replace_the_same_id_and_the_sdps_fill_the_rest() -> None:
    sps, pps = ps.in_access_unit(_stream("h264", 1)[0], "h264")
    stale_sps = sps[:-1] + bytes([sps[-1] ^ 0x10])  # the same id, other content
    pps1 = b"\x68\x58"  # pic_parameter_set_id 1, seq_parameter_set_id 0 (hand-made)
    assert ps.key_of(pps1, "h264") == (8, 1)
    sdp = (stale_sps, pps)
    # The camera's in-band SPS wins over the SDP's stale one; the PPS stays the SDP's.
    assert ps.merge(sdp, (sps,), "h264") == (sps, pps)
    # A first keyframe with its PPS only (and a trailing zero byte): SPS kept, nothing doubled.
    assert ps.merge(sdp, (pps + b"\x00",), "h264") == sdp
    assert ps.merge(sdp, (pps + b"\x00\x00", sps, pps), "h264") == (sps, pps)
    # A new id is added, in id order.
    assert ps.merge(sdp, (pps1,), "h264") == (stale_sps, pps, pps1)
    assert ps.complete((sps, pps), "h264") and not ps.complete((pps,), "h264")
    assert not ps.complete((), "mjpeg")


def _avcc_sets(path: Path) -> tuple[list[bytes], list[bytes]]:
    data = path.read_bytes()
    at = data.index(b"avcC") + 4
    n_sps, i = data[at + 5] & 0x1F, at + 6
    sps = []
    for _ in range(n_sps):
        (n,) = struct.unpack_from(">H", data, i)
        sps.append(data[i + 2:i + 2 + n])
        i += 2 + n
    n_pps, i = data[i], i + 1
    pps = []
    for _ in range(n_pps):
        (n,) = struct.unpack_from(">H", data, i)
        pps.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return sps, pps


def test_a_first_keyframe_with_its_pps_only_makes_a_segment_that_opens(tmp_path: Path) -> None:
    # The SDP has SPS and PPS; the first keyframe carries the PPS (with a stray trailing zero)
    # but not the SPS; later keyframes carry both, unchanged. As the own reader hands them over:
    # length-prefixed, the template probed from the SDP's sets and the first keyframe.
    aus = _stream("h264", 30)
    sps, pps = ps.in_access_unit(aus[0], "h264")
    first = [n for n in _nals(aus[0]) if n[0] & 0x1F != 7]
    first = [n + b"\x00" if n[0] & 0x1F == 8 else n for n in first]
    aus[0] = b"".join(b"\x00\x00\x00\x01" + n for n in first)
    track = VideoTrack("h264", 90000, 96, "", (sps, pps))
    probe, template = template_stream(track, aus[0])
    closed: list[NewSegment] = []
    w = SegmentWriter("cam", tmp_path, 10.0, closed.append, first_segment_fraction=1.0)
    try:
        w.start_session(template, T0, length_prefixed=True)
        tb = Fraction(1, 90000)
        for i, au in enumerate(aus):
            data = bytes(access_unit.length_prefixed(bytearray(au)))
            w.write(OutPacket(i * 6000, i * 6000, 6000, i % 15 == 0, [data], int(i * 6000 * tb * 10**6)))
        w.end_session()
    finally:
        probe.close()
    assert len(closed) == 1, "the partial set of the first keyframe is no parameter change"
    seg = closed[0]
    assert len(ffprobe(Path(seg.path))["packets"]) == seg.frames == 30
    assert _avcc_sets(Path(seg.path)) == ([sps], [pps])


def test_hevc_segments_hold_each_set_once(tmp_path: Path) -> None:
    aus = _stream("hevc", 16)
    vps, sps, pps = ps.in_access_unit(aus[0], "hevc")
    track = VideoTrack("hevc", 90000, 96, "", (vps, sps, pps))
    probe, template = template_stream(track, aus[0])
    closed: list[NewSegment] = []
    w = SegmentWriter("cam", tmp_path, 10.0, closed.append, first_segment_fraction=1.0)
    try:
        w.start_session(template, T0, length_prefixed=True)
        for i, au in enumerate(aus):
            w.write(OutPacket(i * 6000, i * 6000, 6000, i % 15 == 0,
                              [bytes(access_unit.length_prefixed(bytearray(au)))], i * 66_667))
        w.end_session()
    finally:
        probe.close()
    assert len(closed) == 1
    data = Path(closed[0].path).read_bytes()
    hvcc = data[data.index(b"hvcC") + 4:]
    arrays, i, found = hvcc[22], 23, []
    for _ in range(arrays):
        kind, (count,) = hvcc[i] & 0x3F, struct.unpack_from(">H", hvcc, i + 1)
        i += 3
        for _ in range(count):
            (n,) = struct.unpack_from(">H", hvcc, i)
            found.append((kind, hvcc[i + 2:i + 2 + n]))
            i += 2 + n
    assert found == [(32, vps), (33, sps), (34, pps)]
    assert len(ffprobe(Path(closed[0].path))["packets"]) == closed[0].frames == 16
