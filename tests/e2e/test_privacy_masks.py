"""Issue 26, privacy masks, through the real daemon, socket, CLI and accounts: what leaves the
recorder has the mask burned in; only the Director may take it out unmasked, and is audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from nvr.export.preview import COLOURS
from nvr.media.masks import FILL_Y
from tests.camserver import TestCamera
from tests.e2e.harness import ACCOUNTS, Recorder, run_cli
from tests.export.masking import (
    MASK,
    decode_all,
    fill_luma,
    planes,
    psnr_outside,
    uniform_problem,
)
from tests.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")

MASKED_CAM = {"id": "reading", "name": "Reading room", "area": "public_seating",
              "privacy_masks": [{"note": MASK.note, "polygon": [list(p) for p in MASK.polygon]}]}


@pytest.fixture(scope="module")
def rec() -> Iterator[Recorder]:
    # Colour bars: the masked region holds several bright bars, so "one colour there" and
    # "black there" can only hold if the mask was applied (the default ball is mostly black).
    with TestCamera("--pattern", "smpte") as cam:
        r = Recorder([{**MASKED_CAM, "rtsp": cam.url("h264-noaudio")}]).start()
        try:
            r.wait_for_segments("reading", 3, timeout=90)
            yield r
        finally:
            r.cleanup()


def _window(rec: Recorder) -> tuple[str, str]:
    seg = rec.wait_for_segments("reading", 3, timeout=90)[1]
    return seg["start"], seg["end"]


def _audit(rec: Recorder) -> list[dict[str, Any]]:
    rows = rec.cli("director", "audit", "list", "--json").json()
    return rows["rows"] if isinstance(rows, dict) else rows


def test_export_has_the_mask_burned_in_and_unmasked_is_the_directors_alone(
    rec: Recorder,
) -> None:
    start, end = _window(rec)
    span = ["--camera", "reading", "--start", start, "--end", end]
    # The Assistant Director may export, but not unmasked: refused by the rule, nothing written.
    asst = rec.out_path("asst.mp4")
    res = rec.cli("assistant_director", "export", *span, "--reason", "incident 7", "--unmasked",
                  "--out", asst)
    assert res.code == 77, res.err
    assert "only the Library Director may export a recorded clip without the camera's " \
           "privacy masks; leave out --unmasked" in res.err
    assert "reading, viewing, or listening activities" in res.err
    assert not Path(asst).exists()
    masked = rec.out_path("masked.mp4")
    res = rec.cli("assistant_director", "export", *span, "--reason", "incident 7", "--out", masked)
    assert res.code == 0, res.err
    plain = rec.out_path("plain.mp4")
    res = rec.cli("director", "export", *span, "--reason", "incident 7: the court asked for "
                  "the whole picture", "--unmasked", "--out", plain)
    assert res.code == 0, res.err
    ours, theirs = decode_all(masked), decode_all(plain)
    assert len(ours) == len(theirs) > 10
    with av.open(masked) as c:
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    for (_, a), (_, b) in zip(ours, theirs, strict=True):
        assert uniform_problem(a, w, h) is None, uniform_problem(a, w, h)
        assert abs(fill_luma(a, w, h) - FILL_Y) <= 2
        assert psnr_outside(a, b, w, h) >= 35
        assert uniform_problem(b, w, h) is not None  # the bars, unmasked
    verify = run_cli(["export", "verify", masked, "--key", _fingerprint(rec)])
    assert verify.code == 0, verify.out + verify.err
    assert "masked copy of segments" in verify.out and "(public computers)" in verify.out
    rows = _audit(rec)
    lifted = [r for r in rows if r["action"] == "export_delivered"
              and r["detail"].get("masks_lifted")]
    assert [(r["actor"], r["detail"]["masks_lifted"]) for r in lifted] == [
        (ACCOUNTS["director"], ["public computers"])]
    decision = [r for r in rows if r["action"] == "export" and r["detail"].get("unmasked")]
    assert [(r["actor"], r["allowed"], r["detail"]["masks_lifted"]) for r in decision] == [
        (ACCOUNTS["assistant_director"], False, ["public computers"]),
        (ACCOUNTS["director"], True, ["public computers"])]
    applied = [r for r in rows if r["action"] == "export_delivered"
               and r["detail"].get("masks_applied")]
    assert [r["actor"] for r in applied] == [ACCOUNTS["assistant_director"]]


def test_still_has_the_mask_filled(rec: Recorder) -> None:
    start, _ = _window(rec)
    out = rec.out_path("still.jpg")
    res = rec.cli("assistant_director", "still", "--camera", "reading", "--at", start, "--until",
                  "2099-01-01", "--reason", "suspension 3", "--out", out)
    assert res.code == 0, res.err
    with av.open(out) as c:
        (frame,) = list(c.decode(video=0))
    assert uniform_problem(planes(frame), frame.width, frame.height) is None
    assert fill_luma(planes(frame), frame.width, frame.height) <= 2  # black (full-range JPEG)
    res = rec.cli("assistant_director", "still", "--camera", "reading", "--at", start, "--until",
                  "2099-01-01", "--reason", "suspension 3", "--unmasked",
                  "--out", rec.out_path("still2.jpg"))
    assert res.code == 77 and "leave out --unmasked" in res.err


def test_it_previews_the_masks_to_place_them_and_staff_may_not(rec: Recorder) -> None:
    out = rec.out_path("masks.png")
    res = rec.cli("it", "masks", "preview", "--camera", "reading", "--out", out)
    assert res.code == 0, res.err
    assert "1 mask outlined" in res.out and "1: public computers  [0.25, 0.25]" in res.out
    with av.open(out) as c:
        (frame,) = list(c.decode(video=0))
    img = frame.to_ndarray(format="rgb24")
    h, w = img.shape[:2]
    # The outline is drawn on the mask's edge (x = 0.25 of the width, halfway down) in the
    # first mask's colour; the picture is not masked (the bars show inside).
    assert tuple(img[h // 2, round(0.25 * (w - 1))]) == COLOURS[0]
    assert img[h // 2, round(0.4 * w)].max() > 100
    res = rec.cli("staff", "masks", "preview", "--camera", "reading", "--out",
                  rec.out_path("staff.png"))
    assert res.code == 77 and "staff may not preview a camera's privacy masks" in res.err
    rows = [r for r in _audit(rec) if r["action"] == "masks_preview"]
    assert [(r["actor"], r["allowed"], r["detail"].get("masks")) for r in rows][-2:] == [
        (ACCOUNTS["it"], True, ["public computers"]),
        (ACCOUNTS["staff"], False, ["public computers"])]


def test_a_reload_applies_to_the_next_still(rec: Recorder) -> None:
    """Runs last in this module: it moves the mask to the right-hand side of the picture."""
    start, _ = _window(rec)
    text = rec.config.read_text()
    old = json.dumps([list(p) for p in MASK.polygon])
    assert old in text
    rec.config.write_text(text.replace(old, "[[0.6, 0.25], [0.85, 0.25], [0.85, 0.75], "
                                            "[0.6, 0.75]]"))
    res = rec.cli("root", "reload")
    assert res.code == 0, res.err
    out = rec.out_path("after-reload.jpg")
    res = rec.cli("assistant_director", "still", "--camera", "reading", "--at", start,
                  "--until", "2099-01-01", "--reason", "suspension 4", "--out", out)
    assert res.code == 0, res.err
    with av.open(out) as c:
        (frame,) = list(c.decode(video=0))
    p, w, h = planes(frame), frame.width, frame.height
    assert uniform_problem(p, w, h) is not None  # the old place shows the bars again
    moved = p[0][round(0.25 * h) + 4:round(0.75 * h) - 4, round(0.6 * w) + 4:round(0.85 * w) - 4]
    assert int(moved.max()) <= 4  # black where the mask is now


def _fingerprint(rec: Recorder) -> str:
    fp: str = rec.cli("director", "key", "show", "--json").json()["fingerprint"]
    return fp
