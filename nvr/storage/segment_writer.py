"""The crash-safe segment writer: fragmented MP4 files, one after another, for one camera.

Lifecycle of a segment file (the invariants recovery relies on):
  1. created with O_EXCL, 0600, in `<root>/segments/<camera>/` (0700), named by its start;
  2. written as fragmented MP4 (empty moov, one moof+mdat a GOP, flushed per fragment), so a
     kill at any moment leaves a file playable up to its last complete fragment. FFmpeg writes
     the file itself (`pipe:<fd>` on our O_EXCL descriptor): no Python file object, so no write
     takes the GIL (docs/design.md, "Ingest hot path");
  3. closed: trailer → fsync file → fsync folder → sha256 of the closed file (read back from
     the page cache, on this thread) → THEN `on_closed(NewSegment)` (the row).

Time (docs/time.md): a session has one wall-time anchor (the arrival of its first keyframe);
every segment of the session starts at anchor + media time since the session's first dts, so
segment N ends exactly where N+1 starts and no frame is dropped or doubled at a cut.

Runs on the camera's thread; nothing here touches the event loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.stream

from nvr import log, timeutil
from nvr.ingest.timestamps import OutPacket
from nvr.storage import fsutil
from nvr.storage.index import NewSegment

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_PARAM_NALS = {"h264": frozenset({7, 8}), "hevc": frozenset({32, 33, 34})}

_log = log.get("nvr.storage.segment_writer")


def param_sets(data: bytes, codec: str) -> tuple[bytes, ...]:
    """The parameter-set NAL units (H.264 SPS/PPS, H.265 VPS/SPS/PPS) of an Annex-B packet,
    each once, in order of appearance. A change of these means a new segment."""
    wanted = _PARAM_NALS.get(codec)
    if wanted is None:
        return ()
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
        nal = data[s:end].rstrip(b"\x00")  # a 4-byte start code leaves a trailing zero
        if nal not in out:
            out.append(nal)
    return tuple(out)


def stagger_fraction(camera_id: str) -> float:
    """A stable number in [0, 1) from the camera id: cameras started together do not all
    rotate (and fsync) in the same second."""
    return int.from_bytes(hashlib.sha256(camera_id.encode()).digest()[:8], "big") / 2**64


@dataclasses.dataclass
class _Open:
    path: Path
    fd: int  # ours (O_EXCL, 0600); FFmpeg writes through it and leaves it open at close
    container: av.container.OutputContainer
    stream: av.stream.Stream
    start_us: int
    first_dts: int
    params: tuple[bytes, ...]
    frames: int = 0
    keyframes: int = 0
    end_dts: int = 0  # last dts + its duration, in input ticks


class SegmentWriter:
    def __init__(
        self,
        camera_id: str,
        storage_root: Path,
        segment_seconds: float,
        on_closed: Callable[[NewSegment], None],
        *,
        first_segment_fraction: float | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.folder = storage_root / "segments" / camera_id
        self.segment_seconds = segment_seconds
        self.on_closed = on_closed
        frac = stagger_fraction(camera_id) if first_segment_fraction is None else first_segment_fraction
        # Only the recorder's first segment is shortened; after that every camera keeps its phase.
        self._target_s = segment_seconds * (0.5 + 0.5 * frac)
        self._open: _Open | None = None
        self._template: av.stream.Stream | None = None
        self._anchor_us = 0
        self._anchor_dts: int | None = None
        self._tb = Fraction(1, 90000)
        self.last_end_us: int | None = None

    # -- session -------------------------------------------------------------------------------
    def start_session(self, template: av.stream.Stream, anchor_us: int) -> int:
        """A new input (or a timestamp discontinuity): the next keyframe starts a segment at
        `anchor_us`, clamped so that it never starts before the previous segment ended."""
        self.close_segment()
        if self.last_end_us is not None:
            anchor_us = max(anchor_us, self.last_end_us)
        self._template = template
        self._tb = Fraction(template.time_base or Fraction(1, 90000))
        self._anchor_us = anchor_us
        self._anchor_dts = None
        return anchor_us

    def end_session(self) -> NewSegment | None:
        """Finish the open segment and forget the input stream (its container is closing)."""
        try:
            return self.close_segment()
        finally:
            self._template = None

    def _us(self, dts: int) -> int:
        assert self._anchor_dts is not None
        return self._anchor_us + int((dts - self._anchor_dts) * self._tb * 1_000_000)

    # -- packets -------------------------------------------------------------------------------
    def write(self, op: OutPacket[av.Packet]) -> None:
        seg = self._open
        params: tuple[bytes, ...] = ()
        if self._template is None:
            raise RuntimeError("write() outside a session: call start_session() first")
        if op.key:
            params = param_sets(_payload_bytes(op.payloads), self._codec)
        if seg is None:
            if not op.key:
                return  # the timestamp repairer starts sessions on a keyframe; be safe anyway
            if self._anchor_dts is None:
                self._anchor_dts = op.dts
            seg = self._begin(op.dts, params)
        elif op.key:
            elapsed_s = float((op.dts - seg.first_dts) * self._tb)
            changed = bool(params) and bool(seg.params) and params != seg.params
            if elapsed_s >= self._target_s or changed:
                if changed:
                    _log.info("codec_parameters_changed", camera=self.camera_id)
                self._target_s = self.segment_seconds
                self._finish(seg, self._us(op.dts))
                seg = self._begin(op.dts, params or seg.params)
        self._mux(seg, op)

    def _mux(self, seg: _Open, op: OutPacket[av.Packet]) -> None:
        if len(op.payloads) == 1:
            pkt = op.payloads[0]
        else:  # pieces of one access unit, merged by the timestamp repairer
            pkt = av.Packet(_payload_bytes(op.payloads))
            pkt.time_base = self._tb
        pkt.pts = op.pts - seg.first_dts
        pkt.dts = op.dts - seg.first_dts
        pkt.duration = op.duration
        pkt.is_keyframe = op.key
        pkt.stream = seg.stream
        seg.container.mux(pkt)  # rescales pkt in place: nobody else may hold this packet
        seg.frames += 1
        seg.keyframes += int(op.key)
        seg.end_dts = op.dts + op.duration

    @property
    def _codec(self) -> str:
        assert self._template is not None
        return str(self._template.codec_context.name)

    # -- files ---------------------------------------------------------------------------------
    def _begin(self, first_dts: int, params: tuple[bytes, ...]) -> _Open:
        assert self._template is not None
        start_us = self._us(first_dts)
        fsutil.make_private_dir(self.folder)
        path = self.folder / timeutil.segment_name(start_us)
        fd = fsutil.create_exclusive(path)
        try:
            # FFmpeg's pipe protocol writes to our descriptor and does not close it. It is not
            # seekable, so the muxer never goes back over bytes already written.
            container = av.open(
                f"pipe:{fd}", "w", format="mp4",
                options={"movflags": MOVFLAGS, "flush_packets": "1"},
            )
            stream = container.add_stream_from_template(self._template)
            if self._codec == "hevc":
                stream.codec_tag = "hvc1"  # hev1 (the default) does not play in most browsers
            extradata = self._template.codec_context.extradata or b""
            template_params = param_sets(extradata, self._codec)
            if params and params != template_params:
                # In-band SPS/PPS differ from the SDP's (or the SDP had none): the moov must
                # describe what the packets really are.
                stream.codec_context.extradata = b"".join(b"\x00\x00\x00\x01" + p for p in params)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._open = _Open(path, fd, container, stream, start_us, first_dts, params)
        _log.debug("segment_opened", camera=self.camera_id, path=str(path))
        return self._open

    def close_segment(self) -> NewSegment | None:
        """Finish the open segment (end = start + media duration) and hand it on."""
        seg = self._open
        if seg is None:
            return None
        return self._finish(seg, self._us(seg.end_dts) if seg.frames else seg.start_us)

    def _finish(self, seg: _Open, end_us: int) -> NewSegment | None:
        self._open = None
        try:
            seg.container.close()  # writes the last fragment and the trailer (mfra)
        finally:
            try:
                os.fsync(seg.fd)
            finally:
                os.close(seg.fd)
        if seg.frames == 0:
            seg.path.unlink(missing_ok=True)
            return None
        fsutil.fsync_dir(self.folder)
        # Hash what is durable on disk, read back once from the page cache (hashlib and the
        # reads release the GIL): the row's sha256 is exactly the file's bytes.
        size, digest = fsutil.size_and_sha256(seg.path)
        ctx = seg.stream.codec_context
        new = NewSegment(
            camera=self.camera_id, start_us=seg.start_us, end_us=max(end_us, seg.start_us),
            path=str(seg.path), bytes=size, frames=seg.frames,
            keyframes=seg.keyframes, codec=self._codec, width=int(ctx.width or 0),
            height=int(ctx.height or 0), sha256=digest,
        )
        self.last_end_us = new.end_us
        _log.info(
            "segment_closed", camera=self.camera_id, frames=new.frames, bytes=new.bytes,
            seconds=round((new.end_us - new.start_us) / 1e6, 3),
        )
        self.on_closed(new)
        return new


def _payload_bytes(payloads: list[av.Packet]) -> bytes:
    if len(payloads) == 1:
        return bytes(payloads[0])
    return b"".join(bytes(p) for p in payloads)
