"""One MP4 for a time range: check the sources' hashes, then copy their frames (no re-encode).

Runs in a worker thread (the daemon calls export_clip through asyncio.to_thread); nothing here
touches the event loop. Memory does not grow with the range: a few bytes of sample table per
frame, and at most three segments' bytes (the one being copied, the one being read and checked
ahead, the one whose copy is still being hashed).

Time line (docs/export.md): clip time t shows what happened at wall time actual_start + t.
Frames are placed by wall clock, so a hole in the recording stays a hole in the clip's time
line, and each gap also gets a chapter titled "GAP ..." that players list.

How (docs/export.md, "Writing the clip"): the sample table of every source comes from its small
boxes (nvr.media.mp4.samples), so the whole clip is planned — which frames, at what time, at
which offset — before a frame is copied. The clip is then written once, front to back: ftyp,
moov, mdat. Each source is read ONCE, whole: a second thread reads the next one and checks its
sha256 against the index; the copy checks that the boxes the plan came from are those same bytes,
and copies the frames from them; a third thread hashes the clip as it is written.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nvr import log
from nvr.errors import DataError, IntegrityError
from nvr.media.mp4 import movie as mp4write
from nvr.media.mp4.samples import SegmentLayout, layout_of_bytes, read_layout
from nvr.storage.index import Gap, Segment
from nvr.timeutil import US, to_iso

TICKS = 90_000  # clip time base 1/90000 s: exact for 15, 25, 30 fps and for RTP clocks
# A hole between two segments longer than this, with no gap row, is still shown as a gap.
HOLE_TOLERANCE_US = US
CHUNK = 1 << 20
# A clip whose times do not fit 32-bit MP4 fields at 1/90000 s (a gap of over 13 h inside the
# range) is timed in milliseconds instead.
FALLBACK_TIMESCALE = 1000

_log = log.get("nvr.export")

Progress = Callable[[int, int], None]


class SegmentTampered(IntegrityError):
    """Raised when a source segment's bytes no longer match the sha256 in the index."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"segment {path} does not match its recorded sha256 "
            f"(index {expected[:16]}…, file {actual[:16]}…): footage altered or damaged"
        )
        self.path, self.expected, self.actual = path, expected, actual


class SegmentChanged(SegmentTampered):
    """Raised when a segment's boxes differ between the plan and the bytes whose sha256
    matched: the file changed while it was being exported (it did not match the index at
    one of the two reads)."""

    def __init__(self, path: str, expected: str) -> None:
        IntegrityError.__init__(
            self, f"segment {path} changed while it was being exported "
            "(its frames are not where its boxes said a moment before): footage altered")
        self.path, self.expected, self.actual = path, expected, ""


class NoFootage(DataError):
    """Raised when nothing was recorded in the requested range."""


@dataclass(frozen=True, slots=True)
class ClipResult:
    path: Path
    sha256: str
    frames: int
    actual_start_us: int
    actual_end_us: int
    gaps: list[Gap]
    sources: list[dict[str, str]]  # {path, sha256, start, end}, times ISO (manifest-ready)
    codec: str  # "h264" or "hevc"
    width: int
    height: int
    bytes: int


@dataclass(slots=True)
class _Run:
    """Frames of one source that lie back to back in it: one chunk of the clip."""

    source: int  # index into the chosen segments
    offset: int
    length: int
    frames: int


# (source, offset, size, key, wall pts, wall dts, duration): one frame on its way to the clip
_Frame = tuple[int, int, int, int, int, int, int]


@dataclass(slots=True)
class _Plan:
    """Which frames go into the clip and when, in clip ticks (1/90000 s from the origin)."""

    start_ticks: int  # requested range, wall ticks since the epoch
    end_ticks: int
    origin: int | None = None  # wall ticks of the clip's first frame (its pts)
    last_dts: int | None = None
    last_end: int = 0  # wall ticks where the last frame ends
    last_duration: int = 0
    dts: array[int] = field(default_factory=lambda: array("q"))
    pts: array[int] = field(default_factory=lambda: array("q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    keys: bytearray = field(default_factory=bytearray)
    runs: list[_Run] = field(default_factory=list)
    # The GOP that holds the requested start, as _Frame tuples, until the origin is known.
    preroll: list[_Frame] = field(default_factory=list)
    done: bool = False

    @property
    def frames(self) -> int:
        return len(self.dts)


@dataclass(slots=True)
class ClipPlan:
    """What a clip will hold, worked out from the sources' small boxes before a frame is read:
    the decision to deliver it is made on `start_us`..`end_us` (the keyframe lead-in before the
    requested start included), and only then is anything copied."""

    chosen: list[Segment]
    layouts: list[SegmentLayout]
    plan: _Plan
    gaps: list[Gap]
    requested: tuple[int, int]

    @property
    def start_us(self) -> int:
        """Where the clip starts: the keyframe at or before the requested start."""
        assert self.plan.origin is not None
        return _us(self.plan.origin)

    @property
    def end_us(self) -> int:
        """Where the clip's last frame ends (it starts before the requested end)."""
        return _us(self.plan.last_end)

    @property
    def source_bytes(self) -> int:
        return sum(s.bytes for s in self.chosen)


def plan_clip(segments: Sequence[Segment], gaps: Sequence[Gap], start_us: int,
              end_us: int) -> ClipPlan:
    """Plan the clip of [start_us, end_us) from the sources' sample tables (small boxes only;
    no frame is read). Raises NoFootage when nothing decodable lies in the range."""
    if end_us <= start_us:
        raise DataError(f"export range ends ({to_iso(end_us)}) before it starts ({to_iso(start_us)})")
    chosen = sorted(
        (s for s in segments if s.end_us > start_us and s.start_us < end_us),
        key=lambda s: s.start_us,
    )
    if not chosen:
        raise NoFootage(f"nothing recorded between {to_iso(start_us)} and {to_iso(end_us)}")
    _check_uniform(chosen)
    plan = _Plan(start_us * TICKS // US, -(-end_us * TICKS // US))
    try:
        layouts = [_layout(seg) for seg in chosen]
        for i, (seg, layout) in enumerate(zip(chosen, layouts, strict=True)):
            _plan_segment(plan, i, seg, layout)
            if plan.done:
                break
        if plan.origin is None:
            raise NoFootage(f"no decodable footage (no keyframe) between {to_iso(start_us)} "
                            f"and {to_iso(end_us)}")
    except Exception:
        # The plan comes from bytes not yet checked: a segment altered to hide footage or to
        # break the plan must be reported as altered, not as "no footage" or a parse error.
        for seg in chosen:
            check_hash(seg)
        raise
    return ClipPlan(chosen, layouts, plan, clip_gaps(chosen, gaps, start_us, end_us),
                    (start_us, end_us))


def write_planned(clip: ClipPlan, out_path: Path, *,
                  progress: Progress | None = None) -> ClipResult:
    """Write a planned clip to out_path (created 0600; must not exist), checking every source's
    sha256 and that its boxes are those the plan came from."""
    chosen, layouts, plan = clip.chosen, clip.layouts, clip.plan
    step = _stepper(progress, 2 * len(chosen))
    size, digest = _write_clip(chosen, layouts, plan, _chapters(plan, clip.gaps), out_path, step)
    actual_start, actual_end = clip.start_us, clip.end_us
    first = chosen[0]
    _log.info("clip_exported", path=str(out_path), frames=plan.frames, bytes=size,
              start=to_iso(actual_start), end=to_iso(actual_end), gaps=len(clip.gaps))
    return ClipResult(
        path=out_path, sha256=digest, frames=plan.frames, actual_start_us=actual_start,
        actual_end_us=actual_end,
        gaps=clip.gaps,  # every gap in the *requested* range, also before/after the footage
        sources=[_source(s) for s in chosen if s.start_us < actual_end],
        codec=first.codec, width=first.width, height=first.height, bytes=size,
    )


def export_clip(
    segments: Sequence[Segment],
    gaps: Sequence[Gap],
    start_us: int,
    end_us: int,
    out_path: Path,
    *,
    progress: Progress | None = None,
) -> ClipResult:
    """Write the footage of [start_us, end_us) to out_path (created 0600; must not exist):
    plan_clip, then write_planned."""
    return write_planned(plan_clip(segments, gaps, start_us, end_us), out_path,
                         progress=progress)


def first_frame_at_or_after(segments: Sequence[Segment], at_us: int) -> int | None:
    """Wall time of the first frame shown at or after at_us, from the sample tables alone (the
    frame a still of at_us shows; nvr.export.still picks it the same way); None if none."""
    for seg in sorted(segments, key=lambda s: s.start_us):
        if seg.end_us <= at_us:
            continue
        lay = _layout(seg)
        base: int | None = None
        best: int | None = None
        for i in range(len(lay.dts)):
            if lay.size[i] == 0:
                continue
            pts = lay.dts[i] + lay.cto[i]
            base = pts if base is None else base
            wall = seg.start_us + (pts - base) * US // lay.timescale
            if wall >= at_us and (best is None or wall < best):
                best = wall
        if best is not None:
            return best
    return None


@dataclass(frozen=True, slots=True)
class SegmentWindow:
    """The frames of one segment an export of [start, end) would take: `frames` are indices
    into the segment's layout (decode order), from the keyframe at or before the start (the
    lead-in a player needs to decode it) to the last frame shown before the end."""

    frames: list[int]
    start_us: int  # wall time of the first frame (the lead-in keyframe)
    end_us: int  # wall time where the last frame ends


def segment_window(seg: Segment, layout: SegmentLayout, start_us: int,
                   end_us: int) -> SegmentWindow | None:
    """What of `seg` lies in [start_us, end_us), by the export's own plan (the same lead-in
    rule for a clip and for playback); None if nothing decodable does."""
    plan = _Plan(start_us * TICKS // US, -(-end_us * TICKS // US))
    _plan_segment(plan, 0, seg, layout)
    if plan.origin is None:
        return None
    taken = sorted((run.offset, run.offset + run.length) for run in plan.runs)
    frames = []
    r = 0
    for i, off in enumerate(layout.offset):  # frames lie in the file in decode order
        while r < len(taken) and off >= taken[r][1]:
            r += 1
        if r == len(taken):
            break
        if off >= taken[r][0] and layout.size[i]:
            frames.append(i)
    return SegmentWindow(frames, _us(plan.origin), _us(plan.last_end))


def segment_layout(seg: Segment) -> SegmentLayout:
    """The segment's sample table (its small boxes only); DataError if it is not ours."""
    return _layout(seg)


def _layout(seg: Segment) -> SegmentLayout:
    """The segment's sample table (its small boxes only)."""
    fd = os.open(seg.path, os.O_RDONLY)
    try:
        return read_layout(fd, os.fstat(fd).st_size)
    except (ValueError, IndexError, struct.error, OverflowError) as e:
        raise DataError(f"segment {seg.path} is not a fragmented MP4 the recorder wrote: {e}") from e
    finally:
        os.close(fd)


# -- the plan: pure, from the sample tables -------------------------------------------------------
def _plan_segment(plan: _Plan, source: int, seg: Segment, lay: SegmentLayout) -> None:
    """Add source's frames to the plan in decode order. A frame's wall time is the segment's
    start (the recorder names segments by their first frame) plus its pts since that frame."""
    num, den = TICKS, lay.timescale
    seg_ticks = seg.start_us * TICKS // US
    base: int | None = None
    shift: int | None = None
    for i in range(len(lay.dts)):
        if lay.size[i] == 0:
            continue
        dts = lay.dts[i]
        pts = dts + lay.cto[i]
        if base is None:
            base = pts
        wall_pts = seg_ticks + (pts - base) * num // den
        wall_dts = seg_ticks + (dts - base) * num // den
        dur = lay.duration[i] * num // den
        if wall_pts >= plan.end_ticks:
            plan.done = True  # decode order: nothing after this may be written
            return
        frame = (source, lay.offset[i], lay.size[i], lay.key[i], wall_pts, wall_dts, dur)
        if plan.origin is None:
            if lay.key[i]:
                plan.preroll = [frame]  # a later keyframe at or before the start wins
            elif plan.preroll:
                plan.preroll.append(frame)
            else:
                continue  # no keyframe yet: these frames could not be decoded
            if wall_pts + max(dur, 1) <= plan.start_ticks:
                continue  # this frame is over before the requested start
            plan.origin = plan.preroll[0][4]
            for held in plan.preroll:
                _add(plan, held, 0)
            plan.preroll.clear()
            continue
        if shift is None:
            # Clocks of consecutive segments may disagree by a few ms: rather than drop the
            # frames that would go back in time, move the whole segment after the last frame.
            rel = wall_dts - plan.origin
            shift = 0 if plan.last_dts is None or rel > plan.last_dts else plan.last_dts + 1 - rel
            if shift:
                _log.warning("segment_moved_later", path=seg.path, ms=shift * 1000 // TICKS)
        _add(plan, frame, shift)


def _add(plan: _Plan, frame: _Frame, shift: int) -> None:
    source, offset, size, key, wall_pts, wall_dts, dur = frame
    assert plan.origin is not None
    dts = wall_dts + shift - plan.origin
    if plan.last_dts is not None and dts <= plan.last_dts:
        _log.warning("frame_dropped", reason="dts_not_increasing", dts=dts, last_dts=plan.last_dts)
        return
    plan.last_dts = dts
    plan.dts.append(dts)
    plan.pts.append(wall_pts + shift - plan.origin)
    plan.sizes.append(size)
    plan.keys.append(key)
    plan.last_duration = dur
    plan.last_end = max(plan.last_end, wall_pts + shift + dur)
    run = plan.runs[-1] if plan.runs else None
    if run is not None and run.source == source and run.offset + run.length == offset:
        run.length += size
        run.frames += 1
    else:
        plan.runs.append(_Run(source, offset, size, 1))


# -- the clip's boxes ------------------------------------------------------------------------
def _video_table(plan: _Plan, layout: SegmentLayout) -> mp4write.VideoTable:
    """The plan as an MP4 track: decode times from 0, the edit list starting the presentation
    at the origin's pts (B-frames decode before they are shown, so the first dts is <= 0)."""
    first = plan.dts[0]
    dts = [d - first for d in plan.dts]
    cto = [p - d for p, d in zip(plan.pts, plan.dts, strict=True)]
    assert plan.origin is not None
    last_duration, shown, timescale = plan.last_duration, plan.last_end - plan.origin, TICKS
    media_time = -first
    deltas = max((b - a for a, b in zip(dts, dts[1:], strict=False)), default=0)
    if max(deltas, last_duration, max(cto)) > mp4write.U32:
        # A gap of over 13 h inside the range: 1/90000 s no longer fits 32-bit fields.
        timescale = FALLBACK_TIMESCALE
        scaled: list[int] = []
        for d in dts:
            scaled.append(max(d * timescale // TICKS, scaled[-1] + 1 if scaled else 0))
        cto = [max((d + c) * timescale // TICKS - s, 0) for d, c, s in zip(dts, cto, scaled,
                                                                            strict=True)]
        dts, media_time = scaled, media_time * timescale // TICKS
        last_duration = max(last_duration * timescale // TICKS, 1)
        shown = -(-shown * timescale // TICKS)
    offsets, counts, at = [], [], 0
    for run in plan.runs:
        offsets.append(at)
        counts.append(run.frames)
        at += run.length
    return mp4write.VideoTable(
        sample_entry=layout.sample_entry, width=layout.width, height=layout.height,
        timescale=timescale, dts=dts, cto=cto, last_duration=last_duration, sizes=plan.sizes,
        keys=plan.keys, chunk_samples=counts, chunk_offsets=offsets, media_time=media_time,
        shown=shown)


def _head(video: mp4write.VideoTable, chapters: mp4write.Chapters | None, codec: str,
          payload: int) -> bytes:
    """ftyp + moov + the mdat's header: everything before the first frame's bytes."""
    ftyp = mp4write.ftyp(codec)
    mdat = mp4write.mdat_header(payload)
    size = len(mp4write.moov(video, chapters, 0, wide=False))
    wide = len(ftyp) + size + len(mdat) + payload > mp4write.U32
    moov = mp4write.moov(video, chapters, 0, wide=wide)  # its length, with the right width
    return ftyp + mp4write.moov(video, chapters, len(ftyp) + len(moov) + len(mdat),
                                wide=wide) + mdat


def _chapters(plan: _Plan, gaps: list[Gap]) -> mp4write.Chapters | None:
    """"recording" stretches and "GAP <reason>" holes, in ms from the clip start; None when
    the clip has no gap (no chapter track needed)."""
    assert plan.origin is not None
    origin, end = _us(plan.origin), _us(plan.last_end)
    marks: list[tuple[int, int, str]] = []
    cursor = origin
    for g in gaps:
        g0, g1 = max(g.start_us, origin), min(g.end_us, end)
        if g1 <= g0:
            continue
        if g0 > cursor:
            marks.append((cursor, g0, f"recording from {to_iso(cursor)}"))
        marks.append((g0, g1, f"GAP {g.reason}: nothing recorded {to_iso(g.start_us)} to {to_iso(g.end_us)}"))
        cursor = g1
    if not marks:
        return None
    if cursor < end:
        marks.append((cursor, end, f"recording from {to_iso(cursor)}"))
    starts = [(a - origin) // 1000 for a, _, _ in marks]
    ends = starts[1:] + [-(-(end - origin) // 1000)]
    return mp4write.Chapters(
        titles=[t for _, _, t in marks], starts_ms=starts,
        lengths_ms=[max(b - a, 1) for a, b in zip(starts, ends, strict=True)],
        offset=sum(r.length for r in plan.runs))


# -- writing: each source read once, the clip written once ----------------------------------------
def _write_clip(
    chosen: Sequence[Segment], layouts: Sequence[SegmentLayout], plan: _Plan,
    chapters: mp4write.Chapters | None, out_path: Path, step: Callable[[], None],
) -> tuple[int, str]:
    """Write the clip front to back; (bytes, sha256). Any error deletes the clip."""
    video = _video_table(plan, layouts[0])
    texts = mp4write.chapter_samples(chapters.titles) if chapters else []
    payload = sum(r.length for r in plan.runs) + sum(len(t) for t in texts)
    head = _head(video, chapters, chosen[0].codec, payload)
    h = hashlib.sha256()
    # Three buffers in turn, each as large as the largest source: segment i + 1 is read into
    # one while segment i is copied from the next and segment i - 1's copy is hashed from the
    # third. Reusing them spares the kernel zeroing fresh pages for every segment.
    largest = max(layout.file_size for layout in layouts)
    buffers = [bytearray(largest) for _ in range(min(3, len(chosen)))]
    with ThreadPoolExecutor(1, thread_name_prefix="export-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="export-hash") as hasher:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        reads: list[Future[memoryview]] = []
        hashing: Future[None] | None = None

        def source(i: int) -> memoryview:
            """Segment i's checked bytes; the read of segment i + 1 starts meanwhile."""
            while len(reads) < min(i + 2, len(chosen)):
                n = len(reads)
                reads.append(reader.submit(_read_checked, chosen[n], buffers[n % 3], step))
            return reads[i].result()

        def written(views: Sequence[memoryview | bytes]) -> None:
            nonlocal hashing
            _write_all(fd, views)
            if hashing is not None:
                hashing.result()  # the copy before this one is hashed: its buffer is free
            hashing = hasher.submit(_update, h, views)

        try:
            written([head])
            runs_of: list[list[_Run]] = [[] for _ in chosen]
            for run in plan.runs:
                runs_of[run.source].append(run)
            for i, seg in enumerate(chosen):
                data = source(i)  # checked against the index, also past the end of the range
                _check_layout(seg, layouts[i], data)
                written([data[r.offset:r.offset + r.length] for r in runs_of[i]])
                step()
            written(texts)
            if hashing is not None:
                hashing.result()
            size = os.fstat(fd).st_size
        except BaseException:
            for f in reads:
                f.cancel()
            out_path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
    if size != len(head) + payload:
        out_path.unlink(missing_ok=True)
        raise OSError(f"clip {out_path} is {size} bytes, {len(head) + payload} were planned")
    return size, h.hexdigest()


def _read_checked(seg: Segment, buffer: bytearray, step: Callable[[], None]) -> memoryview:
    """The segment's bytes, read once into `buffer` and checked against the index's sha256."""
    with open(seg.path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size > len(buffer):  # it grew since the plan: the check below names what changed
            buffer = bytearray(size)
        view = memoryview(buffer)[:size]
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                raise SegmentTampered(seg.path, seg.sha256, sha256_file(seg.path))
            got += n
    actual = hashlib.sha256(view).hexdigest()
    if actual != seg.sha256:
        raise SegmentTampered(seg.path, seg.sha256, actual)
    step()
    return view


def _check_layout(seg: Segment, layout: SegmentLayout, data: memoryview) -> None:
    """The plan was made from the segment's boxes read first; the frames are copied from the
    bytes read later and checked against the index. Walking those bytes again must find the
    very same boxes at the same places in a file of the same size, or the plan could leave out
    (or misplace) frames of a segment that was swapped in between."""
    try:
        again = layout_of_bytes(data)
    except (ValueError, IndexError, struct.error, OverflowError):
        raise SegmentChanged(seg.path, seg.sha256) from None
    if (again.boxes, again.file_size, again.truncated) != (
            layout.boxes, layout.file_size, layout.truncated):
        raise SegmentChanged(seg.path, seg.sha256)


def _write_all(fd: int, views: Sequence[memoryview | bytes]) -> None:
    """os.writev, resumed after short writes; at most IOV_MAX (1024) pieces a call."""
    pending = [memoryview(v) for v in views if len(v)]
    while pending:
        n = os.writev(fd, pending[:1024])
        while n and pending:
            if n >= len(pending[0]):
                n -= len(pending.pop(0))
            else:
                pending[0], n = pending[0][n:], 0


def _update(h: hashlib._Hash, views: Sequence[memoryview | bytes]) -> None:
    for v in views:
        h.update(v)


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_hash(seg: Segment) -> None:
    actual = sha256_file(seg.path)
    if actual != seg.sha256:
        raise SegmentTampered(seg.path, seg.sha256, actual)


def clip_gaps(
    chosen: Sequence[Segment], gaps: Sequence[Gap], start_us: int, end_us: int
) -> list[Gap]:
    """Every stretch of the requested range without footage: the index's gap rows there, plus
    each stretch no segment and no gap row covers — before the first segment, between two,
    after the last — as reason `unrecorded`."""
    found = [g for g in gaps if g.end_us > start_us and g.start_us < end_us]
    camera = chosen[0].camera if chosen else (gaps[0].camera if gaps else "")
    spans = sorted([(s.start_us, s.end_us) for s in chosen]
                   + [(g.start_us, g.end_us) for g in found])
    for a, b in uncovered(spans, start_us, end_us):
        where = ("before the first footage in the range" if a == start_us
                 else "after the last footage in the range" if b == end_us
                 else "no gap row in index")
        found.append(Gap(camera, a, b, "unrecorded", where))
    return sorted(found, key=lambda g: g.start_us)


def uncovered(spans: Sequence[tuple[int, int]], start_us: int,
              end_us: int) -> list[tuple[int, int]]:
    """The parts of [start_us, end_us) that no span covers, ignoring holes shorter than
    HOLE_TOLERANCE_US (a segment boundary is not a gap). `spans` sorted by start."""
    out: list[tuple[int, int]] = []
    cursor = start_us
    for a, b in spans:
        if a - cursor > HOLE_TOLERANCE_US and a > start_us:
            out.append((cursor, min(a, end_us)))
        cursor = max(cursor, b)
        if cursor >= end_us:
            break
    if end_us - cursor > HOLE_TOLERANCE_US:
        out.append((cursor, end_us))
    return [(a, b) for a, b in out if b > a]


def missing_us(gaps: Sequence[Gap], start_us: int, end_us: int) -> int:
    """How much of [start_us, end_us) the gaps cover (overlaps counted once)."""
    total, cursor = 0, start_us
    for g in sorted(gaps, key=lambda g: g.start_us):
        a, b = max(g.start_us, cursor), min(g.end_us, end_us)
        if b > a:
            total += b - a
            cursor = b
    return total



def _check_uniform(chosen: Sequence[Segment]) -> None:
    """One MP4 track holds one codec at one size; a change mid-range needs two exports."""
    first = chosen[0]
    for seg in chosen[1:]:
        if (seg.codec, seg.width, seg.height) != (first.codec, first.width, first.height):
            raise DataError(
                f"the camera changed from {first.codec} {first.width}x{first.height} to "
                f"{seg.codec} {seg.width}x{seg.height} at {to_iso(seg.start_us)}; "
                "export the ranges before and after that time separately"
            )



def _source(seg: Segment) -> dict[str, str]:
    return {"path": seg.path, "sha256": seg.sha256, "start": to_iso(seg.start_us),
            "end": to_iso(seg.end_us)}


def _us(ticks: int) -> int:
    return ticks * US // TICKS


def _stepper(progress: Progress | None, total: int) -> Callable[[], None]:
    """Counts steps from both threads; `progress` is called from worker threads."""
    done = 0
    lock = threading.Lock()

    def step() -> None:
        nonlocal done
        with lock:
            done += 1
            if progress is not None:
                progress(done, total)

    return step
