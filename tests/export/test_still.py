"""Still for a suspension notice: a real JPEG, owner-only, of the frame at or after T."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import av
import pytest

from nvr.export.remux import NoFootage
from nvr.export.still import extract_still
from tests.export.conftest import T0, Footage
from tests.export.footage import FPS
from tests.export.helpers import expected_gray, gray_of

S = 1_000_000


@pytest.mark.parametrize(("at", "frame_no"), [(12_300_000, 185), (10_000_000, 150),
                                               (32_000_000, 450)])
def test_still_is_the_frame_at_or_after(footage: Footage, tmp_path: Path, at: int,
                                        frame_no: int) -> None:
    out = tmp_path / "still.jpg"
    result = extract_still(footage.h264, T0 + at, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert T0 + at <= result.frame_us < T0 + at + S // FPS or at == 32_000_000  # in the gap
    assert out.read_bytes()[:2] == b"\xff\xd8"
    with av.open(str(out)) as c:
        (img,) = list(c.decode(video=0))
    assert (img.width, img.height) == (640, 360)
    # JPEG is full-range YUV: the recorded gray g (limited range) shows as (g-16)*255/219.
    assert abs(gray_of(img) - (expected_gray(frame_no) - 16) * 255 / 219) <= 4


def test_still_never_overwrites_and_needs_footage(footage: Footage, tmp_path: Path) -> None:
    out = tmp_path / "still.jpg"
    out.write_bytes(b"x")
    with pytest.raises(FileExistsError):
        extract_still(footage.h264, T0, out)
    with pytest.raises(NoFootage):
        extract_still(footage.h264, T0 + 3600 * S, tmp_path / "late.jpg")
