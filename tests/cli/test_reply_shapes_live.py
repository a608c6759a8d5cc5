"""A real daemon's answers, as `nvr COMMAND --json` prints them, are the reply types
(nvr.control.replies) key for key: one call of every client command, as the Director (and
staff where a grant is about them), each checked by tests/cli/shapes.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from nvr.control import replies
from tests.camserver import TestCamera
from tests.cli.shapes import problems
from tests.e2e.harness import ACCOUNTS, Recorder, recording_lobby
from tests.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")

S = dt.timedelta(seconds=1)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


@pytest.fixture(scope="module")
def rec(testcam: TestCamera) -> Iterator[Recorder]:
    with recording_lobby(testcam, 3) as r:
        yield r


def answer(rec: Recorder, td: Any, *argv: str, who: str = "director") -> Any:
    """`nvr ARGV --json` as `who`; its output must be a `td`, else the test fails naming
    every key that differs."""
    res = rec.cli(who, *argv, "--json")
    assert res.code == 0, f"nvr {' '.join(argv)}: {res.err}"
    value = res.json()
    found = problems(td, value)
    assert not found, f"nvr {' '.join(argv)} --json is not a {td.__name__}:\n" + "\n".join(found)
    return value


def test_every_command_prints_its_reply_type(rec: Recorder) -> None:
    segs = rec.wait_for_segments("lobby", 3)
    start = dt.datetime.fromisoformat(segs[0]["start"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(segs[2]["end"].replace("Z", "+00:00"))
    window = ("--start", iso(start), "--end", iso(end))
    later = iso(dt.datetime.now(dt.UTC) + dt.timedelta(days=2))

    answer(rec, replies.RecordingsReply, "recordings", "--camera", "lobby")
    answer(rec, replies.ExportShown, "export", "--camera", "lobby", *window, "--reason", "x",
           "--out", rec.out_path("clip.mp4"))
    answer(rec, replies.StillShown, "still", "--camera", "lobby", "--at", iso(start + S),
           "--until", later, "--reason", "x", "--out", rec.out_path("still.jpg"))
    answer(rec, replies.MasksPreviewShown, "masks", "preview", "--camera", "lobby",
           "--out", rec.out_path("masks.png"))
    answer(rec, replies.KeyShowReply, "key", "show")

    hold = answer(rec, replies.HoldRow, "hold", "create", "--camera", "lobby", *window,
                  "--reason", "x", "--incident", "I-1")
    answer(rec, replies.HoldList, "hold", "list")
    answer(rec, replies.HoldRow, "hold", "release", hold["id"], "--reason", "done")

    grant = answer(rec, replies.GrantRow, "grant", "create", "--user", ACCOUNTS["staff"],
                   "--camera", "lobby", *window, "--expires", later, "--reason", "x")
    answer(rec, replies.GrantList, "grant", "list")
    answer(rec, replies.GrantRow, "grant", "revoke", grant["id"])

    public = answer(rec, replies.RequestRow, "request", "create", "--kind", "public",
                    "--requester", "a patron", "--details", "my bag")
    assert "advice" in public  # the NotRequired key, there when it should be
    subpoena = answer(rec, replies.RequestRow, "request", "create", "--kind", "subpoena",
                      "--requester", "Hanson PD", "--details", "26-1", "--camera", "lobby",
                      *window)
    answer(rec, replies.RequestList, "request", "list")
    answer(rec, replies.RequestRow, "request", "approve", subpoena["id"])
    other = answer(rec, replies.RequestRow, "request", "create", "--kind", "voluntary",
                   "--requester", "Hanson PD", "--details", "26-2")
    answer(rec, replies.RequestRow, "request", "deny", other["id"], "--reason", "not ours")

    link = answer(rec, replies.ViewLink, "live", "--camera", "lobby", "--reason", "x")
    answer(rec, replies.ViewLink, "playback", "--camera", "lobby", "--start", iso(start),
           "--reason", "x")
    listed = answer(rec, replies.ViewList, "view", "list")
    assert listed["links"], "the links just made are listed (and their rows checked)"
    answer(rec, replies.LinkRow, "view", "revoke", link["id"])

    feed = answer(rec, replies.EmergencyLink, "emergency", "start", "--agency", "Fire",
                  "--camera", "lobby", "--minutes", "5")
    assert answer(rec, replies.EmergencyList, "emergency", "list")["emergencies"]
    status = answer(rec, replies.StatusReply, "status")
    assert status["emergencies"], "status lists the feed running (and its row is checked)"
    answer(rec, replies.EmergencyEnded, "emergency", "end", feed["id"])

    res = rec.cli("director", "audit", "list", "--json")
    assert res.code == 0, res.err
    rows = res.json()
    assert rows and all(not problems(replies.AuditEntry, r) for r in rows), \
        [problems(replies.AuditEntry, r) for r in rows if problems(replies.AuditEntry, r)][:3]
    answer(rec, replies.AuditVerifyReply, "audit", "verify")
    answer(rec, replies.BreachRow, "breach", "report", "--details", "a photo of the screen",
           who="staff")
    answer(rec, replies.RetentionPlan, "retention", "plan", "--at", later)
    answer(rec, replies.ClockConfirmed, "retention", "confirm-clock")
    answer(rec, replies.Reloaded, "reload")


def test_the_check_sees_a_key_the_type_lacks(rec: Recorder) -> None:
    """The check can fail: a real status answer with one key more, or one fewer, is caught."""
    res = rec.cli("director", "status", "--json")
    status = res.json()
    assert not problems(replies.StatusReply, status)
    assert any("'colour'" in p for p in problems(replies.StatusReply, {**status, "colour": 1}))
    cams = [{k: v for k, v in c.items() if k != "segments"} for c in status["cameras"]]
    assert any("'segments'" in p for p in problems(replies.StatusReply,
                                                      {**status, "cameras": cams}))
