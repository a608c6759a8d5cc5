"""The two ops that let footage leave the recorder: `export` and `still`.

Delivery (docs/design.md, "How a clip leaves"): the clip is written to storage.root/tmp (0700),
opened, unlinked, and the open descriptor is handed to the client over the socket
(SCM_RIGHTS). The client — running as the requester — copies it into a file it created with
mode 0600. The recorder's folders never become readable by anyone else, and once the client
closes the descriptor the recorder holds no copy; the signed manifest stays in the index as
the record of the release.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nvr import log
from nvr.config.model import CameraConfig, PrivacyMask, Role
from nvr.control.admission import PRIVILEGED
from nvr.control.ports import Progress, RecorderPort
from nvr.control.protocol import Caller, ExportArgs, Reply, StillArgs
from nvr.control.replies import ExportReply, MasksPreviewReply, StillReply
from nvr.errors import DataError
from nvr.export.manifest import build_manifest, manifest_bytes, signature_bytes
from nvr.export.masked import write_masked
from nvr.export.preview import write_preview
from nvr.export.records import Exports, Stills
from nvr.export.remux import (
    ClipPlan,
    ClipResult,
    NoFootage,
    SegmentTampered,
    first_frame_at_or_after,
    missing_us,
    plan_clip,
    write_planned,
)
from nvr.export.signing import load_or_create_key
from nvr.export.still import extract_still
from nvr.storage.index import Segment
from nvr.timeutil import to_iso

logger = log.get("nvr.export")

@dataclass(frozen=True, slots=True)
class StillPlan:
    segments: list[Segment]  # the first two at or after the time asked
    frame_us: int  # the frame the still will show


# At most this many progress lines a second reach the client.
PROGRESS_PER_SECOND = 8


def _progress_bridge(
    progress: Progress,
) -> tuple[Callable[[int, int], None], list[concurrent.futures.Future[None]]]:
    """A callback for the export thread that forwards throttled progress to the loop."""
    loop = asyncio.get_running_loop()
    sent: list[concurrent.futures.Future[None]] = []
    last = [0.0]

    def on_progress(done: int, total: int) -> None:
        now = loop.time()
        if done < total and now - last[0] < 1 / PROGRESS_PER_SECOND:
            return
        last[0] = now
        msg = {"done": done, "total": total, "message": "exporting"}

        async def send() -> None:
            await progress(msg)

        sent.append(asyncio.run_coroutine_threadsafe(send(), loop))

    return on_progress, sent


async def plan_export(svc: RecorderPort, camera: str, start: int, end: int) -> ClipPlan | None:
    """What an export of [start, end) would deliver, from the index and the segments' small
    boxes (no frame is read): the handler decides on the planned window, lead-in included,
    before anything is copied. None when there is nothing decodable to deliver."""
    segments = await svc.index.segments(camera, start, end)
    if not segments:
        return None
    gaps = await svc.index.gaps(camera, start, end)
    try:
        return await asyncio.to_thread(plan_clip, segments, gaps, start, end)
    except NoFootage:
        return None
    except SegmentTampered as exc:
        await _audit_tampered(svc, camera, exc)
        raise


async def lead_in(svc: RecorderPort, camera: str, start: int) -> int:
    """Where footage shown from `start` really begins: the keyframe at or before it (a player
    needs it to draw `start`), or `start` itself when no frame of that camera covers it."""
    segments = await svc.index.segments(camera, start, start + 1)
    if not segments:
        return start
    try:
        planned = await asyncio.to_thread(plan_clip, segments, [], start, start + 1)
    except NoFootage:
        return start
    except SegmentTampered as exc:
        await _audit_tampered(svc, camera, exc)
        raise
    return min(start, planned.start_us)


async def no_footage(svc: RecorderPort, camera: str, start: int, end: int | None) -> str:
    """Why there is nothing to cut, in words a person can act on: a time still to come is
    named as such, and the footage there is (or that there is none yet) is said."""
    asked = (f"at or after {to_iso(start)}" if end is None
             else f"between {to_iso(start)} and {to_iso(end)}")
    now = svc.clock()
    if start > now:
        return (f"no footage of camera {camera} {asked}: that is in the future "
                f"(it is now {to_iso(now)})")
    last = await svc.index.last_segment(camera)
    if last is None:
        return f"no footage of camera {camera} yet; see `nvr status`"
    return (f"no footage of camera {camera} {asked}; its newest footage ends at "
            f"{to_iso(last.end_us)}, see `nvr recordings --camera {camera}`")


async def export(
    svc: RecorderPort, caller: Caller, role: Role, a: ExportArgs, cam: CameraConfig,
    planned: ClipPlan, progress: Progress,
) -> Reply[ExportReply]:
    """An export the handler has planned and authorized (on the planned window): copy → sign
    → record with its audit row in one unit of work → hand over the descriptor. Flows one way:
    it never calls back into the handlers."""
    # The spool on the footage disk is bounded (nvr/export/spool.py): refused here, in one
    # line, before a byte is written, if this export would take more than its share.
    masks = [] if a.unmasked else list(cam.privacy_masks)
    # A masked export holds the unmasked copy and the re-encoded one at once.
    estimate = planned.source_bytes * (2 if masks else 1)
    ticket = svc.spool.reserve(caller.user or f"uid {caller.uid}", estimate,
                               counted=role not in PRIVILEGED)
    tmp = svc.root / "tmp" / f"export-{secrets.token_hex(8)}.mp4"
    # From here on, any failure (a client that went away, a cancelled task) must not leave a
    # copy of the clip behind in the recorder.
    try:
        clip = await _write(svc, cam.id, planned, tmp, progress, masks)
        result = await _sign_and_record(svc, caller, role, a, cam, clip, planned.requested,
                                        masks)
        fd, keep_fd = await asyncio.to_thread(_open_and_unlink, tmp)
        svc.spool.delivered(ticket, keep_fd, clip.bytes)
    except BaseException:
        svc.spool.cancel(ticket)
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    logger.info("export_delivered", camera=cam.id, export=result["export"], frames=clip.frames,
                bytes=clip.bytes, actor=caller.user)
    return Reply(result=result, fd=fd)


async def _audit_tampered(svc: RecorderPort, camera: str, exc: SegmentTampered) -> None:
    await svc.audit.append(
        at_us=svc.clock(), actor="nvr", uid=os.getuid(), role="system",
        action="segment_integrity_failure", allowed=False,
        detail={"camera": camera, "error": str(exc)},
    )
    logger.error("segment_tampered", camera=camera, error=str(exc))


async def _write(svc: RecorderPort, camera: str, planned: ClipPlan, tmp: Path,
                 progress: Progress, masks: list[PrivacyMask]) -> ClipResult:
    """write_planned (or, for a camera with privacy masks, write_masked: decoded, masks
    filled, re-encoded) in a worker thread, with progress lines and integrity failures
    audited."""
    on_progress, sent = _progress_bridge(progress)
    try:
        if masks:
            clip = await asyncio.to_thread(write_masked, planned, masks, tmp,
                                           progress=on_progress)
        else:
            clip = await asyncio.to_thread(write_planned, planned, tmp, progress=on_progress)
    except SegmentTampered as exc:
        await _audit_tampered(svc, camera, exc)
        raise
    except OSError as exc:
        # A source segment vanished or could not be read mid-export (retention, a disk error).
        raise DataError(f"could not read the footage of {camera}: {exc}; try again") from None
    for fut in sent:
        await asyncio.wrap_future(fut)
    return clip


async def _sign_and_record(svc: RecorderPort, caller: Caller, role: Role, a: ExportArgs,
                           cam: CameraConfig, clip: ClipResult,
                           requested: tuple[int, int],
                           masks: list[PrivacyMask]) -> ExportReply:
    """Sign the manifest, keep it as the record of the release, audit the delivery."""
    key = await asyncio.to_thread(load_or_create_key, svc.root)
    lifted = [m.note for m in cam.privacy_masks] if a.unmasked else []
    manifest = build_manifest(
        site=svc.config.site, camera=cam, requested=requested, clip=clip,
        clip_name=Path(a.out_name).name if a.out_name else None,
        requester={"account": caller.user, "uid": caller.uid, "role": role.value},
        reason=a.reason, incident=a.incident, request=a.request, key=key,
        exported_at=svc.clock(), masks=masks, masks_lifted=lifted,
    )
    body = manifest_bytes(manifest)
    signature = key.sign(body)
    export_id = f"E-{secrets.token_hex(4)}"
    # One unit of work: the export record, its tie to the request and its audit row commit
    # together (a refused release rolls all three back).
    async with svc.index.unit():
        await Exports(svc.db).record(
            export_id=export_id, at_us=svc.clock(), camera=cam.id,
            start_us=clip.actual_start_us, end_us=clip.actual_end_us, sha256=clip.sha256,
            manifest=body.decode(), requester=caller.user or str(caller.uid),
            request_id=a.request, incident=a.incident,
        )
        if a.request:
            await svc.requests.add_release(a.request, {"export": export_id,
                                                       "sha256": clip.sha256, "camera": cam.id})
        await svc.audit.append(
            at_us=svc.clock(), actor=caller.user or f"uid {caller.uid}", uid=caller.uid,
            role=role.value, action="export_delivered", allowed=True,
            detail={"export": export_id, "camera": cam.id, "sha256": clip.sha256,
                    "frames": clip.frames, "request": a.request, "incident": a.incident,
                    **_mask_audit(masks, lifted)},
        )
    return {
        "export": export_id,
        "sha256": clip.sha256,
        "start": to_iso(clip.actual_start_us),
        "end": to_iso(clip.actual_end_us),
        "frames": clip.frames,
        "bytes": clip.bytes,
        "gaps": [{"start": to_iso(g.start_us), "end": to_iso(g.end_us), "reason": g.reason}
                 for g in clip.gaps],
        # How much of the range asked for holds footage (the gaps above are the rest).
        "requested_seconds": (requested[1] - requested[0]) / 1e6,
        "recorded_seconds": (requested[1] - requested[0]
                             - missing_us(clip.gaps, *requested)) / 1e6,
        "fingerprint": key.fingerprint(),
        "manifest_bytes_b64": _b64(body),
        # The .sig file's exact bytes (base64 text), which the client writes as they are.
        "signature_b64": _b64(signature_bytes(signature)),
    }


async def plan_still(svc: RecorderPort, camera: str, at: int) -> StillPlan | None:
    """Which frame a still of `at` shows (the first at or after it), from the sample tables:
    the handler decides on that frame's time before a frame is decoded. None: no footage."""
    segments = (await svc.index.segments(camera, at, None))[:2]
    if not segments:
        return None
    frame_us = await asyncio.to_thread(first_frame_at_or_after, segments, at)
    return None if frame_us is None else StillPlan(segments, frame_us)


async def still(svc: RecorderPort, caller: Caller, role: Role, a: StillArgs,
                cam: CameraConfig, planned: StillPlan, until: int) -> Reply[StillReply]:
    """A still the handler has planned and authorized: extract → record with its audit row."""
    segments, at = planned.segments, planned.frame_us
    still_id = f"S-{secrets.token_hex(4)}"
    path = svc.root / "stills" / f"{still_id}.jpg"
    # The row (with its expiry) exists before the file does, so the expirer finds every copy,
    # even one left by a crash between the two.
    stills = Stills(svc.db)
    await stills.create_pending(still_id=still_id, camera=cam.id, at_us=at, until_us=until,
                                path=str(path), reason=a.reason,
                                created_by=caller.user or str(caller.uid))
    try:
        masks = [] if a.unmasked else list(cam.privacy_masks)
        lifted = [m.note for m in cam.privacy_masks] if a.unmasked else []
        result = await asyncio.to_thread(extract_still, segments, at, path, masks)
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            async with svc.index.unit():  # the still's record and its audit row, as one
                await stills.delivered(still_id, result.frame_us, result.sha256)
                await svc.audit.append(
                    at_us=svc.clock(), actor=caller.user or f"uid {caller.uid}",
                    uid=caller.uid, role=role.value, action="still_delivered",
                    allowed=True,
                    detail={"still": still_id, "camera": cam.id, "at": to_iso(result.frame_us),
                            "until": to_iso(until), "sha256": result.sha256,
                            **_mask_audit(masks, lifted)},
                )
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return Reply(
        result={"still": still_id, "sha256": result.sha256, "at": to_iso(result.frame_us),
                "until": to_iso(until)},
        fd=fd,
    )


async def masks_preview(svc: RecorderPort, cam: CameraConfig,
                        seg: Segment) -> Reply[MasksPreviewReply]:
    """An authorized preview: drawn into storage.root/tmp, handed over by descriptor, and
    gone from the recorder once the client closes it (like an export)."""
    tmp = svc.root / "tmp" / f"preview-{secrets.token_hex(8)}.png"
    try:
        result = await asyncio.to_thread(write_preview, seg, cam.privacy_masks, tmp)
        fd = await asyncio.to_thread(os.open, tmp, os.O_RDONLY | os.O_CLOEXEC)
    finally:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
    return Reply(result={"camera": cam.id, "at": to_iso(result.frame_us), "sha256": result.sha256,
                         "width": result.width, "height": result.height,
                         "masks": [{"n": i + 1, "note": m.note,
                                    "polygon": [list(p) for p in m.polygon]}
                                   for i, m in enumerate(cam.privacy_masks)]},
                 fd=fd)


def _mask_audit(masks: list[PrivacyMask], lifted: list[str]) -> dict[str, Any]:
    """What a delivery's audit row says about masks: those burned in, or those lifted."""
    out: dict[str, Any] = {}
    if masks:
        out["masks_applied"] = [m.note for m in masks]
    if lifted:
        out["masks_lifted"] = lifted
    return out


def _open_and_unlink(path: Path) -> tuple[int, int]:
    """(the client's read-only descriptor, the spool's write descriptor that can free it)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        keep = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(fd)
        raise
    path.unlink()
    return fd, keep


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
