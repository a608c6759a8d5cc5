"""`privacy_masks:` in the camera map: a bad mask is named with its file and line; masks hiding
most of a picture are a warning, not an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvr.config.loader import load_camera_map
from nvr.errors import EX_DATAERR
from tests.config.helpers import GOOD, check, line_of, write


def not_accounts(err: list[str]) -> list[str]:
    """check-config's lines but its warnings about `people:` accounts this machine lacks (the
    example map's alice and bob): those are another test's subject."""
    return [line for line in err if ": people[" not in line]


MASKED = GOOD + """\
    privacy_masks:
      - note: public computers
        polygon: [[0.10, 0.55], [0.45, 0.55], [0.45, 0.95], [0.10, 0.95]]
"""


def test_a_good_mask_loads_and_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, MASKED)
    rc, err, out = check(path, capsys)
    assert (rc, not_accounts(err)) == (0, [])
    cam = load_camera_map(path).cameras[0]
    assert [(m.note, m.polygon[0]) for m in cam.privacy_masks] == [("public computers",
                                                                     (0.10, 0.55))]


@pytest.mark.parametrize(("polygon", "message"), [
    ("[[0.10, 0.55], [1.45, 0.55], [0.45, 0.95]]",
     "point 2 [1.45, 0.55] is outside the picture: x and y are fractions of its width and "
     "height, from 0 to 1"),
    ("[[0.1, 0.1], [0.5, 0.5]]", "a mask polygon needs at least 3 points [x, y], not 2"),
    ("[[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]",
     "the polygon crosses itself (edge 1 crosses edge 3); list its corners in order around "
     "the shape"),
])
def test_a_bad_mask_is_named_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], polygon: str, message: str
) -> None:
    path = write(tmp_path, MASKED.replace(
        "[[0.10, 0.55], [0.45, 0.55], [0.45, 0.95], [0.10, 0.95]]", polygon))
    rc, err, out = check(path, capsys)
    assert (rc, out) == (EX_DATAERR, "")
    assert err == [f"{path}:{line_of(path, 'polygon:')}: cameras[0].privacy_masks[0].polygon: "
                   f"camera 'front': {message}"]


def test_a_mask_without_a_note_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, MASKED.replace("      - note: public computers\n        polygon",
                                          "      - polygon"))
    rc, err, _ = check(path, capsys)
    assert rc == EX_DATAERR
    assert err == [f"{path}:{line_of(path, 'polygon:')}: cameras[0].privacy_masks[0].note: "
                   "camera 'front': required key 'note' is missing"]


def test_masks_over_half_the_picture_warn_but_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MASKED + """\
      - note: reading tables
        polygon: [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]]
""")
    rc, err, out = check(path, capsys)
    assert rc == 0
    assert "ok (1 camera, 2 people)" in out
    assert not_accounts(err) == [f"{path}:{line_of(path, 'privacy_masks:')}: cameras[0].privacy_masks: "
                   "warning: camera 'front': the masks cover 64% of the picture; check the "
                   "coordinates (x, y are fractions 0-1), or move the camera"]


def test_privacy_masks_live_overlay_and_burn_are_accepted_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for how in ("overlay", "burn"):
        path = write(tmp_path, MASKED + f"    privacy_masks_live: {how}\n")
        rc, err, _ = check(path, capsys)
        assert rc == 0 and not_accounts(err) == [], (how, err)
    path = write(tmp_path, MASKED + "    privacy_masks_live: blur\n")
    rc, err, _ = check(path, capsys)
    assert rc != 0 and "Input should be 'overlay' or 'burn'" in str(err), err
