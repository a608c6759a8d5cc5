"""Issue "Watch footage in a browser": live view in a real browser (Debian's Chromium)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.support import is_root
from tests.web.browser import (
    CHROMIUM,
    artifact,
    axe_violations,
    chromium,
    differing_pixels,
    free_port,
)

pytestmark = [
    pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root"),
    pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM),
                       reason="needs Debian's chromium (tools/setup.sh installs it)"),
]


@pytest.fixture(scope="module")
def rec(testcam: TestCamera) -> Iterator[Recorder]:
    port = free_port()
    r = Recorder([
        {"id": "lobby", "name": "Lobby", "area": "public_seating",
         "rtsp": testcam.url("h264-noaudio")},
        {"id": "stacks", "name": "Stacks", "area": "stacks", "rtsp": testcam.url("h264-noaudio")},
        {"id": "senior-lounge", "name": "Senior lounge", "area": "senior_center_shared",
         "shared_with_senior_center": True, "rtsp": testcam.url("h265")},
        {"id": "annex", "name": "Annex", "area": "stacks", "rtsp": testcam.url("h264-bframes")},
        {"id": "porch", "name": "Front porch", "area": "entrance",
         "rtsp": testcam.url("h264-noaudio")},
        # Records H.265; live view from its H.264 substream.
        {"id": "hall", "name": "Hall", "area": "hallway", "rtsp": testcam.url("h265"),
         "live_rtsp": testcam.url("h264-noaudio")},
    ], extra=f"live:\n  listen: 127.0.0.1:{port}\n").start()
    r.wait_for_segments("lobby", 1, timeout=30)
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as ctx:
        yield ctx


def audit_rows(rec: Recorder, action: str) -> list[dict[str, Any]]:
    res = rec.cli("director", "audit", "list", "--json")
    assert res.code == 0, res.err
    return [r for r in res.json() if r["action"] == action]


def mint(rec: Recorder, role: str, *argv: str) -> dict[str, Any]:
    res = rec.cli(role, *argv, "--json")
    assert res.code == 0, f"{argv}: exit {res.code}: {res.err}"
    return json.loads(res.out)  # type: ignore[no-any-return]


def wait_js(page: Any, expr: str, timeout_s: float, what: str) -> None:
    """Poll `expr` from here: Playwright's wait_for_function evaluates a string inside the page,
    which the page's CSP (no eval) rightly forbids; page.evaluate goes through the debugger."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = page.evaluate(f"() => Boolean({expr})")
        except Exception as exc:  # noqa: BLE001 - e.g. during a navigation
            last = exc
        if last is True:
            return
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout_s}s for {what} ({expr}); last: {last!r}")


STATS = """async () => {
  const out = [];
  for (const pc of state.pcs) {
    const rep = await pc.getStats();
    const codecs = {};
    rep.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    rep.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video')
      out.push({framesDecoded: s.framesDecoded, codec: codecs[s.codecId], width: s.frameWidth,
                height: s.frameHeight, pli: s.pliCount}); });
  }
  return out;
}"""


def test_live_link_plays_the_cameras_h264_in_chromium(rec: Recorder, browser: Any) -> None:
    link = mint(rec, "director", "live", "--camera", "lobby", "--minutes", "1",
                "--reason", "incident at the desk")
    assert "#" in link["url"] and link["cameras"] == ["lobby"]
    page = browser.new_page()
    t0 = time.monotonic()
    page.goto(link["url"])
    wait_js(page, "document.querySelector('video[data-camera=\"lobby\"]')?.videoWidth > 0", 3,
            "a picture from camera lobby")
    first_frame_s = time.monotonic() - t0
    t1 = page.evaluate("document.querySelector('video[data-camera=\"lobby\"]').currentTime")
    wait_js(page, f"document.querySelector('video[data-camera=\"lobby\"]').currentTime > {t1} + 1",
            5, "currentTime to advance by 1 s")
    stats = page.evaluate(STATS)
    assert stats and stats[0]["framesDecoded"] > 10, stats
    assert stats[0]["codec"] == "video/H264", stats
    # The camera's own picture size: nothing was scaled or re-encoded on the way.
    assert (stats[0]["width"], stats[0]["height"]) == (640, 360), stats
    clock = page.get_attribute("#nvr-clock", "datetime")
    assert clock and clock.endswith("Z"), clock
    assert "#" not in page.url, "the token must leave the address bar"
    page.screenshot(path=str(artifact("live-lobby.png")))
    page.close()
    print(f"time to first frame: {first_frame_s:.2f}s")
    starts = [r for r in audit_rows(rec, "view_session_start") if r["detail"]["link"] == link["id"]]
    conns = [r for r in audit_rows(rec, "view_connect") if r["detail"]["link"] == link["id"]]
    assert len(starts) == 1 and starts[0]["detail"]["purpose"] == "incident at the desk"
    assert len(conns) == 1 and conns[0]["detail"]["remote"] == "127.0.0.1"


def test_revoke_stops_the_page_within_2s_and_the_url_is_refused(rec: Recorder,
                                                                 browser: Any) -> None:
    link = mint(rec, "it", "live", "--camera", "stacks", "--reason", "check the camera works")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.querySelector('video[data-camera=\"stacks\"]')?.videoWidth > 0", 3,
            "a picture from camera stacks")
    res = rec.cli("it", "view", "revoke", link["id"])
    assert res.code == 0, res.err
    t0 = time.monotonic()
    wait_js(page, "document.body.dataset.state === 'ended'", 2, "the page to stop")
    assert time.monotonic() - t0 < 2
    assert "revoked" in page.inner_text("#nvr-message")
    assert page.evaluate("document.querySelector('video').srcObject") is None
    # The same URL again: refused, one line that says why, one audit row.
    before = len(audit_rows(rec, "view_refused"))
    page.goto("about:blank")
    page.goto(link["url"])
    wait_js(page, "document.body.dataset.state === 'refused'", 3, "the refusal")
    assert "revoked" in page.inner_text("#nvr-message")
    refused = audit_rows(rec, "view_refused")
    assert len(refused) == before + 1 and refused[-1]["detail"]["link"] == link["id"]
    ends = [r for r in audit_rows(rec, "view_session_end") if r["detail"]["link"] == link["id"]]
    assert len(ends) == 1 and "revoked" in ends[0]["detail"]["why"]
    page.close()


def test_link_for_one_camera_cannot_open_another_and_made_up_tokens_fail(
        rec: Recorder, browser: Any) -> None:
    link = mint(rec, "director", "live", "--camera", "lobby", "--reason", "desk")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.body.dataset.state === 'open'", 3, "the session")
    before = len(audit_rows(rec, "view_refused"))
    status = page.evaluate("""async (id) => {
        const pc = new RTCPeerConnection(); pc.addTransceiver('video', {direction: 'recvonly'});
        await pc.setLocalDescription(await pc.createOffer());
        const r = await fetch(`/api/l/${id}/live/stacks/offer`, {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({sdp: pc.localDescription.sdp})});
        pc.close();
        return [r.status, await r.text()];
    }""", link["id"])
    assert status[0] == 403 and "does not cover camera stacks" in status[1], status
    refused = audit_rows(rec, "view_refused")
    assert len(refused) == before + 1 and refused[-1]["detail"]["camera"] == "stacks"
    # A made-up token: refused, one audit row.
    base = link["url"].split("#")[0]
    page.goto("about:blank")
    page.goto(base + "#" + "x" * 43)
    wait_js(page, "document.body.dataset.state === 'refused'", 3, "the refusal")
    assert "not valid" in page.inner_text("#nvr-message")
    assert len(audit_rows(rec, "view_refused")) == before + 2
    page.close()


def test_h265_camera_says_plainly_why_there_is_no_live_picture(rec: Recorder,
                                                                browser: Any) -> None:
    link = mint(rec, "elder_affairs_director", "live", "--camera", "senior-lounge",
                "--reason", "check the lounge")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.querySelector('.why')?.textContent.includes('H265') || "
            "document.querySelector('.why')?.textContent.includes('HEVC')", 6,
            "the page to say why there is no live picture")
    page.close()


def test_emergency_feed_lists_time_left_and_ending_it_closes_viewers_at_once(
        rec: Recorder, browser: Any) -> None:
    assert rec.cli("staff", "emergency", "start", "--agency", "Hanson Police", "--camera",
                   "lobby", "--minutes", "30").code == 77
    too_long = rec.cli("director", "emergency", "start", "--agency", "Hanson Police",
                       "--camera", "lobby", "--minutes", "241")
    assert too_long.code == 77 and "1 to 240 minutes" in too_long.err, too_long.err
    em = mint(rec, "director", "emergency", "start", "--agency", "Hanson Police", "--camera",
              "lobby", "--minutes", "30")
    assert em["id"].startswith("em-") and "#" in em["url"]
    listed = mint(rec, "it", "emergency", "list")["emergencies"]
    mine = [e for e in listed if e["id"] == em["id"]]
    assert mine and mine[0]["agency"] == "Hanson Police" and 1700 < mine[0]["seconds_left"] <= 1800
    status = mint(rec, "it", "status")
    assert [e["id"] for e in status["emergencies"]] == [em["id"]]
    page = browser.new_page()
    page.goto(em["url"])
    wait_js(page, "document.querySelector('video[data-camera=\"lobby\"]')?.videoWidth > 0", 3,
            "the emergency feed's picture")
    # Said once (the link's purpose is "emergency: AGENCY"), with the time it ends.
    assert page.inner_text("#nvr-title") == "Emergency live feed: Hanson Police"
    assert page.inner_text("#nvr-ends").startswith("link ends ")
    assert page.locator("#nvr-playback").is_hidden()  # nothing but live
    page.set_viewport_size({"width": 390, "height": 844})
    wait_js(page, "document.getElementById('nvr-clock').getAttribute('datetime')", 2, "the clock")
    page.screenshot(path=str(artifact("emergency-390x844.png")))
    assert not axe_violations(page, ("minor", "moderate", "serious", "critical"))
    # Every page asks for /favicon.ico: an empty answer, not a 404.
    assert page.evaluate("async () => (await fetch('/favicon.ico')).status") == 204
    # Live only: the emergency link cannot fetch recordings.
    got = page.evaluate("async (id) => (await fetch(`/api/l/${id}/timeline/lobby`)).status",
                        em["id"])
    assert got == 403
    res = rec.cli("it", "emergency", "end")  # IT may end it ("once under control")
    assert res.code == 0, res.err
    t0 = time.monotonic()
    wait_js(page, "document.body.dataset.state === 'ended'", 2, "the emergency page to stop")
    assert time.monotonic() - t0 < 2
    assert mint(rec, "it", "emergency", "list")["emergencies"] == []
    assert mint(rec, "it", "status")["emergencies"] == []
    page.close()
    ends = [r for r in audit_rows(rec, "view_session_end") if r["detail"]["link"] == em["id"]]
    assert len(ends) == 1 and ends[0]["detail"]["purpose"] == "emergency: Hanson Police"


def test_view_list_shows_own_links_only_and_directors_see_all(rec: Recorder) -> None:
    mine = mint(rec, "it", "live", "--camera", "lobby", "--reason", "focus check")
    theirs = mint(rec, "director", "live", "--camera", "lobby", "--reason", "incident")
    it_ids = [lk["id"] for lk in mint(rec, "it", "view", "list")["links"]]
    assert mine["id"] in it_ids and theirs["id"] not in it_ids
    all_ids = [lk["id"] for lk in mint(rec, "assistant_director", "view", "list")["links"]]
    assert {mine["id"], theirs["id"]} <= set(all_ids)
    refused = rec.cli("it", "view", "revoke", theirs["id"])
    assert refused.code == 64 and "of yours" in refused.err
    assert rec.cli("public", "view", "list").code == 77


def test_camera_with_a_live_substream_plays_it(rec: Recorder, browser: Any) -> None:
    link = mint(rec, "director", "live", "--camera", "hall", "--reason", "hall check")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.querySelector('video[data-camera=\"hall\"]')?.videoWidth > 0", 4,
            "a picture from the hall camera's H.264 substream")
    stats = page.evaluate(STATS)
    assert stats and stats[0]["codec"] == "video/H264", stats
    page.close()


def test_reload_keeps_the_session_without_the_token_and_disconnects_are_audited(
        rec: Recorder, browser: Any) -> None:
    link = mint(rec, "director", "live", "--camera", "lobby", "--reason", "reload")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.querySelector('video')?.videoWidth > 0", 3, "a picture")
    assert "#" not in page.url and f"link={link['id']}" in page.url
    page.reload()
    wait_js(page, "document.querySelector('video')?.videoWidth > 0", 4, "a picture after reload")
    page.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gone = [r for r in audit_rows(rec, "view_disconnect") if r["detail"]["link"] == link["id"]]
        if len(gone) >= 1:
            break
        time.sleep(0.5)
    assert gone and gone[0]["detail"]["packets"] > 0, gone
    starts = [r for r in audit_rows(rec, "view_session_start") if r["detail"]["link"] == link["id"]]
    conns = [r for r in audit_rows(rec, "view_connect") if r["detail"]["link"] == link["id"]]
    assert len(starts) == 1 and len(conns) == 2


def test_b_frame_camera_plays_its_recording_as_it_is_written(rec: Recorder,
                                                             browser: Any) -> None:
    rec.wait_for_segments("annex", 1, timeout=30)
    link = mint(rec, "director", "live", "--camera", "annex", "--reason", "annex")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.querySelector('.why')?.textContent.includes('B-frames')", 8,
            "the page to say B-frames cannot go over WebRTC")
    wait_js(page, "document.querySelector('video[data-camera=\"annex\"]')?.videoWidth > 0", 6,
            "a picture over fMP4/MSE")
    t1 = page.evaluate("document.querySelector('video[data-camera=\"annex\"]').currentTime")
    wait_js(page, f"document.querySelector('video[data-camera=\"annex\"]').currentTime > {t1} + 1",
            6, "the MSE live picture to advance")
    conns = [r for r in audit_rows(rec, "view_connect")
             if r["detail"]["link"] == link["id"] and r["detail"]["stream"] == "fmp4"]
    assert len(conns) == 1
    # A second viewer of the same camera: the recorder knows the stream by now, so the page
    # goes straight to fMP4 (it must not be told only "no live picture").
    second = browser.new_page()
    second.goto(link["url"])
    wait_js(second, "document.querySelector('video[data-camera=\"annex\"]')?.videoWidth > 0", 8,
            "the second viewer's picture over fMP4/MSE")
    conns = [r for r in audit_rows(rec, "view_connect")
             if r["detail"]["link"] == link["id"] and r["detail"]["stream"] == "fmp4"]
    assert len(conns) == 2
    second.close()
    page.close()


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("NVR_LONG"),
                    reason="waits out a real minute: NVR_LONG=1 runs it")
def test_one_minute_link_stops_by_itself_in_the_browser(rec: Recorder, browser: Any) -> None:
    link = mint(rec, "director", "live", "--camera", "lobby", "--minutes", "1",
                "--reason", "expiry")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.querySelector('video')?.videoWidth > 0", 3, "a picture")
    expires = __import__("datetime").datetime.fromisoformat(link["expires"].replace("Z", "+00:00"))
    time.sleep(max(0.0, expires.timestamp() - time.time()))
    t0 = time.monotonic()
    wait_js(page, "document.body.dataset.state === 'ended'", 2, "the page to stop at expiry")
    assert time.monotonic() - t0 < 2
    assert "expired" in page.inner_text("#nvr-message")
    page.goto("about:blank")
    page.goto(link["url"])
    wait_js(page, "document.body.dataset.state === 'refused'", 3, "the refusal")
    assert "expired" in page.inner_text("#nvr-message")
    page.close()


WALL = ["lobby", "stacks", "hall", "porch"]


def test_a_wall_of_four_cameras_fits_the_window_named_playing_and_watermarked(
        rec: Recorder, browser: Any) -> None:
    day_before_page = dt.datetime.now().astimezone().date()
    link = mint(rec, "director", "live", "--camera", *WALL, "--minutes", "5",
                "--reason", "incident at the desk")
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(link["url"])
    for cam in WALL:
        try:
            wait_js(page, f"document.querySelector('video[data-camera=\"{cam}\"]')"
                    "?.currentTime > 0.5", 10, f"camera {cam} to play")
        except AssertionError as exc:
            why = page.evaluate("() => [...document.querySelectorAll('.why')]"
                                ".map((w) => w.textContent)")
            raise AssertionError(f"{exc}; the tiles say {why}") from None
    times = page.evaluate("() => [...document.querySelectorAll('video[data-camera]')]"
                          ".map((v) => v.currentTime)")
    wait_js(page, f"[...document.querySelectorAll('video[data-camera]')].every((v, i) => "
            f"v.currentTime > {times}[i] + 0.5)", 5, "every tile's video to advance")
    names = {"lobby": "Lobby", "stacks": "Stacks", "hall": "Hall", "porch": "Front porch"}
    tiles = page.locator("#cams .cam")
    assert tiles.count() == 4
    for i in range(4):
        tile = tiles.nth(i)
        cam = tile.locator("video").get_attribute("data-camera")
        assert cam in names
        assert tile.locator(".name").inner_text() == names[cam]
        assert tile.locator(".camid").inner_text() == cam
        box = tile.bounding_box()
        assert box and box["x"] >= 0 and box["y"] >= 0, box
        assert box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 800, (cam, box)
        assert box["width"] > 500 and box["height"] > 250, (cam, box)  # 2×2, not thumbnails
    # Times are the box's, to the second, with its zone (as `nvr` prints them).
    clock = page.get_attribute("#nvr-clock", "datetime")
    assert clock and clock.endswith("Z")
    shown = page.inner_text("#nvr-clock")
    zone = dt.datetime.now().astimezone().tzname() or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d " + re.escape(zone), shown), shown
    ends = page.inner_text("#nvr-ends")
    expires = dt.datetime.fromisoformat(link["expires"].replace("Z", "+00:00")).astimezone()
    # The end shows its date only when it falls on another day than the page's clock (a
    # link made at 23:57 ends "2026-12-08 00:02"); the page read its clock between the two
    # dates taken here, so near midnight either form is right.
    same_day = f"link ends {expires:%H:%M} {zone} (in "
    other_day = f"link ends {expires:%Y-%m-%d %H:%M} {zone} (in "
    allowed = {same_day if expires.date() == day else other_day
               for day in (day_before_page, dt.datetime.now().astimezone().date())}
    assert ends.startswith(tuple(allowed)), (ends, allowed)
    assert ends.endswith(("(in 5 min)", "(in 4 min)")), ends
    page.screenshot(path=str(artifact("live-wall-1280x800.png")))
    assert not axe_violations(page, ("minor", "moderate", "serious", "critical")), "axe"
    # The watermark is in the pixels: each tile with and without its canvas, video paused.
    page.evaluate("() => document.querySelectorAll('video').forEach((v) => v.pause())")
    for i in range(4):
        tile = tiles.nth(i)
        box = tile.bounding_box()
        assert box
        clip = {"x": box["x"], "y": box["y"] + box["height"] - 40, "width": box["width"],
                "height": 40}
        marked = page.screenshot(clip=clip)
        tile.locator("canvas.watermark").evaluate("(c) => { c.style.visibility = 'hidden'; }")
        bare = page.screenshot(clip=clip)
        tile.locator("canvas.watermark").evaluate("(c) => { c.style.visibility = ''; }")
        assert differing_pixels(marked, bare) > 300, f"tile {i}: no watermark in the pixels"
    # …and says whose link it is (the text it draws is also in data-text, for this check).
    text = page.locator("canvas.watermark").first.get_attribute("data-text") or ""
    assert f"link {link['id']} · nvrtest-" in text and "incident at the desk" in text, text
    # Enlarge one tile (Enter), back with Escape.
    tiles.nth(1).focus()
    page.keyboard.press("Enter")
    assert tiles.nth(0).is_hidden() and (tiles.nth(1).bounding_box() or {})["width"] > 1000
    page.keyboard.press("Escape")
    assert tiles.nth(0).is_visible()
    # A phone: one tile a row, full width, touch-sized full-screen button.
    page.set_viewport_size({"width": 390, "height": 844})
    first = tiles.nth(0).bounding_box()
    assert first and first["width"] > 370 and first["x"] >= 0
    fs = page.locator("#fullscreen").bounding_box()
    assert fs and fs["width"] >= 44 and fs["height"] >= 44
    page.screenshot(path=str(artifact("live-wall-390x844.png")), full_page=True)
    page.close()
