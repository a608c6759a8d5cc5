"""A toy daemon for the CLI tests: the real ControlServer on uvloop, in its own process (as
in production), with a dispatch that records each op it is asked to a JSON-lines file.

    python -m tests.cli.toy_daemon SOCKET OPS_LOG
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from nvr.control.protocol import Args, Caller, Reply
from nvr.control.server import ControlServer, Progress
from nvr.errors import DataError, PermissionDenied

CLIP = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 1200
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20 + b"\xff\xd9"
MANIFEST = b'{"clip": {"sha256": "..."}}\n'
SIGNATURE = bytes(range(64))
OPS_LOG = Path(os.devnull)


def _fd_of(data: bytes) -> int:
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        return os.dup(f.fileno())


def _record(op: str, args: dict[str, Any]) -> None:
    with OPS_LOG.open("a") as f:
        f.write(json.dumps([op, args]) + "\n")


async def dispatch(caller: Caller, op: str, args: Args, progress: Progress) -> Reply:
    a: Any = args
    await asyncio.to_thread(_record, op, args.model_dump(exclude_none=True))
    if op == "status":
        return Reply({"site": "Hanson", "at": "2026-11-29T12:20:30.000000Z", "cameras": [
            {"id": "front", "state": "recording", "fps": 15.0, "bitrate_bps": 2_000_000,
             "last_segment_end": "2026-11-29T12:20:19.034035Z", "errors": 0, "reason": None},
            {"id": "senior-lounge", "state": "backoff", "fps": 0.0, "bitrate_bps": 0,
             "last_segment_end": "2026-11-28T23:59:58.500000Z", "errors": 3,
             "reason": "camera unreachable: connection refused by 10.0.4.17:554 after 3 tries"},
            # Issue 28: a long id and every column of a newer daemon, for the 80-column table.
            {"id": "senior-center-lounge", "state": "recording", "fps": 14.98,
             "bitrate_bps": 0, "last_segment_end": "2026-11-29T12:20:18.500000Z",
             "errors": 12, "oldest_footage": "2026-10-30T12:00:00.000000Z",
             "held_bytes": 1_400_000_000, "held_seconds": 7200, "reason": None}],
            "disk": {"root": "/var/lib/nvr", "total_bytes": 500_000_000_000,
                     "free_bytes": 252_000_000_000, "free_percent": 50.4, "min_free_percent": 5,
                     "recordings_bytes": 230_000_000_000},
            "retention": {"days": 30, "oldest_footage": "2026-10-30T12:00:00.000000Z"},
            "paused": [], "alert": None})  # fmt: skip
    if op == "recordings" and a.camera == "paged":  # three pages of three segments
        after = a.after_us or 0
        segs = [{"start": str(t)} for t in range(after + 1, after + 4)]
        page = {"segments": segs, "gaps": [] if after else [{"reason": "offline"}]}
        return Reply({**page, **({"next": {"after_us": after + 3}} if after < 6 else {})})
    if op == "recordings":
        root = "/var/lib/nvr/segments/" + a.camera
        segs = [{"start": f"2026-11-29T12:20:{s:02d}.034035Z",
                 "end": f"2026-11-29T12:20:{s + 2:02d}.034035Z",
                 "path": f"{root}/20261129T1220{s:02d}.034035Z.mp4", "bytes": 512_345,
                 "frames": 30, "sha256": "ab" * 32, "codec": "h264", "width": 640,
                 "height": 360, "recovered": False} for s in (15, 17, 19)]
        return Reply({"camera": a.camera, "segments": segs, "gaps": [
            {"start": "2026-11-29T12:19:39.000000Z", "end": "2026-11-29T12:20:15.034035Z",
             "reason": "offline", "detail": "camera unreachable: connection refused"}]})
    if op == "hold_list":
        return Reply({"holds": [{"id": "H-a8e8d58f", "cameras": ["front", "senior-lounge"],
                                 "start": "2026-11-29T05:00:00.000000Z",
                                 "end": "2026-11-30T05:00:00.000000Z",
                                 "reason": "incident [b]114[/b]: window broken at the north door",
                                 "incident": "2026-114", "until": None,
                                 "created": "2026-11-29T13:12:14.123456Z",
                                 "created_by": "nvrtest-director", "released": None,
                                 "released_by": None, "release_reason": None}]})
    if op == "retention_plan":
        return Reply({"at": "2026-12-29T12:00:00.000000Z", "delete": [
            {"camera": "front", "path": "/var/lib/nvr/segments/front/20261129T122015.034035Z.mp4",
             "why": "older than 30 days"}], "keep": [
            {"camera": "front", "path": "/var/lib/nvr/segments/front/20261129T122017.034035Z.mp4",
             "why": "held: hold H-1 'incident 2026-114' until 2027-06-30"}]})
    if op == "export" and a.camera == "empty":  # the daemon's refusal, with a suggestion
        raise DataError("no footage of camera empty between 2026-11-29T10:00:00.000000Z and "
                        "2026-11-29T10:01:00.000000Z; see `nvr recordings --camera empty`")
    if op == "export":
        await progress({"done": 1, "total": 2, "message": "exporting"})
        sha = "0" * 64 if a.reason == "lie" else hashlib.sha256(CLIP).hexdigest()
        result = {"sha256": sha, "start": "2026-11-29T10:00:00.000000Z", "end": "2026-11-29T10:01:00.000000Z",
                  "manifest_bytes_b64": base64.b64encode(MANIFEST).decode(),
                  "signature_b64": base64.b64encode(SIGNATURE).decode()}  # fmt: skip
        return Reply(result, fd=_fd_of(CLIP))
    if op == "still":
        return Reply(
            {"still": "S-1", "sha256": hashlib.sha256(JPEG).hexdigest(), "until": a.until},
            fd=_fd_of(JPEG),
        )
    if op == "audit_list":
        return Reply({"rows": [{"seq": 1, "at": "2026-11-29T12:20:19.034035Z", "actor": "nvrtest-director",
                                "role": "director", "action": "export", "allowed": True,
                                "detail": {"camera": "front", "reason": "incident 2026-114, [red]broken window[/red] at the north door"},
                                "hash": "ab" * 32}]})  # fmt: skip
    if op == "reload":
        raise PermissionDenied("reload is for the Director and IT (policy: reload config)")
    return Reply({"op": op})


async def serve(path: Path) -> None:
    server = ControlServer(path, dispatch)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    OPS_LOG = Path(sys.argv[2])
    uvloop.run(serve(Path(sys.argv[1])))
