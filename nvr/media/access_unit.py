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


def is_reference(sample: bytes | bytearray, codec: str) -> bool:
    """Whether other pictures may refer to this one (length-prefixed access unit), by its first
    slice's NAL header: H.264 nal_ref_idc ≠ 0; H.265 anything but a sub-layer non-reference
    type (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, RSV_VCL_N: the even types below 16). Unsure
    (no slice found) says True: dropping such a picture could break the ones after it."""
    i, end = 0, len(sample)
    while end - i > 4:
        n = _U32.unpack_from(sample, i)[0]
        if n == 0 or i + 4 + n > end:
            return True
        head = sample[i + 4]
        if codec == "h264":
            if 1 <= head & 0x1F <= 5:
                return bool(head & 0x60)
        else:
            kind = (head >> 1) & 0x3F
            if kind < 32:
                return kind >= 16 or kind & 1 == 1
        i += 4 + n
    return True
