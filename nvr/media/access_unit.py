"""H.264 and H.265 access units in their two forms, and the conversions MP4 needs (pure).

An access unit (a frame's NAL units) comes in one of two forms:
- Annex-B: each NAL unit behind a start code (00 00 01, or 00 00 00 01); what FFmpeg's RTSP
  reader and its parsers give and take, and what the live view sends;
- length-prefixed: each NAL unit behind its 4-byte big-endian length; what MP4 stores (the
  `avc1`/`hvc1` sample format, with avcC/hvcC's lengthSizeMinusOne = 3) and what the own RTSP
  reader gives, so its frames are stored as they arrive.
"""

from __future__ import annotations

import struct

_U32 = struct.Struct(">I")
_SC = b"\x00\x00\x01"


def length_prefixed(data: bytearray) -> bytes | bytearray:
    """An Annex-B access unit with each start code replaced by its NAL unit's 4-byte length.

    The common case (every start code 4 bytes long, as FFmpeg's reader writes them) is done in
    place, a length written over each start code (the caller gives `data` away); anything else
    takes FFmpeg's general rule (ff_avc_parse_nal_units: the zero byte before a 3-byte start
    code belongs to the start code) into new bytes."""
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


def picture_kind(sample: bytes | bytearray, codec: str, single_layer: bool) -> str:
    """What a length-prefixed access unit holds, by its first slice: "piece" if it does not
    start a picture (no slice, or a slice that is not the picture's first: a camera that marks
    the end of each slice, or of its parameter sets, sends a picture in such pieces), else
    "unreferenced" if no other picture may refer to it, else "reference". H.264: first_mb_in_slice
    0 starts a picture (its ue(v) code is a single 1 bit), nal_ref_idc 0 is unreferenced. H.265:
    first_slice_segment_in_pic_flag; the sub-layer non-reference types (TRAIL_N, TSA_N, STSA_N,
    RADL_N, RASL_N, RSV_VCL_N: even types below 16) are unreferenced only when the stream has one
    temporal sub-layer (`single_layer`, from its SPS): pictures of a higher one may refer to them.
    Anything unreadable says "reference", so that nothing is dropped for it."""
    i, end = 0, len(sample)
    while end - i > 4:
        n = _U32.unpack_from(sample, i)[0]
        if n == 0 or i + 4 + n > end:
            return "reference"
        head = sample[i + 4]
        if codec == "h264":
            if 1 <= head & 0x1F <= 5:
                if n < 2:
                    return "reference"
                if not sample[i + 5] & 0x80:
                    return "piece"
                return "reference" if head & 0x60 else "unreferenced"
        else:
            kind = (head >> 1) & 0x3F
            if kind < 32:
                if n < 3:
                    return "reference"
                if not sample[i + 6] & 0x80:
                    return "piece"
                sub_layer_non_ref = kind < 16 and kind & 1 == 0
                return "unreferenced" if sub_layer_non_ref and single_layer else "reference"
        i += 4 + n
    return "piece"


def hevc_single_layer(params: tuple[bytes, ...]) -> bool:
    """Whether an H.265 stream's SPS (among its parameter sets, NAL units without start codes)
    declares one temporal sub-layer (sps_max_sub_layers_minus1 = 0). No SPS: False."""
    for nal in params:
        if len(nal) >= 3 and (nal[0] >> 1) & 0x3F == 33:
            return (nal[2] >> 1) & 0x07 == 0
    return False
