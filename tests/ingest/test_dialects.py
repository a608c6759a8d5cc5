"""Real cameras' RTSP dialects (tests/ingest/dialects/: Hikvision, Dahua H.264 and H.265,
Reolink, Foscam, GW Security, TP-Link, Ubiquiti, Vstarcam, Geovision, Wowza and others, as
retina recorded them), replayed by tests/ingest/replay_camera.py with real video behind them:
with `reader: auto`, every one is recorded by the recorder's own reader (none handed over to
FFmpeg's), and every segment it wrote decodes without an error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av

from nvr.storage.index import Index
from tests.ingest.recording_helpers import IndexSink, make_recorder, wait_for
from tests.ingest.replay_camera import DIALECTS, ReplayCamera
from tests.ingest.test_own_reader import _decode_all

SEGMENTS = 2  # each dialect, at least: the second begins at a keyframe inside the stream


def _decode_errors(path: Path, frames: int) -> str:
    """What goes wrong decoding a segment (PyAV, with errors raised, as test_own_reader)."""
    try:
        decoded = _decode_all(path)
    except (av.FFmpegError, AssertionError) as e:
        return str(e)
    return "" if decoded == frames else f"{decoded} of {frames} pictures decode"


async def test_every_dialect_is_recorded_by_the_own_reader_and_decodes(
        tmp_path: Path, index: Index) -> None:
    sink = IndexSink(index)
    cams = {d.name: ReplayCamera(d).start() for d in DIALECTS}
    recs = {name: make_recorder(name, cam.url(), tmp_path, sink, segment_seconds=1.0,
                                reader="auto") for name, cam in cams.items()}
    for r in recs.values():
        r.start()
    try:
        try:
            await wait_for(lambda: all(sink.indexed.get(n, 0) >= SEGMENTS for n in recs),
                           within_s=30)
        except AssertionError:
            pass  # which ones did not get there is said below, dialect by dialect
        status = {n: r.status() for n, r in recs.items()}
    finally:
        await asyncio.gather(*(r.stop() for r in recs.values()))
        for cam in cams.values():
            await asyncio.to_thread(cam.stop)
    failed: dict[str, str] = {}
    for name, cam in cams.items():
        st = status[name]
        setups = [r for r in cam.requests if r.startswith("SETUP ")]
        segs = await index.segments(name)
        if st["reader"] != "nvr":
            failed[name] = f"handed to FFmpeg's reader: {st}"
        elif len(setups) != 1 or not setups[0].split()[1].startswith("rtsp://"):
            failed[name] = f"SETUP requests {setups}: the video track alone, by absolute URI"
        elif len(segs) < SEGMENTS:
            failed[name] = f"{len(segs)} segments; status {st}"
        else:
            errors = {Path(s.path).name: e for s in segs if (e := _decode_errors(Path(s.path), s.frames))}
            if errors:
                failed[name] = f"segments do not decode: {errors}"
    assert not failed, "\n".join(f"{n}: {why}" for n, why in failed.items())
    assert len(cams) >= 20
