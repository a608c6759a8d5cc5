"""What the soak checks with the relays that step their RTP clock mid-GOP (tests/soak/test_soak.py,
cameras r-bsteps, r-hsteps, r-all), in the pure part: around each step of a B-frame stream,
every frame keeps the place in display order its bitstream gives it (else
`ffmpeg -v error -xerror -i SEG -f null -` reports "non monotonically increasing dts to muxer"
for that segment). `DecodeTimes.feed` continues the old timeline after a step by the GOP's
pattern (nvr/ingest/decode_times.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nvr.ingest.decode_times import DecodeTimes
from tests.camserver import TestCamera
from tests.ingest.recording_helpers import open_index, record_through_stepping_relay

FRAME = 6000  # 90 kHz ticks at 15 fps
GOP = 15


def b_pyramid(frames: int) -> list[tuple[int, bool]]:
    """(display index, keyframe) in decode order, as x264 bframes=2 sends them:
    I0 P3 B1 B2 P6 B4 B5 … per 15-frame GOP (its last two frames as P13 P14)."""
    out: list[tuple[int, bool]] = []
    base = 0
    while len(out) < frames:
        out.append((base, True))
        for p in range(base + 3, base + 13, 3):
            out += [(p, False), (p - 2, False), (p - 1, False)]
        out += [(base + 13, False), (base + 14, False)]
        base += GOP
    return out[:frames]


@pytest.mark.parametrize("step", [
    45000, -72000, 27000,  # +0.5 s, -0.8 s, +0.3 s: the soak's relays (27000 failed there)
    3000, -3000, -45000, 21000, 33000, 36000,
    pytest.param(24000, marks=pytest.mark.xfail(strict=True, reason=(
        "known: a forward step of exactly 4 frames lands in order and on the frame grid, "
        "so it is taken for the encoder choosing another GOP (nvr/ingest/decode_times.py)"))),
])
def test_a_step_mid_gop_keeps_every_frame_in_display_order(step: int) -> None:
    out_of_order = []
    for at in range(GOP, 2 * GOP):  # the step lands on each frame of the second GOP
        times: DecodeTimes[int] = DecodeTimes(max_jump=10 * 90000)
        shown: list[tuple[int, int]] = []  # (display index, pts given)
        for i, (display, key) in enumerate(b_pyramid(4 * GOP)):
            pts = display * FRAME + (step if i >= at else 0)
            shown += [(item, p) for p, _dts, _key, item in times.feed(pts, key, display)]
        shown.sort()
        out_of_order += [(at, a, b) for a, b in zip(shown, shown[1:], strict=False)
                         if b[1] <= a[1]]
    assert not out_of_order, out_of_order[:4]


def decode_strictly(path: Path) -> tuple[int, str]:
    """(exit code, stderr) of `ffmpeg -v error -xerror` decoding every picture of a file."""
    r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", str(path),
                        "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mount", ["h264-bframes", "h265-bframes"])
async def test_a_b_frame_camera_through_a_relay_that_steps_its_clock_records_clean_segments(
        testcam: TestCamera, tmp_path: Path, mount: str) -> None:
    # x264/x265 bframes=2, B-pyramid (tools/testcam.py) behind a relay that steps its
    # RTP clock by +0.5 s and -0.8 s, twice each, mid-GOP wherever the time falls: every
    # segment decodes with FFmpeg's strictest check, silently.
    steps = [(3.0, 45000), (4.7, -72000), (6.3, 45000), (8.0, -72000)]
    index = await open_index(tmp_path)
    try:
        status = await record_through_stepping_relay(testcam.url(mount), tmp_path, index, steps)
        segs = await index.segments("stacks")
    finally:
        await index.db.close()
    # Each step told (every one falls after the first GOP) and repaired.
    assert status["timestamp_steps"] == len(steps) and status["errors"] == 0, status
    assert len(segs) >= 4
    for s in segs:
        assert decode_strictly(Path(s.path)) == (0, ""), Path(s.path).name
