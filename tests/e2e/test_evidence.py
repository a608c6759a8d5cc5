"""Issue 10 "Evidence you can trust", acceptance through the real daemon, socket and CLI as
real accounts: releases bound to what was approved, literal display of what users typed,
every refusal audited, exports that account for the whole range asked."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nvr.control.protocol import ARGS
from tests.camserver import TestCamera
from tests.e2e.harness import ACCOUNTS, Recorder, recording_lobby
from tests.support import is_root, raw_exchange, run_as

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")


def iso_us(text: str) -> int:
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1_000_000 + d.microsecond


def iso(us: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)).isoformat()


S = 1_000_000


@pytest.fixture(scope="module")
def rec(testcam: TestCamera) -> Iterator[Recorder]:
    with recording_lobby(testcam, 8) as r:
        yield r


def audit_rows(rec: Recorder) -> list[dict[str, Any]]:
    res = rec.cli("director", "audit", "list", "--json")
    assert res.code == 0, res.err
    return res.json()  # type: ignore[no-any-return]


def test_release_only_inside_the_approved_cameras_window_and_time(rec: Recorder) -> None:
    t0 = iso_us(rec.wait_for_segments("lobby", 8)[0]["start"])
    a, b = iso(t0), iso(t0 + 12 * S)  # the request: camera lobby, t0 .. t0+12 s
    req = rec.cli("director", "request", "create", "--kind", "subpoena", "--requester",
                  "Hanson PD", "--details", "case 7", "--camera", "lobby", "--start", a,
                  "--end", b, "--json")
    assert req.code == 0, req.err
    rid = req.json()["id"]
    assert req.json()["cameras"] == ["lobby"]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=12)
    ok = rec.cli("director", "request", "approve", rid, "--expires", expires.isoformat(),
                 "--json")
    assert ok.code == 0, ok.err
    assert iso_us(ok.json()["expires"]) == iso_us(expires.isoformat())

    def release(camera: str, start: int, end: int, name: str) -> Any:
        return rec.cli("assistant_director", "export", "--camera", camera, "--start",
                       iso(start), "--end", iso(end), "--reason", "subpoena case 7",
                       "--request", rid, "--out", rec.out_path(name))

    inside = (t0 + 2 * S, t0 + 8 * S)
    res = release("lobby", *inside, "in.mp4")
    assert res.code == 0, res.err
    res = release("senior-lounge", *inside, "other-camera.mp4")
    assert res.code == 77 and "camera senior-lounge is not in request" in res.err, res.err
    res = release("lobby", t0 + 10 * S, t0 + 14 * S, "late.mp4")
    assert res.code == 77 and "outside request" in res.err and "window" in res.err, res.err
    while dt.datetime.now(dt.UTC) < expires + dt.timedelta(seconds=0.5):
        time.sleep(0.2)  # the approval's expiry is a wall-clock instant: nothing to await
    res = release("lobby", *inside, "expired.mp4")
    assert res.code == 77 and "expired at" in res.err, res.err
    rows = [r for r in audit_rows(rec) if r["detail"].get("request") == rid]
    refused = [r for r in rows if r["action"] == "release" and not r["allowed"]]
    assert len(refused) == 3, rows
    assert {r["actor"] for r in refused} == {ACCOUNTS["assistant_director"]}
    assert all("release.outside_approval" == r["detail"]["rule"] for r in refused)
    delivered = [r for r in rows if r["action"] == "export_delivered"]
    assert len(delivered) == 1 and delivered[0]["detail"]["request"] == rid


def test_request_without_scope_releases_nothing(rec: Recorder) -> None:
    seg = rec.wait_for_segments("lobby", 2)[0]
    req = rec.cli("director", "request", "create", "--kind", "voluntary", "--requester",
                  "Hanson PD", "--details", "no scope", "--json").json()
    assert rec.cli("director", "request", "approve", req["id"]).code == 0
    res = rec.cli("director", "export", "--camera", "lobby", "--start", seg["start"], "--end",
                  seg["end"], "--reason", "x", "--request", req["id"], "--out",
                  rec.out_path("noscope.mp4"))
    assert res.code == 77 and "names no cameras and time window" in res.err, res.err


EVIL = ["x [/bold]", "[black on black]hidden[/]", "rtl \u202eevil\u202c end",
        "tab\there\nnew line", ":smile: [link=file:///etc/passwd]click[/link]", "\u2067iso\u2069"]


def _flat(text: str) -> str:
    return "".join(text.split())


def _cells(table: str) -> list[str]:
    """Each cell of a listing as one string without whitespace. Piped (as here), the CLI
    prints tab-separated values: a header line, then one line per row."""
    return [_flat(c) for line in table.splitlines() for c in line.split("\t")]


def test_what_users_typed_is_shown_literally_in_every_listing(rec: Recorder) -> None:
    from nvr.cli.render import literal

    seg = rec.wait_for_segments("lobby", 2)[0]
    for i, evil in enumerate(EVIL):
        # A public account's refused requests put its text in the Director's audit log.
        res = rec.cli("public", "export", "--camera", "lobby", "--start", seg["start"], "--end",
                      seg["end"], "--reason", evil, "--out", rec.out_path(f"pub{i}.mp4"))
        assert res.code == 77, res.err
        res = rec.cli("director", "hold", "create", "--camera", "lobby", "--start",
                      seg["start"], "--end", seg["end"], "--reason", evil, "--incident",
                      f"INC {evil}")
        assert res.code == 0, res.err
        res = rec.cli("director", "grant", "create", "--user", ACCOUNTS["staff"], "--camera",
                      "lobby", "--start", seg["start"], "--end", seg["end"], "--expires",
                      "2099-01-01", "--reason", evil)
        assert res.code == 0, res.err
        res = rec.cli("staff", "request", "create", "--kind", "voluntary", "--requester", evil,
                      "--details", evil)
        assert res.code == 0, res.err
    for argv in (("audit", "list"), ("hold", "list"), ("grant", "list"), ("request", "list")):
        table = rec.cli("director", *argv)
        assert table.code == 0, (argv, table.err)
        assert "\u202e" not in table.out and "\x1b" not in table.out and "\u2067" not in table.out
        cells = _cells(table.out)
        for evil in EVIL:
            assert any(_flat(literal(evil)) in c for c in cells), (argv, evil)
        res = rec.cli("director", *argv, "--json")
        assert res.code == 0, (argv, res.err)
        assert "\u202e" not in res.out  # escaped as \\u202e in the JSON text
        text = json.dumps(res.json(), ensure_ascii=False)
        for evil in EVIL:
            assert json.dumps(evil, ensure_ascii=False)[1:-1] in text, (argv, evil)


# ---- every refusal audited, whatever the input's shape ----------------------------------------
def _head(rec: Recorder) -> int:
    with sqlite3.connect(f"file:{rec.root / 'index.db'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0])


def _rows_after(rec: Recorder, seq: int) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{rec.root / 'index.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT actor, action, allowed, detail FROM audit WHERE seq > ? "
                          "ORDER BY seq", (seq,)).fetchall()


def _line(op: str, **args: Any) -> bytes:
    return json.dumps({"op": op, "args": args}).encode() + b"\n"


def malformed(seg: dict[str, Any]) -> dict[str, bytes]:
    s, e = seg["start"], seg["end"]
    past = "2020-01-01"
    return {
        "not-json": b"{op: status\n",
        "not-an-object": b"[1, 2, 3]\n",
        "deep-nesting": b"[" * 30_000 + b"]" * 30_000 + b"\n",
        "deep-args": b'{"op": "status", "args": ' + b'{"a": ' * 10_000 + b"1"
                     + b"}" * 10_000 + b"}\n",
        "huge-line": b'{"op": "status", "x": "' + b"a" * 70_000 + b'"}\n',
        "huge-number": _line("live", camera="lobby", minutes=10 ** 400),
        "huge-int-digits": b'{"op": "live", "args": {"minutes": ' + b"9" * 5000 + b"}}\n",
        "wrong-type": _line("export", camera=123, start=s, end=e, reason="x"),
        "unknown-op": _line("format_disk"),
        "extra-field": _line("status", user="nvrtest-director"),
        "bad-time": _line("export", camera="lobby", start="yesterday", end=e, reason="x"),
        "out-of-range-time": _line("export", camera="lobby", start="0001-01-01T00:00:00+14:00",
                                   end=e, reason="x"),
        "far-future-time": _line("hold_create", cameras=["lobby"], start=s,
                                 end="9999-12-31T23:59:59-14:00", reason="x"),
        "reversed-range": _line("hold_create", cameras=["lobby"], start=e, end=s, reason="x"),
        "reversed-export": _line("export", camera="lobby", start=e, end=s, reason="x"),
        "still-until-past": _line("still", camera="lobby", at=s, until=past, reason="x"),
        "grant-reversed": _line("grant_create", user="nvrtest-clerk", cameras=["lobby"],
                                start=e, end=s, expires="2099-01-01", reason="x"),
        "unknown-request": _line("export", camera="lobby", start=s, end=e, reason="x",
                                 request="R-nope"),
        "bad-since": _line("audit_list", since="not a time"),
    }


@pytest.mark.parametrize("role", ["public", "director"])
def test_each_malformed_request_gets_exactly_one_audit_row(rec: Recorder, role: str) -> None:
    seg = rec.wait_for_segments("lobby", 2)[0]
    account = ACCOUNTS[role]
    for name, payload in malformed(seg).items():
        before = _head(rec)
        replies = run_as(account, lambda p=payload: raw_exchange(rec.socket, p, timeout=15))
        final = [r for r in replies if "progress" not in r]
        assert len(final) == 1 and final[0]["ok"] is False, (name, replies)
        if role == "public":
            # The public may do nothing: the policy answers, whatever the input's shape.
            assert final[0]["code"] in (64, 77), (name, final)
        rows = _rows_after(rec, before)
        assert len(rows) == 1, (name, rows)
        actor, _action, allowed, detail = rows[0]
        assert actor == account and allowed == 0, (name, rows)
        assert json.loads(detail).get("refusal"), (name, detail)
    assert rec.cli("director", "audit", "verify").code == 0


FUZZ_REQUESTS = int(os.environ.get("NVR_FUZZ_REQUESTS", "300"))


def test_fuzzing_public_client_daemon_keeps_serving_and_chain_verifies(rec: Recorder) -> None:
    """Malformed JSON, wrong types, huge numbers, deep nesting, every op, as the public.
    A few hundred by default; NVR_FUZZ_REQUESTS=10000 for the acceptance run."""
    seg = rec.wait_for_segments("lobby", 2)[0]
    corpus = list(malformed(seg).values())
    ops = sorted(ARGS)

    def fuzz() -> int:
        rng = random.Random(10)
        served = 0
        for i in range(FUZZ_REQUESTS):
            kind = i % 4
            if kind == 0:
                payload = rng.choice(corpus)
            elif kind == 1:
                payload = _line(rng.choice(ops), **{rng.choice(["camera", "cameras", "start",
                                "end", "reason", "minutes", "request_id", "since", "at"]):
                                rng.choice([None, True, -1, 2**70, "", "lobby", ["lobby"],
                                            {"a": [1]}, "2026-01-01", "x" * 3000])})
            elif kind == 2:
                payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))) + b"\n"
            else:
                depth = rng.randrange(1, 3000)
                payload = (b'{"op": "' + rng.choice(ops).encode() + b'", "args": '
                           + b'{"k": [' * depth + b"0" + b"]}" * depth + b"}\n")
            replies = raw_exchange(rec.socket, payload, timeout=15)
            assert all(not r.get("ok") for r in replies if "progress" not in r), payload[:200]
            served += bool(replies)
        return served

    served = run_as(ACCOUNTS["public"], fuzz, timeout=max(120, FUZZ_REQUESTS * 0.2))
    assert served >= FUZZ_REQUESTS * 0.95
    assert rec.daemon.proc is not None and rec.daemon.proc.poll() is None
    res = rec.cli("director", "status", "--json")
    assert res.code == 0 and {c["state"] for c in res.json()["cameras"]} == {"recording"}
    res = rec.cli("director", "audit", "verify")
    assert res.code == 0, res.err
    # `audit list` pages through it all (250 rows a call), up to the head it started at.
    rows = audit_rows(rec)
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(1, len(seqs) + 1))
    # Refusals are audited, but a flood is rate-limited per account (nvr/policy/refusals.py):
    # the first refusals each get their own row, the rest are counted into one coalesced row
    # when the account's window closes. So at least the burst has rows of its own.
    public = [r for r in rows if r["actor"] == ACCOUNTS["public"] and not r["allowed"]]
    assert len(public) >= min(FUZZ_REQUESTS, 60), len(public)
    table = rec.cli("director", "audit", "list")
    assert table.code == 0, table.err
    # Piped, the listing is a header line and one line per entry; its own paging added rows.
    assert len(table.out.splitlines()) - 1 > len(seqs)


def test_export_starting_30s_before_the_first_segment_says_so(rec: Recorder) -> None:
    t0 = iso_us(rec.wait_for_segments("lobby", 4)[0]["start"])
    out = rec.out_path("early.mp4")
    res = rec.cli("director", "export", "--camera", "lobby", "--start", iso(t0 - 30 * S),
                  "--end", iso(t0 + 6 * S), "--reason", "what happened before", "--out", out)
    assert res.code == 0, res.err
    assert "nvr: covers 6 s of the 36 s asked; 30 s not recorded, see the manifest" in res.err
    manifest = json.loads(Path(out + ".manifest.json").read_text())
    first = manifest["gaps"][0]
    assert (iso_us(first["start"]), iso_us(first["end"])) == (t0 - 30 * S, t0)
    assert first["reason"] == "unrecorded"
    # A range fully recorded says nothing on stderr.
    res = rec.cli("director", "export", "--camera", "lobby", "--start", iso(t0 + S),
                  "--end", iso(t0 + 5 * S), "--reason", "x", "--out", rec.out_path("full.mp4"))
    assert res.code == 0 and "covers" not in res.err, res.err
