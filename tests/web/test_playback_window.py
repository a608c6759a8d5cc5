"""Issue 27: playback serves only the link's window — a segment the window cuts is served from
the keyframe at or before the window's start (the lead-in the export also takes) to the last
frame before its end, never the rest of the segment.

In-process: the real Service recording the real test camera (15 fps, a keyframe every second),
real SQLite, real HTTP; the served bytes are parsed and decoded with PyAV.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import aiohttp
import av

from nvr.config.loader import load_camera_map
from nvr.media.mp4.samples import layout_of_bytes
from nvr.runtime.service import Service
from tests.camserver import TestCamera
from tests.web.browser import free_port
from tests.web.maps import write_map

SEG_S = 4


def wall_frames(data: bytes, start_us: int) -> list[tuple[int, bool, bytes]]:
    """(wall pts in µs, keyframe, sample bytes) of each frame of an fMP4, its first frame at
    start_us (how the recorder names a segment and the timeline a piece)."""
    lay = layout_of_bytes(data)
    base = lay.dts[0] + lay.cto[0]
    return [(start_us + (lay.dts[i] + lay.cto[i] - base) * 1_000_000 // lay.timescale,
             bool(lay.key[i]), data[lay.offset[i]:lay.offset[i] + lay.size[i]])
            for i in range(len(lay.dts))]


async def test_a_one_second_link_serves_the_lead_in_and_the_window_only(
        tmp_path: Path, testcam: TestCamera) -> None:
    port = free_port()
    cfg = write_map(tmp_path, port, rtsp=testcam.url("h264-noaudio"), segment_seconds=SEG_S,
                    storage_extra="  min_free_percent: 1\n")
    svc = Service(cfg, load_camera_map(cfg))
    await svc.start()
    try:
        assert svc.web is not None
        deadline = time.monotonic() + 30
        while len(segs := await svc.index.segments("lobby", 0, 1 << 62)) < 2:
            assert time.monotonic() < deadline, "no two segments recorded in 30 s"
            await asyncio.sleep(0.25)
        seg = segs[0]
        whole = Path(seg.path).read_bytes()
        original = wall_frames(whole, seg.start_us)
        # A 1-s window starting between two keyframes, well inside the segment.
        start = seg.start_us + 1_500_000 + 33_000
        end = start + 1_000_000
        key_before = max(t for t, key, _ in original if key and t <= start)
        now = svc.clock()
        link, token = await svc.web.links.mint(
            kind="playback", actor="director", uid=0, role="director", cameras=["lobby"],
            start_us=start, end_us=end, purpose="test", now_us=now, expires_us=now + 600_000_000)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers={"Origin": base},
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(f"{base}/api/session", json={"token": token}) as r:
                assert r.status == 200, await r.text()
            async with http.get(f"{base}/api/l/{link.id}/timeline/lobby") as r:
                assert r.status == 200, await r.text()
                timeline = await r.json()
            assert len(timeline["segments"]) == 1, timeline
            piece = timeline["segments"][0]
            # (within one 1/90000-s tick: the export's plan counts in those)
            assert piece["cut"] and abs(piece["start_us"] - key_before) <= 12, (piece, key_before)
            async with http.get(f"{base}{piece['url']}") as r:
                assert r.status == 200, await r.text()
                served = await r.read()
        frames = wall_frames(served, key_before)
        # From the keyframe before the start to the last frame shown before the end: the
        # lead-in plus the window, no more — and the frames themselves, byte for byte.
        assert frames[0][0] == key_before and frames[0][1]
        assert all(t < end for t, _, _ in frames), "a frame after the window was served"
        expected = [f for f in original if key_before <= f[0] < end]
        assert [(t, k) for t, k, _ in frames] == [(t, k) for t, k, _ in expected]
        assert [d for _, _, d in frames] == [d for _, _, d in expected]
        assert len(original) > len(frames) and len(served) < len(whole)
        lead_in_s = (start - key_before) / 1e6
        assert len(frames) <= round((lead_in_s + 1.0) * 15) + 1, len(frames)
        # A player can decode it on its own (what the page's MediaSource gets).
        with av.open(io.BytesIO(served)) as container:
            decoded = sum(1 for _ in container.decode(video=0))
        assert decoded == len(frames)
    finally:
        await svc.stop()
