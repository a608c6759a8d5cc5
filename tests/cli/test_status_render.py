"""`nvr status` on a terminal: the lines below the table (rendered from a reply, no daemon)."""

from __future__ import annotations

import pytest

from nvr.cli.render import Out, status
from nvr.control.replies import StatusReply


def test_why_a_camera_records_over_udp_stays_in_sight_after_a_later_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    reply: StatusReply = {"site": "Main", "at": "2026-12-08T00:00:00Z", "cameras": [{
        "id": "yard", "name": "Yard", "area": "entrance", "state": "recording",
        "transport": "udp", "transport_reason": "the camera refuses RTP over TCP",
        "last_error": "the camera ended the stream (RTCP BYE)", "oldest_footage": None,
        "segments": 0, "recordings_bytes": 0, "daily_bytes": None, "held_bytes": 0,
        "held_seconds": 0, "holds": 0}]}  # type: ignore[typeddict-item]
    status(Out(terminal=True), reply)
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "yard recording over UDP: the camera refuses RTP over TCP" in lines, lines
    assert "yard last error: the camera ended the stream (RTCP BYE)" in lines, lines
