"""Issue "Evidence export", acceptance through the real daemon, socket and CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.camserver import TestCamera
from tests.e2e.harness import ACCOUNTS, Recorder, run_cli
from tests.export.helpers import forge
from tests.support import is_root, run_as

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")
FPS = 15


def iso(us: float) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat()


def iso_us(text: str) -> int:
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1_000_000 + d.microsecond


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        pos += size
    return boxes


@pytest.fixture(scope="module")
def rec(testcam: TestCamera) -> Iterator[Recorder]:
    r = Recorder([{"id": "lobby", "name": "Lobby", "area": "public_seating",
                   "rtsp": testcam.url("h264")}], segment_seconds=10).start()
    r.wait_for_segments("lobby", 4, timeout=90)
    yield r
    r.cleanup()


def test_export_25s_across_three_segments_plays_and_verifies(rec: Recorder) -> None:
    segs = rec.wait_for_segments("lobby", 4, timeout=90)
    start_us = iso_us(segs[0]["start"]) + 3_000_000
    end_us = start_us + 25_000_000
    assert iso_us(segs[2]["start"]) < end_us  # spans three segments
    out = rec.out_path("incident.mp4")
    res = rec.cli("director", "export", "--camera", "lobby", "--start", iso(start_us),
                  "--end", iso(end_us), "--reason", "incident 12", "--incident", "INC-12",
                  "--out", out, "--json")
    assert res.code == 0, res.err
    info = res.json()
    clip = Path(out)
    assert info["path"] == out and Path(info["manifest"]).exists()
    st = clip.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == __import__("pwd").getpwnam(ACCOUNTS["director"]).pw_uid
    # Plays, video only, moov before mdat, about the requested length.
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of",
         "json", out], capture_output=True, text=True, check=True).stdout)
    assert [s["codec_type"] for s in probe["streams"]] == ["video"]
    duration = float(probe["format"]["duration"])
    assert 25 - 0.2 <= duration <= 25 + 1 + 0.2, duration  # one GOP (1 s) of lead-in at most
    boxes = top_level_boxes(clip)
    assert boxes.index("moov") < boxes.index("mdat")
    with av.open(out) as c:
        frames = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    assert abs(frames - int(probe["streams"][0]["nb_read_packets"])) == 0
    assert 25 * FPS <= frames <= 26 * FPS + 1
    # The manifest tells the story; verify passes offline, and fails on one flipped byte.
    manifest = json.loads(Path(info["manifest"]).read_text())
    assert manifest["reason"] == "incident 12" and manifest["incident"] == "INC-12"
    assert manifest["requester"]["account"] == ACCOUNTS["director"]
    assert manifest["clip"]["file"] == "incident.mp4"
    assert rec.cli("root", "export", "verify", out).code == 0
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = Path(rec.out_path("tampered.mp4"))
    tampered.write_bytes(bytes(data))
    for suffix in (".manifest.json", ".manifest.sig"):
        Path(str(tampered) + suffix).write_bytes(Path(out + suffix).read_bytes())
    bad = run_cli(["export", "verify", str(tampered)])
    assert bad.code == 65 and "clip" in (bad.out + bad.err).lower()
    mbytes = bytearray(Path(out + ".manifest.json").read_bytes())
    mbytes[mbytes.index(b"incident 12")] ^= 0x01
    Path(out + ".manifest.json").write_bytes(bytes(mbytes))
    bad = run_cli(["export", "verify", out])
    assert bad.code == 65 and "manifest" in (bad.out + bad.err).lower()


def test_export_audited_and_refused_for_it(rec: Recorder) -> None:
    segs = rec.wait_for_segments("lobby", 2)
    s, e = segs[0]["start"], segs[0]["end"]
    res = rec.cli("it", "export", "--camera", "lobby", "--start", s, "--end", e, "--reason",
                  "curious", "--out", rec.out_path("it.mp4"))
    assert res.code == 77 and "it" in res.err.lower()
    assert not Path(rec.out_path("it.mp4")).exists()
    rows = rec.cli("director", "audit", "list", "--json").json()
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert any(r["actor"] == ACCOUNTS["it"] and r["action"] == "export" and not r["allowed"]
               for r in rows)


def test_export_of_no_footage_says_future_or_what_there_is(rec: Recorder) -> None:
    """Issue 28: a range in the future is named as such; a range before the footage says
    where the footage ends, and its suggestion, pasted as printed, is answered."""
    segs = rec.wait_for_segments("lobby", 2)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    res = rec.cli("director", "export", "--camera", "lobby", "--start", soon.isoformat(),
                  "--end", (soon + dt.timedelta(minutes=1)).isoformat(), "--reason", "r",
                  "--out", rec.out_path("future.mp4"))
    assert res.code == 65 and "that is in the future" in res.err, res.err
    before = iso(iso_us(segs[0]["start"]) - 3_600_000_000)
    res = rec.cli("director", "export", "--camera", "lobby", "--start", before, "--end",
                  iso(iso_us(before) + 60_000_000), "--reason", "r",
                  "--out", rec.out_path("before.mp4"))
    assert res.code == 65 and "its newest footage ends at" in res.err, res.err
    suggested = res.err.split("`")[1].split()
    assert suggested[:3] == ["nvr", "recordings", "--camera"] and "--socket" in suggested
    assert rec.cli("director", *suggested[1:suggested.index("--socket")]).code == 0


def test_still_is_owner_only_and_expires(rec: Recorder) -> None:
    segs = rec.wait_for_segments("lobby", 2)
    out = rec.out_path("notice.jpg")
    until = (dt.datetime.now().astimezone() + dt.timedelta(seconds=3)).isoformat()
    res = rec.cli("director", "still", "--camera", "lobby", "--at", segs[1]["start"], "--until",
                  until, "--reason", "suspension of patron X", "--out", out, "--json")
    assert res.code == 0, res.err
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    with av.open(out) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (640, 360)
    own = list((rec.root / "stills").glob("*.jpg"))
    assert len(own) == 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and own[0].exists():
        time.sleep(1)
    assert not own[0].exists(), "the recorder kept its copy past --until"
    rows = rec.cli("director", "audit", "list", "--json").json()
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert any(r["action"] == "still_expired" for r in rows)
    assert Path(out).exists()  # the requester's copy is theirs


def test_key_show_matches_the_manifest_fingerprint(rec: Recorder) -> None:
    segs = rec.wait_for_segments("lobby", 2)
    out = rec.out_path("for-key.mp4")
    res = rec.cli("director", "export", "--camera", "lobby", "--start", segs[0]["start"],
                  "--end", segs[0]["end"], "--reason", "key check", "--out", out, "--json")
    assert res.code == 0, res.err
    key = rec.cli("director", "key", "show", "--json")
    assert key.code == 0, key.err
    manifest = json.loads(Path(res.json()["manifest"]).read_text())
    assert manifest["key"]["fingerprint"] == key.json()["fingerprint"]
    assert res.json()["fingerprint"] == key.json()["fingerprint"]  # printed with every export


def test_forged_clip_resigned_with_a_fresh_key_fails_for_everyone(rec: Recorder) -> None:
    """Issue 10: verification says who signed. Root, the Director and an account that cannot read
    storage.root (the public) all refuse a re-signed forgery, with or without --key; the
    genuine clip verifies with --key and, on this box, without."""
    segs = rec.wait_for_segments("lobby", 2)
    out = rec.out_path("genuine.mp4")
    res = rec.cli("director", "export", "--camera", "lobby", "--start", segs[0]["start"],
                  "--end", segs[0]["end"], "--reason", "for the police", "--out", out)
    assert res.code == 0, res.err
    fp = rec.cli("director", "key", "show", "--json").json()["fingerprint"]
    assert f"signed by recorder key {fp}" in res.out  # printed with every export
    published = rec.socket.parent / "export-key.pub"
    assert published.read_text() == rec.cli("director", "key", "show", "--json").json()[
        "public_key_pem"]
    assert stat.S_IMODE(published.stat().st_mode) == 0o644
    # Copies every account can read (the requester's files are 0600).
    genuine, forged = Path(rec.out_path("g/clip.mp4")), Path(rec.out_path("f/clip.mp4"))
    for copy in (genuine, forged):
        copy.parent.mkdir(mode=0o755, exist_ok=True)
        for suffix in ("", ".manifest.json", ".manifest.sig"):
            Path(str(copy) + suffix).write_bytes(Path(out + suffix).read_bytes())
            Path(str(copy) + suffix).chmod(0o644)
    forger = forge(forged)
    for role in ("root", "director", "public"):
        ok = rec.cli(role, "export", "verify", str(genuine))
        assert ok.code == 0 and "VERIFIED" in ok.out, (role, ok.out, ok.err)
        ok = rec.cli(role, "export", "verify", str(genuine), "--key", fp)
        assert ok.code == 0, (role, ok.out, ok.err)
        for extra in ((), ("--key", fp)):
            bad = rec.cli(role, "export", "verify", str(forged), *extra)
            assert bad.code == 65, (role, extra, bad.out, bad.err)
            assert f"signed by key {forger}, NOT by the trusted key {fp}" in bad.out, bad.out
    # The public account cannot read storage.root: it trusted the published key.
    assert run_as(ACCOUNTS["public"], lambda: os.access(rec.root, os.R_OK)) is False


def test_changed_source_segment_stops_the_export_and_is_audited(rec: Recorder) -> None:
    # Last in this module: it damages the oldest segment on purpose.
    seg = rec.wait_for_segments("lobby", 2)[0]
    path = Path(seg["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    out = rec.out_path("from-changed.mp4")
    res = rec.cli("director", "export", "--camera", "lobby", "--start", seg["start"], "--end",
                  seg["end"], "--reason", "incident", "--out", out)
    assert res.code == 65, (res.code, res.err)
    assert path.name in res.err
    assert not Path(out).exists()
    rows = rec.cli("director", "audit", "list", "--json").json()
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert any(r["action"] == "segment_integrity_failure" and not r["allowed"] for r in rows)
