"""The camera map the in-process web tests start a Service with: one camera, the Director, the
web server on a port of the test's own."""

from __future__ import annotations

from pathlib import Path

NO_CAMERA = "rtsp://127.0.0.1:9/none"  # nothing answers: the tests mint links, not footage


def write_map(tmp: Path, port: int, *, rtsp: str = NO_CAMERA, segment_seconds: float = 2,
              storage_extra: str = "", people_extra: str = "") -> Path:
    """tmp/cameras.yaml: camera `lobby` at `rtsp`, storage and socket under tmp, `live.listen`
    on 127.0.0.1:port; `storage_extra`/`people_extra` are YAML lines added to those keys."""
    path = tmp / "cameras.yaml"
    path.write_text(f"""site: Test
storage:
  root: {tmp / 'storage'}
  segment_seconds: {segment_seconds}
{storage_extra}control:
  socket: {tmp / 'control.sock'}
live:
  listen: 127.0.0.1:{port}
people:
  - {{user: director, role: director}}
{people_extra}cameras:
  - {{id: lobby, name: Lobby, area: public_seating, rtsp: "{rtsp}"}}
""")
    return path
