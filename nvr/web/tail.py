"""Live view for streams WebRTC cannot carry as they are (H.264 with B-frames): the segment the
recorder is writing, sent fragment by fragment over a WebSocket into Media Source Extensions.

The recorder writes fragmented MP4, one moof+mdat per GOP, flushed as it goes (docs/design.md),
so the open segment file *is* a live fMP4 stream: this module reads what was appended since it
last looked and forwards whole boxes. Nothing is re-encoded or re-muxed; the cost is latency
(one GOP plus the poll interval). A new viewer starts at the newest complete fragment that
begins with a keyframe (a long GOP's fragments are also cut mid-GOP, nvr.storage.
segment_writer), and gets every complete fragment after it; when the recorder starts the next
segment, the new file's init segment (its moov) is sent first — the page's SourceBuffer runs
in "sequence" mode. Only whole moof+mdat pairs are sent: a moof whose mdat is still being
written waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nvr.media.mp4.fragment import starts_with_sync

POLL_S = 0.1
Send = Callable[[bytes], Awaitable[None]]


def read_boxes(path: Path, offset: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """Complete top-level boxes of `path` from `offset`, and the offset after the last one."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    boxes: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if size == 1 and pos + 16 <= len(data):
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8 or pos + size > len(data):
            break
        boxes.append((kind, data[pos:pos + size]))
        pos += size
    return boxes, offset + pos


def open_segment(recorder: Any) -> Path | None:
    """The file the camera's writer is appending to right now, if any."""
    seg = getattr(getattr(recorder, "writer", None), "_open", None)
    return getattr(seg, "path", None)


def avc_codec_of(moov: bytes) -> str:
    i = moov.find(b"avcC")
    if i < 0 or i + 8 > len(moov):
        return "avc1.640028"
    return "avc1." + moov[i + 5:i + 8].hex()


async def follow(recorder: Any, send: Send, send_mime: Callable[[str], Awaitable[None]],
                 closed: Callable[[], bool]) -> None:
    """Forward the recorder's open segment(s) until `closed()`."""
    path: Path | None = None
    offset = 0
    started = False
    pending_moof: bytes | None = None

    async def forward(boxes: list[tuple[bytes, bytes]]) -> None:
        nonlocal pending_moof
        for kind, box in boxes:
            if kind == b"moof":
                pending_moof = box
            elif kind == b"mdat" and pending_moof is not None:
                await send(pending_moof + box)
                pending_moof = None

    while not closed():
        current = open_segment(recorder)
        if current is not None and current != path:
            if path is not None:
                # The old file is complete now (closed before the next was opened): its tail.
                boxes, offset = await asyncio.to_thread(read_boxes, path, offset)
                await forward(boxes)
            boxes, _ = await asyncio.to_thread(read_boxes, current, 0)
            kinds = [k for k, _ in boxes]
            if b"moov" not in kinds:
                await asyncio.sleep(POLL_S)
                continue
            init = b"".join(b for k, b in boxes if k in (b"ftyp", b"moov"))
            # Whole moof+mdat pairs only, and the offset just after the last of them.
            pairs: list[tuple[bytes, bytes]] = []
            end, pos = 0, 0
            for i, (kind, box) in enumerate(boxes):
                pos += len(box)
                if kind == b"mdat" and i and boxes[i - 1][0] == b"moof":
                    pairs.append((boxes[i - 1][1], box))
                    end = pos
            if not started:
                moov = next(b for k, b in boxes if k == b"moov")
                # Start at the newest complete fragment that begins with a keyframe.
                keyed = [i for i, (moof, _) in enumerate(pairs) if starts_with_sync(moof)]
                if not keyed:
                    await asyncio.sleep(POLL_S)
                    continue
                await send_mime(f'video/mp4; codecs="{avc_codec_of(moov)}"')
                pairs = pairs[keyed[-1]:]
                started = True
            await send(init)
            for moof, mdat in pairs:
                await send(moof + mdat)
            path, offset, pending_moof = current, max(end, len(init)), None
        elif path is not None:
            boxes, offset = await asyncio.to_thread(read_boxes, path, offset)
            await forward(boxes)
        await asyncio.sleep(POLL_S)
