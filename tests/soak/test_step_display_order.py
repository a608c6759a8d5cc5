"""What the soak found with the relays that step their RTP clock mid-GOP (tests/soak/test_soak.py,
cameras r-bsteps, r-hsteps, r-all): around each step one or two frames of a B-frame stream are
given presentation times out of the order the bitstream displays them in, and
`ffmpeg -v error -xerror -i SEG -f null -` reports "non monotonically increasing dts to muxer"
for that segment. The cause, in the pure part: `DecodeTimes.feed` moves the frame at the step
"just above every pts so far", whatever its place in display order."""

from __future__ import annotations

import pytest

from nvr.ingest.decode_times import DecodeTimes

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


@pytest.mark.xfail(strict=True, reason="DecodeTimes' step repair reorders the frame at the "
                                       "step (this module's docstring)")
@pytest.mark.parametrize("step", [45000, -72000])  # +0.5 s, -0.8 s
def test_a_step_mid_gop_keeps_every_frame_in_display_order(step: int) -> None:
    out_of_order = []
    for at in range(GOP + 1, 2 * GOP):  # the step lands on each frame of the second GOP
        times: DecodeTimes[int] = DecodeTimes(max_jump=10 * 90000)
        shown: list[tuple[int, int]] = []  # (display index, pts given)
        for i, (display, key) in enumerate(b_pyramid(4 * GOP)):
            pts = display * FRAME + (step if i >= at else 0)
            shown += [(item, p) for p, _dts, _key, item in times.feed(pts, key, display)]
        shown.sort()
        out_of_order += [(at, a, b) for a, b in zip(shown, shown[1:], strict=False)
                         if b[1] <= a[1]]
    assert not out_of_order, out_of_order[:4]
