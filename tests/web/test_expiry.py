"""Links end by themselves: at expiry, open streams close within 2 s and the link is refused.

In-process with the real Service, web server, SQLite and HTTP (aiohttp's client), and a clock
the test moves forward: waiting out a real minute would make the test slow, not truer.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from nvr.config.loader import load_camera_map
from nvr.runtime.service import Service
from tests.web.browser import free_port
from tests.web.maps import write_map


async def test_expired_link_closes_its_streams_within_2s_and_is_refused(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_map(tmp_path, port)
    offset = [0]
    svc = Service(cfg, load_camera_map(cfg), clock=lambda: time.time_ns() // 1000 + offset[0])
    await svc.start()
    try:
        assert svc.web is not None
        now = svc.clock()
        for kind in ("live", "emergency"):
            link, token = await svc.web.links.mint(
                kind=kind, actor="director", uid=0, role="director",  # type: ignore[arg-type]
                cameras=["lobby"], start_us=None, end_us=None, purpose="test", now_us=now,
                expires_us=now + 60_000_000)
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(headers={"Origin": base}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.post(f"{base}/api/session", json={"token": token}) as r:
                    assert r.status == 200, await r.text()
                async with http.ws_connect(f"{base}/api/l/{link.id}/events") as ws:
                    offset[0] += 61_000_000  # past the expiry
                    t0 = time.monotonic()
                    msg = await asyncio.wait_for(ws.receive_json(), 2.0)
                    assert "expired" in msg["ended"], msg
                    assert time.monotonic() - t0 < 2
                async with http.get(f"{base}/api/l/{link.id}/info") as r:
                    assert r.status == 403
                    assert "expired" in await r.text()
                async with http.post(f"{base}/api/session", json={"token": token}) as r:
                    assert r.status == 403 and "expired" in await r.text()
            offset[0] = 0
        # Only the token's hash is stored.
        async with svc.db.execute("SELECT token_hash FROM view_links") as cur:
            stored = [r[0] for r in await cur.fetchall()]
        assert len(stored) == 2 and token not in stored and all(len(h) == 64 for h in stored)
        rows = await svc.audit.rows()
        ends = [r for r in rows if r.action == "view_session_end"]
        assert len(ends) == 2 and all("expired" in r.detail["why"] for r in ends)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            expired = [r for r in await svc.audit.rows() if r.action == "view_link_expired"]
            if len(expired) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(r.detail["kind"] for r in expired) == ["emergency", "live"]
    finally:
        await svc.stop()


async def test_wrong_origin_and_plain_http_elsewhere_are_refused(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_map(tmp_path, port)
    svc = Service(cfg, load_camera_map(cfg))
    await svc.start()
    try:
        assert svc.web is not None
        now = svc.clock()
        link, token = await svc.web.links.mint(
            kind="live", actor="director", uid=0, role="director", cameras=["lobby"],
            start_us=None, end_us=None, purpose="test", now_us=now, expires_us=now + 60_000_000)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers={"Origin": "http://evil.example"}) as http:
            async with http.post(f"{base}/api/session", json={"token": token}) as r:
                assert r.status == 403 and "origin" in await r.text()
        async with aiohttp.ClientSession(headers={"Origin": base}, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(f"{base}/api/session", json={"token": token}) as r:
                assert r.status == 200
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    finally:
        await svc.stop()
    text = cfg.read_text().replace("127.0.0.1:", "0.0.0.0:")
    cfg.write_text(text)
    from nvr.config.loader import ConfigError

    try:
        load_camera_map(cfg)
    except ConfigError as exc:
        assert "plain HTTP on a non-loopback address" in str(exc)
    else:
        raise AssertionError("plain HTTP on 0.0.0.0 was accepted")


async def test_tls_from_live_tls_serves_https_and_secure_cookies(tmp_path: Path) -> None:
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "live.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "live.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    port = free_port()
    cfg = write_map(tmp_path, port)
    cfg.write_text(cfg.read_text().replace(
        f"  listen: 127.0.0.1:{port}\n",
        f"  listen: 127.0.0.1:{port}\n  tls: {{cert: {tmp_path / 'live.crt'}, "
        f"key: {tmp_path / 'live.key'}}}\n"))
    svc = Service(cfg, load_camera_map(cfg))
    await svc.start()
    try:
        assert svc.web is not None and svc.web.base_url().startswith("https://")
        now_us = svc.clock()
        link, token = await svc.web.links.mint(
            kind="live", actor="director", uid=0, role="director", cameras=["lobby"],
            start_us=None, end_us=None, purpose="test", now_us=now_us,
            expires_us=now_us + 60_000_000)
        base = f"https://127.0.0.1:{port}"
        ctx = ssl.create_default_context(cafile=str(tmp_path / "live.crt"))
        async with aiohttp.ClientSession(headers={"Origin": base}) as http:
            async with http.post(f"{base}/api/session", json={"token": token}, ssl=ctx) as r:
                assert r.status == 200, await r.text()
                assert "Secure" in r.headers["Set-Cookie"]
    finally:
        await svc.stop()
