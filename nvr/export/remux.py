"""One MP4 for a time range: check the sources' hashes, then copy their packets (no re-encode).

Runs in a worker thread (the daemon calls export_clip through asyncio.to_thread); nothing here
touches the event loop. Memory does not grow with the range: packets stream one at a time, and
only the MP4 sample tables (a few bytes a frame) and at most one GOP of pre-roll are held.

Time line (docs/export.md): clip time t shows what happened at wall time actual_start + t.
Packets are placed by wall clock, so a hole in the recording stays a hole in the clip's time
line, and each gap also gets a chapter titled "GAP ..." that players list.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from nvr import log
from nvr.errors import DataError, IntegrityError
from nvr.export.faststart import faststart_and_hash
from nvr.storage.index import Gap, Segment
from nvr.timeutil import US, to_iso

TICKS = 90_000  # output time base 1/90000 s: exact for 15, 25, 30 fps and for RTP clocks
TB = Fraction(1, TICKS)
# A hole between two segments longer than this, with no gap row, is still shown as a gap.
HOLE_TOLERANCE_US = US
CHUNK = 1 << 20
# FFmpeg's read buffer over a segment held in memory: the mp4 demuxer seeks (mfra at the end,
# then each fragment), and every seek refills the buffer; 256 KB measured best (1 MB: slower).
DEMUX_BUFFER = 1 << 18

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
class _Timeline:
    """Where the clip starts (wall ticks) and the last DTS written, across segments."""

    start_ticks: int
    end_ticks: int
    origin: int | None = None
    last_dts: int | None = None
    last_end: int = 0  # wall ticks where the last written frame ends
    frames: int = 0
    preroll: list[tuple[int, int, av.Packet]] = field(default_factory=list)
    done: bool = False


def export_clip(
    segments: Sequence[Segment],
    gaps: Sequence[Gap],
    start_us: int,
    end_us: int,
    out_path: Path,
    *,
    progress: Progress | None = None,
) -> ClipResult:
    """Write the footage of [start_us, end_us) to out_path (created 0600; must not exist)."""
    if end_us <= start_us:
        raise DataError(f"export range ends ({to_iso(end_us)}) before it starts ({to_iso(start_us)})")
    chosen = sorted(
        (s for s in segments if s.end_us > start_us and s.start_us < end_us),
        key=lambda s: s.start_us,
    )
    if not chosen:
        raise NoFootage(f"nothing recorded between {to_iso(start_us)} and {to_iso(end_us)}")
    _check_uniform(chosen)
    step = _stepper(progress, 2 * len(chosen))
    tl = _Timeline(start_us * TICKS // US, -(-end_us * TICKS // US))
    all_gaps = clip_gaps(chosen, gaps, start_us, end_us)
    size, digest = _write_clip(chosen, tl, all_gaps, out_path, step)
    assert tl.origin is not None
    actual_start, actual_end = _us(tl.origin), _us(tl.last_end)
    first = chosen[0]
    _log.info("clip_exported", path=str(out_path), frames=tl.frames, bytes=size,
              start=to_iso(actual_start), end=to_iso(actual_end), gaps=len(all_gaps))
    return ClipResult(
        path=out_path, sha256=digest, frames=tl.frames, actual_start_us=actual_start,
        actual_end_us=actual_end,
        gaps=all_gaps,  # every gap in the *requested* range, also before/after the footage
        sources=[_source(s) for s in chosen if s.start_us < actual_end],
        codec=first.codec, width=first.width, height=first.height, bytes=size,
    )


def _write_clip(
    chosen: Sequence[Segment], tl: _Timeline, gaps: list[Gap], out_path: Path,
    step: Callable[[], None],
) -> tuple[int, str]:
    """Remux the sources, each read ONCE: a second thread reads the next segment into memory
    and checks its sha256 (hashlib and file reads release the GIL: on 2 cores the hashing is
    hidden behind the remux), and the remux demuxes those same bytes. A mismatch raises
    SegmentTampered before a single packet of that segment is used, and deletes the clip.
    Then the moov goes in front (faststart) and the clip is hashed in that same pass:
    (bytes, sha256)."""
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)  # FFmpeg reopens it by name; the mode stays 0600
    with ThreadPoolExecutor(1, thread_name_prefix="export-read") as pool:
        reads: list[Future[bytes]] = []

        def source(i: int) -> bytes:
            """Segment i's checked bytes; the read of segment i + 1 starts meanwhile."""
            while len(reads) < min(i + 2, len(chosen)):
                reads.append(pool.submit(_read_checked, chosen[len(reads)], step))
            data = reads[i].result()
            reads[i] = _DONE  # release the bytes as soon as the remux is done with them
            return data

        try:
            _remux(chosen, tl, gaps, out_path, step, source)
            return faststart_and_hash(out_path)
        except BaseException:
            for f in reads:
                f.cancel()
            out_path.unlink(missing_ok=True)
            raise


_DONE: Future[bytes] = Future()
_DONE.set_result(b"")


def _read_checked(seg: Segment, step: Callable[[], None]) -> bytes:
    data = Path(seg.path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != seg.sha256:
        raise SegmentTampered(seg.path, seg.sha256, actual)
    step()
    return data


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


def _remux(
    chosen: Sequence[Segment], tl: _Timeline, gaps: list[Gap], out_path: Path,
    step: Callable[[], None], source: Callable[[int], bytes],
) -> None:
    # No +faststart: nvr.export.faststart moves the moov afterwards and hashes in that pass.
    with av.open(str(out_path), "w", format="mp4") as out:
        ost: av.VideoStream | None = None
        for i, seg in enumerate(chosen):
            data = source(i)  # checked against the index even when past the end
            if tl.done:
                step()  # past the end: nothing more to read
                continue
            with av.open(io.BytesIO(data), "r", format="mp4", buffer_size=DEMUX_BUFFER) as src:
                ist = src.streams.video[0]
                if ost is None:
                    ost = out.add_stream_from_template(ist)
                    ost.time_base = TB
                    if ist.codec_context.name == "hevc":
                        ost.codec_tag = "hvc1"  # hev1 does not play in Apple players/browsers
                _copy_segment(seg, src, ist, ost, out, tl)
            step()
        if tl.origin is None:
            raise NoFootage(
                f"no decodable footage (no keyframe) between {to_iso(_us(tl.start_ticks))} "
                f"and {to_iso(_us(tl.end_ticks))}"
            )
        out.set_chapters(_chapters(tl, gaps))  # type: ignore[arg-type]  # PyAV's stub: TypedDict


def _copy_segment(
    seg: Segment, src: av.container.InputContainer, ist: av.VideoStream,
    ost: av.VideoStream, out: av.container.OutputContainer, tl: _Timeline,
) -> None:
    shift: int | None = None
    for wall_pts, wall_dts, pkt in _wall_packets(seg, src, ist):
        if wall_pts >= tl.end_ticks:
            tl.done = True  # decode order: nothing after this may be written
            return
        if tl.origin is None:
            if not _preroll(tl, wall_pts, wall_dts, pkt):
                continue
            for p_pts, p_dts, p in tl.preroll:
                _write(tl, p_pts, p_dts, p, ost, out, shift=0)
            tl.preroll.clear()
            continue
        if shift is None:
            # Clocks of consecutive segments may disagree by a few ms: never let DTS go back.
            shift = 0 if tl.last_dts is None or wall_dts > tl.last_dts else tl.last_dts + 1 - wall_dts
        _write(tl, wall_pts, wall_dts, pkt, ost, out, shift=shift)


def _preroll(tl: _Timeline, wall_pts: int, wall_dts: int, pkt: av.Packet) -> bool:
    """Collect the GOP that holds the requested start; True once the clip's origin is fixed."""
    if pkt.is_keyframe:
        tl.preroll = [(wall_pts, wall_dts, pkt)]  # a later keyframe at or before start wins
    elif tl.preroll:
        tl.preroll.append((wall_pts, wall_dts, pkt))
    else:
        return False  # no keyframe yet: these frames could not be decoded
    if wall_pts + max(pkt.duration or 0, 1) <= tl.start_ticks:
        return False  # this frame is over before the requested start
    tl.origin = tl.preroll[0][0]
    return True


def _write(
    tl: _Timeline, wall_pts: int, wall_dts: int, pkt: av.Packet,
    ost: av.VideoStream, out: av.container.OutputContainer, *, shift: int,
) -> None:
    assert tl.origin is not None
    dts = wall_dts + shift - tl.origin
    if tl.last_dts is not None and dts <= tl.last_dts:
        _log.warning("packet_dropped", reason="dts_not_increasing", dts=dts, last_dts=tl.last_dts)
        return
    pkt.pts, pkt.dts = wall_pts + shift - tl.origin, dts
    pkt.time_base = TB
    pkt.stream = ost
    tl.last_dts = dts
    tl.last_end = max(tl.last_end, wall_pts + shift + (pkt.duration or 0))
    tl.frames += 1
    out.mux(pkt)


def _wall_packets(
    seg: Segment, src: av.container.InputContainer, ist: av.VideoStream
) -> Iterator[tuple[int, int, av.Packet]]:
    """(pts, dts, packet) with times in wall-clock ticks since the epoch, duration in ticks.

    The segment's first packet is at seg.start_us (the recorder names segments by it).
    """
    tb = ist.time_base
    assert tb is not None
    num, den = tb.numerator * TICKS, tb.denominator
    base: int | None = None
    seg_ticks = seg.start_us * TICKS // US
    for pkt in src.demux(ist):
        if pkt.size == 0 or pkt.dts is None:
            continue
        pts = pkt.pts if pkt.pts is not None else pkt.dts
        if base is None:
            base = pts
        pkt.duration = (pkt.duration or 0) * num // den
        yield seg_ticks + (pts - base) * num // den, seg_ticks + (pkt.dts - base) * num // den, pkt


def _chapters(tl: _Timeline, gaps: list[Gap]) -> list[dict[str, object]]:
    """Chapters in µs from the clip start: "recording" stretches and "GAP <reason>" holes."""
    assert tl.origin is not None
    origin, end = _us(tl.origin), _us(tl.last_end)
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
        return []  # no gap: no chapters needed
    if cursor < end:
        marks.append((cursor, end, f"recording from {to_iso(cursor)}"))
    return [
        {"id": i + 1, "start": a - origin, "end": b - origin, "time_base": Fraction(1, US),
         "metadata": {"title": title}}
        for i, (a, b, title) in enumerate(marks)
    ]


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
