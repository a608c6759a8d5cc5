"""Issue 26 item 5: a camera's privacy masks filled solid over its live and playback tiles, in a
real browser (Debian's Chromium), over the colour bars (several bright bars lie under the mask,
so "one colour there" can only hold if the mask was drawn, and where the picture is drawn)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.export.masking import MASK
from tests.support import is_root
from tests.web.browser import CHROMIUM, artifact, chromium, png_rgb
from tests.web.test_live_browser import mint, wait_js

pytestmark = [
    pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]

MASKED_CAM = {"id": "reading", "name": "Reading room", "area": "public_seating",
              "privacy_masks": [{"note": MASK.note, "polygon": [list(p) for p in MASK.polygon]}]}
INSET = 4  # CSS px: anti-aliasing at the polygon's edge and the video's scaling
SEL = 'video[data-camera="reading"]'


@pytest.fixture(scope="module")
def rec() -> Iterator[Recorder]:
    with TestCamera("--pattern", "smpte") as cam:
        r = Recorder([{**MASKED_CAM, "rtsp": cam.url("h264-noaudio")}],
                     segment_seconds=2).start()
        try:
            r.wait_for_segments("reading", 2, timeout=60)
            yield r
        finally:
            r.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as ctx:
        yield ctx


# The picture's rectangle on the page (object-fit: contain letterboxes it inside the element).
PICTURE = f"""() => {{ const v = document.querySelector('{SEL}'); const b = v.getBoundingClientRect();
  const s = Math.min(b.width / v.videoWidth, b.height / v.videoHeight);
  const w = v.videoWidth * s, h = v.videoHeight * s;
  return [b.left + (b.width - w) / 2, b.top + (b.height - h) / 2, w, h]; }}"""


def spread(page: Any, x0: float, y0: float, x1: float, y1: float) -> tuple[int, list[int]]:
    """Of a screenshot: the largest difference of any channel inside the picture-relative box
    (fractions), inset by INSET px, and the box's first pixel."""
    px, py, pw, ph = page.evaluate(PICTURE)
    w, h, rows = png_rgb(page.screenshot())
    left, right = round(px + x0 * pw) + INSET, round(px + x1 * pw) - INSET
    top, bottom = round(py + y0 * ph) + INSET, round(py + y1 * ph) - INSET
    assert 0 <= left < right <= w and 0 <= top < bottom <= h, (left, right, top, bottom, w, h)
    lo, hi = [255] * 3, [0] * 3
    for y in range(top, bottom):
        row = rows[y]
        for x in range(left, right):
            for c in range(3):
                v = row[3 * x + c]
                lo[c], hi[c] = min(lo[c], v), max(hi[c], v)
    first = list(rows[top][3 * left:3 * left + 3])
    return max(h_ - l_ for h_, l_ in zip(hi, lo, strict=True)), first


def check_masked(page: Any, what: str) -> None:
    (x0, y0), (x1, y1) = MASK.polygon[0], MASK.polygon[2]
    inside, colour = spread(page, x0, y0, x1, y1)
    assert inside <= 6 and max(colour) <= 20, f"{what}: the mask region is not solid black " \
        f"(channels spread {inside}, colour {colour})"
    # The same size of picture right of it is the bars, not one colour: the screenshot shows
    # the picture, so the check above could fail.
    beside, _ = spread(page, x1 + 0.02, y0, x1 + 0.02 + (x1 - x0), y1)
    assert beside > 60, f"{what}: the picture beside the mask is one colour ({beside})"
    # Fitted to the picture, not to the tile (letterboxing): in a thin strip along each of
    # the mask's edges, just outside it, the bars still show.
    strips = {"above": (x0, y0 - 0.04, x1, y0 - 0.005), "below": (x0, y1 + 0.005, x1, y1 + 0.04),
              "left of": (x0 - 0.04, y0, x0 - 0.005, y1), "right of": (x1 + 0.005, y0, x1 + 0.04, y1)}
    for name, strip in strips.items():
        edge, colour = spread(page, *strip)
        assert edge > 6 or max(colour) > 20, f"{what}: the picture just {name} the mask is black"


def test_live_tile_has_the_mask_filled_over_the_picture(rec: Recorder, browser: Any) -> None:
    link = mint(rec, "director", "live", "--camera", "reading", "--reason", "check masks")
    page = browser.new_page()
    page.set_viewport_size({"width": 1000, "height": 800})  # letterboxed top and bottom
    page.goto(link["url"])
    wait_js(page, f"document.querySelector('{SEL}')?.currentTime > 0.5", 10,
            "a playing picture from camera reading")
    wait_js(page, "document.querySelector('canvas.watermark').dataset.masks === '1'", 3,
            "the mask drawn")
    info = page.evaluate("state.link.cameras[0].masks")
    assert info == [{"note": MASK.note, "polygon": [list(p) for p in MASK.polygon]}], info
    check_masked(page, "live tile")
    # Enlarged (and a window of another shape: letterboxed left and right), redrawn to fit.
    page.set_viewport_size({"width": 1200, "height": 420})
    page.click(SEL)
    wait_js(page, "document.querySelector('.cam.big') !== null", 3, "the tile enlarged")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    check_masked(page, "enlarged live tile")
    page.screenshot(path=str(artifact("masks-live.png")))
    page.close()


def test_playback_tile_has_the_mask_filled_over_the_picture(rec: Recorder, browser: Any) -> None:
    seg = rec.wait_for_segments("reading", 2, timeout=60)[0]
    link = mint(rec, "director", "playback", "--camera", "reading", "--start", seg["start"],
                "--reason", "check masks")
    page = browser.new_page()
    page.set_viewport_size({"width": 900, "height": 900})
    page.goto(link["url"])
    wait_js(page, f"document.querySelector('{SEL}')?.currentTime > 0.3", 10,
            "recorded footage from camera reading playing")
    page.click("#play")  # paused: the screenshot's frame and the mask stay put
    wait_js(page, "document.querySelector('canvas.watermark').dataset.masks === '1'", 3,
            "the mask drawn")
    check_masked(page, "playback tile")
    page.screenshot(path=str(artifact("masks-playback.png")))
    page.close()
