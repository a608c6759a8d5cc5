"""The crash-safe segment writer: fragmented MP4 files, one after another, for one camera.

Lifecycle of a segment file (the invariants recovery relies on):
  1. created with O_EXCL, 0600, in `<root>/segments/<camera>/` (0700), named by its start;
  2. written as fragmented MP4: the session's ftyp+moov (written by FFmpeg once per stream
     description, nvr.media.mp4.init_segment), then one moof+mdat a GOP (nvr.media.mp4.fragment,
     the bytes FFmpeg's muxer writes), each written whole with one writev() when the next keyframe
     arrives, so a kill at any moment leaves a file playable up to its last complete fragment
     (docs/design.md, "Ingest hot path");
  3. closed: last fragment and mfra → fsync file → fsync folder → THEN `on_closed(NewSegment)`
     (the row), whose sha256 is that of every byte written, hashed as it was written.

Time (docs/time.md): a session has one wall-clock anchor (nvr.storage.anchor), re-estimated
with every frame so that no frame is stamped later than it arrived. A segment's times are
fixed when it closes: segment N ends at the anchor + the media time of N+1's first frame, and
N+1 starts exactly there, so no frame is dropped or doubled at a cut. The first segment of a
session also gets its start then (the anchor may have fallen since it opened: a burst of
buffered video), and its file is renamed to match. A session that follows a recorded segment
holds its frames until the anchor settles, then drops those stamped before that segment's end
(video a relay sent again at a reconnection) up to the first keyframe at or after it.

Frames come in decode order (`Frame`), H.264 and H.265 ones either length-prefixed (the own
RTSP reader's: stored as they are) or in Annex-B (FFmpeg's reader's: converted,
nvr.media.access_unit); other codecs (MJPEG through FFmpeg's reader) are stored as they come.

Runs on the camera's thread (or the read loop's); nothing here touches the event loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import av.stream

from nvr import log, timeutil
from nvr.media import access_unit
from nvr.media import param_sets as ps
from nvr.media.mp4 import fragment as fmp4
from nvr.media.mp4 import init_segment
from nvr.storage import fsutil
from nvr.storage.anchor import WallAnchor
from nvr.storage.index import NewSegment

_NAL_CODECS = frozenset({"h264", "hevc"})  # NAL units, length-prefixed in MP4
# A fragment is written at each keyframe, as FFmpeg's frag_keyframe did. A camera with a long
# or "smart" GOP (a keyframe a minute) would hold that much video in memory, and lose it to a
# crash: its fragments are also cut at these (a fragment may then start on a non-keyframe).
FRAGMENT_MAX_S = 10.0
FRAGMENT_MAX_BYTES = 16 * 1024 * 1024
# While a burst of buffered video is still arriving (nvr.storage.anchor), a segment is not
# closed, since its end would be stamped from an anchor that is still falling; but for at most
# this long past its length.
BURST_HOLD_MAX_S = 60.0
# A session that follows recorded footage holds its frames until its anchor settles, to drop
# what a relay re-sends of video already recorded (docs/time.md, "The anchor", 8); but at most
# this much (bytes or media time), beyond which they are written as they stand.
HOLD_MAX_BYTES = 32 * 1024 * 1024
HOLD_MAX_S = 60.0
_IOV_MAX = 1024  # buffers one writev() takes (Linux UIO_MAXIOV)

_log = log.get("nvr.storage.segment_writer")


class Frame(Protocol):
    """A frame as the writer takes it: times in the session's time base (the template
    stream's), the access unit in one or more payloads, and when its last byte arrived
    (µs of the session's monotonic clock)."""

    @property
    def pts(self) -> int: ...
    @property
    def dts(self) -> int: ...
    @property
    def duration(self) -> int: ...
    @property
    def key(self) -> bool: ...
    @property
    def payloads(self) -> Sequence[av.Packet[Any]] | Sequence[bytes]: ...
    @property
    def arrival_mono_us(self) -> int: ...


@dataclasses.dataclass(slots=True)
class _Held:
    """A frame held while the session's anchor settles: what the writer needs of it."""

    pts: int
    dts: int
    duration: int
    key: bool
    arrival_mono_us: int
    data: bytes | bytearray
    params: tuple[bytes, ...]


def stagger_fraction(camera_id: str) -> float:
    """A stable number in [0, 1) from the camera id: cameras started together do not all
    rotate (and fsync) in the same second."""
    return int.from_bytes(hashlib.sha256(camera_id.encode()).digest()[:8], "big") / 2**64


@dataclasses.dataclass
class _Open:
    path: Path
    fd: int  # ours (O_EXCL, 0600)
    start_us: int
    first_dts: int
    first_of_session: bool  # its start is the anchor's at close (else the last segment's end)
    params: tuple[bytes, ...]
    init: init_segment.InitSegment
    hasher: hashlib._Hash
    offset: int = 0  # bytes written (and hashed)
    # What is in the file: frames of written fragments only (a fragment that failed to write
    # is not counted, and is tried again at close).
    frames: int = 0
    keyframes: int = 0
    end_dts: int = 0  # last written frame's dts + its duration, in input ticks
    added_end_dts: int = 0  # the same for the last frame added to the fragment in progress
    last_dts: int = -1  # last dts written, in track ticks (from 0 at the segment's first)
    same_clock: bool = True  # the track's timescale is the input's: no rescaling
    sequence: int = 0  # fragments written
    with_cts: bool = False  # a frame had pts != dts: every later trun carries offsets
    fragment: fmp4.Fragment = dataclasses.field(default_factory=fmp4.Fragment)
    random_access: list[tuple[int, int]] = dataclasses.field(default_factory=list)


class SegmentWriter:
    def __init__(
        self,
        camera_id: str,
        storage_root: Path,
        segment_seconds: float,
        on_closed: Callable[[NewSegment], None],
        *,
        first_segment_fraction: float | None = None,
        mono_us: Callable[[], int] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.folder = storage_root / "segments" / camera_id
        self.segment_seconds = segment_seconds
        self.on_closed = on_closed
        # The clock of the packets' arrival_mono_us (the session's WallClock.mono_us).
        self._mono_us = mono_us or (lambda: time.monotonic_ns() // 1000)
        frac = stagger_fraction(camera_id) if first_segment_fraction is None else first_segment_fraction
        # Only the recorder's first segment is shortened; after that every camera keeps its phase.
        self._target_s = segment_seconds * (0.5 + 0.5 * frac)
        self._open: _Open | None = None
        self._template: av.stream.Stream | None = None
        self._codec_name = ""
        self._length_prefixed = False
        # ftyp+moov by parameter sets, for this session (a camera that alternates between two
        # sets of SPS/PPS gets each written once; a few kept at most)
        self._inits: dict[tuple[bytes, ...], init_segment.InitSegment] = {}
        # The decoder's parameter sets as of the last keyframe: the SDP's, each replaced by
        # the in-band set of the same id (nvr.media.param_sets).
        self._known: tuple[bytes, ...] = ()
        self._anchor: WallAnchor | None = None  # None until the session's first frame
        self._session_wall_us = 0  # start_session's anchor_us: the wall/monotonic pairing
        self._anchor_dts = 0  # media time 0 of the session
        self._tb = Fraction(1, 90000)
        self._us_num, self._us_den = 1_000_000, 90000  # µs a tick, as an integer fraction
        self.last_end_us: int | None = None
        # Frames held while the session's anchor settles (only when last_end_us is known).
        self._held: list[_Held] = []
        self._held_bytes = 0
        self._holding = False
        # Until the session's first segment opens: frames stamped before last_end_us are
        # dropped (already recorded), then the rest up to a keyframe (undecodable without it).
        self._resent = 0  # of this session: stamped before last_end_us
        self._undecodable = 0  # of this session: after it, before the first keyframe kept
        self.resent_frames_dropped = 0  # all sessions'

    # -- session -------------------------------------------------------------------------------
    def start_session(self, template: av.stream.Stream, anchor_us: int, *,
                      length_prefixed: bool = False) -> int:
        """A new input (or a timestamp discontinuity): a fresh wall-clock anchor. `anchor_us` is
        the wall time at which the next packet written arrived (with its arrival_mono_us, the
        session's pairing of wall and monotonic time); the session's first segment starts at
        the anchor's estimate when it closes, and never before the previous segment ended.
        Returns `anchor_us` clamped so (the start as far as is known now).
        `length_prefixed`: the session's H.264/H.265 frames come with each NAL unit behind its
        4-byte length (the own reader's), not in Annex-B (FFmpeg's reader's): stored as they
        are."""
        self.close_segment()
        self._session_wall_us = anchor_us
        self._anchor = None
        self._holding = self.last_end_us is not None
        self._resent = self._undecodable = 0
        if self.last_end_us is not None:
            anchor_us = max(anchor_us, self.last_end_us)
        if template is not self._template:
            self._inits = {}
            codec = str(template.codec_context.name)
            self._known = ps.merge((), ps.in_access_unit(template.codec_context.extradata or b"",
                                                         codec), codec)
        self._template = template
        self._codec_name = str(template.codec_context.name)
        self._length_prefixed = length_prefixed and self._codec_name in _NAL_CODECS
        self._tb = Fraction(template.time_base or Fraction(1, 90000))
        self._us_num = self._tb.numerator * 1_000_000
        self._us_den = self._tb.denominator
        return anchor_us

    def end_session(self) -> NewSegment | None:
        """Finish the open segment and forget the input stream (its container is closing)."""
        try:
            return self.close_segment()
        finally:
            self._template = None
            self._inits = {}
            self._known = ()

    def _media_us(self, dts: int) -> int:
        return (dts - self._anchor_dts) * self._us_num // self._us_den

    def _us(self, dts: int) -> int:
        """The wall time of a dts, by the anchor as it is now."""
        assert self._anchor is not None
        return self._anchor.wall_us(self._media_us(dts))

    @property
    def anchor_delay_us(self) -> int | None:
        """How long after its stamp the latest frame arrived (None outside a session)."""
        return None if self._anchor is None else self._anchor.delay_us

    # -- packets -------------------------------------------------------------------------------
    def write(self, op: Frame) -> None:
        params: tuple[bytes, ...] = ()
        if self._template is None:
            raise RuntimeError("write() outside a session: call start_session() first")
        data = _payload_bytes(op.payloads, self._length_prefixed)
        if op.key:
            inband = ps.in_access_unit(data, self._codec, length_prefixed=self._length_prefixed)
            if inband:  # replaces the same ids; a partial set removes nothing
                self._known = ps.merge(self._known, inband, self._codec)
            params = self._known
        anchor = self._anchor
        if anchor is None:
            if not op.key:
                return  # the timestamp repairer starts sessions on a keyframe; be safe anyway
            self._anchor_dts = op.dts
            anchor = self._anchor = WallAnchor(self._session_wall_us - op.arrival_mono_us)
        anchor.frame((op.dts - self._anchor_dts) * self._us_num // self._us_den,
                     op.arrival_mono_us)
        if not self._holding:
            self._place(op, data, params)
            return
        self._held.append(_Held(op.pts, op.dts, op.duration, op.key, op.arrival_mono_us,
                                data, params))
        self._held_bytes += len(data)
        if anchor.settled() or self._held_bytes >= HOLD_MAX_BYTES or \
                self._media_us(op.dts) - self._media_us(self._held[0].dts) >= HOLD_MAX_S * 1e6:
            self._release()

    def _release(self) -> None:
        """The held frames, by the anchor as it is now (settled, or as far as it got)."""
        held, self._held, self._held_bytes, self._holding = self._held, [], 0, False
        for h in held:
            self._place(h, h.data, h.params)

    def _place(self, op: Frame | _Held, data: bytes | bytearray,
               params: tuple[bytes, ...]) -> None:
        seg = self._open
        anchor = self._anchor
        assert anchor is not None
        if seg is None:
            # Re-sent (a relay's buffer, sent again at a reconnection): stamped before the last
            # segment's end, though it arrived after it. By the anchor now, and so by the
            # settled one (which only falls while a burst comes: stamps only move earlier).
            # A box clock that stepped back gives arrivals before that end: clamped, as ever.
            start = self._us(op.dts)
            end = self.last_end_us
            if end is not None and start < end and \
                    op.arrival_mono_us + anchor.wall_minus_mono >= end:
                self._resent += 1
                return
            if not op.key:  # (only after dropped frames: sessions start on a keyframe)
                self._undecodable += 1 if self._resent else 0
                return
            if self._resent or self._undecodable:
                self.resent_frames_dropped += self._resent
                _log.info("resent_frames_dropped", camera=self.camera_id, count=self._resent,
                          undecodable=self._undecodable)
                self._resent = self._undecodable = 0
            if self.last_end_us is not None:  # never before the last segment ended
                start = max(start, self.last_end_us)
            seg = self._begin(op.dts, params, data, start, first_of_session=True)
        elif op.key:
            elapsed_s = (op.dts - seg.first_dts) * self._us_num // self._us_den / 1e6
            changed = params != seg.params
            due = elapsed_s >= self._target_s and (
                anchor.settled() or elapsed_s >= self._target_s + BURST_HOLD_MAX_S)
            if due or changed:
                if changed:
                    _log.info("codec_parameters_changed", camera=self.camera_id)
                self._target_s = self.segment_seconds
                closed = self._finish(seg, self._us(op.dts))
                start = closed.end_us if closed is not None else self._us(op.dts)
                seg = self._begin(op.dts, params, data, start, first_of_session=False)
        self._add(seg, op, data)

    def _add(self, seg: _Open, op: Frame | _Held, data: bytes | bytearray) -> None:
        ticks = seg.init.timescale
        if seg.same_clock:
            dts, cts, duration = op.dts - seg.first_dts, op.pts - op.dts, op.duration
        else:  # (never seen: both readers give 1/90000)
            dts = _rescale(op.dts - seg.first_dts, self._tb, ticks)
            cts = _rescale(op.pts - seg.first_dts, self._tb, ticks) - dts
            duration = _rescale(op.dts + op.duration - seg.first_dts, self._tb, ticks) - dts
        if dts <= seg.last_dts or cts < 0:
            raise ValueError(f"frames out of order for the muxer: dts {dts} after "
                             f"{seg.last_dts}, pts - dts {cts}")
        frag = seg.fragment
        if len(frag) and (op.key or dts - frag.dts0 >= FRAGMENT_MAX_S * ticks
                          or frag.nbytes >= FRAGMENT_MAX_BYTES):
            self._write_fragment(seg)
            frag = seg.fragment
        codec = self._codec
        sample = data  # other codecs (MJPEG from FFmpeg's reader): as they are
        if codec in _NAL_CODECS:
            if not self._length_prefixed:
                assert isinstance(data, bytearray)
                sample = access_unit.length_prefixed(data)
            if codec == "hevc":
                sample = access_unit.without_parameter_sets(sample)
        frag.add(dts, cts, duration, op.key, sample)
        seg.with_cts = seg.with_cts or cts != 0
        seg.last_dts = dts
        seg.added_end_dts = op.dts + op.duration

    @property
    def _codec(self) -> str:
        assert self._template is not None
        return self._codec_name

    # -- files ---------------------------------------------------------------------------------
    def _init_for(self, params: tuple[bytes, ...],
                  first_key: bytes | bytearray) -> init_segment.InitSegment:
        init = self._inits.get(params)
        if init is None:
            assert self._template is not None
            # The moov describes the sets the frames decode with, each once. Incomplete sets
            # (no SPS anywhere yet): the stream's own extradata, the best there is.
            override = ps.annexb(params) if ps.complete(params, self._codec) else None
            key = access_unit.annexb(first_key) if self._length_prefixed else bytes(first_key)
            init = init_segment.build(self._template, self._codec, override, key, self._tb)
            if len(self._inits) >= 4:
                self._inits.clear()
            self._inits[params] = init
        return init

    def _begin(self, first_dts: int, params: tuple[bytes, ...], first_key: bytes | bytearray,
               start_us: int, *, first_of_session: bool) -> _Open:
        init = self._init_for(params, first_key)
        fsutil.make_private_dir(self.folder)
        path = self.folder / timeutil.segment_name(start_us)
        fd = fsutil.create_exclusive(path)
        seg = _Open(path, fd, start_us, first_dts, first_of_session, params, init,
                    hashlib.sha256(),
                    same_clock=init.timescale * self._tb == 1)
        try:
            self._write(seg, [init.data])
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._open = seg
        _log.debug("segment_opened", camera=self.camera_id, path=str(path))
        return seg

    def _write_fragment(self, seg: _Open) -> None:
        """Write the fragment in progress; only then count its frames. If the write fails the
        file is as it was before it, and the fragment stays to be tried again at close."""
        frag = seg.fragment
        at = seg.offset
        head = fmp4.moof(seg.sequence + 1, frag, seg.with_cts) + fmp4.mdat_header(frag.nbytes)
        self._write(seg, [head, *frag.data])
        seg.sequence += 1
        if frag.keys[0]:  # a player may start here (a fragment cut mid-GOP is not listed)
            seg.random_access.append((frag.dts0 + frag.cts0, at))
        seg.frames += len(frag)
        seg.keyframes += sum(frag.keys)
        seg.end_dts = seg.added_end_dts
        seg.fragment = fmp4.Fragment()

    def _write(self, seg: _Open, parts: Sequence[bytes | bytearray]) -> None:
        """Write every part, in order, with as few writev() calls as it takes, then hash them.
        All or nothing: on an error the file is cut back to where it was, and nothing hashed,
        so the row's sha256 and size always describe the file."""
        start = seg.offset
        done_total = 0
        try:
            for i in range(0, len(parts), _IOV_MAX):
                batch = list(parts[i:i + _IOV_MAX])
                wanted = sum(len(b) for b in batch)
                done = os.writev(seg.fd, batch)
                while done < wanted:  # a short write (a signal, a full disk): the rest, in order
                    rest = memoryview(b"".join(bytes(b) for b in batch))[done:]
                    done += os.write(seg.fd, rest)
                done_total += wanted
        except BaseException:
            try:
                os.ftruncate(seg.fd, start)
            except OSError:
                pass  # the size check at close refuses the row; recovery cuts the file back
            raise
        for part in parts:
            seg.hasher.update(part)
        seg.offset = start + done_total

    def close_segment(self) -> NewSegment | None:
        """Write what is held, finish the open segment (end = start + media duration) and hand
        it on."""
        if self._held:
            self._release()
        self._holding = False
        if self._resent or self._undecodable:  # the session ended before it recorded anything
            self.resent_frames_dropped += self._resent
            _log.info("resent_frames_dropped", camera=self.camera_id, count=self._resent,
                      undecodable=self._undecodable)
            self._resent = self._undecodable = 0
        seg = self._open
        if seg is None:
            return None
        return self._finish(seg, None)

    def _finish(self, seg: _Open, end_us: int | None) -> NewSegment | None:
        """Close `seg`: its end is `end_us` (the wall time of the next segment's first frame,
        at a rotation) or, if None, that of the end of its last frame, but never after now
        (the last frame's duration is a guess, and it may have arrived a moment ago). The
        first segment of a session gets its start now, from the anchor as it is now."""
        self._open = None
        try:
            if len(seg.fragment):
                self._write_fragment(seg)
            self._write(seg, [fmp4.mfra(seg.random_access)])
            size = os.fstat(seg.fd).st_size
            if size != seg.offset:  # the hash must describe the file as it is
                raise OSError(f"segment {seg.path.name}: {size} bytes on disk, {seg.offset} written")
        finally:
            try:
                os.fsync(seg.fd)
            finally:
                os.close(seg.fd)
        if seg.frames == 0:
            seg.path.unlink(missing_ok=True)
            return None
        assert self._anchor is not None
        if end_us is None:
            end_us = min(self._us(seg.end_dts), self._mono_us() + self._anchor.wall_minus_mono)
        if seg.first_of_session:
            self._restamp(seg)
        fsutil.fsync_dir(self.folder)
        assert self._template is not None
        new = NewSegment(
            camera=self.camera_id, start_us=seg.start_us, end_us=max(end_us, seg.start_us),
            path=str(seg.path), bytes=seg.offset, frames=seg.frames,
            keyframes=seg.keyframes, codec=self._codec, width=seg.init.width,
            height=seg.init.height, sha256=seg.hasher.hexdigest(),
        )
        self.last_end_us = new.end_us
        _log.info(
            "segment_closed", camera=self.camera_id, frames=new.frames, bytes=new.bytes,
            seconds=round((new.end_us - new.start_us) / 1e6, 3),
        )
        self.on_closed(new)
        return new


    def _restamp(self, seg: _Open) -> None:
        """The session's first segment: its start by the anchor now, which has seen more
        frames than when the file was named (after a burst, seconds earlier); the file is
        renamed to match (before the folder's fsync and the row)."""
        # Never later than named: the name was the first frame's arrival (or the floor), and
        # the anchor may have risen a little since (drift), not the frame's arrival.
        start = min(self._us(seg.first_dts), seg.start_us)
        if self.last_end_us is not None:  # (not yet this segment's: it is being closed)
            start = max(start, self.last_end_us)
        if start == seg.start_us:
            return
        path = self.folder / timeutil.segment_name(start)
        if path.exists():  # (never seen: names follow starts, which only rise)
            return
        os.rename(seg.path, path)
        seg.path, seg.start_us = path, start


def _rescale(value: int, tb: Fraction, ticks: int) -> int:
    """value × tb in 1/ticks, rounded half away from zero (av_rescale_q's rounding)."""
    exact = value * tb * ticks
    return int(exact + Fraction(1, 2)) if exact >= 0 else -int(-exact + Fraction(1, 2))


def _payload_bytes(payloads: Sequence[av.Packet[Any]] | Sequence[bytes],
                   length_prefixed: bool) -> bytes | bytearray:
    """The access unit's bytes: as they are if already length-prefixed, else copied once (the
    writer rewrites their start codes in place)."""
    if length_prefixed:
        if len(payloads) == 1:
            return bytes(payloads[0])
        return b"".join(bytes(p) for p in payloads)
    if len(payloads) == 1:
        return bytearray(payloads[0])
    return bytearray(b"".join(bytes(p) for p in payloads))
