"""Debian's Chromium driven by Playwright (its own browser download cannot be fetched here, and
its Chromium build lacks H.264 anyway: docs/design.md, "Media facts")."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("NVR_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "artifacts"))
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chromium() -> Iterator[Any]:
    """A fresh headless Chromium (own --user-data-dir), as a Playwright BrowserContext."""
    from playwright.sync_api import sync_playwright

    from tests.camserver import camera_env

    with tempfile.TemporaryDirectory(prefix="nvr-chromium-") as profile, sync_playwright() as pw:
        # The viewer's browser runs on its own computer's clock: under `faketime` only the
        # recorder's date is faked (the page corrects for the skew, as it must for a real PC).
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, env=camera_env(),
        )
        try:
            yield ctx
        finally:
            ctx.close()


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def png_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit, non-interlaced PNG (what Chromium's
    screenshots are): the tests compare pixels, and Pillow is not a dependency."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, ctype = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and ctype in (2, 6), (depth, ctype, interlace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if ctype == 2 else 4
    raw, stride, prev = zlib.decompress(idat), width * bpp, bytearray(width * bpp)
    rows: list[bytes] = []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        rows.append(bytes(line) if bpp == 3 else bytes(
            v for j in range(0, stride, 4) for v in line[j:j + 3]))
    return width, height, rows


def differing_pixels(a: bytes, b: bytes, tolerance: int = 24) -> int:
    """How many pixels of two same-sized PNG screenshots differ by more than `tolerance`."""
    wa, ha, ra = png_rgb(a)
    wb, hb, rb = png_rgb(b)
    assert (wa, ha) == (wb, hb), ((wa, ha), (wb, hb))
    n = 0
    for x, y in zip(ra, rb, strict=True):
        for i in range(0, len(x), 3):
            if max(abs(x[i] - y[i]), abs(x[i + 1] - y[i + 1]), abs(x[i + 2] - y[i + 2])) > tolerance:
                n += 1
    return n


AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's findings of these impacts on the page as it is now, one line each. Injected
    through the debugger (page.evaluate): the page's CSP rightly refuses any script not its own."""
    found: list[dict[str, Any]] = page.evaluate(
        "async () => { " + AXE.read_text() + "\n; const r = await axe.run(document, "
        "{resultTypes: ['violations']}); return r.violations.map((v) => ({id: v.id, "
        "impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' '))})); }")
    return [f"{v['impact']}: {v['id']}: {v['help']} at {v['nodes'][:3]}"
            for v in found if v["impact"] in impacts]
