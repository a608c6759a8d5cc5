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
from nvr.errors import PermissionDenied

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
        return Reply({"site": "Hanson", "cameras": [{"id": "front", "state": "recording", "fps": 15.0}],
                      "disk": {"free_percent": 50.0}})  # fmt: skip
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
        return Reply({"rows": [{"seq": 1, "at": "t", "actor": "root", "role": "director", "action": "status",
                                "allowed": True, "detail": {}, "hash": "ab"}]})  # fmt: skip
    if op == "recordings" and a.camera == "paged":  # three pages of three segments
        after = a.after_us or 0
        segs = [{"start": str(t)} for t in range(after + 1, after + 4)]
        page = {"segments": segs, "gaps": [] if after else [{"reason": "offline"}]}
        return Reply({**page, **({"next": {"after_us": after + 3}} if after < 6 else {})})
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
