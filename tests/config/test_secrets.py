"""Passwords stay out of the camera map (${ENV}, password_file, systemd credentials) and out
of every message the loader prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nvr.config.loader import ConfigError, load_camera_map
from nvr.config.model import CameraMap
from tests.config.helpers import GOOD, check, line_of, write

SECRET = "Tr0ub4dor-and-3"

ONVIF = GOOD.replace(
    "    rtsp: rtsp://127.0.0.1:8554/h264\n",
    "    onvif:\n      host: 10.0.0.9\n      username: nvr\n      password_file: PF\n",
)


def test_env_variable_fills_a_password_in_an_rtsp_url(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("rtsp://127.0.0.1", "rtsp://nvr:${CAM_PW}@127.0.0.1"))
    cmap = load_camera_map(path, env={"CAM_PW": SECRET})
    assert cmap.cameras[0].rtsp == f"rtsp://nvr:{SECRET}@127.0.0.1:8554/h264"
    assert SECRET not in repr(cmap)


def test_unset_env_variable_is_an_error_on_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("site: Test branch", "site: ${BRANCH}"))
    with pytest.raises(ConfigError) as e:
        load_camera_map(path, env={})
    [problem] = e.value.problems
    assert (problem.line, problem.key_path) == (1, "site")
    assert "${BRANCH} is not set" in problem.message


def test_double_dollar_keeps_a_literal(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("site: Test branch", "site: Costs $${X}"))
    assert load_camera_map(path, env={}).site == "Costs ${X}"


def test_bare_password_file_comes_from_systemd_credentials_first(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cam.pass").write_text("from-credentials\n")
    (tmp_path / "cam.pass").write_text("next-to-the-map\n")
    path = write(tmp_path, ONVIF.replace("PF", "cam.pass"))
    with_creds = load_camera_map(path, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert with_creds.cameras[0].onvif is not None
    assert with_creds.cameras[0].onvif.password == "from-credentials"
    assert with_creds.cameras[0].onvif.password_file == creds / "cam.pass"
    without = load_camera_map(path, env={})
    assert without.cameras[0].onvif is not None
    assert without.cameras[0].onvif.password == "next-to-the-map"


def test_password_file_with_a_folder_is_relative_to_the_map(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cam.pass").write_text("line one\n\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cam.pass").write_text("wrong")
    path = write(tmp_path, ONVIF.replace("PF", "secrets/cam.pass"))
    onvif = load_camera_map(path, env={"CREDENTIALS_DIRECTORY": str(creds)}).cameras[0].onvif
    assert onvif is not None
    # Exactly one trailing newline is stripped: the rest is the password.
    assert onvif.password == "line one\n"


def test_password_file_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dir.pass").mkdir()
    path = write(tmp_path, ONVIF.replace("PF", "dir.pass"))
    with pytest.raises(ConfigError) as e:
        load_camera_map(path, env={})
    [problem] = e.value.problems
    assert problem.line == line_of(path, "password_file")
    assert "cannot be read: Is a directory" in problem.message


def test_password_and_password_file_together(tmp_path: Path) -> None:
    (tmp_path / "cam.pass").write_text(SECRET)
    text = ONVIF.replace("PF", "cam.pass") + ""
    text = text.replace("      username: nvr\n", "      username: nvr\n      password: x\n")
    with pytest.raises(ConfigError) as e:
        load_camera_map(write(tmp_path, text), env={})
    assert [p.message for p in e.value.problems] == ["give password_file: or password:, not both"]


def test_no_password_ever_appears_in_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", SECRET)
    (tmp_path / "cam.pass").write_text(SECRET)
    path = write(
        tmp_path,
        GOOD.replace("rtsp://127.0.0.1", "http://nvr:${PW}@127.0.0.1")
        + "  - id: lot\n    name: Lot\n    area: parking\n"
        + "    onvif: {host: h, username: nvr, password: '${PW}', password_file: cam.pass}\n"
        + "  - id: desk\n    name: Desk\n    area: service_desk\n    rtsp: rtsp://h/1\n"
        + "    live_rtsp: 42\n"
        + "  - id: dock\n    name: Dock\n    area: delivery\n"
        + "    onvif: {host: h, username: nvr, password: 7, port: '${PW}'}\n",
    )
    rc, err, out = check(path, capsys)
    assert rc == 65
    assert len(err) == 5, err
    assert SECRET not in out + "\n".join(err)


def test_duplicate_yaml_key_does_not_echo_its_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD + "site: " + SECRET + "\n"
    rc, err, _ = check(write(tmp_path, text), capsys)
    assert rc == 65
    assert SECRET not in "\n".join(err)


def test_relative_paths_are_relative_to_the_map(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    text = GOOD + (
        "control: {socket: ../run/control.sock}\n"
        "live:\n  listen: 0.0.0.0:8443\n  tls: {cert: live.crt, key: /abs/live.key}\n"
    )
    cmap = load_camera_map(write(sub, text), env={})
    assert cmap.storage.root == sub / "data"
    assert cmap.control.socket == tmp_path / "run" / "control.sock"
    assert cmap.live.tls is not None
    assert (cmap.live.tls.cert, cmap.live.tls.key) == (sub / "live.crt", Path("/abs/live.key"))


def test_model_built_directly_still_refuses_duplicate_ids() -> None:
    cam = {"id": "a", "name": "A", "area": "stacks", "rtsp": "rtsp://h/s"}
    with pytest.raises(ValidationError, match="camera id 'a' is used twice"):
        CameraMap.model_validate({"site": "x", "cameras": [cam, cam]})
