"""Privacy masks burned into exports and stills: the masked region is one colour in every
frame, the rest of the picture is the recording's, the clip is signed as a masked copy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av

from nvr.export.manifest import build_manifest, write_manifest_files
from nvr.export.masked import write_masked
from nvr.export.remux import plan_clip, sha256_file, write_planned
from nvr.export.signing import load_or_create_key
from nvr.export.still import extract_still
from nvr.export.verify import main as verify_main
from nvr.media.masks import FILL_Y
from tests.export.conftest import T0, Footage
from tests.export.masking import (
    MASK,
    decode_all,
    fill_luma,
    planes,
    psnr_outside,
    uniform_problem,
)

S = 1_000_000
W, H = 640, 360


def test_masked_export_fills_the_mask_in_every_frame_and_keeps_the_rest(
    footage: Footage, tmp_path: Path
) -> None:
    # 12 s across two segments: the sources are checked and planned as for any export.
    plan = plan_clip(footage.h264, footage.gaps, T0 + 4 * S, T0 + 16 * S)
    plain = write_planned(plan, tmp_path / "plain.mp4")
    seen: list[tuple[int, int]] = []
    masked = write_masked(plan, [MASK], tmp_path / "masked.mp4",
                          progress=lambda done, total: seen.append((done, total)))
    assert masked.sha256 == sha256_file(tmp_path / "masked.mp4") != plain.sha256
    assert (masked.frames, masked.width, masked.height) == (plain.frames, W, H)
    assert seen and seen[-1] == (plain.frames, plain.frames)
    assert not (tmp_path / "masked.mp4.unmasked").exists()  # no unmasked copy left behind
    ours, theirs = decode_all(tmp_path / "masked.mp4"), decode_all(tmp_path / "plain.mp4")
    assert [pts for pts, _ in ours] == [pts for pts, _ in theirs]  # same time line
    for (_, a), (_, b) in zip(ours, theirs, strict=True):
        assert uniform_problem(a, W, H) is None, uniform_problem(a, W, H)
        assert abs(fill_luma(a, W, H) - FILL_Y) <= 2  # black, not the scene
        assert psnr_outside(a, b, W, H) >= 35
    # This footage is a flat grey that changes every frame: unmasked, the region is that grey.
    assert sum(abs(fill_luma(b, W, H) - FILL_Y) > 2 for _, b in theirs) > len(theirs) * 0.9
    with av.open(str(tmp_path / "masked.mp4")) as c:
        keys = [p.pts for p in c.demux(video=0) if p.size and p.is_keyframe]
    with av.open(str(tmp_path / "plain.mp4")) as c:
        assert keys == [p.pts for p in c.demux(video=0) if p.size and p.is_keyframe]


def test_masked_export_is_signed_as_a_masked_copy(footage: Footage, tmp_path: Path) -> None:
    plan = plan_clip(footage.h264, footage.gaps, T0, T0 + 3 * S)
    clip = write_masked(plan, [MASK], tmp_path / "c.mp4")
    key = load_or_create_key(tmp_path)
    manifest = build_manifest(site="s", camera={"id": "cam", "name": "Cam", "area": "stacks"},
                              requested=(T0, T0 + 3 * S), clip=clip, requester={},
                              reason="r", key=key, exported_at=T0, masks=[MASK])
    write_manifest_files(clip.path, manifest, key)
    assert manifest["privacy_masks"]["applied"] == [
        {"note": "public computers", "polygon": [[0.25, 0.25], [0.5, 0.25], [0.5, 0.75],
                                                 [0.25, 0.75]]}]
    assert manifest["sources"][0]["sha256"] == footage.h264[0].sha256
    out = io.StringIO()
    assert verify_main(str(clip.path), out=out, key=key.fingerprint()) == 0, out.getvalue()
    assert (f"ok   masks: masked copy of segments {Path(footage.h264[0].path).name} (sha256 "
            f"{footage.h264[0].sha256[:16]}…): re-encoded with 1 privacy mask(s) burned in "
            "(public computers)") in out.getvalue()
    assert json.loads(Path(str(clip.path) + ".manifest.json").read_text())["privacy_masks"]


def test_still_has_the_mask_filled(footage: Footage, tmp_path: Path) -> None:
    extract_still(footage.h264, T0 + 5 * S, tmp_path / "m.jpg", [MASK])
    extract_still(footage.h264, T0 + 5 * S, tmp_path / "p.jpg")
    with av.open(str(tmp_path / "m.jpg")) as c:
        (masked,) = [planes(f) for f in c.decode(video=0)]
    with av.open(str(tmp_path / "p.jpg")) as c:
        (plain,) = [planes(f) for f in c.decode(video=0)]
    assert uniform_problem(masked, W, H) is None
    assert int(masked[0][180, 240]) <= 2  # black (full-range JPEG)
    assert int(plain[0][180, 240]) > 20
    assert psnr_outside(masked, plain, W, H) >= 35
