"""`nvr` as a user runs it, against a real control socket served by a toy daemon process."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nvr.cli.main import main
from nvr.control import client
from tests.cli.toy_daemon import CLIP, JPEG, MANIFEST, SIGNATURE

NVR = Path(sys.executable).parent / "nvr"
ROOT = Path(__file__).resolve().parents[2]

CONTRACT_COMMANDS = ["run", "check-config", "fsck", "status", "recordings", "export", "still",
                     "hold", "grant", "request", "live", "emergency", "audit", "breach",
                     "retention", "reload", "key"]  # fmt: skip


@pytest.fixture(scope="module")
def toy() -> Iterator[tuple[Path, Path]]:
    d = Path(tempfile.mkdtemp(prefix="nvrcli-", dir="/tmp"))
    sock, ops = d / "control.sock", d / "ops.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tests.cli.toy_daemon", str(sock), str(ops)],
                            cwd=ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None, "toy daemon died"
        assert time.monotonic() < deadline, "toy daemon did not start"
        time.sleep(0.05)
    yield sock, ops
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(toy: tuple[Path, Path]) -> Path:
    toy[1].write_text("")
    return toy[0]


def seen(daemon: Path) -> list[tuple[str, dict[str, Any]]]:
    lines = (daemon.parent / "ops.jsonl").read_text().splitlines()
    return [(op, args) for op, args in map(json.loads, lines)]


def test_help_lists_every_contract_command() -> None:
    out = subprocess.run([str(NVR), "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in CONTRACT_COMMANDS:
        assert f"\n    {cmd} " in out or f"\n    {cmd}\n" in out, cmd


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["recordings"],  # --camera missing
        ["request", "create", "--kind", "rumour", "--requester", "a", "--details", "b"],
        ["live", "--camera", "front", "--minutes", "ten"],
        ["export", "--camera", "front", "--start", "2026-11-29T10:00"],
        ["run"],  # --config missing
    ],
)
def test_usage_errors_exit_64_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert err.startswith("nvr: ") and err.count("\n") == 1


def test_unreachable_daemon_exits_69_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([str(NVR), "--socket", str(tmp_path / "gone.sock"), "status"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 69
    assert proc.stderr.count("\n") == 1
    # The name once (nvr: daemon …), and systemctl only suggested where systemd runs.
    assert proc.stderr.startswith(f"nvr: daemon not reachable at {tmp_path / 'gone.sock'}")
    assert "is it running?" in proc.stderr
    assert ("systemctl" in proc.stderr) == Path("/run/systemd/system").is_dir()


def test_socket_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "nvr.yaml"
    cfg.write_text("site: X\ncontrol:\n  socket: /srv/nvr/from-config.sock\ncameras: []\n")
    env = {"NVR_SOCKET": "/env.sock"}
    assert client.socket_path("/flag.sock", cfg, env) == Path("/flag.sock")
    assert client.socket_path(None, cfg, env) == Path("/env.sock")
    assert client.socket_path(None, cfg, {}) == Path("/srv/nvr/from-config.sock")
    assert client.socket_path(None, None, {}) == Path("/run/nvr/control.sock")
    # A map this user cannot fully load (an unreadable password file) still names its socket.
    bad = tmp_path / "other.yaml"
    bad.write_text("site: X\ncontrol: {socket: run/c.sock}\ncameras:\n  - {id: a, bogus: 1}\n")
    assert client.socket_path(None, bad, {}) == tmp_path / "run" / "c.sock"


def test_nvr_socket_env_reaches_the_daemon(daemon: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("NVR_SOCKET", str(daemon))
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cameras"][0]["state"] == "recording"


def test_status_table_and_json(daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", str(daemon), "status"]) == 0
    out = capsys.readouterr().out
    assert "front" in out and "recording" in out and "252 GB free of 500 GB" in out
    assert main(["--json", "--socket", str(daemon), "status"]) == 0
    assert json.loads(capsys.readouterr().out)["disk"]["free_bytes"] == 252_000_000_000


def test_client_commands_send_their_ops(daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = ["--socket", str(daemon)]
    cmds = [
        (["hold", "create", "--camera", "a", "--camera", "b", "c", "--start", "S", "--end", "E",
          "--reason", "R", "--until", "2027-01-01"],
         ("hold_create", {"cameras": ["a", "b", "c"], "start": "S", "end": "E", "reason": "R", "until": "2027-01-01"})),
        (["hold", "release", "H-1", "--reason", "done"], ("hold_release", {"hold_id": "H-1", "reason": "done"})),
        (["grant", "create", "--user", "clerk", "--camera", "a", "--start", "S", "--end", "E",
          "--expires", "X", "--reason", "R"],
         ("grant_create", {"user": "clerk", "cameras": ["a"], "start": "S", "end": "E", "expires": "X", "reason": "R"})),
        (["grant", "revoke", "G-1"], ("grant_revoke", {"grant_id": "G-1"})),
        (["request", "create", "--kind", "subpoena", "--requester", "PD", "--details", "d"],
         ("request_create", {"kind": "subpoena", "requester": "PD", "details": "d"})),
        (["request", "approve", "R-1"], ("request_approve", {"request_id": "R-1"})),
        (["request", "deny", "R-1", "--reason", "no"], ("request_deny", {"request_id": "R-1", "reason": "no"})),
        (["live", "--camera", "a", "b", "--minutes", "5", "--reason", "R"],
         ("live", {"cameras": ["a", "b"], "minutes": 5, "reason": "R"})),
        (["playback", "--camera", "a", "--start", "S", "--reason", "R"],
         ("playback", {"cameras": ["a"], "start": "S", "reason": "R"})),
        (["view", "revoke", "v-1"], ("view_revoke", {"link_id": "v-1"})),
        (["emergency", "list"], ("emergency_list", {})),
        (["emergency", "start", "--agency", "FD", "--camera", "a", "--minutes", "30"],
         ("emergency_start", {"agency": "FD", "cameras": ["a"], "minutes": 30})),
        (["emergency", "end"], ("emergency_end", {})),
        (["audit", "verify"], ("audit_verify", {})),
        (["breach", "report", "--details", "d"], ("breach_report", {"details": "d"})),
        (["retention", "plan", "--at", "2027-01-01"], ("retention_plan", {"at": "2027-01-01"})),
        (["key", "show"], ("key_show", {})),
        (["recordings", "--camera", "a", "--start", "S"], ("recordings", {"camera": "a", "start": "S"})),
    ]  # fmt: skip
    for argv, expected in cmds:
        assert main([*s, *argv, "--json"]) == 0, argv
        assert seen(daemon)[-1] == expected
        if expected[0] not in ("recordings", "retention_plan"):  # the toy answers those fully
            assert json.loads(capsys.readouterr().out) == {"op": expected[0]}
        capsys.readouterr()


def test_paged_recordings_arrive_whole(daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 11: the daemon answers `recordings` a page at a time; the CLI fetches every page.
    assert main(["--socket", str(daemon), "recordings", "--camera", "paged", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["start"] for s in result["segments"]] == [str(i) for i in range(1, 10)]
    assert result["gaps"] == [{"reason": "offline"}] and "next" not in result
    assert [args.get("after_us") for op, args in seen(daemon)[-3:]] == [None, 3, 6]


def test_audit_list_json_is_a_list(daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "list", "--json", "--socket", str(daemon)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and rows[0]["seq"] == 1


def test_policy_refusal_exits_77_with_the_rule(
    daemon: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reload", "--socket", str(daemon)]) == 77
    assert (
        capsys.readouterr().err
        == "nvr: reload is for the Director and IT (policy: reload config)\n"
    )


def _export(daemon: Path, out: Path, reason: str = "incident 12") -> list[str]:
    return ["export", "--socket", str(daemon), "--camera", "front", "--start", "2026-11-29T10:00",
            "--end", "2026-11-29T10:01", "--reason", reason, "--out", str(out), "--json"]  # fmt: skip


def test_export_writes_clip_manifest_and_signature(daemon: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "clip.mp4"
    assert main(_export(daemon, out)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"path": str(out), "sha256": hashlib.sha256(CLIP).hexdigest(),
                     "start": "2026-11-29T10:00:00.000000Z", "end": "2026-11-29T10:01:00.000000Z",
                     "manifest": str(tmp_path / "clip.mp4.manifest.json")}  # fmt: skip
    assert out.read_bytes() == CLIP
    assert (tmp_path / "clip.mp4.manifest.json").read_bytes() == MANIFEST
    assert (tmp_path / "clip.mp4.manifest.sig").read_bytes() == SIGNATURE
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
    assert seen(daemon)[-1] == ("export", {"camera": "front", "start": "2026-11-29T10:00",
                                   "end": "2026-11-29T10:01", "reason": "incident 12", "out_name": "clip.mp4"})  # fmt: skip


def test_export_never_overwrites(
    daemon: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"precious")
    assert main(_export(daemon, out)) == 64
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    assert seen(daemon) == []  # refused before asking the daemon


def test_failed_export_leaves_no_partial_files(daemon: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "clip.mp4"
    assert main(_export(daemon, out, reason="lie")) == 65  # hash mismatch
    assert "sha256" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(_export(tmp_path / "gone.sock", out)) == 69
    assert list(tmp_path.iterdir()) == []


def test_still_arrives_as_a_file(
    daemon: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "notice.jpg"
    argv = ["still", "--socket", str(daemon), "--camera", "front", "--at", "2026-11-29T10:00",
            "--until", "2026-12-31", "--reason", "suspension notice", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert out.read_bytes() == JPEG
    assert shown["path"] == str(out) and shown["sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert shown["until"] == "2026-12-31"


@pytest.mark.parametrize(
    ("argv", "config", "as_json"),
    [
        (["run", "--config", "/etc/nvr/nvr.yaml"], "/etc/nvr/nvr.yaml", False),
        (["--config", "/etc/nvr/nvr.yaml", "run"], "/etc/nvr/nvr.yaml", False),
        (["fsck", "--config", "c.yaml", "--repair"], "c.yaml", False),
        (["--json", "status"], None, True),
        (["status", "--json"], None, True),
        (["audit", "list", "--since", "2026-11-01", "--json"], None, True),
    ],
)
def test_global_options_work_before_or_after_the_command(
    argv: list[str], config: str | None, as_json: bool
) -> None:
    from nvr.cli.main import build_parser

    ns = build_parser().parse_args(argv)
    assert ns.config == config
    assert ns.json is as_json


def test_export_verify_runs_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(CLIP)
    # No manifest beside it: verification fails with 65, and no daemon is asked.
    assert main(["export", "verify", str(clip)]) == 65
    assert main(["--json", "export", "verify", str(clip)]) == 65
    assert main(["export", "verify"]) == 64


def test_a_suggestion_in_an_error_works_as_printed(daemon: Path, tmp_path: Path) -> None:
    """The daemon suggests `nvr recordings --camera empty`; the person reached it with
    --socket, so the suggestion carries it, and pasted as printed it is answered (exit 0)."""
    proc = subprocess.run([str(NVR), "export", "--camera", "empty", "--start", "2026-11-29T10:00",
                           "--end", "2026-11-29T10:01", "--reason", "r", "--out",
                           str(tmp_path / "clip.mp4"), "--socket", str(daemon)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 65, proc.stderr
    suggested = proc.stderr.split("`")[1]
    assert suggested == f"nvr recordings --camera empty --socket {daemon}", proc.stderr
    again = subprocess.run([str(NVR), *suggested.split()[1:]], capture_output=True, text=True,
                           timeout=30)  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_suggestions_carry_config_and_socket_but_not_into_help() -> None:
    from nvr.cli.suggest import carry

    argv = ["status", "--config=my map.yaml"]
    assert carry("see `nvr status`", argv) == "see `nvr status --config 'my map.yaml'`"
    assert carry("see `nvr help export`", argv) == "see `nvr help export`"
    assert carry("see `nvr status --config x`", argv) == "see `nvr status --config x`"
    assert carry("see `nvr status`", ["status"]) == "see `nvr status`"
