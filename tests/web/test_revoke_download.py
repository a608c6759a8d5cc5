"""Issue 27: revoking a playback link stops its downloads in progress, not only new requests.

In-process: the real Service, web server, SQLite and HTTP (aiohttp's client). The footage is a
large file indexed as a segment (sparse: the test is about the connection, not the pictures),
so that a download is still running when the link is revoked.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp

from nvr.config.loader import load_camera_map
from nvr.runtime.service import Service
from nvr.storage.index import NewSegment
from tests.web.browser import free_port
from tests.web.maps import write_map

SIZE = 256 * 1024 * 1024  # far beyond what loopback socket buffers hold


async def test_revoking_a_playback_link_stops_a_download_in_progress(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_map(tmp_path, port)
    svc = Service(cfg, load_camera_map(cfg))
    await svc.start()
    try:
        assert svc.web is not None
        now = svc.clock()
        start, end = now - 3_600_000_000, now - 3_590_000_000
        path = tmp_path / "storage" / "big.mp4"
        path.touch()
        os.truncate(path, SIZE)
        await svc.index.ensure_camera("lobby", "Lobby", now)
        seg_id = await svc.index.add_segment(NewSegment(
            "lobby", start, end, str(path), SIZE, 150, 10, "h264", 640, 360, "0" * 64))
        link, token = await svc.web.links.mint(
            kind="playback", actor="director", uid=0, role="director", cameras=["lobby"],
            start_us=start, end_us=end, purpose="test", now_us=now, expires_us=now + 600_000_000)
        base = f"http://127.0.0.1:{port}"
        got = 0
        async with aiohttp.ClientSession(headers={"Origin": base},
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(f"{base}/api/session", json={"token": token}) as r:
                assert r.status == 200, await r.text()
            async with http.get(f"{base}/api/l/{link.id}/media/lobby/{seg_id}") as r:
                assert r.status == 200 and r.content_length == SIZE
                got += len(await r.content.read(1 << 20))  # the download is under way
                assert await svc.web.end_link(link, "revoked")
                t0 = time.monotonic()
                try:
                    while chunk := await asyncio.wait_for(r.content.read(1 << 20), 5):
                        got += len(chunk)
                except aiohttp.ClientPayloadError:
                    pass
                took = time.monotonic() - t0
        assert got < SIZE // 4, f"{got} of {SIZE} bytes arrived after the link was revoked"
        assert took < 2, f"the download ran on {took:.1f} s after the revocation"
        os.unlink(path)
    finally:
        await svc.stop()
