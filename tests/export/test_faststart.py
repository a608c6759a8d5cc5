"""The in-place faststart pass: moov in front, every frame where it was, hashed as written."""

from __future__ import annotations

import hashlib
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest

from nvr.export import faststart
from tests.export.helpers import top_level_boxes


def _plain_mp4(path: Path, frames: int = 45) -> None:
    """A plain MP4 (moov written last), with B-frames, as PyAV writes without +faststart."""
    with av.open(str(path), "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=15)
        st.width, st.height, st.pix_fmt = 160, 120, "yuv420p"
        st.codec_context.options = {"preset": "ultrafast", "bf": "2", "g": "15"}
        for i in range(frames):
            frame = av.VideoFrame(160, 120, "yuv420p")
            frame.planes[0].update(os.urandom(160 * 120))
            frame.pts, frame.time_base = i, Fraction(1, 15)
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)


def _packets(path: Path) -> list[tuple[int | None, int | None, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, p.dts, bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]


@pytest.mark.parametrize("wide", [False, True], ids=["stco", "co64"])
def test_moov_moves_first_frames_unchanged_hash_is_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wide: bool
) -> None:
    src, out = tmp_path / "plain.mp4", tmp_path / "clip.mp4"
    _plain_mp4(src)
    assert top_level_boxes(src)[-1] == "moov"
    shutil.copy(src, out)
    if wide:  # as if the clip passed 4 GiB: 32-bit chunk offsets become 64-bit ones
        monkeypatch.setattr(faststart, "MAX_STCO", 0)

    size, digest = faststart.faststart_and_hash(out)

    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")
    assert size == out.stat().st_size
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (b"co64" in out.read_bytes()) == wide
    assert _packets(out) == _packets(src)  # every frame, same bytes, same timestamps


def test_a_file_already_in_order_is_only_hashed(tmp_path: Path) -> None:
    src = tmp_path / "plain.mp4"
    _plain_mp4(src, frames=15)
    before = src.read_bytes()
    faststart.faststart_and_hash(src)  # moves the moov
    moved = src.read_bytes()
    assert moved != before
    size, digest = faststart.faststart_and_hash(src)  # nothing left to move
    assert src.read_bytes() == moved
    assert (size, digest) == (len(moved), hashlib.sha256(moved).hexdigest())
