"""An export of a camera with privacy masks: the clip re-encoded with the masks burned in.

The unmasked clip is first written exactly as for any camera (nvr.export.remux.write_planned:
every source's sha256 checked, frames placed by wall clock) to a private file beside the
output; it is then decoded frame by frame, each frame gets the masks filled
(nvr.media.masks.fill), and encoded with libx264 at close to the source's quality, same size and
timestamps, a keyframe wherever the source had one. The unmasked copy is deleted whatever
happens. Runs in a worker thread, like write_planned.

Cameras without masks never come here: their exports stay byte-exact copies of the recording.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import av

from nvr import log
from nvr.config.model import PrivacyMask
from nvr.export.remux import ClipPlan, ClipResult, Progress, sha256_file, write_planned
from nvr.media.masks import MaskPlanes, fill

# x264 constant quality: 18-20 looks like the source to a viewer; veryfast keeps a 2-core box
# at several times real time for 720p.
CRF = "19"
PRESET = "veryfast"
ENCODER = f"libx264 crf {CRF} preset {PRESET}"

_log = log.get("nvr.export")


def mask_json(masks: Sequence[PrivacyMask]) -> list[dict[str, object]]:
    """The masks as the manifest and the audit log record them."""
    return [{"note": m.note, "polygon": [list(p) for p in m.polygon]} for m in masks]


def write_masked(clip: ClipPlan, masks: Sequence[PrivacyMask], out_path: Path, *,
                 progress: Progress | None = None) -> ClipResult:
    """Write the planned clip to out_path (created 0600; must not exist) with `masks` burned
    into every frame."""
    plain = out_path.with_name(out_path.name + ".unmasked")
    total = clip.plan.frames
    try:
        source = write_planned(clip, plain)
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            frames = _transcode(plain, out_path, masks, total, progress)
        except BaseException:
            out_path.unlink(missing_ok=True)
            raise
    finally:
        plain.unlink(missing_ok=True)
    size = out_path.stat().st_size
    digest = sha256_file(out_path)
    _log.info("clip_masked", path=str(out_path), frames=frames, bytes=size, masks=len(masks))
    return replace(source, path=out_path, sha256=digest, frames=frames, bytes=size,
                   codec="h264")


def _transcode(src_path: Path, out_path: Path, masks: Sequence[PrivacyMask], total: int,
               progress: Progress | None) -> int:
    with av.open(str(src_path), "r") as src, \
            av.open(str(out_path), "w", format="mp4",
                    options={"movflags": "+faststart"}) as out:
        ist = src.streams.video[0]
        ist.thread_type = "AUTO"
        tb = ist.time_base
        assert tb is not None
        ost = out.add_stream("libx264", rate=ist.average_rate or 25)
        ost.width, ost.height = ist.codec_context.width, ist.codec_context.height
        ost.pix_fmt = "yuv420p"
        ost.time_base = tb
        ost.codec_context.time_base = tb
        # Keyframes where the source had them (forced IDR), and nowhere else: a player seeks
        # the masked clip as it would the original.
        ost.codec_context.gop_size = 100_000
        ost.options = {"crf": CRF, "preset": PRESET, "forced-idr": "1", "sc_threshold": "0"}
        planes: MaskPlanes | None = None
        done = 0
        for frame in src.decode(ist):
            if planes is None or (planes.width, planes.height) != (frame.width, frame.height):
                planes = MaskPlanes.of(masks, frame.width, frame.height)
            masked = fill(frame, planes)
            masked.time_base = tb
            masked.pict_type = (av.video.frame.PictureType.I if frame.key_frame
                                else av.video.frame.PictureType.NONE)
            for pkt in ost.encode(masked):
                out.mux(pkt)
            done += 1
            if progress is not None and (done % 25 == 0 or done == total):
                progress(min(done, total), max(total, done))
        for pkt in ost.encode(None):
            out.mux(pkt)
    return done
