"""A stream's parameter sets (H.264 SPS/PPS, H.265 VPS/SPS/PPS), one per id (pure; no I/O).

A decoder keeps one parameter set per kind and id: a new SPS with id 0 replaces the old SPS 0,
and a keyframe that carries only its PPS in band still uses the SPS it had (H.264 7.4.1.2.1,
H.265 7.4.2.4.2). The init segment's avcC/hvcC must hold exactly that state, once:

1. the SDP's sets (sprop-*) are the start; an in-band set replaces the set of the same kind and
   id, and adds one with a new id; nothing is ever removed;
2. so a partial in-band set (a PPS without its SPS, as some cameras send with the first
   keyframe) never drops the SPS, and is a change only if it differs from the set it replaces;
3. each set is kept without trailing zero bytes (trailing_zero_8bits, H.264 7.4.1 / B.1: they
   belong to the byte stream, not to the NAL unit; an RBSP ends with its stop bit, never 0x00).
"""

from __future__ import annotations

_KINDS = {"h264": (7, 8), "hevc": (32, 33, 34)}
_WANTED = {codec: frozenset(kinds) for codec, kinds in _KINDS.items()}
Key = tuple[int, int]  # (NAL unit type, parameter set id); id -1 where it cannot be read


def nal_type(nal: bytes, codec: str) -> int:
    return (nal[0] & 0x1F) if codec == "h264" else (nal[0] >> 1) & 0x3F


def strip_trailing_zeros(nal: bytes) -> bytes:
    return nal.rstrip(b"\x00")


def in_access_unit(data: bytes | bytearray, codec: str, *,
                   length_prefixed: bool = False) -> tuple[bytes, ...]:
    """The parameter-set NAL units of an Annex-B (or length-prefixed) access unit, each once,
    in order of appearance, without trailing zero bytes (rule 3)."""
    wanted = _WANTED.get(codec)
    if wanted is None:
        return ()
    if length_prefixed:
        found: list[bytes] = []
        i = 0
        while len(data) - i > 4:
            n = int.from_bytes(data[i:i + 4], "big")
            b = data[i + 4]
            if ((b & 0x1F) if codec == "h264" else (b >> 1) & 0x3F) in wanted:
                nal = bytes(data[i + 4:i + 4 + n]).rstrip(b"\x00")
                if nal and nal not in found:
                    found.append(nal)
            i += 4 + n
        return tuple(found)
    starts: list[int] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    out: list[bytes] = []
    for n, s in enumerate(starts):
        if s >= len(data):
            continue
        kind = (data[s] & 0x1F) if codec == "h264" else (data[s] >> 1) & 0x3F
        if kind not in wanted:
            continue
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        nal = bytes(data[s:end]).rstrip(b"\x00")  # a 4-byte start code leaves a trailing zero
        if nal not in out:
            out.append(nal)
    return tuple(out)


class Bits:
    """An RBSP bit reader (emulation prevention bytes removed first)."""

    def __init__(self, ebsp: bytes) -> None:
        out = bytearray()
        zeros = 0
        for b in ebsp:
            if zeros >= 2 and b == 3:
                zeros = 0
                continue
            out.append(b)
            zeros = zeros + 1 if b == 0 else 0
        self.data = bytes(out)
        self.pos = 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("the bits end early")
            v = (v << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def skip_hevc_profile_tier_level(bits: Bits) -> None:
    """Past an H.265 SPS's sps_max_sub_layers_minus1, temporal_id_nesting flag and
    profile_tier_level (7.3.3): to its sps_seq_parameter_set_id."""
    sub_layers = bits.u(3)  # sps_max_sub_layers_minus1
    bits.u(1)
    bits.u(96)  # general profile, tier and level
    present = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.u(2 * (8 - sub_layers))
    for profile, level in present:
        bits.u(88 * profile + 8 * level)


def key_of(nal: bytes, codec: str) -> Key:
    """The kind and id of a parameter set NAL unit."""
    kind = nal_type(nal, codec)
    try:
        if codec == "h264":
            bits = Bits(nal[1:40])
            if kind == 7:
                bits.u(24)  # profile_idc, constraint flags, level_idc
            return kind, bits.ue()  # seq_ / pic_parameter_set_id
        bits = Bits(nal[2:80])
        if kind == 32:
            return kind, bits.u(4)  # vps_video_parameter_set_id
        if kind == 33:
            bits.u(4)  # sps_video_parameter_set_id
            skip_hevc_profile_tier_level(bits)
            return kind, bits.ue()  # sps_seq_parameter_set_id
        return kind, bits.ue()  # pps_pic_parameter_set_id
    except ValueError:
        return kind, -1


def merge(known: tuple[bytes, ...], inband: tuple[bytes, ...], codec: str) -> tuple[bytes, ...]:
    """`known` with each of `inband` replacing the set of its kind and id (rule 1), in a
    stable order (kind, then id): equal states give equal tuples."""
    sets = {key_of(p, codec): p for p in known}
    for p in inband:
        p = strip_trailing_zeros(p)
        if p:
            sets[key_of(p, codec)] = p
    return tuple(sets[k] for k in sorted(sets))


def complete(sets: tuple[bytes, ...], codec: str) -> bool:
    """Every kind the codec needs is there (H.264: SPS and PPS; H.265: VPS, SPS and PPS)."""
    kinds = _KINDS.get(codec)
    if not kinds:  # (MJPEG through FFmpeg's reader: no parameter sets to speak of)
        return False
    have = {nal_type(p, codec) for p in sets}
    return all(k in have for k in kinds)


def annexb(sets: tuple[bytes, ...]) -> bytes:
    """The sets as extradata FFmpeg's mov muxer turns into avcC/hvcC (4-byte start codes)."""
    return b"".join(b"\x00\x00\x00\x01" + p for p in sets)
