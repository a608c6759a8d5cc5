"""`nvr check-config`: each mistake an IT person could make is reported on its own line."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvr.config.model import AUDIO_CLAUSE, PRIVACY_CLAUSE
from nvr.errors import EX_DATAERR
from tests.config.helpers import GOOD, REPO, check, line_of, write


def test_example_map_passes_on_a_fresh_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    path = REPO / "config" / "example.yaml"
    rc, err, out = check(path, capsys)
    assert rc == 0
    # Issue 28: its accounts do not exist here; valid, but each is named (a warning, exit 0).
    assert err == [f"{path}:{line_of(path, '{user: ' + user)}: people[{i}].user: warning: no "
                   f"account {user!r} on this machine; create it (adduser) or put that person's "
                   "real login name here, or they are refused as the public"
                   for i, user in enumerate(("director", "assistant", "elderaffairs", "itstaff",
                                             "facilities", "clerk"))]  # fmt: skip
    assert out == (f"{path}: ok (8 cameras, 6 people); 6 of them without an account on this "
                   "machine\n")


def test_an_existing_account_is_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = REPO / "config" / "example.yaml"
    mine = write(tmp_path, path.read_text().replace("{user: clerk,", "{user: root,"))
    (tmp_path / "parking-lot-cam.pass").write_text("s3cret\n")
    rc, err, out = check(mine, capsys)
    assert rc == 0 and len(err) == 5 and not any("'root'" in e for e in err), err
    assert out.endswith("ok (8 cameras, 6 people); 5 of them without an account on this machine\n")


def test_demo_map_makes_the_runner_director(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "root")  # an account that exists: no warning
    rc, err, out = check(REPO / "config" / "demo.yaml", capsys)
    assert (rc, err) == (0, [])
    assert out.endswith("ok (2 cameras, 1 person)\n")


def test_demo_map_without_user_says_which_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USER", raising=False)
    path = REPO / "config" / "demo.yaml"
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR
    assert err == [
        f"{path}:{line_of(path, '${USER}')}: people[0].user: environment variable ${{USER}} "
        "is not set; export it before starting nvr (or, under systemd, set Environment= / "
        "EnvironmentFile= in the unit)"
    ]


def test_restroom_camera_is_refused_quoting_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        GOOD + "  - id: staff-wc\n    name: Staff WC\n    area: restroom\n    rtsp: rtsp://h/s\n",
    )
    rc, err, out = check(path, capsys)
    assert (rc, out) == (EX_DATAERR, "")
    assert err == [
        f"{path}:{line_of(path, 'restroom')}: cameras[1].area: camera 'staff-wc': area "
        f"'restroom' is a privacy area and cannot have a camera: {PRIVACY_CLAUSE}"
    ]
    assert "reasonable expectation of privacy" in err[0]


# Each mistake, the line it is on (by a unique bit of text), its key path and part of the message.
MISTAKES = {
    "unknown key": (
        GOOD.replace("    area: entrance\n", "    area: entrance\n    fps: 15\n"),
        "fps:",
        "cameras[0].fps",
        "unknown key 'fps'",
    ),
    "typo suggests the key": (
        GOOD.replace("storage:", "storge:"),
        "storge:",
        "storge",
        "unknown key 'storge' (did you mean 'storage'?)",
    ),
    "audio": (
        GOOD.replace("    area: entrance\n", "    area: entrance\n    record_audio: true\n"),
        "record_audio",
        "cameras[0].record_audio",
        f"audio can never be recorded, the policy says {AUDIO_CLAUSE}",
    ),
    "duplicate camera id": (
        GOOD + "  - id: front\n    name: Again\n    area: stacks\n    rtsp: rtsp://h/s\n",
        "id: front#2",
        "cameras[1].id",
        "camera id 'front' is used twice",
    ),
    "id that climbs out of its folder": (
        GOOD.replace("id: front", "id: ../x"),
        "id: ../x",
        "cameras[0].id",
        "camera id '../x' is not allowed: use 1-40 characters from a-z, 0-9 and '-' "
        "(pattern ^[a-z0-9-]{1,40}$)",
    ),
    "unknown role": (
        GOOD.replace("role: staff", "role: janitor"),
        "janitor",
        "people[1].role",
        "unknown role 'janitor'; use one of: director, assistant_director, staff,",
    ),
    "duplicate account": (
        GOOD.replace("user: bob", "user: alice"),
        "user: alice#2",
        "people[1].user",
        "account 'alice' is used twice",
    ),
    "missing password file": (
        GOOD.replace(
            "    rtsp: rtsp://127.0.0.1:8554/h264\n",
            "    onvif:\n      host: 10.0.0.9\n      username: nvr\n"
            "      password_file: nowhere.pass\n",
        ),
        "password_file",
        "cameras[0].onvif.password_file",
        "password file 'nowhere.pass' not found",
    ),
    "plain HTTP live view on every address": (
        GOOD + "live:\n  emergency_max_minutes: 60\n  listen: 0.0.0.0:8443\n",
        "listen:",
        "live.listen",
        "live view on 0.0.0.0:8443 would be plain HTTP on a non-loopback address",
    ),
    "metrics on every network": (
        GOOD + "metrics:\n  listen: 0.0.0.0:9108\n",
        "listen: 0.0.0.0:9108",
        "metrics.listen",
        "metrics on 0.0.0.0:9108 would listen on every network",
    ),
    "metrics on a host name": (
        GOOD + "metrics:\n  listen: recorder.local:9108\n",
        "listen: recorder.local",
        "metrics.listen",
        "give an IP address, not the name 'recorder.local'",
    ),
    "no stream source": (
        GOOD.replace("    rtsp: rtsp://127.0.0.1:8554/h264\n", ""),
        "- id: front",
        "cameras[0]",
        "camera 'front': give exactly one of rtsp: or onvif:",
    ),
    "wrong type shows the value": (
        GOOD.replace("  root: data\n", "  root: data\n  segment_seconds: soon\n"),
        "soon",
        "storage.segment_seconds",
        "(got 'soon')",
    ),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_each_mistake_is_reported_on_its_own_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, needle, key, message = MISTAKES[name]
    path = write(tmp_path, text)
    needle, _, nth = needle.partition("#")
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR
    assert len(err) == 1, err
    prefix = f"{path}:{line_of(path, needle, int(nth or 1))}: {key}: "
    assert err[0].startswith(prefix), err[0]
    assert message in err[0]


ALL_AT_ONCE = """\
site: Everything wrong
storage:
  root: data
  colour: blue
live:
  listen: 0.0.0.0:8443
people:
  - {user: alice, role: director}
  - {user: alice, role: staff}
  - {user: carol, role: janitor}
cameras:
  - id: front
    name: Front
    area: entrance
    rtsp: rtsp://h/1
  - id: front
    name: Front again
    area: entrance
    rtsp: rtsp://h/2
  - id: ../x
    name: Escape
    area: stacks
    rtsp: rtsp://h/3
  - id: staff-wc
    name: Staff WC
    area: restroom
    rtsp: rtsp://h/4
  - id: lot
    name: Lot
    area: parking
    onvif: {host: 10.0.0.9, username: nvr, password_file: gone.pass}
"""


def test_all_mistakes_in_one_file_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, ALL_AT_ONCE)
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR
    where = [line.split(": ", 2)[:2] for line in err]
    assert where == [
        [f"{path}:4", "storage.colour"],
        [f"{path}:6", "live.listen"],
        [f"{path}:9", "people[1].user"],
        [f"{path}:10", "people[2].role"],
        [f"{path}:16", "cameras[1].id"],
        [f"{path}:20", "cameras[2].id"],
        [f"{path}:26", "cameras[3].area"],
        [f"{path}:31", "cameras[4].onvif.password_file"],
    ]


def test_yaml_syntax_error_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace("    name: Front\n", "    name: [Front\n"))
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR
    assert len(err) == 1
    assert err[0].startswith(f"{path}:{line_of(path, 'area: entrance')}: YAML syntax: ")


def test_duplicate_yaml_key_names_the_second_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD + "site: Again\n")
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR
    assert err == [
        f"{path}:{line_of(path, 'site: Again')}: YAML syntax: key 'site' appears twice in the same mapping"
    ]


def test_missing_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err, out = check(tmp_path / "nope.yaml", capsys)
    assert (rc, out, err) == (EX_DATAERR, "", [f"{tmp_path / 'nope.yaml'}: no such file"])


def test_not_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err, _ = check(write(tmp_path, "- just\n- a list\n"), capsys)
    assert rc == EX_DATAERR
    assert len(err) == 1 and "a camera map is a mapping" in err[0]


def test_yaml_anchors_and_merge_keys_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace("  - id: front\n", "  - &cam\n    id: front\n") + (
        "  - <<: *cam\n    id: back\n    name: Back\n"
    )
    rc, err, out = check(write(tmp_path, text), capsys)
    assert (rc, [e for e in err if ": warning: no account" not in e]) == (0, [])
    assert "ok (2 cameras, 2 people)" in out


def test_yaml_indentation_error_shows_the_key_and_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 28: the parser's words alone ("expected <block end>") do not say that a key is
    one space off; the line says which key, both indentations, and never the value."""
    assert "    area: entrance\n" in GOOD
    path = write(tmp_path, GOOD.replace("    area: entrance\n", "   area: entrance\n", 1))
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR and len(err) == 1
    assert err[0].startswith(f"{path}:{line_of(path, 'area: entrance')}: YAML syntax: "), err
    assert "at `area:` (indented 3 spaces, the line above 4: check the indentation" in err[0]
    assert "entrance" not in err[0].split("YAML syntax:")[1]


def test_yaml_tab_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("    area: entrance\n", "\tarea: entrance\n", 1))
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR and len(err) == 1
    assert "(a tab: YAML indents with spaces only)" in err[0], err


def test_camera_auth_keys_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27: `auth: digest|any` and `allow_basic_auth: true|false`, each validated."""
    ok = write(tmp_path, GOOD + "    auth: digest\n")
    rc, err, _ = check(ok, capsys)
    assert rc == 0, err
    ok = write(tmp_path, GOOD + "    allow_basic_auth: true\n")
    assert check(ok, capsys)[0] == 0
    bad = write(tmp_path, GOOD + "    auth: basic\n")
    rc, err, _ = check(bad, capsys)
    assert rc == EX_DATAERR and len(err) == 1
    assert "cameras[0].auth" in err[0] and "'digest'" in err[0] and "'any'" in err[0], err
    both = write(tmp_path, GOOD + "    auth: digest\n    allow_basic_auth: true\n")
    rc, err, _ = check(both, capsys)
    assert rc == EX_DATAERR and len(err) == 1
    assert "auth: digest refuses Basic" in err[0] and "keep one of them" in err[0], err


def test_camera_transport_key_is_checked(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`transport: auto|tcp|udp` (CONTRACT.md), with either reader."""
    for value in ("auto", "tcp", "udp"):
        assert check(write(tmp_path, GOOD + f"    transport: {value}\n"), capsys)[0] == 0
    rc, err, _ = check(write(tmp_path, GOOD + "    transport: sctp\n"), capsys)
    assert rc == EX_DATAERR and len(err) == 1 and "cameras[0].transport" in err[0], err
    both = write(tmp_path, GOOD + "    reader: nvr\n    transport: udp\n")
    assert check(both, capsys)[0] == 0
