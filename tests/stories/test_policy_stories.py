"""The library's Security Camera Policy as stories: what the Director, staff, Elder Affairs, IT
and the police actually do, step by step, through the real socket as the real unix accounts,
with a real camera recording. Each story is the commands of docs/policy.md ("Stories"), and
each ends the way the Director would check it: the audit log shows the story's rows and the
chain verifies.

Accounts (tests/e2e/harness.py): nvrtest-director (Library Director), nvrtest-assistant
(Assistant Director), nvrtest-clerk (staff), nvrtest-elder (Director of Elder Affairs),
nvrtest-it (IT), nvrtest-facilities (facilities), nvrtest-public (not listed: the public).
Cameras: "lobby" (public seating) and "senior-lounge" (shared with the Senior Center).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import ACCOUNTS, CliResult, Recorder, cams_for
from tests.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")

S = dt.timedelta(seconds=1)
DENIED = 77  # docs/commands.md: exit code of a refusal by the policy


@pytest.fixture(scope="module")
def rec(testcam: TestCamera, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    notified = tmp_path_factory.mktemp("notify") / "director-inbox.txt"
    notified.parent.chmod(0o777)
    # The breach story: the recorder tells the Director by running this command.
    extra = f"notify_command: [sh, -c, 'cat >> {notified}']\n"
    r = Recorder(cams_for(testcam), extra=extra).start()
    r.inbox = notified  # type: ignore[attr-defined]
    try:
        r.wait_for_segments("lobby", 6, timeout=90)
        r.wait_for_segments("senior-lounge", 2, timeout=60)
        yield r
    finally:
        r.cleanup()


# -- what the people type ----------------------------------------------------------------------


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def recorded(rec: Recorder, camera: str, count: int = 4) -> tuple[dt.datetime, dt.datetime]:
    """From the start of the first segment to the end of the `count`-th: footage that exists."""
    segs = rec.wait_for_segments(camera, count)
    return when(segs[0]["start"]), when(segs[count - 1]["end"])


def ok(res: CliResult) -> Any:
    assert res.code == 0, res.err
    return res.json() if res.out.lstrip().startswith(("{", "[")) else res.out


def refused(res: CliResult, because: str) -> None:
    assert res.code == DENIED, f"expected a refusal ({because}); got {res.code}: {res.err}"
    assert because in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1, f"a refusal is one line: {res.err}"


def export(rec: Recorder, who: str, camera: str, start: dt.datetime, end: dt.datetime,
           name: str, *more: str) -> tuple[CliResult, Path]:
    out = Path(rec.out_path(name))
    res = rec.cli(who, "export", "--camera", camera, "--start", iso(start), "--end", iso(end),
                  "--reason", "story", "--out", str(out), "--json", *more)
    return res, out


def plays(clip: Path) -> int:
    """Frames decoded from the clip (every one without error, as a player would show them)."""
    with av.open(str(clip)) as c:
        return sum(1 for _ in c.decode(video=0))


def audit_since(rec: Recorder, seq: int) -> list[dict[str, Any]]:
    rows = ok(rec.cli("director", "audit", "list", "--json"))
    rows = rows["rows"] if isinstance(rows, dict) else rows
    return [r for r in rows if r["seq"] > seq]


def audit_head(rec: Recorder) -> int:
    rows = audit_since(rec, 0)
    return max((r["seq"] for r in rows), default=0)


def ends_audited(rec: Recorder, since: int, *actions: tuple[str, str, bool]) -> None:
    """The story's rows, in order, by whom, allowed or not; and the whole chain verifies."""
    rows = audit_since(rec, since)
    seen = [(r["actor"], r["action"], r["allowed"]) for r in rows]
    want = [(ACCOUNTS.get(who, who), action, allowed) for who, action, allowed in actions]
    it = iter(seen)
    missing = [w for w in want if w not in it]  # each in order, others may come between
    assert not missing, f"audit rows missing (in order): {missing}\nseen: {seen}"
    verdict = ok(rec.cli("director", "audit", "verify", "--json"))
    assert verdict["ok"] is True


@pytest.fixture
def mark(rec: Recorder) -> int:
    """The audit head before the story: its rows are the ones after."""
    return audit_head(rec)


def fingerprint(rec: Recorder) -> str:
    return str(ok(rec.cli("director", "key", "show", "--json"))["fingerprint"])


def verifies(rec: Recorder, who: str, clip: Path) -> None:
    """The clip's owner checks it offline with the recorder's published key, pinned by its
    fingerprint (the clip is theirs alone: 0600)."""
    res = rec.cli(who, "export", "verify", str(clip), "--key", fingerprint(rec))
    assert res.code == 0, res.out + res.err


# -- the stories -------------------------------------------------------------------------------


def test_incident_the_director_holds_ten_minutes_exports_and_verifies(rec: Recorder,
                                                                     mark: int) -> None:
    """A window is broken at the north door. The Director holds ten minutes of the lobby so
    retention cannot delete them, exports the part that shows it, and checks the clip."""
    start, end = recorded(rec, "lobby")
    ok(rec.cli("director", "hold", "create", "--camera", "lobby", "--start",
               iso(end - 10 * 60 * S), "--end", iso(end), "--reason", "broken window",
               "--incident", "2026-114"))
    res, clip = export(rec, "director", "lobby", start + 2 * S, start + 5 * S, "incident.mp4",
                       "--incident", "2026-114")
    ok(res)
    assert plays(clip) >= 40  # 3 s at 15 fps, from the keyframe before
    verifies(rec, "director", clip)
    # Forty days on, retention deletes old footage, but not what the hold keeps.
    held = {seg["path"] for seg in ok(rec.cli("director", "recordings", "--camera", "lobby",
                                              "--paths", "--json"))["segments"]
            if when(seg["end"]) <= end}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    plan = ok(rec.cli("director", "retention", "plan", "--at", iso(later), "--json"))
    kept = {k["path"]: k["why"] for k in plan["keep"]}
    assert held and held <= set(kept), plan
    assert all(kept[path].startswith("held by H-") for path in held), kept
    assert not held & {d["path"] for d in plan["delete"]}
    other = [d for d in plan["delete"] if d["camera"] == "senior-lounge"]
    assert other, "without a hold, forty-day-old footage is deleted"
    ends_audited(rec, mark, ("director", "hold_create", True), ("director", "export", True),
                 ("director", "export_delivered", True))


def test_subpoena_staff_record_it_the_director_approves_and_releases_inside_it(
        rec: Recorder, mark: int) -> None:
    """Hanson PD serves a subpoena for the lobby. Staff record it; the Director approves it
    until a set time and releases the footage it names — nothing else, and nothing after."""
    start, end = recorded(rec, "lobby")
    request = ok(rec.cli("staff", "request", "create", "--kind", "subpoena", "--requester",
                         "Hanson PD", "--details", "subpoena 26-0412", "--camera", "lobby",
                         "--start", iso(start), "--end", iso(end), "--json"))
    rid = request["id"]
    expires = dt.datetime.now(dt.UTC) + 20 * S
    ok(rec.cli("director", "request", "approve", rid, "--expires", iso(expires)))

    # The release: from mid-GOP, so the clip's lead-in (to the keyframe before) is inside too.
    res, clip = export(rec, "director", "lobby", start + 2.5 * S, start + 4.5 * S,
                       "subpoena.mp4", "--request", rid)
    release = ok(res)
    assert plays(clip) >= 30
    verifies(rec, "director", clip)
    manifest = json.loads(Path(str(clip) + ".manifest.json").read_text())
    assert manifest.get("request") == rid or rid in json.dumps(manifest), manifest
    listed = {r["id"]: r for r in ok(rec.cli("director", "request", "list", "--json"))
              ["requests"]}[rid]
    assert release["sha256"] in json.dumps(listed), listed  # the request lists its release

    # What the approval does not cover is refused, each with its own reason, and no clip
    # file is written for any of them.
    res, other = export(rec, "director", "senior-lounge", start + 2 * S, start + 4 * S,
                        "other-camera.mp4", "--request", rid)
    refused(res, "camera senior-lounge is not in request")
    assert not other.exists()
    res, outside = export(rec, "director", "lobby", end - 1 * S, end + 30 * S,
                          "outside.mp4", "--request", rid)
    refused(res, "outside request")
    assert not outside.exists()
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds() + 0.5))
    res, late = export(rec, "director", "lobby", start + 2 * S, start + 4 * S, "late.mp4",
                       "--request", rid)
    refused(res, "expired at")
    assert not late.exists()
    assert not list((rec.root / "tmp").iterdir()), "a refused release left a copy behind"
    ends_audited(rec, mark, ("staff", "request_create", True),
                 ("director", "request_decide", True), ("director", "release", True),
                 ("director", "export_delivered", True), ("director", "release", False))
    # One chain, every row naming the request: recorded → approved → released → delivered.
    chain = [r["action"] for r in audit_since(rec, mark)
             if r["detail"].get("request") == rid and r["allowed"]]
    assert chain[:4] == ["request_create", "request_decide", "release", "export_delivered"], \
        chain


def test_voluntary_share_with_the_police_approved_by_the_director(rec: Recorder,
                                                                  mark: int) -> None:
    """The police ask for the senior lounge footage of a fall; the library may share it
    voluntarily once the Director approves. The Assistant Director delivers it."""
    start, end = recorded(rec, "senior-lounge", 2)
    rid = ok(rec.cli("assistant_director", "request", "create", "--kind", "voluntary",
                     "--requester", "Hanson PD", "--details", "fall in the lounge", "--camera",
                     "senior-lounge", "--start", iso(start), "--end", iso(end), "--json"))["id"]
    res, clip = export(rec, "assistant_director", "senior-lounge", start, end, "early.mp4",
                       "--request", rid)
    refused(res, "not approved by the Director")
    # Only the Director decides: staff can neither approve nor turn the request down.
    refused(rec.cli("staff", "request", "deny", rid, "--reason", "not ours to share"),
            "may not approve or deny a request")
    ok(rec.cli("director", "request", "approve", rid))
    res, clip = export(rec, "assistant_director", "senior-lounge", start, end, "share.mp4",
                       "--request", rid)
    ok(res)
    verifies(rec, "assistant_director", clip)
    ends_audited(rec, mark, ("assistant_director", "request_create", True),
                 ("assistant_director", "release", False), ("staff", "request_decide", False),
                 ("director", "request_decide", True),
                 ("assistant_director", "release", True),
                 ("assistant_director", "export_delivered", True))


def test_a_member_of_the_public_is_refused_with_the_policys_advice(rec: Recorder,
                                                                   mark: int) -> None:
    """A patron asks to see the lobby footage. From their own account they get nothing; when
    staff record the ask, the answer is the policy's advice, and it can never be approved."""
    start, _ = recorded(rec, "lobby", 2)
    res, clip = export(rec, "public", "lobby", start, start + 2 * S, "patron.mp4")
    refused(res, "police report")
    assert not clip.exists()
    refused(rec.cli("public", "live", "--camera", "lobby", "--reason", "curious"),
            "police report")
    # Nor can they end somebody's viewing link (or learn whether it exists).
    link = ok(rec.cli("director", "live", "--camera", "lobby", "--reason", "front desk",
                      "--json"))
    refused(rec.cli("public", "view", "revoke", link["id"]), "denied")
    ok(rec.cli("director", "view", "revoke", link["id"], "--json"))  # the Director may, audited
    ask = ok(rec.cli("staff", "request", "create", "--kind", "public", "--requester",
                     "a patron", "--details", "wants the lobby", "--json"))
    assert "public records request" in json.dumps(ask)
    res = rec.cli("director", "request", "approve", ask["id"])
    assert res.code != 0 and "public" in res.err, res.err
    ends_audited(rec, mark, ("public", "export", False), ("public", "view_revoke", False),
                 ("director", "view_revoke", True), ("staff", "request_create", True),
                 ("director", "request_decide", False))


def test_staff_grant_opens_its_window_and_its_expiry_ends_open_links(rec: Recorder,
                                                                      mark: int) -> None:
    """The Director lets a clerk review the lobby for a short while. Inside the grant the clerk
    exports and watches; outside it, nothing; when the grant expires, the clerk's open link
    ends by itself."""
    start, end = recorded(rec, "lobby")
    expires = dt.datetime.now(dt.UTC) + 12 * S
    ok(rec.cli("director", "grant", "create", "--user", ACCOUNTS["staff"], "--camera", "lobby",
               "--start", iso(start), "--end", iso(end), "--expires", iso(expires),
               "--reason", "lost property review"))
    res, clip = export(rec, "staff", "lobby", start + 1 * S, start + 3 * S, "clerk.mp4")
    ok(res)
    assert plays(clip) > 0
    res, _ = export(rec, "staff", "senior-lounge", start, start + 2 * S, "clerk-other.mp4")
    refused(res, "grant")
    res, _ = export(rec, "staff", "lobby", end - 1 * S, end + 60 * S, "clerk-late.mp4")
    refused(res, "grant")
    link = ok(rec.cli("staff", "playback", "--camera", "lobby", "--start", iso(start),
                      "--end", iso(end), "--reason", "lost property review", "--json"))
    assert view_state(rec, "staff", link["id"])["state"] == "open"
    assert session(link["url"]) == 200
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()))
    deadline = time.monotonic() + 15  # the recorder re-checks open links every second
    while (state := view_state(rec, "staff", link["id"]))["state"] == "open":
        assert time.monotonic() < deadline, "the link outlived the grant"
        time.sleep(0.5)
    assert state["state"] == "ended" and "grant" in state["ended_why"], state
    assert session(link["url"]) in (401, 403, 404, 410)
    ends_audited(rec, mark, ("director", "grant_create", True), ("staff", "export", True),
                 ("staff", "export", False), ("staff", "playback", True),
                 ("nvr", "view_link_ended", True))


def test_elder_affairs_sees_only_the_shared_cameras(rec: Recorder, mark: int) -> None:
    start, _ = recorded(rec, "senior-lounge", 2)
    res, clip = export(rec, "elder_affairs_director", "senior-lounge", start, start + 2 * S,
                       "elder.mp4")
    ok(res)
    assert plays(clip) > 0
    res, _ = export(rec, "elder_affairs_director", "lobby", start, start + 2 * S,
                    "elder-lobby.mp4")
    refused(res, "shared with the Senior Center")
    ok(rec.cli("elder_affairs_director", "live", "--camera", "senior-lounge", "--reason",
               "check on a resident", "--json"))
    refused(rec.cli("elder_affairs_director", "live", "--camera", "lobby", "--reason", "x"),
            "shared with the Senior Center")
    ends_audited(rec, mark, ("elder_affairs_director", "export", True),
                 ("elder_affairs_director", "export", False),
                 ("elder_affairs_director", "live", True),
                 ("elder_affairs_director", "live", False))


def test_emergency_live_feed_for_the_police_is_live_only_and_ends(rec: Recorder,
                                                                  mark: int) -> None:
    """A fire: the Director gives the fire department a live-only link for 30 minutes. It never
    serves recordings; IT ends it when the emergency is over, and the link stops working."""
    feed = ok(rec.cli("director", "emergency", "start", "--agency", "Hanson Fire Dept",
                      "--camera", "lobby", "--minutes", "30", "--json"))
    assert session(feed["url"]) == 200
    assert recorded_footage_served(feed["url"], feed["id"], "lobby") is False
    running = ok(rec.cli("it", "emergency", "list", "--json"))
    assert feed["id"] in json.dumps(running)
    ok(rec.cli("it", "emergency", "end", feed["id"]))
    assert session(feed["url"]) in (401, 403, 404, 410)
    ends_audited(rec, mark, ("director", "emergency_start", True),
                 ("it", "emergency_end", True))


def test_suspension_still_is_posted_until_the_date_then_gone(rec: Recorder, mark: int) -> None:
    start, _ = recorded(rec, "lobby", 2)
    out = Path(rec.out_path("suspension.jpg"))
    until = dt.datetime.now(dt.UTC) + 3 * S
    ok(rec.cli("director", "still", "--camera", "lobby", "--at", iso(start + 1 * S),
               "--until", iso(until), "--reason", "suspension of patron X", "--out", str(out),
               "--json"))
    kept = list((rec.root / "stills").glob("*.jpg"))
    assert kept, "the recorder keeps its copy until the suspension ends"
    deadline = time.monotonic() + 30  # the recorder deletes expired stills every 5 s
    while any(p.exists() for p in kept):
        assert time.monotonic() < deadline, "the recorder kept the still past --until"
        time.sleep(0.5)
    assert out.exists()  # the Director's own copy, for the notice, is theirs
    refused(rec.cli("staff", "still", "--camera", "lobby", "--at", iso(start), "--until",
                    iso(until + 60 * S), "--reason", "x", "--out", rec.out_path("s.jpg")),
            "denied")
    ends_audited(rec, mark, ("director", "still", True), ("director", "still_delivered", True),
                 ("nvr", "still_expired", True), ("staff", "still", False))


def test_breach_report_reaches_the_director(rec: Recorder, mark: int) -> None:
    ok(rec.cli("staff", "breach", "report", "--details", "a photo of the screen was posted"))
    inbox: Path = rec.inbox  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not (inbox.exists() and "photo of the screen" in inbox.read_text()):
        assert time.monotonic() < deadline, "the Director was not notified"
        time.sleep(0.2)
    ends_audited(rec, mark, ("staff", "breach_report", True))


def test_it_and_facilities_watch_live_for_operation_never_recordings(rec: Recorder,
                                                                     mark: int) -> None:
    start, _ = recorded(rec, "lobby", 2)
    for who in ("it", "facilities"):
        ok(rec.cli(who, "live", "--camera", "lobby", "--reason", "camera aim check", "--json"))
        refused(rec.cli(who, "playback", "--camera", "lobby", "--start", iso(start),
                        "--reason", "x"), "denied")
        res, clip = export(rec, who, "lobby", start, start + 2 * S, f"{who}.mp4")
        refused(res, "denied")
        assert not clip.exists()
    ends_audited(rec, mark, ("it", "live", True), ("it", "playback", False),
                 ("it", "export", False), ("facilities", "live", True),
                 ("facilities", "export", False))


def view_state(rec: Recorder, who: str, link_id: str) -> dict[str, Any]:
    links = ok(rec.cli(who, "view", "list", "--json"))["links"]
    return next(lk for lk in links if lk["id"] == link_id)  # type: ignore[no-any-return]


# -- the viewing page, as a browser would call it ------------------------------------------


def session(url: str) -> int:
    """Trade a link's token for a session, as the viewing page does: the HTTP status."""
    status, _ = _session(url)
    return status


def _session(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("POST", "/api/session", body=json.dumps({"token": parts.fragment}),
                     headers={"Content-Type": "application/json",  # as the page sends it
                              "Origin": f"{parts.scheme}://{parts.netloc}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Set-Cookie") or ""
    finally:
        conn.close()


def recorded_footage_served(url: str, link_id: str, camera: str) -> bool:
    """Whether the link's session is served the camera's recorded timeline."""
    status, cookie = _session(url)
    assert status == 200
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("GET", f"/api/l/{link_id}/timeline/{camera}",
                     headers={"Cookie": cookie.split(";")[0]})
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    finally:
        conn.close()


def test_every_story_in_the_docs_is_a_test_here_and_back() -> None:
    """docs/policy.md "Stories" names each story's test; the two lists are the same."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    stories = page[page.index("## Stories"):]
    named = set(re.findall(r"^`(test_\w+)`$", stories, flags=re.M))
    here = {name for name in globals() if name.startswith("test_")
            and name != "test_every_story_in_the_docs_is_a_test_here_and_back"}
    assert named == here, f"only in the docs: {named - here}; only here: {here - named}"
