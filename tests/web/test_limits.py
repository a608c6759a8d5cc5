"""Issue 27: the web server's limits, one by one — connections per address, the header
deadline against a client that trickles its request, sessions per link, idle sessions, and
refusals audited as a few rows however many attempts.

In-process with the real Service, web server, SQLite and HTTP on loopback; the limits are made
small (monkeypatch) so that each is reached in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nvr.config.loader import load_camera_map
from nvr.runtime.service import Service
from nvr.web import limits
from tests.ingest.recording_helpers import wait_for
from tests.web.browser import free_port
from tests.web.maps import write_map


async def _started(tmp_path: Path) -> tuple[Service, int]:
    port = free_port()
    cfg = write_map(tmp_path, port)
    svc = Service(cfg, load_camera_map(cfg))
    await svc.start()
    return svc, port


@dataclass
class Row:
    action: str
    detail: dict[str, Any]


def _refusal_rows(tmp_path: Path) -> list[Row]:
    """The refusal rows in the audit, read from the index after the recorder stopped (its
    last coalesced counts are written at shutdown)."""
    with sqlite3.connect(tmp_path / "storage" / "index.db") as db:
        return [Row(a, json.loads(d)) for a, d in db.execute(
            "SELECT action, detail FROM audit WHERE action IN ('view_refused', "
            "'refusals_coalesced') ORDER BY seq")]


async def _closed(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closed `sock` within the time (its reads return EOF)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096),
                                          max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return False
        except OSError:
            return True
        if data == b"":
            return True
    return False


async def test_connections_beyond_the_per_address_cap_are_closed_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_PER_PEER", 5)
    svc, port = await _started(tmp_path)
    socks: list[socket.socket] = []
    try:
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            socks.append(s)
        closed = [await _closed(s, 0.5) for s in socks]
        assert closed == [False] * 5 + [True] * 3, closed
        # Another address (still loopback) has its own five.
        other = socket.socket()
        other.bind(("127.0.0.2", 0))
        other.connect(("127.0.0.1", port))
        socks.append(other)
        assert not await _closed(other, 0.3)
    finally:
        for s in socks:
            s.close()
        await svc.stop()
    rows = _refusal_rows(tmp_path)
    # One row for the first refused connection, one counting the two after it.
    assert [r.action for r in rows] == ["view_refused", "refusals_coalesced"], rows
    assert rows[1].detail["count"] == 2 and "127.0.0.1" in rows[1].detail["remotes"]


async def test_a_request_trickled_a_byte_at_a_time_is_cut_off_at_the_header_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "HEADER_TIMEOUT_S", 1.0)
    svc, port = await _started(tmp_path)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        t0 = time.monotonic()
        request = b"GET /view HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        closed_at = None
        for i in range(len(request)):  # bounded: 100-odd bytes, 0.2 s apart at most
            try:
                s.sendall(request[i:i + 1])
            except OSError:
                closed_at = time.monotonic()
                break
            if await _closed(s, 0.2):
                closed_at = time.monotonic()
                break
        s.close()
        assert closed_at is not None, "a trickled request kept its connection"
        assert closed_at - t0 < 2.5, f"closed after {closed_at - t0:.1f} s"
    finally:
        await svc.stop()


async def test_sessions_per_link_are_capped_and_idle_ones_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_SESSIONS_PER_LINK", 3)
    monkeypatch.setattr(limits, "SESSION_IDLE_S", 1.0)
    svc, port = await _started(tmp_path)
    try:
        assert svc.web is not None
        now = svc.clock()
        link, token = await svc.web.links.mint(
            kind="live", actor="director", uid=0, role="director", cameras=["lobby"],
            start_us=None, end_us=None, purpose="test", now_us=now, expires_us=now + 600_000_000)
        base = f"http://127.0.0.1:{port}"
        statuses = []
        async with aiohttp.ClientSession(headers={"Origin": base}) as http:
            for _ in range(20):
                async with http.post(f"{base}/api/session", json={"token": token}) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        why = await r.text()
            assert statuses == [200] * 3 + [429] * 17, statuses
            assert "open in 3 windows" in why, why
            # Nobody keeps those windows open: they end by themselves, and the link opens again.
            await wait_for(lambda: not link.sessions, within_s=5)
            async with http.post(f"{base}/api/session", json={"token": token}) as r:
                assert r.status == 200, await r.text()
        ends = [r for r in await svc.audit.rows() if r.action == "view_session_end"]
        assert len(ends) == 3 and all(r.detail["why"] == "idle" for r in ends)
    finally:
        await svc.stop()
    rows = _refusal_rows(tmp_path)
    assert [r.action for r in rows] == ["view_refused", "refusals_coalesced"], rows
    assert rows[0].detail["link"] == link.id and rows[1].detail["count"] == 16
