"""Grants, requests, breaches on a real SQLite index, and the breach notification command."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
import structlog
from structlog.testing import capture_logs

from nvr.config.model import Role
from nvr.errors import PermissionDenied, UsageError
from nvr.policy import rules
from nvr.policy.actions import Action
from nvr.policy.notify import notify_director
from nvr.policy.rules import AccessContext, CameraInfo, decide
from nvr.policy.store import PUBLIC_ADVICE, Breaches, Grants, Requests
from nvr.storage.db import connect

H = 3_600_000_000
NOW = 1_767_225_600_000_000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await connect(tmp_path / "index.db")
    try:
        yield conn
    finally:
        await conn.close()


async def test_grant_round_trip_and_revoke_stops_access(db: aiosqlite.Connection) -> None:
    grants = Grants(db)
    g = await grants.create(user="clerk", cameras=["front-entrance", "desk"],
                            start_us=NOW - 5 * H, end_us=NOW - H, expires_us=NOW + 24 * H,
                            reason="lost wallet", now_us=NOW, created_by="director")
    assert g.id.startswith("G-") and len(g.id) == 10
    assert await grants.get(g.id) == g
    assert [x.id for x in await grants.list(active_only=True, now_us=NOW)] == [g.id]
    assert g.to_dict()["cameras"] == ["desk", "front-entrance"]
    ctx = AccessContext(cameras=(CameraInfo("desk"),), start_us=NOW - 4 * H, end_us=NOW - 2 * H,
                        reason="lost wallet")
    assert decide(Role.staff, Action.export, ctx, await grants.for_user("clerk"), NOW,
                  "clerk").allowed
    assert await grants.for_user("other") == []
    # Expiry: the same grant a day later no longer counts.
    assert not decide(Role.staff, Action.export, ctx, await grants.for_user("clerk"),
                      NOW + 24 * H, "clerk").allowed

    revoked = await grants.revoke(g.id, now_us=NOW + 1, by="director")
    assert revoked.revoked_us == NOW + 1 and revoked.revoked_by == "director"
    d = decide(Role.staff, Action.export, ctx, await grants.for_user("clerk"), NOW + 2, "clerk")
    assert not d.allowed and "revoked" in d.message
    assert await grants.list(active_only=True, now_us=NOW + 2) == []
    assert len(await grants.list()) == 1
    again = await grants.revoke(g.id, now_us=NOW + 9, by="director")
    assert again.revoked_us == NOW + 1  # the first revocation stands
    with pytest.raises(UsageError, match="no grant"):
        await grants.revoke("G-deadbeef", now_us=NOW, by="director")


@pytest.mark.parametrize(
    "kw, match",
    [({"cameras": []}, "camera"), ({"end_us": NOW - 6 * H}, "before it starts"),
     ({"expires_us": NOW}, "already past"), ({"reason": " "}, "reason")],
)
async def test_grant_create_refuses_nonsense(
    db: aiosqlite.Connection, kw: dict[str, object], match: str
) -> None:
    args: dict[str, object] = dict(user="clerk", cameras=["desk"], start_us=NOW - 5 * H,
                                   end_us=NOW - H, expires_us=NOW + H, reason="r", now_us=NOW,
                                   created_by="director")
    args.update(kw)
    with pytest.raises(UsageError, match=match):
        await Grants(db).create(**args)  # type: ignore[arg-type]


async def test_request_lifecycle_and_release(db: aiosqlite.Connection) -> None:
    reqs = Requests(db)
    r = await reqs.create(kind="subpoena", requester="Hanson PD, Det. Ruiz",
                          details="case 26-114, front entrance 14:00-15:00", now_us=NOW,
                          created_by="clerk", cameras=["front-entrance"], start_us=NOW - H,
                          end_us=NOW)
    assert r.id.startswith("R-") and r.status == "pending"
    assert await reqs.get(r.id) == r
    # Not approved yet: a release is refused by the rules and by the store.
    ctx = AccessContext(cameras=(CameraInfo("front-entrance"),), start_us=NOW - H, end_us=NOW,
                        reason="subpoena", request=r.info)
    assert decide(Role.director, Action.release, ctx, [], NOW, "director").rule == \
        "release.not_approved"
    with pytest.raises(PermissionDenied, match="not approved"):
        await reqs.add_release(r.id, {"sha256": "ab"})

    ok = await reqs.approve(r.id, now_us=NOW + 1, by="director")
    assert ok.status == "approved" and ok.decided_by == "director" and ok.decided_us == NOW + 1
    assert ok.expires_us == NOW + 1 + 30 * 24 * H  # the default expiry
    assert ok.to_dict()["cameras"] == ["front-entrance"]
    ctx = AccessContext(cameras=ctx.cameras, start_us=NOW - H, end_us=NOW, reason="subpoena",
                        request=ok.info)
    assert decide(Role.director, Action.release, ctx, [], NOW, "director").allowed
    await reqs.add_release(r.id, {"sha256": "ab", "path": "/tmp/x.mp4"})
    rec = await reqs.add_release(r.id, {"sha256": "cd"})
    assert [x["sha256"] for x in rec.releases] == ["ab", "cd"]
    with pytest.raises(UsageError, match="approved, not pending"):
        await reqs.approve(r.id, now_us=NOW + 2, by="director")

    d = await reqs.create(kind="voluntary", requester="State Police", details="x", now_us=NOW,
                          created_by="director")
    denied = await reqs.deny(d.id, "no incident on file", now_us=NOW + 3, by="director")
    assert denied.status == "denied" and denied.decision_reason == "no incident on file"
    assert [x.id for x in await reqs.list(status="approved")] == [r.id]
    assert {x.id for x in await reqs.list()} == {r.id, d.id}
    with pytest.raises(UsageError, match="no request"):
        await reqs.approve("R-00000000", now_us=NOW, by="director")
    with pytest.raises(UsageError, match="kind"):
        await reqs.create(kind="warrant", requester="x", details="y", now_us=NOW, created_by="d")


async def test_public_request_is_refused_at_once_with_the_advice(db: aiosqlite.Connection) -> None:
    """"Members of the general public requesting to inspect security camera footage will be
    advised to file a police report or public records request"."""
    reqs = Requests(db)
    r = await reqs.create(kind="public", requester="a patron", details="my bike was stolen",
                          now_us=NOW, created_by="clerk")
    assert r.status == "refused" and r.decision_reason == PUBLIC_ADVICE
    assert rules.PUBLIC_ADVICE in PUBLIC_ADVICE
    assert "police report or public records request" in r.to_dict()["advice"]
    with pytest.raises(PermissionDenied, match="general public"):
        await reqs.approve(r.id, now_us=NOW, by="director")
    with pytest.raises(UsageError, match="refused, not pending"):
        await reqs.deny(r.id, "no", now_us=NOW, by="director")
    assert (await reqs.get(r.id)).status == "refused"  # type: ignore[union-attr]


async def test_breach_round_trip(db: aiosqlite.Connection) -> None:
    b = await Breaches(db).create(details="a clip was emailed to a patron", reporter="clerk",
                                  now_us=NOW)
    assert b.id.startswith("B-")
    assert await Breaches(db).list() == [b]
    assert b.to_dict()["at"] == "2026-01-01T00:00:00.000000Z"
    with pytest.raises(UsageError):
        await Breaches(db).create(details="", reporter="clerk", now_us=NOW)


async def test_notify_director_runs_the_command_with_details_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "mail.txt"
    cmd = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"]
    with capture_logs() as logs:
        assert await notify_director(cmd, "clip emailed to a patron", structlog.get_logger())
    assert out.read_text() == "clip emailed to a patron"
    warn = [e for e in logs if e["event"] == "breach_reported"]
    assert warn and warn[0]["log_level"] == "warning"


@pytest.mark.parametrize(
    "cmd, error",
    [([sys.executable, "-c", "import sys; sys.exit(3)"], None),
     (["/nonexistent/notify-director"], "No such file"),
     ([sys.executable, "-c", "import time; time.sleep(30)"], "timeout")],
    ids=["exit-3", "missing", "timeout"],
)
async def test_notify_failure_is_logged_not_raised(cmd: list[str], error: str | None) -> None:
    with capture_logs() as logs:
        assert not await notify_director(cmd, "details", structlog.get_logger(), timeout_s=1.0)
    failed = [e for e in logs if e["event"] == "breach_notify_failed"]
    assert failed and failed[0]["log_level"] == "error"
    if error:
        assert error in failed[0]["error"]


async def test_notify_without_a_command_only_logs() -> None:
    with capture_logs() as logs:
        assert await notify_director(None, "details", structlog.get_logger())
    assert [e["event"] for e in logs] == ["breach_reported"]


async def test_notify_command_gets_an_empty_environment(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10: the daemon's environment may hold camera passwords (`${ENV}` in the map)."""
    monkeypatch.setenv("NVR_CAM_LOBBY_PASSWORD", "s3cret-lobby")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/nvr.service")
    out = tmp_path / "env.json"
    cmd = [sys.executable, "-c",
           f"import json, os; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"]
    assert await notify_director(cmd, "details", structlog.get_logger())
    env = json.loads(out.read_text())
    assert "s3cret-lobby" not in json.dumps(env)
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "NVR_EVENT", "LC_CTYPE"}, env
    assert env["NVR_EVENT"] == "breach_reported" and env["PATH"]


# A recorder that has made a still keeps PyAV's scaler (with its worker threads) cached on the
# thread that made it. The breach story then hung the daemon: uvloop's spawn freed that cache
# in the forked child, which waited for the scaler's threads for ever, and the whole loop with it.
_NOTIFY_AFTER_A_STILL = """
import sys, threading
import av, structlog, uvloop
from nvr.policy.notify import notify_director

ready, done = threading.Event(), threading.Event()

def convert_and_stay() -> None:
    av.VideoFrame(1280, 720, "yuv420p").reformat(width=640, height=360, format="rgb24")
    ready.set()
    done.wait()

threading.Thread(target=convert_and_stay, daemon=True).start()
ready.wait()
command = ["sh", "-c", "cat > " + sys.argv[1]]
print(uvloop.run(notify_director(command, "a photo was posted", structlog.get_logger(),
                                 timeout_s=10)))
done.set()
"""


def test_notify_runs_under_uvloop_beside_a_thread_that_converted_video(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox.txt"
    try:
        proc = subprocess.run([sys.executable, "-c", _NOTIFY_AFTER_A_STILL, str(inbox)],
                              capture_output=True, text=True, timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail("the notify command never started: the event loop waited on a forked child")
    finally:  # a child stuck before exec would outlive the script
        subprocess.run(["pkill", "-9", "-f", str(inbox)], check=False)
    assert proc.stdout.strip().splitlines()[-1] == "True", proc.stdout + proc.stderr
    assert inbox.read_text() == "a photo was posted"


async def test_notify_commands_waiting_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow mail script holds the notify threads, not the daemon: past the bound a report
    is not mailed (it is stored and audited before notify runs) and the log says why."""
    import asyncio

    from nvr.policy import notify

    monkeypatch.setattr(notify, "_MAX_WAITING", 2)
    slow = [sys.executable, "-c", "import time; time.sleep(1)"]
    with capture_logs() as logs:
        results = await asyncio.gather(
            *(notify_director(slow, "details", structlog.get_logger(), timeout_s=5)
              for _ in range(3)))
    assert sorted(results) == [False, True, True]
    failed = [e for e in logs if e["event"] == "breach_notify_failed"]
    assert len(failed) == 1 and "already waiting" in failed[0]["error"]


def test_the_daemon_starts_no_process_through_the_event_loop() -> None:
    """Invariant I22 (docs/design.md): only the subprocess module starts processes."""
    import re

    package = Path(__file__).resolve().parents[2] / "nvr"
    spawns = [f"{p.relative_to(package.parent)}:{n}"
              for p in sorted(package.rglob("*.py"))
              for n, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"create_subprocess_(exec|shell)|\.subprocess_(exec|shell)\(", line)]
    assert spawns == []
