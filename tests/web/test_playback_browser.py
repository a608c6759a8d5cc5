"""Issue "Watch footage in a browser": recorded playback in a real browser (Debian's Chromium)."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nvr.cli.fmt import when
from tests.camserver import TestCamera
from tests.e2e.harness import Recorder
from tests.support import is_root
from tests.web.browser import CHROMIUM, artifact, axe_violations, chromium
from tests.web.test_live_browser import audit_rows, mint, wait_js

pytestmark = [
    pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]


def us(text: str) -> int:
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1_000_000 + d.microsecond


def iso(us_: int) -> str:
    return dt.datetime.fromtimestamp(us_ / 1e6, dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def box_zone() -> Iterator[str]:
    """The box (daemon and CLI alike) runs in New York's zone, not this machine's UTC: the page
    must show the box's local times with their zone, whatever zone the browser is in."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield os.environ["TZ"]
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.fixture(scope="module")
def recorded(box_zone: str) -> Iterator[tuple[Recorder, dict[str, Any]]]:
    """Two-second segments, then the camera offline for a few seconds (a gap), then more."""
    cam = TestCamera().start()
    r = Recorder([{"id": "desk", "name": "Service desk", "area": "service_desk",
                   "rtsp": cam.url("h264-noaudio")},
                  {"id": "door", "name": "Door", "area": "entrance",
                   "rtsp": cam.url("h264-noaudio")}], segment_seconds=2).start()
    try:
        r.wait_for_segments("desk", 3, timeout=40)
        cam.stop()
        time.sleep(3)
        cam.start()
        deadline = time.monotonic() + 40
        listing: dict[str, Any] = {}
        while time.monotonic() < deadline:
            res = r.cli("root", "recordings", "--camera", "desk", "--json")
            listing = res.json()
            gaps = listing["gaps"]
            if gaps and sum(us(s["start"]) >= us(gaps[-1]["end"]) for s in listing["segments"]) >= 2:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no gap followed by 2 segments: {listing}")
        yield r, listing
    finally:
        r.cleanup()
        cam.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as ctx:
        yield ctx


DEBUG = """() => { const v = document.querySelector('video');
  return {t: v.currentTime, paused: v.paused, ready: v.readyState, err: v.error && v.error.message,
          buffered: Array.from({length: v.buffered.length}, (_, i) => [v.buffered.start(i), v.buffered.end(i)]),
          pieces: state.mse.pieces, msg: document.getElementById('nvr-message').textContent,
          why: document.querySelector('.why').textContent}; }"""
CLOCK = "document.getElementById('nvr-clock').getAttribute('datetime')"


def test_playback_from_t_crosses_segments_and_skips_the_gap(
        recorded: tuple[Recorder, dict[str, Any]], browser: Any) -> None:
    rec, listing = recorded
    segs, gap = listing["segments"], listing["gaps"][-1]
    t = us(segs[0]["start"]) + 500_000
    link = mint(rec, "director", "playback", "--camera", "desk", "--start", iso(t),
                "--reason", "incident review")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, f"{CLOCK} && {CLOCK}.length > 0", 5, "the clock to show a frame's time")
    first = us(page.evaluate(CLOCK))
    assert abs(first - t) <= 1_000_000, (iso(first), iso(t))
    # Record every time shown from now on, and any stall.
    page.evaluate("""() => {
        window.seen = []; window.stalls = 0;
        const v = document.querySelector('video[data-camera="desk"]');
        // Start-up buffering is not a stall; waiting once segments are crossed is.
        v.addEventListener("waiting", () => { if (v.currentTime < state.mse.pieces[0].mediaEnd - 0.1) return; window.stalls += 1; window.stallInfo = [v.currentTime, Array.from({length: v.buffered.length}, (_, i) => [v.buffered.start(i), v.buffered.end(i)]), JSON.stringify(state.mse.pieces)]; });
        setInterval(() => window.seen.push(document.getElementById('nvr-clock')
                                           .getAttribute('datetime')), 50);
    }""")
    page.select_option("#speed", "4")
    boundary = us(segs[0]["end"])
    after_gap = us(gap["end"])
    try:
        wait_js(page, f"Date.parse({CLOCK}) > {after_gap // 1000 + 1000}", 20,
                "playback to pass the gap")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{page.evaluate(DEBUG)}\n{listing}") from None
    seen = [us(x) for x in page.evaluate("window.seen") if x]
    assert any(x > boundary + 200_000 for x in seen), "never crossed the first segment boundary"
    inside = [iso(x) for x in seen if us(gap["start"]) + 300_000 < x < after_gap - 300_000]
    assert not inside, f"showed times inside the gap {gap}: {inside[:3]}"
    assert page.evaluate("window.stalls") == 0, page.evaluate("window.stallInfo")
    # The gap is on the timeline, with its reason.
    assert page.locator("#timeline .gap").count() >= 1
    assert gap["reason"] in page.inner_text("#gaps")
    page.screenshot(path=str(artifact("playback-desk.png")))
    page.close()
    conns = [r for r in audit_rows(rec, "view_connect") if r["detail"]["link"] == link["id"]]
    assert len(conns) == 1 and conns[0]["detail"]["stream"] == "playback"


def test_jump_to_a_time(recorded: tuple[Recorder, dict[str, Any]], browser: Any) -> None:
    rec, listing = recorded
    segs = listing["segments"]
    link = mint(rec, "director", "playback", "--camera", "desk", "--start", segs[0]["start"],
                "--reason", "incident review")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, f"{CLOCK} && {CLOCK}.length > 0", 5, "the clock")
    target = us(segs[-1]["start"]) + 700_000
    page.fill("#jump", iso(target))
    page.click("#go")
    wait_js(page, f"Math.abs(Date.parse({CLOCK}) - {target // 1000}) < 1000", 5,
            f"the clock to show {iso(target)}")
    page.close()


def test_it_is_refused_playback_and_the_refusal_is_audited(
        recorded: tuple[Recorder, dict[str, Any]]) -> None:
    rec, listing = recorded
    res = rec.cli("it", "playback", "--camera", "desk", "--start", listing["segments"][0]["start"],
                  "--reason", "curious")
    assert res.code == 77, res.err
    assert "may not view recorded footage" in res.err
    rows = [r for r in audit_rows(rec, "playback") if not r["allowed"]]
    assert rows and rows[-1]["role"] == "it"
    # …while live view for operation is allowed.
    assert rec.cli("it", "live", "--camera", "desk", "--reason", "check focus").code == 0


def test_live_link_cannot_fetch_recordings(recorded: tuple[Recorder, dict[str, Any]],
                                           browser: Any) -> None:
    rec, listing = recorded
    link = mint(rec, "director", "live", "--camera", "desk", "--reason", "desk")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.body.dataset.state === 'open'", 3, "the session")
    seg_id = 1
    status = page.evaluate("""async ([id, seg]) => {
        const r = await fetch(`/api/l/${id}/media/desk/${seg}`);
        return [r.status, await r.text()];
    }""", [link["id"], seg_id])
    assert status[0] == 403 and "live view, not recorded footage" in status[1], status
    page.close()


def test_staff_watch_only_inside_a_grant(recorded: tuple[Recorder, dict[str, Any]]) -> None:
    rec, listing = recorded
    segs = listing["segments"]
    start, end = segs[0]["start"], segs[1]["end"]
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()

    def playback(s: str, e: str) -> int:
        return rec.cli("staff", "playback", "--camera", "desk", "--start", s, "--end", e,
                       "--reason", "review").code

    assert playback(start, end) == 77  # no grant yet
    assert rec.cli("staff", "live", "--camera", "desk", "--reason", "r").code == 77
    res = rec.cli("director", "grant", "create", "--user", "nvrtest-clerk", "--camera", "desk",
                  "--start", start, "--end", end, "--expires", tomorrow, "--reason", "review")
    assert res.code == 0, res.err
    assert playback(start, end) == 0
    assert playback(start, segs[-1]["end"]) == 77  # beyond the grant's window
    # Live needs a grant whose window includes now.
    assert rec.cli("staff", "live", "--camera", "desk", "--reason", "r").code == 77
    res = rec.cli("director", "grant", "create", "--user", "nvrtest-clerk", "--camera", "desk",
                  "--start", start, "--end", tomorrow, "--expires", tomorrow, "--reason", "watch")
    assert res.code == 0, res.err
    assert rec.cli("staff", "live", "--camera", "desk", "--reason", "r").code == 0


def test_one_link_plays_its_cameras_on_one_timeline_with_a_lane_each(
        recorded: tuple[Recorder, dict[str, Any]], browser: Any) -> None:
    rec, listing = recorded
    link = mint(rec, "director", "playback", "--camera", "desk", "door", "--start",
                listing["segments"][0]["start"], "--reason", "incident review")
    page = browser.new_page()
    page.goto(link["url"])
    for cam in ("desk", "door"):
        wait_js(page, f"document.querySelector('video[data-camera=\"{cam}\"]')?.currentTime > 1",
                8, f"camera {cam} to play")
    assert page.locator("#timeline .lane").count() == 2  # one axis, a lane per camera
    assert page.locator("#gaps li[data-camera='door']").count() >= 1
    page.close()


def test_two_cameras_one_clock_scrub_the_playhead_gaps_say_why(
        recorded: tuple[Recorder, dict[str, Any]], browser: Any) -> None:
    rec, listing = recorded
    gap = listing["gaps"][-1]
    door = rec.cli("root", "recordings", "--camera", "door", "--json").json()["segments"]
    desk = rec.cli("root", "recordings", "--camera", "desk", "--json").json()["segments"]
    # A moment both cameras recorded (their segments are not cut at the same instants).
    both = [(max(us(a["start"]), us(b["start"])), min(us(a["end"]), us(b["end"])))
            for a in desk for b in door]
    lo, hi = max(both, key=lambda ab: ab[1] - ab[0])
    assert hi - lo > 600_000, "the two cameras share no recorded moment"
    target = (lo + hi) // 2
    link = mint(rec, "director", "playback", "--camera", "desk", "door", "--start",
                listing["segments"][0]["start"], "--reason", "incident review")
    page = browser.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(link["url"])
    for cam in ("desk", "door"):
        wait_js(page, f"document.querySelector('video[data-camera=\"{cam}\"]')?.currentTime > 0.3",
                8, f"camera {cam} to play")
    # Space pauses every tile; the playhead dragged to the target moves both there.
    page.locator("#nvr-title").click()
    page.keyboard.press("Space")
    wait_js(page, "[...document.querySelectorAll('video')].every((v) => v.paused)", 2,
            "Space to pause every tile")
    track = page.locator(".lane[data-camera='desk'] .track").bounding_box()
    assert track
    view = page.evaluate("clock.view")
    x = track["x"] + (target / 1000 - view[0]) / (view[1] - view[0]) * track["width"]
    y = track["y"] + track["height"] / 2
    page.mouse.move(track["x"] + 5, y)
    page.mouse.down()
    page.mouse.move(x, y, steps=6)
    page.mouse.up()
    times = "[...document.querySelectorAll('video[data-camera]')].map((v) => Date.parse(v.dataset.time))"
    wait_js(page, f"{times}.every((t) => Math.abs(t - {target // 1000}) <= 1000)", 6,
            f"both tiles to show {iso(target)}")
    # People read it in the box's zone, as `nvr` prints it.
    ok = {when(iso(target + k * 1_000_000), date=False) for k in (-1, 0, 1)}
    assert all(x.endswith((" EST", " EDT")) for x in ok), ok  # the box's zone, not UTC
    for cam in ("desk", "door"):
        shown = page.inner_text(f".cam:has(video[data-camera='{cam}']) .frametime")
        assert shown in ok, (cam, shown, ok)
    assert page.inner_text("#nvr-clock") in {when(iso(target + k * 1_000_000)) for k in (-1, 0, 1)}
    # The gap says why, on hover.
    gap_el = page.locator(".lane[data-camera='desk'] .gap").last
    gap_el.hover()
    title = gap_el.get_attribute("title") or ""
    assert gap["reason"] in title and when(gap["start"], date=False)[:8] in title, title
    # Jump to a local time of day, as the CLI takes it.
    back = us(desk[0]["start"]) + 1_200_000
    page.fill("#jump", when(iso(back), date=False)[:8])
    page.press("#jump", "Enter")
    wait_js(page, f"{times}.every((t) => Math.abs(t - {back // 1000}) <= 1000)", 6,
            f"both tiles to show {iso(back)} after 'Jump to'")
    # Speed with +, zoom with the button (the axis redraws, still labelled).
    page.locator("#nvr-title").click()
    page.keyboard.press("+")
    assert page.input_value("#speed") == "2"
    span = view[1] - view[0]
    page.click("#zoomin")
    new_view = page.evaluate("clock.view")
    assert new_view[1] - new_view[0] == max(60_000, span / 2) or span <= 60_000
    assert page.locator("#axis .tick span").count() >= 2
    page.screenshot(path=str(artifact("playback-two-1280x800.png")))
    assert not axe_violations(page, ("minor", "moderate", "serious", "critical"))
    page.set_viewport_size({"width": 390, "height": 844})
    # On a phone every control is a touch target (44 CSS px, WCAG 2.5.5) and fits the width.
    small = page.evaluate("""() => [...document.querySelectorAll('button, select, input, summary')]
        .filter((e) => e.offsetParent).map((e) => [e.id || e.textContent, e.getBoundingClientRect()])
        .filter(([, r]) => r.height < 44 || r.right > 390).map(([n, r]) => `${n} ${r.width}x${r.height}`)""")
    assert not small, small
    page.screenshot(path=str(artifact("playback-two-390x844.png")), full_page=True)
    page.close()


def test_the_pages_times_in_other_zones(recorded: tuple[Recorder, dict[str, Any]],
                                        browser: Any) -> None:
    """The page's own formatting and parsing (view.js) for zones other than the test box's:
    summer time, a zone known only by its offset, a time of day, an explicit offset."""
    rec, listing = recorded
    link = mint(rec, "director", "playback", "--camera", "desk", "--start",
                listing["segments"][0]["start"], "--reason", "zone check")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.body.dataset.state === 'open'", 5, "the session")
    got = page.evaluate("""() => {
        const out = {};
        setZone({name: "Europe/London", names: {"0": "GMT", "60": "BST"}, offset_minutes: 0});
        out.summer = when(Date.parse("2026-07-01T12:00:05.900Z"), true);
        out.winter = when(Date.parse("2026-12-07T12:00:05Z"));
        out.local = new Date(parseWhen("2026-07-01 13:00")).toISOString();
        out.timeOfDay = new Date(parseWhen("14:05:30", Date.parse("2026-07-01T09:00:00Z"))).toISOString();
        out.offset = new Date(parseWhen("2026-07-01T13:00:00-04:00")).toISOString();
        out.bad = Number.isNaN(parseWhen("yesterday-ish"));
        setZone({name: null, names: {"330": "+0530"}, offset_minutes: 330});
        out.fixed = when(Date.parse("2026-12-07T00:00:00Z"), true);
        return out;
    }""")
    page.close()
    assert got == {
        "summer": "2026-07-01 13:00:05 BST", "winter": "12:00:05 GMT",
        "local": "2026-07-01T12:00:00.000Z", "timeOfDay": "2026-07-01T13:05:30.000Z",
        "offset": "2026-07-01T17:00:00.000Z", "bad": True,
        "fixed": "2026-12-07 05:30:00 +0530",
    }, got


def test_paused_shift_arrow_steps_one_frame_on_every_tile_day_buttons_off_within_a_day(
        recorded: tuple[Recorder, dict[str, Any]], browser: Any) -> None:
    """Issue 25 item 3: Shift+→ / Shift+← step one frame while paused, on both tiles at once;
    the previous / next day buttons are there, and disabled for a window inside one day."""
    rec, listing = recorded
    door = rec.cli("root", "recordings", "--camera", "door", "--json").json()["segments"]
    desk = listing["segments"]
    both = [(max(us(a["start"]), us(b["start"])), min(us(a["end"]), us(b["end"])))
            for a in desk for b in door]
    lo, hi = max(both, key=lambda ab: ab[1] - ab[0])
    assert hi - lo > 600_000, "the two cameras share no recorded moment"
    link = mint(rec, "director", "playback", "--camera", "desk", "door", "--start",
                desk[0]["start"], "--reason", "frame by frame")
    page = browser.new_page()
    page.goto(link["url"])
    for cam in ("desk", "door"):
        wait_js(page, f"document.querySelector('video[data-camera=\"{cam}\"]')?.currentTime > 0.3",
                8, f"camera {cam} to play")
    page.locator("#nvr-title").click()
    page.keyboard.press("Space")
    wait_js(page, "[...document.querySelectorAll('video')].every((v) => v.paused)", 2, "the pause")
    target = lo + (hi - lo) // 3
    page.fill("#jump", iso(target))
    page.press("#jump", "Enter")
    times = "[...document.querySelectorAll('video[data-camera]')].map((v) => Date.parse(v.dataset.time))"
    wait_js(page, f"{times}.every((t) => Math.abs(t - {target // 1000}) <= 1000)", 6,
            f"both tiles to show {iso(target)}")
    page.locator("#nvr-title").click()
    frame = 1000 / 15  # the test camera's rate
    # The clock moves one frame; every tile shows that moment (within a frame: its own frames
    # need not fall on the same instants as another camera's).
    for key, sign in (("Shift+ArrowRight", 1), ("Shift+ArrowRight", 1), ("Shift+ArrowLeft", -1)):
        before = page.evaluate(f"Date.parse({CLOCK})")
        page.keyboard.press(key)
        want = before + sign * frame
        wait_js(page, f"Math.abs(Date.parse({CLOCK}) - {want}) <= {frame / 2} && "
                f"{times}.every((t) => Math.abs(t - {want}) <= {frame})", 3,
                f"{key} to move the clock and both tiles one frame from {before}")
        assert page.evaluate("[...document.querySelectorAll('video')].every((v) => v.paused)")
    assert page.is_visible("#prevday") and page.is_visible("#nextday")
    assert page.is_disabled("#prevday") and page.is_disabled("#nextday")
    page.close()
    # A window of more than a day: the buttons step the timeline's view a local day at a time.
    start = iso(us(desk[0]["start"]) - 30 * 3600 * 1_000_000)
    link = mint(rec, "director", "playback", "--camera", "desk", "--start", start,
                "--end", desk[-1]["end"], "--reason", "two days")
    page = browser.new_page()
    page.goto(link["url"])
    wait_js(page, "document.body.dataset.state === 'open' && !!clock.view", 5, "the timeline")
    # The first view is the whole window, on whichever local day its middle falls (the first or
    # the last, by the time of day the footage was recorded): back to the first day, then forward.
    backs = 0
    while not page.is_disabled("#prevday"):
        page.click("#prevday")
        backs += 1
        assert backs < 4
    page.locator("#nextday").focus()  # reachable from the keyboard
    days = 0
    while not page.is_disabled("#nextday"):
        page.keyboard.press("Enter")
        days += 1
        assert days < 4
    assert days >= 1, "a 30-hour window spans two local days"
    view = page.evaluate("clock.view")
    last_day = when(desk[-1]["end"])[:10]
    assert page.inner_text("#daylabel") == last_day
    assert abs(view[1] - us(desk[-1]["end"]) / 1000) < 1 and view[1] - view[0] <= 25 * 3600_000, view
    assert when(iso(int(view[0] * 1000)))[11:19] == "00:00:00" or view[0] == us(start) // 1000
    page.click("#prevday")
    assert page.inner_text("#daylabel") < last_day and not page.is_disabled("#nextday")
    page.close()
