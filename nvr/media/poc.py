"""The display order a stream's own pictures declare: their picture order count (pure).

An H.264 or H.265 picture carries its place in display order in its first slice's header: the
low bits of its picture order count (POC; H.264 8.2.1, pic_order_cnt_type 0; H.265 8.3.1), the
high bits kept by the decoder from the pictures before. The RTP timestamp should say the same
(RFC 6184 5.1, RFC 7798 4.1: the sampling time, so B-frames come with times below the frame
before them); a server that stamps frames in the order it sends them does not, and only the POC
still tells how they show (nvr.ingest.display_order).

What is read, and no more: from each SPS, the widths of frame_num and of the POC's low bits, and
the flags that put fields in a slice header; from each PPS, its SPS and (H.265) what stands in a
slice header before the POC. H.264 streams with pic_order_cnt_type 1 (rare) or field pictures,
and anything unreadable, give None: "unknown", never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from nvr.media.param_sets import Bits, skip_hevc_profile_tier_level

_H264_HIGH = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
V = TypeVar("V")
MAX_IDS = 64  # parameter sets kept per kind (H.264 allows 32 SPS and 256 PPS ids; cameras use 1)


@dataclass(frozen=True)
class _Sps:
    poc_lsb_bits: int  # 0: no POC low bits in slice headers (H.264 types 1 and 2)
    frame_num_bits: int = 0  # H.264
    frame_mbs_only: bool = True  # H.264: no field_pic_flag in slice headers
    separate_colour_planes: bool = False
    poc_type: int = 0  # H.264


@dataclass(frozen=True)
class _Pps:
    sps_id: int
    dependent_slices: bool = False  # H.265
    output_flag: bool = False  # H.265
    extra_bits: int = 0  # H.265


@dataclass(frozen=True)
class Picture:
    poc: int  # the full picture order count
    new_sequence: bool  # the POC starts afresh here (IDR; H.265 also BLA, a CRA first or after
    # an end of sequence)
    wrap: int = 0  # the range of the POC's low bits (0: counted, H.264 type 2): a POC that falls
    # by about this much was misread (its high bits guessed wrong after frames were lost)


class PictureOrder:
    """Parameter sets as they come (the SDP's, then in band), and each picture's POC, in decode
    order. One per stream."""

    def __init__(self, codec: str, params: tuple[bytes, ...] = ()) -> None:
        self.codec = codec
        self._sps: dict[int, _Sps] = {}
        self._pps: dict[int, _Pps] = {}
        self._prev_msb = 0
        self._prev_lsb = 0
        self._started = False
        self._decoded = 0  # pictures since the last IDR (H.264 pic_order_cnt_type 2)
        for nal in params:
            self._param(nal)

    def picture(self, sample: bytes | bytearray) -> Picture | None:
        """The POC of a length-prefixed access unit (its parameter sets taken first), or None
        if its first slice does not say (or is not a picture's first). Raises nothing."""
        try:
            return self._picture(sample)
        except (ValueError, IndexError):
            return None

    def _picture(self, sample: bytes | bytearray) -> Picture | None:
        i, end = 0, len(sample)
        while end - i > 4:
            n = int.from_bytes(sample[i:i + 4], "big")
            if n == 0 or i + 4 + n > end:
                return None
            nal = sample[i + 4:i + 4 + n]
            i += 4 + n
            if self.codec == "h264":
                kind = nal[0] & 0x1F
                if kind in (7, 8):
                    self._param(bytes(nal))
                elif 1 <= kind <= 5:
                    return self._h264(bytes(nal[:48]), kind)
            else:
                kind = (nal[0] >> 1) & 0x3F
                if 32 <= kind <= 34:
                    self._param(bytes(nal))
                elif kind in (36, 37):  # end of sequence, of bitstream: a CRA next starts afresh
                    self._started = False
                elif kind < 32 and len(nal) >= 3:
                    return self._hevc(bytes(nal[:48]), kind)
        return None

    def _param(self, nal: bytes) -> None:
        h264 = self.codec == "h264"
        kind = (nal[0] & 0x1F) if h264 else (nal[0] >> 1) & 0x3F
        body = nal[1:] if h264 else nal[2:]
        is_sps = kind == (7 if h264 else 33)
        try:
            if is_sps:
                _keep(self._sps, *(_h264_sps if h264 else _hevc_sps)(Bits(body[:255])))
            elif kind == (8 if h264 else 34):
                bits = Bits(body[:16])
                pps_id, sps_id = bits.ue(), bits.ue()
                _keep(self._pps, pps_id, _Pps(sps_id) if h264 else _Pps(
                    sps_id, bool(bits.u(1)), bool(bits.u(1)), bits.u(3)))
        except (ValueError, IndexError):
            # An unreadable set replaces one we cannot name: slices then say "unknown" rather
            # than be read with an old set's widths (cameras use one id of each).
            (self._sps if is_sps else self._pps).clear()

    def _h264(self, nal: bytes, kind: int) -> Picture | None:
        bits = Bits(nal[1:])
        if bits.ue() != 0:
            return None  # first_mb_in_slice: not the picture's first slice
        bits.ue()  # slice_type
        pps = self._pps.get(bits.ue())
        sps = self._sps.get(pps.sps_id) if pps is not None else None
        if sps is None or sps.poc_type == 1:
            return None
        if sps.separate_colour_planes:
            bits.u(2)
        bits.u(sps.frame_num_bits)
        if not sps.frame_mbs_only and bits.u(1):
            return None  # a field: not followed
        idr = kind == 5
        if idr:
            bits.ue()  # idr_pic_id
        lsb = bits.u(sps.poc_lsb_bits) if sps.poc_type == 0 else 0
        if idr:
            self._prev_msb = self._prev_lsb = self._decoded = 0
        self._started = True
        if sps.poc_type == 2:  # display order is decode order (8.2.1.3)
            self._decoded += 1
            return Picture(2 * self._decoded, idr)
        msb = self._msb(lsb, sps.poc_lsb_bits)
        if nal[0] & 0x60:  # nal_ref_idc: a reference picture carries the POC on
            self._prev_msb, self._prev_lsb = msb, lsb
        return Picture(msb + lsb, idr, 1 << sps.poc_lsb_bits)

    def _hevc(self, nal: bytes, kind: int) -> Picture | None:
        bits = Bits(nal[2:])
        if not bits.u(1):
            return None  # first_slice_segment_in_pic_flag
        irap = 16 <= kind <= 23
        if irap:
            bits.u(1)  # no_output_of_prior_pics_flag
        pps = self._pps.get(bits.ue())
        sps = self._sps.get(pps.sps_id) if pps is not None else None
        if pps is None or sps is None:
            return None
        bits.u(pps.extra_bits)
        bits.ue()  # slice_type
        if pps.output_flag:
            bits.u(1)
        if sps.separate_colour_planes:
            bits.u(2)
        idr = kind in (19, 20)
        lsb = 0 if idr else bits.u(sps.poc_lsb_bits)
        # An IDR or BLA picture, or a CRA that starts the stream, starts the POC afresh.
        fresh = 16 <= kind <= 20 or (kind == 21 and not self._started)
        if fresh:
            self._prev_msb = self._prev_lsb = 0
        msb = 0 if fresh else self._msb(lsb, sps.poc_lsb_bits)
        temporal_id = (nal[1] & 0x07) - 1
        # What carries the POC on: a TemporalId 0 picture that is not RADL, RASL or a sub-layer
        # non-reference picture (8.3.1, prevTid0Pic).
        if temporal_id == 0 and not (6 <= kind <= 9 or (kind <= 14 and kind % 2 == 0)):
            self._prev_msb, self._prev_lsb = msb, lsb
        self._started = True
        return Picture(msb + lsb, fresh, 1 << sps.poc_lsb_bits)

    def _msb(self, lsb: int, lsb_bits: int) -> int:
        half = 1 << (lsb_bits - 1)
        if lsb < self._prev_lsb and self._prev_lsb - lsb >= half:
            return self._prev_msb + 2 * half
        if lsb > self._prev_lsb and lsb - self._prev_lsb > half:
            return self._prev_msb - 2 * half
        return self._prev_msb


def _keep(table: dict[int, V], key: int, value: V) -> None:
    if key in table or len(table) < MAX_IDS:
        table[key] = value


def _h264_sps(bits: Bits) -> tuple[int, _Sps]:
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    sps_id = bits.ue()
    separate = False
    if profile in _H264_HIGH:
        chroma = bits.ue()
        if chroma == 3:
            separate = bool(bits.u(1))
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    frame_num_bits = bits.ue() + 4
    poc_type = bits.ue()
    if poc_type > 2:
        raise ValueError("no such pic_order_cnt_type")
    if poc_type != 0:
        return sps_id, _Sps(0, frame_num_bits, poc_type=poc_type)
    poc_lsb_bits = bits.ue() + 4
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    bits.ue()  # pic_width_in_mbs_minus1
    bits.ue()  # pic_height_in_map_units_minus1
    frame_mbs_only = bool(bits.u(1))
    if frame_num_bits > 16 or poc_lsb_bits > 16:
        raise ValueError("SPS out of range")
    return sps_id, _Sps(poc_lsb_bits, frame_num_bits, frame_mbs_only, separate)


def _skip_scaling_list(bits: Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + bits.se() + 256) % 256
        last = nxt or last


def _hevc_sps(bits: Bits) -> tuple[int, _Sps]:
    bits.u(4)  # sps_video_parameter_set_id
    skip_hevc_profile_tier_level(bits)
    sps_id = bits.ue()
    separate = False
    if bits.ue() == 3:  # chroma_format_idc
        separate = bool(bits.u(1))
    bits.ue()  # pic_width_in_luma_samples
    bits.ue()  # pic_height_in_luma_samples
    if bits.u(1):  # conformance_window_flag
        for _ in range(4):
            bits.ue()
    bits.ue()  # bit_depth_luma_minus8
    bits.ue()  # bit_depth_chroma_minus8
    poc_lsb_bits = bits.ue() + 4
    if poc_lsb_bits > 16:
        raise ValueError("SPS out of range")
    return sps_id, _Sps(poc_lsb_bits, separate_colour_planes=separate)
